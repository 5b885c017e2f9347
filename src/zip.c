/* zip: see zip.h. */
#include "zip.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "jsnum.h"

/* ---------------------------------------------------------------- parameters */

int zip_params_check(const zip_params_t *p, const char **err)
{
    if (p->level < -1 || p->level > 9)
        *err = "level must be an integer from -1 to 9";
    else if (p->mem_level < 1 || p->mem_level > 9)
        *err = "memLevel must be an integer from 1 to 9";
    else if (p->strategy < 0 || p->strategy > 4)
        *err = "strategy must be an integer from 0 to 4";
    else if (p->window_bits < 8 || p->window_bits > 15)
        *err = "windowBits must be an integer from 8 to 15";
    else
        return 0;
    return -1;
}

/* ---------------------------------------------------------------- kept streams */

/* One deflate stream per (format, parameters) in use, made on first need and reset for each
 * compression. A process uses two or three sets (permessage-deflate at the negotiated window
 * sizes, gzip and deflate for HTTP); past MAX_STREAMS the oldest is dropped. */
#define MAX_STREAMS 8

typedef struct {
    zip_format_t fmt;
    zip_params_t p;
    z_stream *z;
} kept_t;

static kept_t kept[MAX_STREAMS]; /* file-scope: see zip.h (one thread, nothing held across calls) */
static int nkept;

static z_stream *stream_for(zip_format_t fmt, const zip_params_t *p)
{
    for (int i = 0; i < nkept; i++)
        if (kept[i].fmt == fmt && memcmp(&kept[i].p, p, sizeof(*p)) == 0) {
            deflateReset(kept[i].z);
            return kept[i].z;
        }
    if (nkept == MAX_STREAMS) {
        deflateEnd(kept[0].z);
        free(kept[0].z);
        memmove(kept, kept + 1, sizeof(kept[0]) * (MAX_STREAMS - 1));
        nkept--;
    }
    int bits = p->window_bits == 8 ? 9 : p->window_bits;
    z_stream *z = xcalloc(1, sizeof(*z));
    if (deflateInit2(z, p->level, Z_DEFLATED,
                     fmt == ZIP_RAW    ? -bits
                     : fmt == ZIP_GZIP ? bits + 16
                                       : bits,
                     p->mem_level, p->strategy) != Z_OK) {
        fprintf(stderr, "siolua: out of memory (zlib deflate stream)\n");
        abort(); /* the parameters were checked: only memory can fail, as xmalloc does */
    }
    kept[nkept++] = (kept_t){fmt, *p, z};
    return z;
}

void zip_compress(zip_format_t fmt, const zip_params_t *p, int sync, const void *in, size_t len, buf_t *out)
{
    z_stream *z = stream_for(fmt, p);
    int flush = sync ? Z_SYNC_FLUSH : Z_FINISH;
    size_t start = out->len;
    z->next_in = (Bytef *)(uintptr_t)in;
    z->avail_in = (uInt)len; /* len < 4 GiB: messages and answers are bounded far below */
    buf_reserve(out, (size_t)deflateBound(z, (uLong)len) + 16);
    for (;;) {
        z->next_out = (Bytef *)out->base + out->len;
        z->avail_out = (uInt)(out->cap - out->len);
        int r = deflate(z, flush);
        out->len = out->cap - z->avail_out;
        if (r == Z_STREAM_END || (sync && z->avail_out != 0 && z->avail_in == 0))
            break;
        buf_reserve(out, out->cap / 2 + 64); /* not reached with deflateBound's room; kept safe */
    }
    if (sync && out->len - start >= 4)
        out->len -= 4; /* the sync flush's 00 00 ff ff: the receiver puts it back */
}

void zip_release(void)
{
    for (int i = 0; i < nkept; i++) {
        deflateEnd(kept[i].z);
        free(kept[i].z);
    }
    nkept = 0;
}

/* ---------------------------------------------------------------- Accept-Encoding */

/* negotiator 0.6 lib/encoding.js, step by step. Node hands it the header as a latin-1 string, so
 * JavaScript's whitespace within one byte is \t \n \v \f \r, space and 0xA0. */

static int js_space(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || c == 0xA0;
}

/* String.prototype.trim */
static void trim(const char **p, const char **e)
{
    while (*p < *e && js_space((unsigned char)**p))
        (*p)++;
    while (*e > *p && js_space((unsigned char)(*e)[-1]))
        (*e)--;
}

/* parseFloat: the longest prefix of [+-](Infinity | digits[.digits][e[+-]digits] | .digits[...])
 * after leading whitespace; NaN if there is none. */
static double js_parse_float(const char *p, const char *e)
{
    char tmp[64];
    const char *s;
    while (p < e && js_space((unsigned char)*p))
        p++;
    s = p;
    if (p < e && (*p == '+' || *p == '-'))
        p++;
    if ((size_t)(e - p) >= 8 && memcmp(p, "Infinity", 8) == 0)
        return *s == '-' ? -INFINITY : INFINITY;
    const char *digits = p;
    while (p < e && *p >= '0' && *p <= '9')
        p++;
    int nint = (int)(p - digits), nfrac = 0;
    if (p < e && *p == '.') {
        const char *f = ++p;
        while (p < e && *p >= '0' && *p <= '9')
            p++;
        nfrac = (int)(p - f);
        if (nint == 0 && nfrac == 0)
            return NAN;
    } else if (nint == 0) {
        return NAN;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        const char *x = p + 1;
        if (x < e && (*x == '+' || *x == '-'))
            x++;
        if (x < e && *x >= '0' && *x <= '9') {
            while (x < e && *x >= '0' && *x <= '9')
                x++;
            p = x;
        }
    }
    if ((size_t)(p - s) >= sizeof(tmp)) { /* a very long number: strtod on a copy of it all */
        char *big = xstrndup(s, (size_t)(p - s));
        double v = jsnum_strtod(big, NULL);
        free(big);
        return v;
    }
    memcpy(tmp, s, (size_t)(p - s));
    tmp[p - s] = '\0';
    return jsnum_strtod(tmp, NULL); /* the same grammar as strtod's decimal form, which it then is */
}

typedef struct {
    const char *name; /* encoding token */
    size_t len;
    double q;
    int i; /* its place in the header */
} accepted_t;

typedef struct {
    double q;
    int s, o, i;
} priority_t;

/* parseEncoding: /^\s*([^\s;]+)\s*(?:;(.*))?$/ on a trimmed element, then its "q" parameter. */
static int parse_encoding(const char *p, const char *e, int i, accepted_t *out)
{
    const char *t = p;
    while (p < e && !js_space((unsigned char)*p) && *p != ';')
        p++;
    if (p == t)
        return 0;
    out->name = t;
    out->len = (size_t)(p - t);
    out->q = 1;
    out->i = i;
    while (p < e && js_space((unsigned char)*p))
        p++;
    if (p == e)
        return 1;
    if (*p != ';')
        return 0;
    /* "." stops at a line terminator, which the header cannot hold; an empty rest leaves q at 1 */
    for (const char *a = p + 1; a < e;) {
        const char *b = memchr(a, ';', (size_t)(e - a));
        const char *pe = b ? b : e, *ps = a;
        trim(&ps, &pe);
        const char *eq = memchr(ps, '=', (size_t)(pe - ps));
        if ((eq ? eq : pe) - ps == 1 && *ps == 'q') {
            if (eq == NULL) {
                out->q = NAN; /* parseFloat(undefined) */
            } else {
                const char *v_end = memchr(eq + 1, '=', (size_t)(pe - eq - 1));
                out->q = js_parse_float(eq + 1, v_end ? v_end : pe);
            }
            break;
        }
        if (b == NULL)
            break;
        a = b + 1;
    }
    return 1;
}

/* specify(): 1 exact (case-insensitive) match, 0 for "*", -1 no match. */
static int specificity(const char *name, const accepted_t *a)
{
    size_t n = strlen(name);
    if (a->len == n && strncasecmp(a->name, name, n) == 0)
        return 1;
    return a->len == 1 && a->name[0] == '*' ? 0 : -1;
}

/* JavaScript's `x || y` on numbers: x unless it is 0 or NaN. */
static double js_or(double x, double y)
{
    return (x == 0 || isnan(x)) ? y : x;
}

/* compareSpecs(a, b) < 0: a sorts before b */
static int before(const priority_t *a, const priority_t *b)
{
    return js_or(js_or(js_or(b->q - a->q, (double)(b->s - a->s)), (double)(a->o - b->o)), (double)(a->i - b->i)) < 0;
}

int zip_accept_encoding(const char *hdr, size_t len, const char *const *offered, int n)
{
    const char *p = hdr ? hdr : "", *end = p + (hdr ? len : 0);
    size_t cap = 1;
    for (const char *c = p; c < end; c++)
        cap += *c == ',';
    accepted_t *acc = xmalloc((cap + 1) * sizeof(*acc));
    int na = 0, i = 0, has_identity = 0;
    double min_q = 1;
    for (;; i++) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *s = p, *e = comma ? comma : end;
        trim(&s, &e);
        if (parse_encoding(s, e, i, &acc[na])) {
            has_identity |= specificity("identity", &acc[na]) >= 0;
            min_q = fmin(min_q, js_or(acc[na].q, 1));
            na++;
        }
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    if (!has_identity)
        acc[na++] = (accepted_t){"identity", 8, min_q, i + 1};
    int best = -1;
    priority_t bestp = {0, 0, 0, 0};
    for (int k = 0; k < n; k++) {
        priority_t pr = {0, 0, -1, k}; /* getEncodingPriority's starting point {o: -1, q: 0, s: 0} */
        for (int a = 0; a < na; a++) {
            int s = specificity(offered[k], &acc[a]);
            if (s < 0)
                continue;
            priority_t sp = {acc[a].q, s, acc[a].i, k};
            if (js_or(js_or((double)(pr.s - sp.s), pr.q - sp.q), (double)(pr.o - sp.o)) < 0)
                pr = sp;
        }
        if (!(pr.q > 0)) /* isQuality: NaN and 0 are out */
            continue;
        if (best < 0 || before(&pr, &bestp)) {
            best = k;
            bestp = pr;
        }
    }
    free(acc);
    return best;
}
