/* utf8: UTF-8 checks and repair, as the WHATWG Encoding Standard's decoder does them (what Node's
 * Buffer.toString() and every browser do): each maximal subpart of an ill-formed sequence becomes
 * one U+FFFD. Pure functions over bytes; nothing here allocates except utf8_repair's buf_t.
 *
 * WTF-8: a lone UTF-16 surrogate (a JSON string may hold one: "\ud800") is kept in a Lua string as
 * its 3-byte generalized UTF-8 form ED A0..BF 80..BF. That form is not UTF-8; utf8_seq() accepts it
 * only when asked to (wtf8 = 1), so that the JSON encoder can write it back as an escape. */
#ifndef SL_UTF8_H
#define SL_UTF8_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* The sequence at p[0..n), n >= 1: returns its length (1-4) when it is one well-formed
 * character, with the code point in *cp; else returns minus the length of its maximal subpart
 * (-1..-3), the bytes that one U+FFFD replaces. With wtf8, a surrogate's 3-byte form counts as
 * well-formed (*cp in D800..DFFF). */
int utf8_seq(const unsigned char *p, size_t n, uint32_t *cp, int wtf8);

/* Length of the longest prefix of p[0..n) that is valid UTF-8 (n when all of it is). */
size_t utf8_valid_prefix(const char *p, size_t n);

/* Appends p[0..n) to out with every maximal subpart of an ill-formed sequence replaced by U+FFFD
 * (EF BF BD); with wtf8, a surrogate's 3-byte form is one U+FFFD too (what a JS string holding a
 * lone surrogate becomes in UTF-8). Returns the number of replacements. */
size_t utf8_repair(buf_t *out, const char *p, size_t n, int wtf8);

/* Writes the UTF-8 (or, for a surrogate, WTF-8) form of cp <= 0x10FFFF to out; returns its
 * length (1-4). */
size_t utf8_put(char *out, uint32_t cp);

#endif
