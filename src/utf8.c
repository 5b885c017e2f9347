/* utf8: see utf8.h. The lead-byte table is the WHATWG decoder's ("UTF-8 decoder", Encoding
 * Standard 4.1.1): how many continuation bytes follow, and the range the first one must be in
 * (E0, ED, F0 and F4 narrow it to rule out overlong forms, surrogates and values past 10FFFF). */
#include "utf8.h"

#include <string.h>

typedef struct {
    unsigned char more;   /* continuation bytes; 0xff: this byte cannot start a sequence */
    unsigned char lo, hi; /* range of the first continuation byte */
} lead_t;

static lead_t lead(unsigned char c)
{
    if (c < 0x80)
        return (lead_t){0, 0, 0};
    if (c >= 0xC2 && c <= 0xDF)
        return (lead_t){1, 0x80, 0xBF};
    if (c == 0xE0)
        return (lead_t){2, 0xA0, 0xBF};
    if (c == 0xED)
        return (lead_t){2, 0x80, 0x9F};
    if (c >= 0xE1 && c <= 0xEF)
        return (lead_t){2, 0x80, 0xBF};
    if (c == 0xF0)
        return (lead_t){3, 0x90, 0xBF};
    if (c >= 0xF1 && c <= 0xF3)
        return (lead_t){3, 0x80, 0xBF};
    if (c == 0xF4)
        return (lead_t){3, 0x80, 0x8F};
    return (lead_t){0xff, 0, 0}; /* 80..BF (a stray continuation), C0, C1, F5..FF */
}

int utf8_seq(const unsigned char *p, size_t n, uint32_t *cp, int wtf8)
{
    unsigned char c = p[0];
    lead_t l = lead(c);
    if (l.more == 0) {
        *cp = c;
        return 1;
    }
    if (l.more == 0xff)
        return -1;
    if (wtf8 && c == 0xED)
        l.hi = 0xBF; /* ED A0..BF: a surrogate's 3-byte form */
    uint32_t v = c & (0x3Fu >> l.more);
    for (unsigned i = 1; i <= l.more; i++) {
        unsigned char lo = i == 1 ? l.lo : 0x80, hi = i == 1 ? l.hi : 0xBF;
        if (i >= n || p[i] < lo || p[i] > hi)
            return -(int)i; /* the bytes so far are the maximal subpart; p[i] starts anew */
        v = (v << 6) | (p[i] & 0x3Fu);
    }
    *cp = v;
    return (int)l.more + 1;
}

size_t utf8_valid_prefix(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    uint32_t cp;
    while (i < n) {
        /* ASCII runs eight bytes at a time */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (w & 0x8080808080808080ull)
                break;
            i += 8;
        }
        if (i >= n)
            break;
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        int r = utf8_seq(p + i, n - i, &cp, 0);
        if (r < 0)
            return i;
        i += (size_t)r;
    }
    return n;
}

size_t utf8_repair(buf_t *out, const char *s, size_t n, int wtf8)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, fixed = 0;
    uint32_t cp;
    buf_reserve(out, n);
    while (i < n) {
        size_t ok = utf8_valid_prefix(s + i, n - i);
        buf_append(out, s + i, ok);
        i += ok;
        if (i >= n)
            break;
        int r = utf8_seq(p + i, n - i, &cp, wtf8);
        if (r < 0) /* the maximal subpart is UTF-8's, even with wtf8: "ED A0" cut short is two */
            r = utf8_seq(p + i, n - i, &cp, 0);
        buf_append(out, "\xEF\xBF\xBD", 3);
        i += (size_t)(r < 0 ? -r : r); /* r > 0: a surrogate (wtf8) */
        fixed++;
    }
    return fixed;
}

size_t utf8_put(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}
