/* Unit tests for eio_packet: WebSocket packets, polling payloads (including cut at every byte),
 * base64 and encoding. Vectors follow docs/engine.io-protocol/v4-current.md. */
#include <stdlib.h>

#include "eio_packet.h"
#include "test.h"

/* A heap copy of exactly n bytes, so ASan flags any read past the end of the input. */
static char *dup_exact(const char *p, size_t n)
{
    char *c = malloc(n ? n : 1);
    memcpy(c, p, n);
    return c;
}

/* A string literal and its length (literals may hold NUL bytes). */
#define V(s) s, sizeof(s) - 1

/* ---------------------------------------------------------------- WebSocket packets */

static const struct {
    int binary;
    const char *in;
    size_t n;
    int rc;
    eio_type_t type;
    const char *data;
} ws_vectors[] = {
    {0, V("0{\"sid\":\"lv_VI97HAXpY6yYWAAAC\"}"), EIO_PKT_OK, EIO_OPEN, "{\"sid\":\"lv_VI97HAXpY6yYWAAAC\"}"},
    {0, V("1"), EIO_PKT_OK, EIO_CLOSE, ""},
    {0, V("2"), EIO_PKT_OK, EIO_PING, ""},
    {0, V("2probe"), EIO_PKT_OK, EIO_PING, "probe"},
    {0, V("3probe"), EIO_PKT_OK, EIO_PONG, "probe"},
    {0, V("4hello"), EIO_PKT_OK, EIO_MESSAGE, "hello"},
    {0, V("42[\"foo\"]"), EIO_PKT_OK, EIO_MESSAGE, "2[\"foo\"]"},
    {0, V("5"), EIO_PKT_OK, EIO_UPGRADE, ""},
    {0, V("6"), EIO_PKT_OK, EIO_NOOP, ""},
    {0, V("4\x1e\x00x"), EIO_PKT_OK, EIO_MESSAGE, "\x1e\x00x"},
    {0, V(""), EIO_PKT_EEMPTY, 0, NULL},
    {0, V("7"), EIO_PKT_ETYPE, 0, NULL},
    {0, V("x4"), EIO_PKT_ETYPE, 0, NULL},
    {0, V("/"), EIO_PKT_ETYPE, 0, NULL},
    {0, V("bAQID"), EIO_PKT_ETYPE, 0, NULL}, /* base64 is for polling only */
    {1, V("\x01\x02\x03\x04"), EIO_PKT_OK, EIO_MESSAGE, "\x01\x02\x03\x04"},
    {1, V("4hello"), EIO_PKT_OK, EIO_MESSAGE, "4hello"}, /* a binary frame is never a text packet */
    {1, V(""), EIO_PKT_OK, EIO_MESSAGE, ""},
};

TEST(decode_ws)
{
    for (size_t i = 0; i < sizeof(ws_vectors) / sizeof(ws_vectors[0]); i++) {
        eio_packet_t pkt;
        char *in = dup_exact(ws_vectors[i].in, ws_vectors[i].n);
        int rc = eio_decode_ws(ws_vectors[i].binary, in, ws_vectors[i].n, &pkt);
        CHECK_EQ_INT(rc, ws_vectors[i].rc);
        if (rc == EIO_PKT_OK) {
            CHECK_EQ_INT(pkt.type, ws_vectors[i].type);
            CHECK_EQ_INT(pkt.binary, ws_vectors[i].binary);
            const char *d = ws_vectors[i].data;
            size_t dn = ws_vectors[i].binary ? ws_vectors[i].n : ws_vectors[i].n - 1;
            CHECK(pkt.data.len == dn && memcmp(pkt.data.ptr, d, dn) == 0);
            CHECK(pkt.data.ptr != NULL);
        }
        free(in);
    }
}

/* ---------------------------------------------------------------- polling payloads */

/* Decodes a whole payload, writing "T:data|" per packet (binary data as hex after "B:") and "E<rc>"
 * on an error, then checks the result. */
static void payload_str_mode(const char *p, size_t n, size_t max, int mode, buf_t *o)
{
    eio_payload_iter_t it;
    eio_packet_t pkt;
    int rc;
    char *in = dup_exact(p, n);
    if (mode == EIO_PAYLOAD_V4)
        eio_payload_init(&it, in, n, max);
    else
        eio_payload_init3(&it, in, n, mode, max);
    while ((rc = eio_payload_next(&it, &pkt)) == 1) {
        char tmp[16];
        if (pkt.binary) {
            if (pkt.type == EIO_MESSAGE) {
                buf_appendstr(o, "B:");
            } else { /* v3: a binary packet of another type */
                snprintf(tmp, sizeof(tmp), "B%d:", (int)pkt.type);
                buf_appendstr(o, tmp);
            }
            for (size_t i = 0; i < pkt.data.len; i++) {
                snprintf(tmp, sizeof(tmp), "%02x", (unsigned char)pkt.data.ptr[i]);
                buf_appendstr(o, tmp);
            }
        } else {
            snprintf(tmp, sizeof(tmp), "%d:", (int)pkt.type);
            buf_appendstr(o, tmp);
            buf_append(o, pkt.data.ptr, pkt.data.len);
        }
        buf_appendc(o, '|');
    }
    if (rc < 0) {
        char tmp[16];
        snprintf(tmp, sizeof(tmp), "E%d", rc);
        buf_appendstr(o, tmp);
        CHECK_EQ_INT(eio_payload_next(&it, &pkt), 0); /* the iterator stops after an error */
    }
    CHECK_EQ_INT(eio_payload_next(&it, &pkt), 0);
    eio_payload_free(&it);
    free(in);
}

static void payload_str(const char *p, size_t n, size_t max, buf_t *o)
{
    payload_str_mode(p, n, max, EIO_PAYLOAD_V4, o);
}

static const struct {
    const char *in;
    size_t n;
    size_t max;
    const char *want;
} payload_vectors[] = {
    {V("4hello"), 0, "4:hello|"},
    {V("42[\"hello\"]\x1e" "42[\"world\"]"), 0, "4:2[\"hello\"]|4:2[\"world\"]|"},
    {V("2\x1e" "3\x1e" "6"), 0, "2:|3:|6:|"},
    {V("bAQIDBA=="), 0, "B:01020304|"},
    {V("4hello\x1e" "bAQIDBA==\x1e" "4world"), 0, "4:hello|B:01020304|4:world|"},
    {V("b"), 0, "B:|"},
    {V("bAQ==\x1e" "bAQI="), 0, "B:01|B:0102|"},
    {V("1"), 0, "1:|"},
    /* base64 as the reference decodes it: never an error */
    {V("4a\x1e" "bAQ="), 0, "4:a|B:01|"},
    {V("b!!!!"), 0, "B:|"},
    {V("bAQIDBA"), 0, "B:01020304|"},
    {V("bAAEC/w==\n\x1e" "4a"), 0, "B:000102ff|4:a|"}, /* engine.io-client-java's MIME base64 */
    /* errors */
    {V(""), 0, "E-1"},
    {V("4a\x1e"), 0, "4:a|E-1"},
    {V("\x1e" "4a"), 0, "E-1"},
    {V("4a\x1e\x1e" "4b"), 0, "4:a|E-1"},
    {V("4a\x1e" "9"), 0, "4:a|E-2"},
    {V("4a\x1e" "4b\x1e" "4c"), 2, "4:a|4:b|E-4"},
    {V("4a\x1e" "4b"), 2, "4:a|4:b|"},
    {V("4a\x1e" "4b"), 1, "4:a|E-4"},
};

TEST(payload_decode)
{
    for (size_t i = 0; i < sizeof(payload_vectors) / sizeof(payload_vectors[0]); i++) {
        buf_t o = BUF_INIT;
        payload_str(payload_vectors[i].in, payload_vectors[i].n, payload_vectors[i].max, &o);
        if (o.len != strlen(payload_vectors[i].want) || memcmp(o.base, payload_vectors[i].want, o.len) != 0) {
            fprintf(stderr, "  vector %zu: got \"%.*s\", expected \"%s\"\n", i, (int)o.len, o.base,
                    payload_vectors[i].want);
            test_failed_now = 1;
        }
        buf_free(&o);
    }
}

TEST(payload_null_input)
{
    eio_payload_iter_t it;
    eio_packet_t pkt;
    eio_payload_init(&it, NULL, 0, 0);
    CHECK_EQ_INT(eio_payload_next(&it, &pkt), EIO_PKT_EEMPTY);
    CHECK_EQ_INT(eio_payload_next(&it, &pkt), 0);
    eio_payload_free(&it);
}

TEST(payload_count)
{
    eio_payload_iter_t it;
    eio_packet_t pkt;
    const char *in = "2\x1e" "2\x1e" "2";
    eio_payload_init(&it, in, 5, 0);
    while (eio_payload_next(&it, &pkt) == 1)
        ;
    CHECK_EQ_INT(it.count, 3);
    eio_payload_free(&it);
}

/* Every prefix of some payloads must decode to packets and then the end or an error, without
 * reading past the prefix (each prefix is its own exact-size heap block under ASan). */
TEST(payload_cut_at_every_byte)
{
    static const char *inputs[] = {
        ("4hello\x1e" "bAQIDBA==\x1e" "2probe\x1e" "42[\"a\",1]"),
        "bAQIDBA==",
        ("0{\"sid\":\"x\"}\x1e" "6"),
    };
    for (size_t k = 0; k < sizeof(inputs) / sizeof(inputs[0]); k++) {
        size_t n = strlen(inputs[k]);
        for (size_t cut = 0; cut <= n; cut++) {
            eio_payload_iter_t it;
            eio_packet_t pkt;
            int rc, guard = 0;
            char *in = dup_exact(inputs[k], cut);
            eio_payload_init(&it, in, cut, 0);
            while ((rc = eio_payload_next(&it, &pkt)) == 1 && guard++ < 100)
                CHECK(pkt.data.ptr != NULL);
            CHECK(rc == 0 || rc == EIO_PKT_EEMPTY || rc == EIO_PKT_ETYPE);
            CHECK(cut != n || rc == 0); /* the whole input is valid */
            eio_payload_free(&it);
            free(in);

            if (cut > 0) { /* and the same prefix as one WebSocket text frame */
                in = dup_exact(inputs[k], cut);
                rc = eio_decode_ws(0, in, cut, &pkt);
                CHECK(rc == EIO_PKT_OK || rc == EIO_PKT_ETYPE);
                free(in);
            }
        }
    }
}

/* ---------------------------------------------------------------- base64 */

static const struct {
    const char *plain, *b64;
} b64_vectors[] = {/* RFC 4648 section 10 */
                   {"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},        {"foo", "Zm9v"},
                   {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};

TEST(base64_vectors)
{
    for (size_t i = 0; i < sizeof(b64_vectors) / sizeof(b64_vectors[0]); i++) {
        buf_t e = BUF_INIT, d = BUF_INIT;
        const char *plain = b64_vectors[i].plain, *b64 = b64_vectors[i].b64;
        eio_base64_encode(&e, (const unsigned char *)plain, strlen(plain));
        CHECK(e.len == strlen(b64) && (e.len == 0 || memcmp(e.base, b64, e.len) == 0));
        char *in = dup_exact(b64, strlen(b64));
        eio_base64_decode(&d, in, strlen(b64));
        CHECK(d.len == strlen(plain) && (d.len == 0 || memcmp(d.base, plain, d.len) == 0));
        free(in);
        buf_free(&e);
        buf_free(&d);
    }
}

/* What the reference decodes (Node's Buffer.from(text, "base64"), outputs taken from Node 20):
 * characters outside the alphabets are skipped, "-_" are "+/", the first '=' ends the data, a
 * partial last group gives what it can, and UTF-8 characters count as the low bytes of their UTF-16
 * code units. */
TEST(base64_as_node)
{
    static const struct {
        const char *in;
        size_t n;
        const char *hex;
    } v[] = {
        {V("AAEC/w==\n"), "000102ff"},      /* engine.io-client-java: MIME, a line break at the end */
        {V("AA EC/w=="), "000102ff"},        {V("AAEC/w"), "000102ff"},  {V("AAEC/w="), "000102ff"},
        {V("A"), ""},                        {V("AB"), "00"},            {V("ABC"), "0010"},
        {V("AB=CD"), "00"},                  {V("A=BCD"), ""},           {V("=AAA"), ""},
        {V("AAAA=AAA"), "000000"},           {V("AAA=A"), "0000"},       {V("-_-_"), "fbffbf"},
        {V("+/+/"), "fbffbf"},               {V("AB!CD"), "001083"},     {V("A\nB\nC\nD"), "001083"},
        {V("A\r\nB\tC D\n"), "001083"},   {V("AB\0CD"), "001083"},   {V("A==="), ""},
        {V("AB\xc5\x81" "CD"), "001002"},   /* U+0141 reads as 'A' */
        {V("AB\xc3\x81" "CD"), "001083"},   /* U+00C1 is no base64 character */
        {V("AB\xf0\x9f\x98\x80" "CD"), "00"}, /* U+1F600: D83D DE00, 0x3D is '=' */
        {V("AB\xc5\x41" "CD"), "001002"},   /* an invalid sequence: its bytes are skipped */
        {V("AB\xff\xfe" "CD"), "001083"},   {V("AB\xc5"), "00"},
    };
    static const char hexd[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        buf_t d = BUF_INIT, hex = BUF_INIT;
        buf_appendstr(&d, "keep");
        char *in = dup_exact(v[i].in, v[i].n);
        eio_base64_decode(&d, in, v[i].n);
        CHECK(d.len >= 4 && memcmp(d.base, "keep", 4) == 0); /* appended after what out held */
        for (size_t k = 4; k < d.len; k++) {
            buf_appendc(&hex, hexd[(unsigned char)d.base[k] >> 4]);
            buf_appendc(&hex, hexd[(unsigned char)d.base[k] & 15]);
        }
        if (hex.len != strlen(v[i].hex) || (hex.len && memcmp(hex.base, v[i].hex, hex.len) != 0)) {
            fprintf(stderr, "  base64 #%zu: got \"%.*s\", expected \"%s\"\n", i, (int)hex.len,
                    hex.base ? hex.base : "", v[i].hex);
            test_failed_now = 1;
        }
        free(in);
        buf_free(&d);
        buf_free(&hex);
    }
}

/* Larger than one internal chunk, of every length modulo 3, appended after existing bytes. */
TEST(base64_large_roundtrip)
{
    for (size_t n = 50000; n < 50003; n++) {
        unsigned char *p = malloc(n);
        for (size_t i = 0; i < n; i++)
            p[i] = (unsigned char)(i * 7919u >> 3);
        buf_t e = BUF_INIT, d = BUF_INIT;
        eio_base64_encode(&e, p, n);
        CHECK_EQ_INT(e.len, 4 * ((n + 2) / 3));
        buf_appendstr(&d, "xy");
        eio_base64_decode(&d, e.base, e.len);
        CHECK_EQ_INT(d.len, n + 2);
        CHECK(memcmp(d.base, "xy", 2) == 0 && memcmp(d.base + 2, p, n) == 0);
        free(p);
        buf_free(&e);
        buf_free(&d);
    }
}

/* ---------------------------------------------------------------- encoding */

TEST(packet_new)
{
    rbuf_t *b = eio_packet_new(EIO_PONG, "probe", 5);
    CHECK_EQ_INT(b->refs, 1);
    CHECK_EQ_INT(b->flags, 0);
    CHECK_EQ_MEM(rbuf_payload(b), b->len, "3probe");
    rbuf_unref(b);
    b = eio_packet_new(EIO_PING, NULL, 0);
    CHECK_EQ_MEM(rbuf_payload(b), b->len, "2");
    rbuf_unref(b);
    b = eio_packet_new(EIO_OPEN, "{\"sid\":\"a\"}", 11);
    CHECK_EQ_MEM(rbuf_payload(b), b->len, "0{\"sid\":\"a\"}");
    rbuf_unref(b);
}

TEST(payload_append)
{
    buf_t out = BUF_INIT;
    rbuf_t *t = eio_packet_new(EIO_MESSAGE, "2[\"hello\"]", 10);
    rbuf_t *bin = rbuf_from("\x01\x02\x03\x04", 4);
    bin->flags |= RBUF_BINARY;
    rbuf_t *empty = rbuf_from("", 0);
    empty->flags |= RBUF_BINARY;

    eio_payload_append(&out, t);
    CHECK_EQ_MEM(out.base, out.len, "42[\"hello\"]");
    eio_payload_append(&out, bin);
    eio_payload_append(&out, empty);
    eio_payload_append(&out, t);
    CHECK_EQ_MEM(out.base, out.len, "42[\"hello\"]\x1e" "bAQIDBA==\x1e" "b\x1e" "42[\"hello\"]");

    /* and it decodes back to the same packets */
    buf_t o = BUF_INIT;
    payload_str(out.base, out.len, 0, &o);
    CHECK_EQ_MEM(o.base, o.len, "4:2[\"hello\"]|B:01020304|B:|4:2[\"hello\"]|");

    buf_free(&o);
    buf_free(&out);
    rbuf_unref(t);
    rbuf_unref(bin);
    rbuf_unref(empty);
}

/* ---------------------------------------------------------------- protocol v3 */

static const struct {
    int mode;
    const char *in;
    size_t n;
    size_t max;
    const char *want;
} v3_vectors[] = {
    {EIO_PAYLOAD_V3, V("6:4hello"), 0, "4:hello|"},
    {EIO_PAYLOAD_V3, V("2:403:4ab"), 0, "4:0|4:ab|"},
    {EIO_PAYLOAD_V3, V("0:"), 0, ""},
    {EIO_PAYLOAD_V3, V("0:1:20:"), 0, "2:|"},
    {EIO_PAYLOAD_V3, V("01:1"), 0, "1:|"}, /* leading zeros: Number("01") is 1 */
    {EIO_PAYLOAD_V3, V("3:4\xf0\x9f\x98\x80"), 0, "4:\xf0\x9f\x98\x80|"}, /* an emoji: 2 UTF-16 units */
    {EIO_PAYLOAD_V3, V("3:4\xc3\xa9\xe2\x82\xac"), 0, "4:\xc3\xa9\xe2\x82\xac|"},
    {EIO_PAYLOAD_V3, V("6:b4AQID"), 0, "B:010203|"},
    {EIO_PAYLOAD_V3, V("2:b4"), 0, "B:|"},
    {EIO_PAYLOAD_V3, V("1:b"), 0, "B6:|"},      /* no type: ignored by the reference (a noop) */
    {EIO_PAYLOAD_V3, V("3:b9A"), 0, "B6:|"},
    {EIO_PAYLOAD_V3, V("3:b2A"), 0, "B2:|"},    /* a base64 ping */
    {EIO_PAYLOAD_V3, V("1:21:21:2"), 2, "2:|2:|E-4"},
    {EIO_PAYLOAD_V3, V(""), 0, "E-1"},
    {EIO_PAYLOAD_V3, V("2:4\xf0\x9f\x98\x80"), 0, "E-3"}, /* between the halves of a pair */
    {EIO_PAYLOAD_V3, V("4:4a"), 0, "E-3"},
    {EIO_PAYLOAD_V3, V("x:4a"), 0, "E-3"},
    {EIO_PAYLOAD_V3, V(":4a"), 0, "E-3"},
    {EIO_PAYLOAD_V3, V("2:4a3"), 0, "4:a|E-3"},
    {EIO_PAYLOAD_V3, V("2:9a"), 0, "E-2"},
    {EIO_PAYLOAD_V3, V("12345678901234567:4"), 0, "E-3"},
    /* binary payloads */
    {EIO_PAYLOAD_V3_BIN, V("\x00\x06\xff" "4hello" "\x01\x04\xff\x04\x01\x02\x03"), 0, "4:hello|B:010203|"},
    {EIO_PAYLOAD_V3_BIN, V("\x00\x01\x00\xff" "4abcdefghi"), 0, "4:abcdefghi|"},
    {EIO_PAYLOAD_V3_BIN, V("\x01\x01\xff\x02"), 0, "B2:|"},
    {EIO_PAYLOAD_V3_BIN, V("\x01\x00\xff"), 0, "B6:|"},
    {EIO_PAYLOAD_V3_BIN, V("\x01\x02\xff\x09x"), 0, "B6:|"},
    {EIO_PAYLOAD_V3_BIN, V("\x00\x06\xff" "b4AQ=="), 0, "B:01|"},
    {EIO_PAYLOAD_V3_BIN, V("\x00\x04\xff" "4\xed\xa0\x80"), 0, "4:\xed\xa0\x80|"}, /* a lone surrogate */
    {EIO_PAYLOAD_V3_BIN, V("\x00\x02\xff" "4\xff"), 0, "E-3"},
    {EIO_PAYLOAD_V3_BIN, V("\x00\x00\xff"), 0, "E-1"},
    {EIO_PAYLOAD_V3_BIN, V("\x00\x02\xff" "4a" "\x00\x09"), 0, "E-3"}, /* checked whole: no packet */
    {EIO_PAYLOAD_V3_BIN, V("\x00\x05\xff" "4ab"), 0, "E-3"},
    {EIO_PAYLOAD_V3_BIN, V("\x00\x0a\xff" "4a"), 0, "E-3"},
    {EIO_PAYLOAD_V3_BIN, V("\x00\xff" "4a"), 0, "E-3"},
    {EIO_PAYLOAD_V3_BIN, V(""), 0, "E-1"},
    {EIO_PAYLOAD_V3_BIN, V("\x01\x01\xff\x02" "\x01\x01\xff\x02"), 1, "B2:|E-4"},
};

TEST(payload3_decode)
{
    for (size_t i = 0; i < sizeof(v3_vectors) / sizeof(v3_vectors[0]); i++) {
        buf_t o = BUF_INIT;
        payload_str_mode(v3_vectors[i].in, v3_vectors[i].n, v3_vectors[i].max, v3_vectors[i].mode, &o);
        if (o.len != strlen(v3_vectors[i].want) || (o.len && memcmp(o.base, v3_vectors[i].want, o.len) != 0)) {
            fprintf(stderr, "  v3 vector %zu: got \"%.*s\", expected \"%s\"\n", i, (int)o.len, o.base, v3_vectors[i].want);
            test_failed_now = 1;
        }
        buf_free(&o);
    }
}

TEST(decode_ws3)
{
    eio_packet_t p;
    buf_t scratch = BUF_INIT;
    CHECK_EQ_INT(eio_decode_ws3(1, "\x04\x01\x02", 3, &scratch, &p), EIO_PKT_OK);
    CHECK(p.type == EIO_MESSAGE && p.binary);
    CHECK_EQ_MEM(p.data.ptr, p.data.len, "\x01\x02");
    CHECK_EQ_INT(eio_decode_ws3(1, "\x07x", 2, &scratch, &p), EIO_PKT_OK);
    CHECK_EQ_INT(p.type, EIO_NOOP);
    CHECK_EQ_INT(eio_decode_ws3(1, "", 0, &scratch, &p), EIO_PKT_OK);
    CHECK_EQ_INT(p.type, EIO_NOOP);
    CHECK_EQ_INT(eio_decode_ws3(0, "b4AQID", 6, &scratch, &p), EIO_PKT_OK);
    CHECK(p.type == EIO_MESSAGE && p.binary);
    CHECK_EQ_MEM(p.data.ptr, p.data.len, "\x01\x02\x03");
    CHECK_EQ_INT(eio_decode_ws3(0, "4hi", 3, &scratch, &p), EIO_PKT_OK);
    CHECK(p.type == EIO_MESSAGE && !p.binary);
    CHECK_EQ_MEM(p.data.ptr, p.data.len, "hi");
    CHECK_EQ_INT(eio_decode_ws3(0, "2probe", 6, &scratch, &p), EIO_PKT_OK);
    CHECK_EQ_INT(p.type, EIO_PING);
    CHECK_EQ_INT(eio_decode_ws3(0, "", 0, &scratch, &p), EIO_PKT_EEMPTY);
    CHECK_EQ_INT(eio_decode_ws3(0, "8", 1, &scratch, &p), EIO_PKT_ETYPE);
    buf_free(&scratch);
}

TEST(payload3_append)
{
    buf_t o = BUF_INIT;
    rbuf_t *t = eio_packet_new(EIO_MESSAGE, "hello", 5);
    rbuf_t *e = eio_packet_new(EIO_MESSAGE, "\xf0\x9f\x98\x80\xc3\xa9", 6);
    rbuf_t *bad = eio_packet_new(EIO_MESSAGE, "\xff", 1);
    rbuf_t *long_ = eio_packet_new(EIO_MESSAGE, "0123456789", 10);
    rbuf_t *b = rbuf_from("\x01\x02\x03", 3);
    b->flags |= RBUF_BINARY;
    eio_payload_append3(&o, t, 0);
    eio_payload_append3(&o, e, 0);
    eio_payload_append3(&o, bad, 0);
    eio_payload_append3(&o, b, 0);
    CHECK_EQ_MEM(o.base, o.len, "6:4hello4:4\xf0\x9f\x98\x80\xc3\xa9" "2:4\xef\xbf\xbd" "6:b4AQID");
    o.len = 0;
    eio_payload_append3(&o, t, 1);
    eio_payload_append3(&o, b, 1);
    eio_payload_append3(&o, long_, 1);
    CHECK_EQ_MEM(o.base, o.len,
                 "\x00\x06\xff" "4hello" "\x01\x04\xff\x04\x01\x02\x03" "\x00\x01\x01\xff" "40123456789");
    /* and what is appended decodes back */
    buf_t d = BUF_INIT;
    payload_str_mode(o.base, o.len, 0, EIO_PAYLOAD_V3_BIN, &d);
    CHECK_EQ_MEM(d.base, d.len, "4:hello|B:010203|4:0123456789|");
    buf_free(&d);
    buf_free(&o);
    rbuf_unref(t);
    rbuf_unref(e);
    rbuf_unref(bad);
    rbuf_unref(long_);
    rbuf_unref(b);
}

/* Every prefix of v3 payloads decodes to packets then the end or an error, reading nothing past it. */
TEST(payload3_cut_at_every_byte)
{
    static const struct {
        int mode;
        const char *in;
        size_t n;
    } inputs[] = {
        {EIO_PAYLOAD_V3, V("6:4hello3:4\xf0\x9f\x98\x80" "6:b4AQID1:2")},
        {EIO_PAYLOAD_V3_BIN, V("\x00\x06\xff" "4hello" "\x01\x04\xff\x04\x01\x02\x03" "\x00\x04\xff" "4\xc3\xa9!")},
    };
    for (size_t k = 0; k < sizeof(inputs) / sizeof(inputs[0]); k++)
        for (size_t cut = 0; cut <= inputs[k].n; cut++) {
            eio_payload_iter_t it;
            eio_packet_t pkt;
            int rc, guard = 0;
            char *in = dup_exact(inputs[k].in, cut);
            eio_payload_init3(&it, in, cut, inputs[k].mode, 0);
            while ((rc = eio_payload_next(&it, &pkt)) == 1 && guard++ < 100)
                CHECK(pkt.data.ptr != NULL);
            CHECK(rc <= 0);
            CHECK(cut != inputs[k].n || rc == 0); /* the whole input is valid */
            eio_payload_free(&it);
            free(in);
        }
}

int main(void)
{
    RUN(decode_ws);
    RUN(payload_decode);
    RUN(payload_null_input);
    RUN(payload_count);
    RUN(payload_cut_at_every_byte);
    RUN(base64_vectors);
    RUN(base64_as_node);
    RUN(base64_large_roundtrip);
    RUN(packet_new);
    RUN(payload_append);
    RUN(payload3_decode);
    RUN(decode_ws3);
    RUN(payload3_append);
    RUN(payload3_cut_at_every_byte);
    return test_summary();
}
