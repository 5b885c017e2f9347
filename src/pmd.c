/* pmd: see pmd.h.
 * Why the server keeps no compression context. With context takeover, every message refers to the
 * connection's earlier ones, so each recipient needs its own compression of every message and its
 * own deflate stream: about 300 KB per connection for as long as it lives (ws keeps one per
 * connection once it has sent a compressed message). Compressing each message on its own is valid
 * whatever was negotiated (the peer's decoder keeps a window it may not need), costs one kept
 * stream for the whole process (zip.h), and gives identical bytes for every recipient: a broadcast
 * compresses once, as it encodes once. What is lost is the ratio small messages gain from their
 * predecessors; the threshold (1024) keeps small messages uncompressed anyway.
 * The client's side is the client's choice: with context takeover (the default of browsers and ws)
 * its messages refer to its earlier ones, so its window must be kept between messages. An idle
 * connection keeps only that window, in an allocation of its exact size (at most 2^bits bytes, less
 * when the client has sent less), not the ~40 KB of a zlib inflate stream: the stream itself is
 * lent by ws.c while a message is being received. */
#include "pmd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "jsnum.h"

/* ---------------------------------------------------------------- negotiation */

/* ws's lib/validation.js tokenChars: the RFC 7230 token characters. */
static int token_char(unsigned char c)
{
    return c > 32 && c < 127 && !strchr("\"(),/:;<=>?@[\\]{}", c);
}

enum { P_SNCT, P_CNCT, P_SBITS, P_CBITS, P_N };
static const char *const param_names[P_N] = {"server_no_context_takeover", "client_no_context_takeover",
                                             "server_max_window_bits", "client_max_window_bits"};

/* One permessage-deflate offer: its parameters, in the order they came (a JavaScript object's key
 * order, which ws's answer keeps). */
typedef struct {
    int8_t order[P_N];
    int n;
    int8_t val[P_N]; /* for the window sizes: 8..15, or -1 for a bare client_max_window_bits */
    uint8_t has[P_N];
} offer_t;

/* JavaScript's Number(s) on a token: decimal (sign, digits, fraction, exponent, "Infinity") or
 * 0x / 0o / 0b integers; NaN otherwise. Only whether it is an integer from 8 to 15 matters. */
static double js_number(const char *s, size_t n)
{
    const char *p = s, *e = s + n;
    if (n >= 2 && p[0] == '0' && p[1] != '\0' && strchr("xXoObB", p[1]) != NULL) {
        int base = (p[1] | 32) == 'x' ? 16 : (p[1] | 32) == 'o' ? 8 : 2;
        double v = 0;
        if (n == 2)
            return NAN;
        for (p += 2; p < e; p++) {
            int d = *p >= '0' && *p <= '9'                 ? *p - '0'
                    : (*p | 32) >= 'a' && (*p | 32) <= 'f' ? (*p | 32) - 'a' + 10
                                                           : 99;
            if (d >= base)
                return NAN;
            v = v * base + d;
        }
        return v;
    }
    if (p < e && (*p == '+' || *p == '-'))
        p++;
    if ((size_t)(e - p) == 8 && memcmp(p, "Infinity", 8) == 0)
        return INFINITY;
    const char *d0 = p;
    while (p < e && *p >= '0' && *p <= '9')
        p++;
    size_t nint = (size_t)(p - d0), nfrac = 0;
    if (p < e && *p == '.') {
        const char *f = ++p;
        while (p < e && *p >= '0' && *p <= '9')
            p++;
        nfrac = (size_t)(p - f);
    }
    if (nint + nfrac == 0)
        return NAN;
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (p == e || *p < '0' || *p > '9')
            return NAN;
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    if (p != e)
        return NAN;
    char *tmp = xstrndup(s, n); /* now strtod's decimal grammar exactly */
    double v = jsnum_strtod(tmp, NULL);
    free(tmp);
    return v;
}

/* ws's normalizeParams for one parameter: 0, or -1 (unknown, repeated, or a bad value). */
static int add_param(offer_t *o, const char *name, size_t nlen, const char *val, size_t vlen, int bare)
{
    int id;
    for (id = 0; id < P_N; id++)
        if (strlen(param_names[id]) == nlen && memcmp(param_names[id], name, nlen) == 0)
            break;
    if (id == P_N || o->has[id]) /* "Unknown parameter", "must have only a single value" */
        return -1;
    if (id == P_SNCT || id == P_CNCT) {
        if (!bare)
            return -1;
    } else if (id == P_CBITS && bare) {
        o->val[id] = -1;
    } else {
        double v = bare ? 1 : js_number(val, vlen); /* +true is 1 */
        if (!(v >= 8 && v <= 15 && v == floor(v)))
            return -1;
        o->val[id] = (int8_t)v;
    }
    o->has[id] = 1;
    o->order[o->n++] = (int8_t)id;
    return 0;
}

/* acceptAsServer's test of one offer. */
static int acceptable(const pmd_config_t *c, const offer_t *o)
{
    if (c->server_nct == 0 && o->has[P_SNCT])
        return 0;
    if (o->has[P_SBITS] && (c->server_bits < 0 || (c->server_bits > 0 && c->server_bits > o->val[P_SBITS])))
        return 0;
    if (c->client_bits > 0 &&
        (o->has[P_CBITS] && o->val[P_CBITS] > 0 ? c->client_bits > o->val[P_CBITS] : !o->has[P_CBITS]))
        return 0;
    return 1;
}

/* Sets parameter id (kept in its place if present, else added last, as a JS assignment does). */
static void set_param(offer_t *o, int id, int8_t v)
{
    if (!o->has[id]) {
        o->has[id] = 1;
        o->order[o->n++] = (int8_t)id;
    }
    o->val[id] = v;
}

static void del_param(offer_t *o, int id)
{
    int k = 0;
    for (int i = 0; i < o->n; i++)
        if (o->order[i] != id)
            o->order[k++] = o->order[i];
    o->n = k;
    o->has[id] = 0;
}

/* The parser's state, as in ws's lib/extension.js parse(). */
typedef struct {
    const pmd_config_t *cfg;
    int is_pmd;   /* the extension whose parameters are being read is permessage-deflate */
    offer_t cur;  /* its parameters */
    int found;    /* a permessage-deflate offer was seen */
    int accepted; /* one was accepted: `acc` */
    offer_t acc;
} parse_t;

static void ext_begin(parse_t *ps, const char *name, size_t n)
{
    ps->is_pmd = n == 18 && memcmp(name, "permessage-deflate", 18) == 0;
    memset(&ps->cur, 0, sizeof(ps->cur));
}

/* push(offers, name, params): an extension is complete. */
static void ext_end(parse_t *ps)
{
    if (!ps->is_pmd)
        return;
    ps->found = 1;
    if (!ps->accepted && acceptable(ps->cfg, &ps->cur)) {
        ps->accepted = 1;
        ps->acc = ps->cur;
    }
    ps->is_pmd = 0;
}

/* push(params, name, value) */
static int param(parse_t *ps, const char *name, size_t nlen, const char *val, size_t vlen, int bare, int unescape)
{
    if (!ps->is_pmd)
        return 0;
    if (unescape) { /* value.replace(/\\/g, '') */
        char *tmp = xmalloc(vlen + 1);
        size_t k = 0;
        for (size_t i = 0; i < vlen; i++)
            if (val[i] != '\\')
                tmp[k++] = val[i];
        int r = add_param(&ps->cur, name, nlen, tmp, k, bare);
        free(tmp);
        return r;
    }
    return add_param(&ps->cur, name, nlen, val, vlen, bare);
}

/* A ';' or ',' at i ends the token that began at *start (and ended at *end, or here): -1 when no
 * token began ("Unexpected character"). */
static int token_ends(long start, long *end, size_t i)
{
    if (start == -1)
        return -1;
    if (*end == -1)
        *end = (long)i;
    return 0;
}

/* ws's parse(), character by character; -1 where it throws a SyntaxError. */
static int parse(parse_t *ps, const char *h, size_t len)
{
    const unsigned char *u = (const unsigned char *)h;
    int have_ext = 0, have_param = 0, must_unescape = 0, escaping = 0, in_quotes = 0;
    const char *pname = NULL;
    size_t pnlen = 0;
    long start = -1, end = -1;
    size_t i;
    int code = -1;
    for (i = 0; i < len; i++) {
        code = u[i];
        if (!have_ext) {
            if (end == -1 && token_char((unsigned char)code)) {
                if (start == -1)
                    start = (long)i;
            } else if (i != 0 && (code == ' ' || code == '\t')) {
                if (end == -1 && start != -1)
                    end = (long)i;
            } else if (code == ';' || code == ',') {
                if (token_ends(start, &end, i) != 0)
                    return -1;
                ext_begin(ps, h + start, (size_t)(end - start));
                if (code == ',')
                    ext_end(ps);
                else
                    have_ext = 1;
                start = end = -1;
            } else {
                return -1;
            }
        } else if (!have_param) {
            if (end == -1 && token_char((unsigned char)code)) {
                if (start == -1)
                    start = (long)i;
            } else if (code == ' ' || code == '\t') {
                if (end == -1 && start != -1)
                    end = (long)i;
            } else if (code == ';' || code == ',') {
                if (token_ends(start, &end, i) != 0)
                    return -1;
                if (param(ps, h + start, (size_t)(end - start), NULL, 0, 1, 0) != 0)
                    return -1;
                if (code == ',') {
                    ext_end(ps);
                    have_ext = 0;
                }
                start = end = -1;
            } else if (code == '=' && start != -1 && end == -1) {
                have_param = 1;
                pname = h + start;
                pnlen = i - (size_t)start;
                start = end = -1;
            } else {
                return -1;
            }
        } else {
            if (escaping) {
                if (!token_char((unsigned char)code))
                    return -1;
                if (start == -1)
                    start = (long)i;
                else if (!must_unescape)
                    must_unescape = 1;
                escaping = 0;
            } else if (in_quotes) {
                if (token_char((unsigned char)code)) {
                    if (start == -1)
                        start = (long)i;
                } else if (code == '"' && start != -1) {
                    in_quotes = 0;
                    end = (long)i;
                } else if (code == '\\') {
                    escaping = 1;
                } else {
                    return -1;
                }
            } else if (code == '"' && h[i - 1] == '=') {
                in_quotes = 1;
            } else if (end == -1 && token_char((unsigned char)code)) {
                if (start == -1)
                    start = (long)i;
            } else if (start != -1 && (code == ' ' || code == '\t')) {
                if (end == -1)
                    end = (long)i;
            } else if (code == ';' || code == ',') {
                if (token_ends(start, &end, i) != 0)
                    return -1;
                if (param(ps, pname, pnlen, h + start, (size_t)(end - start), 0, must_unescape) != 0)
                    return -1;
                must_unescape = 0;
                if (code == ',') {
                    ext_end(ps);
                    have_ext = 0;
                }
                have_param = 0;
                start = end = -1;
            } else {
                return -1;
            }
        }
    }
    if (start == -1 || in_quotes || code == ' ' || code == '\t')
        return -1; /* "Unexpected end of input" */
    if (end == -1)
        end = (long)i;
    if (!have_ext) {
        ext_begin(ps, h + start, (size_t)(end - start));
    } else if (!have_param) {
        if (param(ps, h + start, (size_t)(end - start), NULL, 0, 1, 0) != 0)
            return -1;
    } else if (param(ps, pname, pnlen, h + start, (size_t)(end - start), 0, must_unescape) != 0) {
        return -1;
    }
    ext_end(ps);
    return 0;
}

int pmd_negotiate(const pmd_config_t *cfg, const char *hdr, size_t len, pmd_params_t *out, char answer[PMD_ANSWER_MAX])
{
    parse_t ps;
    if (!cfg->enabled || hdr == NULL)
        return 0;
    memset(&ps, 0, sizeof(ps));
    ps.cfg = cfg;
    if (parse(&ps, hdr, len) != 0)
        return -1;
    if (!ps.found)
        return 0;
    if (!ps.accepted) /* "None of the extension offers can be accepted" */
        return -1;
    offer_t *a = &ps.acc;
    if (cfg->server_nct == 1)
        set_param(a, P_SNCT, 0);
    if (cfg->client_nct == 1)
        set_param(a, P_CNCT, 0);
    if (cfg->server_bits > 0)
        set_param(a, P_SBITS, cfg->server_bits);
    if (cfg->client_bits > 0)
        set_param(a, P_CBITS, cfg->client_bits);
    else if (a->has[P_CBITS] && (a->val[P_CBITS] == -1 || cfg->client_bits < 0))
        del_param(a, P_CBITS);
    out->server_bits = a->has[P_SBITS] ? (uint8_t)a->val[P_SBITS] : 15;
    out->client_bits = a->has[P_CBITS] ? (uint8_t)a->val[P_CBITS] : 15;
    out->server_nct = a->has[P_SNCT];
    out->client_nct = a->has[P_CNCT];
    size_t n = (size_t)snprintf(answer, PMD_ANSWER_MAX, "permessage-deflate");
    for (int i = 0; i < a->n; i++) {
        int id = a->order[i];
        if (id == P_SBITS || id == P_CBITS)
            n += (size_t)snprintf(answer + n, PMD_ANSWER_MAX - n, "; %s=%d", param_names[id], a->val[id]);
        else
            n += (size_t)snprintf(answer + n, PMD_ANSWER_MAX - n, "; %s", param_names[id]);
    }
    return 1;
}

/* ---------------------------------------------------------------- compression */

rbuf_t *pmd_compress(const zip_params_t *zlib, int bits, const void *msg, size_t len)
{
    zip_params_t p = *zlib;
    buf_t out = BUF_INIT;
    rbuf_t *b = NULL;
    p.window_bits = bits;
    zip_compress(ZIP_RAW, &p, 1, msg, len, &out);
    if (out.len < len)
        b = rbuf_from(out.base, out.len);
    buf_free(&out);
    return b;
}

/* ---------------------------------------------------------------- inflater */

struct pmd_inflater {
    z_stream z;
    uint8_t over; /* the stream ended (a final block): input is ignored until the next start */
};

struct pmd_window {
    uint32_t len;
    uint8_t bytes[];
};

pmd_inflater_t *pmd_inflater_new(void)
{
    pmd_inflater_t *z = xcalloc(1, sizeof(*z));
    if (inflateInit2(&z->z, -15) != Z_OK) {
        fprintf(stderr, "siolua: out of memory (zlib inflate stream)\n");
        abort(); /* as xmalloc does */
    }
    return z;
}

void pmd_inflater_free(pmd_inflater_t *z)
{
    if (z == NULL)
        return;
    inflateEnd(&z->z);
    free(z);
}

void pmd_inflate_start(pmd_inflater_t *z, int bits, const pmd_window_t *w)
{
    inflateReset2(&z->z, -bits); /* frees the old window if its size differs */
    z->over = 0;
    if (w != NULL && w->len > 0)
        inflateSetDictionary(&z->z, w->bytes, w->len); /* raw inflate: allowed before any input */
}

int pmd_inflate(pmd_inflater_t *z, const void *in, size_t len, buf_t *out, size_t max)
{
    z_stream *s = &z->z;
    if (z->over)
        return PMD_OK;
    s->next_in = (Bytef *)(uintptr_t)in;
    s->avail_in = (uInt)len;
    for (;;) {
        if (out->cap == out->len) {
            /* room for one byte more than max: inflating it tells that the message is too big */
            if (out->cap > max)
                return PMD_TOO_BIG;
            size_t cap = out->cap * 2 > 16384 ? out->cap * 2 : 16384;
            if (cap > max + 1)
                cap = max + 1;
            out->base = xrealloc(out->base, cap);
            out->cap = cap;
        }
        s->next_out = (Bytef *)out->base + out->len;
        s->avail_out = (uInt)(out->cap - out->len);
        int r = inflate(s, Z_SYNC_FLUSH);
        out->len = out->cap - s->avail_out;
        if (out->len > max) {
            out->len = max; /* the byte past max only told that there was more */
            return PMD_TOO_BIG;
        }
        if (r == Z_STREAM_END) {
            z->over = 1; /* a final block: what follows it is not looked at, as ws */
            return PMD_OK;
        }
        if (r == Z_MEM_ERROR) {
            fprintf(stderr, "siolua: out of memory (zlib inflate window)\n");
            abort();
        }
        if (r != Z_OK && r != Z_BUF_ERROR) /* Z_DATA_ERROR, Z_NEED_DICT (a raw stream has none) */
            return PMD_BAD;
        if (s->avail_out != 0) /* it stopped for want of input: every byte was used */
            return PMD_OK;
    }
}

int pmd_inflate_finish(pmd_inflater_t *z, buf_t *out, size_t max, int *over)
{
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    *over = 0;
    if (!z->over) {
        int r = pmd_inflate(z, tail, 4, out, max);
        if (r != PMD_OK)
            return r;
    }
    if (z->over) {
        *over = 1;
        return PMD_OK;
    }
    /* data_type 128: inflate stopped between two blocks. Otherwise the message was cut in the
     * middle of a block (ws would hand up what came out; we refuse it) */
    return (z->z.data_type & 128) ? PMD_OK : PMD_BAD;
}

pmd_window_t *pmd_window_save(pmd_inflater_t *z, pmd_window_t *old)
{
    uInt n = 0;
    inflateGetDictionary(&z->z, NULL, &n);
    if (n == 0) {
        free(old);
        return NULL;
    }
    pmd_window_t *w = xrealloc(old, sizeof(*w) + n);
    inflateGetDictionary(&z->z, w->bytes, &n);
    w->len = n;
    return w;
}

size_t pmd_window_len(const pmd_window_t *w)
{
    return w ? w->len : 0;
}

void pmd_window_free(pmd_window_t *w)
{
    free(w);
}
