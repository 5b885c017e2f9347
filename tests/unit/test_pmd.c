/* pmd (permessage-deflate): negotiation answers as ws 8 gives them, compression round trips, the
 * bounded inflater (bombs, bad and cut data, final blocks, the window kept between messages).
 * The expected answers of the negotiation table were printed by ws 8.21 itself. */
#include <stdlib.h>
#include <zlib.h>

#include "pmd.h"
#include "test.h"
#include "zip.h"

/* ---------------------------------------------------------------- negotiation */

typedef struct {
    pmd_config_t cfg;
    const char *offer;
    const char *answer; /* NULL: no extension; "error": refused (400) */
} neg_case_t;

#define CFG(snct, cnct, sbits, cbits)                                                                                  \
    {                                                                                                                  \
        1, 1024, snct, cnct, sbits, cbits, ZIP_DEFAULTS                                                                \
    }
#define DEF CFG(-1, 0, 0, 0)

static const neg_case_t neg_cases[] = {
    {DEF, "permessage-deflate; client_max_window_bits", "permessage-deflate"},
    {DEF, "permessage-deflate", "permessage-deflate"},
    {DEF, "x-webkit-deflate-frame", NULL},
    {DEF, "permessage-deflate; client_max_window_bits=10; server_max_window_bits=12",
     "permessage-deflate; client_max_window_bits=10; server_max_window_bits=12"},
    {DEF, "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
    {CFG(0, 0, 0, 0), "permessage-deflate; server_no_context_takeover, permessage-deflate", "permessage-deflate"},
    {CFG(1, 1, 0, 0), "permessage-deflate; client_max_window_bits",
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
    {CFG(-1, 0, 10, 0), "permessage-deflate; server_max_window_bits=9, permessage-deflate; server_max_window_bits=11",
     "permessage-deflate; server_max_window_bits=10"},
    {CFG(-1, 0, 0, 12), "permessage-deflate", "error"},
    {CFG(-1, 0, 0, 12), "permessage-deflate; client_max_window_bits", "permessage-deflate; client_max_window_bits=12"},
    {CFG(-1, 0, 0, 12), "permessage-deflate; client_max_window_bits=11", "error"},
    {CFG(-1, 0, 0, -1), "permessage-deflate; client_max_window_bits=10", "permessage-deflate"},
    {CFG(-1, 0, -1, 0), "permessage-deflate; server_max_window_bits=10", "error"},
    {DEF, "permessage-deflate; client_max_window_bits=\"0xA\"", "permessage-deflate; client_max_window_bits=10"},
    {DEF, "permessage-deflate; server_max_window_bits=1e1; client_max_window_bits=+15",
     "permessage-deflate; server_max_window_bits=10; client_max_window_bits=15"},
    {DEF, "permessage-deflate; server_max_window_bits", "error"},
    {DEF, "permessage-deflate; foo", "error"},
    {DEF, "permessage-deflate; server_no_context_takeover; server_no_context_takeover", "error"},
    {DEF, "permessage-deflate; server_no_context_takeover=1", "error"},
    {DEF, "permessage-deflate;", "error"},
    {DEF, "", "error"},
    {DEF, "permessage-deflate, ", "error"},
    {DEF, "a; b=\"c\\\\d\", permessage-deflate", "error"},
    {DEF, "Permessage-Deflate", NULL},
    {DEF, "permessage-deflate; client_max_window_bits=16", "error"},
    {DEF, "permessage-deflate; client_max_window_bits=7, permessage-deflate", "error"},
    {CFG(-1, 0, 10, 9), "permessage-deflate; client_max_window_bits; server_max_window_bits=12",
     "permessage-deflate; client_max_window_bits=9; server_max_window_bits=10"},
    {DEF, "permessage-deflate; server_max_window_bits=\"1\\\\0\"", "error"},
    {DEF, "permessage-deflate ;client_no_context_takeover", "permessage-deflate; client_no_context_takeover"},
};

TEST(negotiate_as_ws_does)
{
    for (size_t i = 0; i < sizeof(neg_cases) / sizeof(neg_cases[0]); i++) {
        const neg_case_t *c = &neg_cases[i];
        pmd_params_t p;
        char answer[PMD_ANSWER_MAX] = "";
        int r = pmd_negotiate(&c->cfg, c->offer, strlen(c->offer), &p, answer);
        int want = c->answer == NULL ? 0 : strcmp(c->answer, "error") == 0 ? -1 : 1;
        if (r != want || (r == 1 && strcmp(answer, c->answer) != 0)) {
            fprintf(stderr, "  case %zu: \"%s\": got %d \"%s\", expected \"%s\"\n", i, c->offer, r,
                    r == 1 ? answer : "", c->answer ? c->answer : "(none)");
            test_failed_now = 1;
        }
    }
}

TEST(negotiated_parameters)
{
    pmd_config_t cfg = DEF;
    pmd_params_t p;
    char a[PMD_ANSWER_MAX];
    const char *o =
        "permessage-deflate; client_max_window_bits=10; server_max_window_bits=12; client_no_context_takeover";
    CHECK_EQ_INT(pmd_negotiate(&cfg, o, strlen(o), &p, a), 1);
    CHECK_EQ_INT(p.client_bits, 10);
    CHECK_EQ_INT(p.server_bits, 12);
    CHECK_EQ_INT(p.client_nct, 1);
    CHECK_EQ_INT(p.server_nct, 0);
    o = "permessage-deflate";
    CHECK_EQ_INT(pmd_negotiate(&cfg, o, strlen(o), &p, a), 1);
    CHECK_EQ_INT(p.client_bits, 15);
    CHECK_EQ_INT(p.server_bits, 15);
    cfg.enabled = 0; /* off: never negotiated */
    CHECK_EQ_INT(pmd_negotiate(&cfg, o, strlen(o), &p, a), 0);
    cfg.enabled = 1;
    CHECK_EQ_INT(pmd_negotiate(&cfg, NULL, 0, &p, a), 0); /* no header */
}

/* ---------------------------------------------------------------- messages */

static const zip_params_t zdef = ZIP_DEFAULTS;

/* Some compressible text of n bytes. */
static char *text(size_t n)
{
    static const char *const words[] = {"socket", "room ", "message", "hello ", "world", "\"data\":", "{", "}, "};
    char *t = malloc(n + 1);
    unsigned r = 7;
    for (size_t i = 0; i < n;) {
        r = r * 1103515245u + 12345u;
        const char *w = words[(r >> 16) % 8];
        for (; *w && i < n; w++)
            t[i++] = *w;
    }
    t[n] = '\0';
    return t;
}

/* Inflates one message in pieces of `step` bytes. */
static int inflate_msg(pmd_inflater_t *z, const char *in, size_t len, size_t step, buf_t *out, size_t max, int *over)
{
    for (size_t off = 0; off < len; off += step) {
        int r = pmd_inflate(z, in + off, len - off < step ? len - off : step, out, max);
        if (r != PMD_OK)
            return r;
    }
    return pmd_inflate_finish(z, out, max, over);
}

TEST(compress_then_inflate_at_every_window_and_cut)
{
    char *t = text(5000);
    for (int bits = 8; bits <= 15; bits++) {
        rbuf_t *c = pmd_compress(&zdef, bits, t, 5000);
        CHECK(c != NULL && c->len < 5000);
        for (size_t step = 1; c && step <= c->len; step = step * 3 + 1) {
            pmd_inflater_t *z = pmd_inflater_new();
            buf_t out = BUF_INIT;
            int over = 9;
            pmd_inflate_start(z, bits, NULL);
            CHECK_EQ_INT(inflate_msg(z, rbuf_payload(c), c->len, step, &out, 1000000, &over), PMD_OK);
            CHECK_EQ_INT(over, 0);
            CHECK(out.len == 5000 && memcmp(out.base, t, 5000) == 0);
            buf_free(&out);
            pmd_inflater_free(z);
        }
        rbuf_unref(c);
    }
    free(t);
}

TEST(empty_message_and_incompressible)
{
    /* RFC 7692 7.2.3.6: an empty message compresses to one 0x00 byte; not shorter: NULL */
    CHECK(pmd_compress(&zdef, 15, "", 0) == NULL);
    char rnd[600];
    unsigned r = 1;
    for (size_t i = 0; i < sizeof(rnd); i++)
        rnd[i] = (char)((r = r * 1103515245u + 12345u) >> 16);
    CHECK(pmd_compress(&zdef, 15, rnd, sizeof(rnd)) == NULL);
    pmd_inflater_t *z = pmd_inflater_new();
    buf_t out = BUF_INIT;
    int over;
    pmd_inflate_start(z, 15, NULL);
    CHECK_EQ_INT(inflate_msg(z, "\x00", 1, 1, &out, 100, &over), PMD_OK);
    CHECK_EQ_INT(out.len, 0);
    /* a zero-length compressed payload is no deflate data that ends a block: refused */
    pmd_inflate_start(z, 15, NULL);
    CHECK_EQ_INT(inflate_msg(z, "", 0, 1, &out, 100, &over), PMD_BAD);
    buf_free(&out);
    pmd_inflater_free(z);
}

/* The RFC 7692 7.2.3 examples: "Hello" compressed, with and without the shared window. */
TEST(rfc7692_examples)
{
    pmd_inflater_t *z = pmd_inflater_new();
    buf_t out = BUF_INIT;
    int over;
    static const char hello[] = "\xf2\x48\xcd\xc9\xc9\x07\x00";
    static const char again[] = "\xf2\x00\x11\x00\x00";         /* 7.2.3.2: refers to the first "Hello" */
    static const char final[] = "\xf3\x48\xcd\xc9\xc9\x07\x00"; /* 7.2.3.4: BFINAL set */
    pmd_inflate_start(z, 15, NULL);
    CHECK_EQ_INT(inflate_msg(z, hello, 7, 7, &out, 100, &over), PMD_OK);
    CHECK_EQ_MEM(out.base, out.len, "Hello");
    out.len = 0;
    CHECK_EQ_INT(inflate_msg(z, again, 5, 5, &out, 100, &over), PMD_OK); /* context takeover */
    CHECK_EQ_MEM(out.base, out.len, "Hello");
    CHECK_EQ_INT(over, 0);
    /* the same second message after the window was saved and the stream lent elsewhere */
    pmd_window_t *w = pmd_window_save(z, NULL);
    CHECK_EQ_INT(pmd_window_len(w), 10);
    pmd_inflate_start(z, 9, NULL); /* someone else's message */
    out.len = 0;
    CHECK_EQ_INT(inflate_msg(z, hello, 7, 3, &out, 100, &over), PMD_OK);
    pmd_inflate_start(z, 15, w);
    out.len = 0;
    CHECK_EQ_INT(inflate_msg(z, again, 5, 2, &out, 100, &over), PMD_OK);
    CHECK_EQ_MEM(out.base, out.len, "Hello");
    /* without the window the reference back is invalid */
    pmd_inflate_start(z, 15, NULL);
    out.len = 0;
    CHECK_EQ_INT(inflate_msg(z, again, 5, 5, &out, 100, &over), PMD_BAD);
    /* a final block ends the stream: what follows is ignored, *over says so */
    pmd_inflate_start(z, 15, NULL);
    out.len = 0;
    CHECK_EQ_INT(inflate_msg(z, final, 7, 7, &out, 100, &over), PMD_OK);
    CHECK_EQ_INT(over, 1);
    CHECK_EQ_MEM(out.base, out.len, "Hello");
    pmd_window_free(w);
    buf_free(&out);
    pmd_inflater_free(z);
}

TEST(bomb_stops_at_max)
{
    /* 10 MB of zeros deflate to ~10 KB; with max 100000 the inflater stops there */
    size_t n = 10u << 20;
    char *zeros = calloc(1, n);
    rbuf_t *c = pmd_compress(&zdef, 15, zeros, n);
    CHECK(c != NULL && c->len < 20000);
    pmd_inflater_t *z = pmd_inflater_new();
    buf_t out = BUF_INIT;
    int over;
    pmd_inflate_start(z, 15, NULL);
    CHECK_EQ_INT(inflate_msg(z, rbuf_payload(c), c->len, 4096, &out, 100000, &over), PMD_TOO_BIG);
    CHECK(out.len <= 100000 && out.cap <= 100001); /* one byte of room past max, no more */
    /* exactly max is fine */
    rbuf_t *c2 = pmd_compress(&zdef, 15, zeros, 100000);
    out.len = 0;
    pmd_inflate_start(z, 15, NULL);
    CHECK_EQ_INT(inflate_msg(z, rbuf_payload(c2), c2->len, 100, &out, 100000, &over), PMD_OK);
    CHECK_EQ_INT(out.len, 100000);
    out.len = 0;
    pmd_inflate_start(z, 15, NULL);
    CHECK_EQ_INT(inflate_msg(z, rbuf_payload(c2), c2->len, 100, &out, 99999, &over), PMD_TOO_BIG);
    rbuf_unref(c);
    rbuf_unref(c2);
    buf_free(&out);
    pmd_inflater_free(z);
    free(zeros);
}

TEST(bad_and_cut_data)
{
    pmd_inflater_t *z = pmd_inflater_new();
    buf_t out = BUF_INIT;
    int over;
    pmd_inflate_start(z, 15, NULL);
    CHECK_EQ_INT(inflate_msg(z, "\xff\xff\xff\xff", 4, 4, &out, 1000, &over), PMD_BAD); /* block type 3 */
    char *t = text(3000);
    rbuf_t *c = pmd_compress(&zdef, 15, t, 3000);
    for (size_t cut = 1; cut < c->len; cut += 7) { /* a message cut short never passes as complete */
        out.len = 0;
        pmd_inflate_start(z, 15, NULL);
        int r = inflate_msg(z, rbuf_payload(c), cut, 64, &out, 1000000, &over);
        CHECK(r == PMD_BAD || (r == PMD_OK && out.len < 3000));
        CHECK(r != PMD_OK || memcmp(out.base, t, out.len) == 0); /* (a cut at a block end is a shorter message) */
    }
    /* a window of 2^9 cannot take a stream compressed for 2^15 that refers further back */
    char *big = text(20000);
    memcpy(big + 15000, big, 2000);
    rbuf_t *c2 = pmd_compress(&zdef, 15, big, 20000);
    out.len = 0;
    pmd_inflate_start(z, 9, NULL);
    CHECK_EQ_INT(inflate_msg(z, rbuf_payload(c2), c2->len, 1000, &out, 1000000, &over), PMD_BAD);
    rbuf_unref(c);
    rbuf_unref(c2);
    free(t);
    free(big);
    buf_free(&out);
    pmd_inflater_free(z);
}

/* A client with context takeover: several messages on one zlib stream (as ws or a browser sends
 * them), received with the stream saved and restored between every two. */
TEST(context_takeover_across_saved_windows)
{
    z_stream d;
    memset(&d, 0, sizeof(d));
    CHECK_EQ_INT(deflateInit2(&d, 6, Z_DEFLATED, -15, 8, 0), Z_OK);
    pmd_inflater_t *z = pmd_inflater_new();
    pmd_window_t *w = NULL;
    buf_t out = BUF_INIT;
    char *t = text(40000);
    size_t total = 0;
    for (int m = 0; m < 24; m++) {
        size_t off = (size_t)m * 1500 % 30000, len = 500 + (size_t)m * 97;
        total += len;
        unsigned char cbuf[8192];
        d.next_in = (Bytef *)t + off;
        d.avail_in = (uInt)len;
        d.next_out = cbuf;
        d.avail_out = sizeof(cbuf);
        CHECK_EQ_INT(deflate(&d, Z_SYNC_FLUSH), Z_OK);
        size_t clen = sizeof(cbuf) - d.avail_out - 4; /* the tail left out */
        int over;
        out.len = 0;
        pmd_inflate_start(z, 15, w);
        CHECK_EQ_INT(inflate_msg(z, (char *)cbuf, clen, 100, &out, 1000000, &over), PMD_OK);
        CHECK(out.len == len && memcmp(out.base, t + off, len) == 0);
        w = pmd_window_save(z, w);
        CHECK_EQ_INT(pmd_window_len(w), total < 32768 ? total : 32768); /* what was sent, up to 2^15 */
    }
    deflateEnd(&d);
    pmd_window_free(w);
    pmd_inflater_free(z);
    buf_free(&out);
    free(t);
}

int main(void)
{
    RUN(negotiate_as_ws_does);
    RUN(negotiated_parameters);
    RUN(compress_then_inflate_at_every_window_and_cut);
    RUN(empty_message_and_incompressible);
    RUN(rfc7692_examples);
    RUN(bomb_stops_at_max);
    RUN(bad_and_cut_data);
    RUN(context_takeover_across_saved_windows);
    zip_release();
    return test_summary();
}
