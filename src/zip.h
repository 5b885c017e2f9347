/* zip: zlib for the layers that compress: WebSocket messages (pmd.c, permessage-deflate) and HTTP
 * answers (Content-Encoding gzip / deflate), with the Accept-Encoding choice.
 * A deflate stream costs about 256 KB (window 15, memLevel 8), so none is made per connection or
 * per answer: the process keeps one stream per parameter set and resets it for each use. Every
 * call compresses a whole input and returns; nothing is held across calls (one thread). */
#ifndef SL_ZIP_H
#define SL_ZIP_H

#include <stddef.h>

#include "buf.h"

/* zlib's tuning knobs, with Node's zlib names and defaults. 0 in every field is not a valid set:
 * start from ZIP_DEFAULTS. */
typedef struct {
    int level;       /* -1 (zlib's default, 6) .. 9 */
    int mem_level;   /* memLevel 1..9, 8 */
    int strategy;    /* 0 (default) .. 4 (Z_FIXED) */
    int window_bits; /* windowBits 8..15, 15 (zlib has no 8 for raw deflate: 9 is used, whose
                        matches still reach back 250 bytes at most, inside a 256-byte window) */
} zip_params_t;

#define ZIP_DEFAULTS                                                                                                   \
    {                                                                                                                  \
        -1, 8, 0, 15                                                                                                   \
    }

typedef enum {
    ZIP_RAW,  /* raw deflate (RFC 1951), as permessage-deflate carries it */
    ZIP_ZLIB, /* RFC 1950: HTTP's "deflate" */
    ZIP_GZIP, /* RFC 1952: HTTP's "gzip" */
} zip_format_t;

/* Returns 0 if p holds values zlib accepts, else -1 and *err names the bad field. */
int zip_params_check(const zip_params_t *p, const char **err);

/* Appends the compressed form of in[0..len) to out. With `sync` (raw only) the stream is ended by a
 * sync flush, not finished, and the flush's empty stored block (00 00 ff ff) is left out: one
 * permessage-deflate message (RFC 7692 7.2.1). p must pass zip_params_check. */
void zip_compress(zip_format_t fmt, const zip_params_t *p, int sync, const void *in, size_t len, buf_t *out);

/* The Accept-Encoding choice of the npm `negotiator` (0.6, what engine.io and socket.io use through
 * `accepts`): of `offered` (n names, in the server's order of preference), the one the header ranks
 * first (q, then exact name over `*`, then its place in the header, then the server's order).
 * Returns its index, or -1 if none is acceptable (identity then). hdr may be NULL (no header). */
int zip_accept_encoding(const char *hdr, size_t len, const char *const *offered, int n);

/* Frees the kept streams (for a leak check at exit). */
void zip_release(void);

#endif
