/* Unit tests for sio_packet: every packet type against the examples of
 * docs/socket.io-protocol/v5-current.md (decode, then encode back to the same bytes), every error
 * code, the limits, and input cut at every byte. */
#include <msgpack.h>
#include <stdlib.h>

#include "sio_packet.h"
#include "test.h"

static const sio_limits_t lim = {10, 256};

/* A heap copy of exactly n bytes, so ASan flags any read past the end of the input. */
static char *dup_exact(const char *p, size_t n)
{
    char *c = malloc(n ? n : 1);
    memcpy(c, p, n);
    return c;
}

static int slice_is(slice_t s, const char *lit)
{
    return s.len == strlen(lit) && (s.len == 0 || memcmp(s.ptr, lit, s.len) == 0);
}

/* ---------------------------------------------------------------- valid packets, round trip */

static const struct {
    const char *in;
    sio_type_t type;
    uint32_t attachments;
    const char *nsp;
    int64_t id;
    const char *data;
    int canonical; /* encoding the decoded packet gives "4" + in back */
} good[] = {
    /* the protocol document's examples */
    {"0", SIO_CONNECT, 0, "/", -1, "", 1},
    {"0/admin,{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}", SIO_CONNECT, 0, "/admin", -1, "{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}", 1},
    {"0/admin,", SIO_CONNECT, 0, "/admin", -1, "", 1},
    {"0{\"token\":\"123\"}", SIO_CONNECT, 0, "/", -1, "{\"token\":\"123\"}", 1},
    {"4{\"message\":\"Not authorized\"}", SIO_CONNECT_ERROR, 0, "/", -1, "{\"message\":\"Not authorized\"}", 1},
    {"2[\"foo\"]", SIO_EVENT, 0, "/", -1, "[\"foo\"]", 1},
    {"2/admin,[\"bar\"]", SIO_EVENT, 0, "/admin", -1, "[\"bar\"]", 1},
    {"51-[\"baz\",{\"_placeholder\":true,\"num\":0}]", SIO_BINARY_EVENT, 1, "/", -1,
     "[\"baz\",{\"_placeholder\":true,\"num\":0}]", 1},
    {"52-/admin,[\"baz\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]", SIO_BINARY_EVENT, 2,
     "/admin", -1, "[\"baz\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]", 1},
    {"212[\"foo\"]", SIO_EVENT, 0, "/", 12, "[\"foo\"]", 1},
    {"3/admin,13[\"bar\"]", SIO_ACK, 0, "/admin", 13, "[\"bar\"]", 1},
    {"312[]", SIO_ACK, 0, "/", 12, "[]", 1},
    {"61-15[\"bar\",{\"_placeholder\":true,\"num\":0}]", SIO_BINARY_ACK, 1, "/", 15,
     "[\"bar\",{\"_placeholder\":true,\"num\":0}]", 1},
    {"61-/admin,1[{\"_placeholder\":true,\"num\":0}]", SIO_BINARY_ACK, 1, "/admin", 1,
     "[{\"_placeholder\":true,\"num\":0}]", 1},
    {"1", SIO_DISCONNECT, 0, "/", -1, "", 1},
    {"1/admin,", SIO_DISCONNECT, 0, "/admin", -1, "", 1},
    {"2/admin,1[\"tellme\"]", SIO_EVENT, 0, "/admin", 1, "[\"tellme\"]", 1},
    /* edges the reference accepts too */
    {"2/admin,0[\"x\"]", SIO_EVENT, 0, "/admin", 0, "[\"x\"]", 1},
    {"29007199254740991[\"x\"]", SIO_EVENT, 0, "/", 9007199254740991LL, "[\"x\"]", 1},
    {"0/admin", SIO_CONNECT, 0, "/admin", -1, "", 0},     /* namespace up to the end, no comma */
    {"2/a/b,[1]", SIO_EVENT, 0, "/a/b", -1, "[1]", 1},
    {"2/,[\"x\"]", SIO_EVENT, 0, "/", -1, "[\"x\"]", 0},    /* explicit main namespace */
    {"2 [\"x\"]", SIO_EVENT, 0, "/", -1, " [\"x\"]", 1},    /* JSON whitespace before the array */
    {"4\"refused\"", SIO_CONNECT_ERROR, 0, "/", -1, "\"refused\"", 1},
    {"4", SIO_CONNECT_ERROR, 0, "/", -1, "", 1},
    {"510-[\"a\"]", SIO_BINARY_EVENT, 10, "/", -1, "[\"a\"]", 1}, /* at the limit */
    {"501-[\"a\"]", SIO_BINARY_EVENT, 1, "/", -1, "[\"a\"]", 0},  /* leading zero */
    {"2007[\"a\"]", SIO_EVENT, 0, "/", 7, "[\"a\"]", 0},
};

TEST(decode_and_roundtrip)
{
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        size_t n = strlen(good[i].in);
        char *in = dup_exact(good[i].in, n);
        sio_packet_t pkt;
        int rc = sio_decode(in, n, &lim, &pkt);
        if (rc != SIO_PKT_OK) {
            fprintf(stderr, "  vector %zu \"%s\": %s\n", i, good[i].in, sio_strerror(rc));
            test_failed_now = 1;
            free(in);
            continue;
        }
        CHECK_EQ_INT(pkt.type, good[i].type);
        CHECK_EQ_INT(pkt.attachments, good[i].attachments);
        CHECK(slice_is(pkt.nsp, good[i].nsp));
        CHECK_EQ_INT(pkt.id, good[i].id);
        CHECK(slice_is(pkt.data, good[i].data));
        CHECK(pkt.data.ptr != NULL && pkt.nsp.ptr != NULL);

        rbuf_t *b = sio_encode(&pkt);
        const char *enc = rbuf_payload(b);
        CHECK(b->len >= 1 && enc[0] == '4');
        CHECK_EQ_INT(b->flags, 0);
        if (good[i].canonical && (b->len != n + 1 || memcmp(enc + 1, good[i].in, n) != 0)) {
            fprintf(stderr, "  vector %zu: encoded \"%.*s\"\n", i, (int)b->len, enc);
            test_failed_now = 1;
        }
        /* whether canonical or not, the encoding decodes to the same packet */
        sio_packet_t again;
        CHECK_EQ_INT(sio_decode(enc + 1, b->len - 1, &lim, &again), SIO_PKT_OK);
        CHECK_EQ_INT(again.type, pkt.type);
        CHECK_EQ_INT(again.attachments, pkt.attachments);
        CHECK(again.nsp.len == pkt.nsp.len && memcmp(again.nsp.ptr, pkt.nsp.ptr, pkt.nsp.len) == 0);
        CHECK_EQ_INT(again.id, pkt.id);
        CHECK(again.data.len == pkt.data.len && memcmp(again.data.ptr, pkt.data.ptr, pkt.data.len) == 0);
        rbuf_unref(b);
        free(in);
    }
}

/* A NULL limits pointer means the reference's defaults (10 attachments, 256-byte namespaces). */
TEST(default_limits)
{
    sio_packet_t pkt;
    CHECK_EQ_INT(sio_decode("510-[1]", 7, NULL, &pkt), SIO_PKT_OK);
    CHECK_EQ_INT(sio_decode("511-[1]", 7, NULL, &pkt), SIO_PKT_EATTACHMENTS);
}

/* ---------------------------------------------------------------- encoder specifics */

TEST(encode)
{
    sio_packet_t pkt = {SIO_EVENT, 0, SLICE_LIT(""), -1, SLICE_LIT("[\"x\"]"), NULL};
    rbuf_t *b = sio_encode(&pkt); /* an empty namespace is the main one, as `obj.nsp &&` in JS */
    CHECK_EQ_MEM(rbuf_payload(b), b->len, "42[\"x\"]");
    rbuf_unref(b);

    pkt = (sio_packet_t){SIO_BINARY_ACK, 4294967295u, SLICE_LIT("/n"), 9007199254740991LL, SLICE_LIT("[]"), NULL};
    b = sio_encode(&pkt);
    CHECK_EQ_MEM(rbuf_payload(b), b->len, "464294967295-/n,9007199254740991[]");
    rbuf_unref(b);

    pkt = (sio_packet_t){SIO_ACK, 7, SLICE_LIT("/"), 0, SLICE_LIT("[]"), NULL}; /* attachments ignored */
    b = sio_encode(&pkt);
    CHECK_EQ_MEM(rbuf_payload(b), b->len, "430[]");
    rbuf_unref(b);

    pkt = (sio_packet_t){SIO_CONNECT, 0, SLICE_LIT("/admin"), -1, {NULL, 0}, NULL};
    b = sio_encode(&pkt);
    CHECK_EQ_MEM(rbuf_payload(b), b->len, "40/admin,");
    CHECK_EQ_INT(b->refs, 1);
    rbuf_unref(b);
}

/* ---------------------------------------------------------------- errors */

static const struct {
    const char *in;
    size_t max_nsp;
    int rc;
} bad[] = {
    {"", 256, SIO_PKT_EEMPTY},
    {"7", 256, SIO_PKT_ETYPE},
    {"9[\"a\"]", 256, SIO_PKT_ETYPE},
    {"a", 256, SIO_PKT_ETYPE},
    {"/admin,", 256, SIO_PKT_ETYPE},
    {" 2[\"a\"]", 256, SIO_PKT_ETYPE},
    /* attachments */
    {"5", 256, SIO_PKT_EATTACHMENTS},
    {"51", 256, SIO_PKT_EATTACHMENTS},
    {"5-[\"a\"]", 256, SIO_PKT_EATTACHMENTS},
    {"50-[\"a\"]", 256, SIO_PKT_EATTACHMENTS},
    {"5a-[\"a\"]", 256, SIO_PKT_EATTACHMENTS},
    {"5x1-[\"a\"]", 256, SIO_PKT_EATTACHMENTS},
    {"5 1-[\"a\"]", 256, SIO_PKT_EATTACHMENTS},
    {"51[\"a\"]", 256, SIO_PKT_EATTACHMENTS},
    {"511-[\"a\"]", 256, SIO_PKT_EATTACHMENTS},
    {"699999999999999999999999999-[\"a\"]", 256, SIO_PKT_EATTACHMENTS},
    {"61-", 256, SIO_PKT_EPAYLOAD},
    /* namespace */
    {"0/abcde,", 4, SIO_PKT_ENSP},
    {"0/abcde", 4, SIO_PKT_ENSP},
    /* ack id */
    {"29007199254740992[\"a\"]", 256, SIO_PKT_EID},
    {"299999999999999999[\"a\"]", 256, SIO_PKT_EID},
    {"2/a,99999999999999999999999999999999[\"a\"]", 256, SIO_PKT_EID},
    {"300000000000000001[]", 256, SIO_PKT_EID},
    /* payload */
    {"0[]", 256, SIO_PKT_EPAYLOAD},
    {"0\"a\"", 256, SIO_PKT_EPAYLOAD},
    {"0 ", 256, SIO_PKT_EPAYLOAD},
    {"1[]", 256, SIO_PKT_EPAYLOAD},
    {"1/admin,x", 256, SIO_PKT_EPAYLOAD},
    {"2", 256, SIO_PKT_EPAYLOAD},
    {"2{\"a\":1}", 256, SIO_PKT_EPAYLOAD},
    {"212", 256, SIO_PKT_EPAYLOAD},
    {"2/admin,", 256, SIO_PKT_EPAYLOAD},
    {"2/admin[\"x\"]", 256, SIO_PKT_EPAYLOAD}, /* no comma: all of it is the namespace */
    {"2\"foo\"", 256, SIO_PKT_EPAYLOAD},
    {"3", 256, SIO_PKT_EPAYLOAD},
    {"312", 256, SIO_PKT_EPAYLOAD},
    {"3{}", 256, SIO_PKT_EPAYLOAD},
    {"4[]", 256, SIO_PKT_EPAYLOAD},
    {"41[1]", 256, SIO_PKT_EPAYLOAD},
    {"4x", 256, SIO_PKT_EPAYLOAD},
    {"51-{}", 256, SIO_PKT_EPAYLOAD},
    {"61-1", 256, SIO_PKT_EPAYLOAD},
    {"2   ", 256, SIO_PKT_EPAYLOAD},
};

TEST(errors)
{
    int seen[8] = {0};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n = strlen(bad[i].in);
        char *in = dup_exact(bad[i].in, n);
        sio_limits_t l = {10, bad[i].max_nsp};
        sio_packet_t pkt;
        int rc = sio_decode(in, n, &l, &pkt);
        if (rc != bad[i].rc) {
            fprintf(stderr, "  \"%s\": got %d (%s), expected %d\n", bad[i].in, rc, sio_strerror(rc), bad[i].rc);
            test_failed_now = 1;
        }
        seen[-bad[i].rc] = 1;
        free(in);
    }
    for (int c = 1; c <= 6; c++)
        CHECK(seen[c]); /* every error code is covered */
}

TEST(limits)
{
    sio_packet_t pkt;
    sio_limits_t l = {2, 6};
    CHECK_EQ_INT(sio_decode("52-/abcde,[1]", 13, &l, &pkt), SIO_PKT_OK);
    CHECK_EQ_INT(sio_decode("53-[1]", 6, &l, &pkt), SIO_PKT_EATTACHMENTS);
    CHECK_EQ_INT(sio_decode("0/abcdef,", 9, &l, &pkt), SIO_PKT_ENSP);
    CHECK_EQ_INT(sio_decode("0/abcde,", 8, &l, &pkt), SIO_PKT_OK);
    CHECK(slice_is(pkt.nsp, "/abcde"));
}

TEST(strerror)
{
    CHECK(strcmp(sio_strerror(SIO_PKT_EATTACHMENTS), "Illegal attachments") == 0);
    CHECK(strcmp(sio_strerror(SIO_PKT_ETYPE), "unknown packet type") == 0);
    CHECK(strcmp(sio_strerror(SIO_PKT_EPAYLOAD), "invalid payload") == 0);
    for (int c = SIO_PKT_OK; c >= SIO_PKT_EPAYLOAD - 1; c--)
        CHECK(sio_strerror(c) != NULL && sio_strerror(c)[0] != '\0');
}

/* ---------------------------------------------------------------- cut at every byte */

TEST(cut_at_every_byte)
{
    static const char *inputs[] = {
        "52-/admin,[\"baz\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]",
        "3/admin,13[\"bar\"]",
        "61-15[\"bar\",{\"_placeholder\":true,\"num\":0}]",
        "0/admin,{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}",
        "29007199254740991[\"x\"]",
    };
    for (size_t k = 0; k < sizeof(inputs) / sizeof(inputs[0]); k++) {
        size_t n = strlen(inputs[k]);
        for (size_t cut = 0; cut <= n; cut++) {
            char *in = dup_exact(inputs[k], cut);
            sio_packet_t pkt;
            int rc = sio_decode(in, cut, &lim, &pkt);
            CHECK(rc <= SIO_PKT_OK && rc >= SIO_PKT_EPAYLOAD);
            if (rc == SIO_PKT_OK) { /* every slice stays inside the prefix */
                CHECK(pkt.data.ptr >= in && pkt.data.ptr + pkt.data.len <= in + cut);
                CHECK((pkt.nsp.ptr >= in && pkt.nsp.ptr + pkt.nsp.len <= in + cut) || slice_is(pkt.nsp, "/"));
            }
            CHECK(cut != n || rc == SIO_PKT_OK);
            free(in);
        }
    }
}

/* ---------------------------------------------------------------- msgpack parser */

#define M(s) s, sizeof(s) - 1
/* keys and small values, as msgpack bytes */
#define K_TYPE "\xa4type"
#define K_NSP "\xa3nsp"
#define K_DATA "\xa4" "data"
#define K_ID "\xa2id"
#define NSP_ROOT K_NSP "\xa1/"
#define ARR_A1 "\x92\xa1" "a\x01" /* ["a", 1] */

static const struct {
    const char *in;
    size_t n;
    int rc;
    int type;
    int64_t id;
    int has_data;
} mp_vectors[] = {
    {M("\x83" K_TYPE "\x02" NSP_ROOT K_DATA ARR_A1), SIO_PKT_OK, SIO_EVENT, -1, 1},
    {M("\x84" K_TYPE "\x02" NSP_ROOT K_DATA ARR_A1 K_ID "\x05"), SIO_PKT_OK, SIO_EVENT, 5, 1},
    {M("\x84" K_ID "\xcb\x40\x14\0\0\0\0\0\0" K_TYPE "\x03" NSP_ROOT K_DATA "\x90"), SIO_PKT_OK, SIO_ACK, 5, 1},
    {M("\x83" K_TYPE "\xcb\x40\0\0\0\0\0\0\0" NSP_ROOT K_DATA ARR_A1), SIO_PKT_OK, SIO_EVENT, -1, 1}, /* 2.0 */
    {M("\x82" K_TYPE "\x00" NSP_ROOT), SIO_PKT_OK, SIO_CONNECT, -1, 0},
    {M("\x83" K_TYPE "\x00" NSP_ROOT K_DATA "\x81\xa1t\x01"), SIO_PKT_OK, SIO_CONNECT, -1, 1},
    {M("\x83" K_TYPE "\x01" NSP_ROOT K_DATA "\xd4\x00\x00"), SIO_PKT_OK, SIO_DISCONNECT, -1, 0}, /* undefined */
    {M("\x83" K_TYPE "\x04" NSP_ROOT K_DATA "\xa1x"), SIO_PKT_OK, SIO_CONNECT_ERROR, -1, 1},
    {M("\x84" K_TYPE "\x00" K_TYPE "\x02" NSP_ROOT K_DATA ARR_A1), SIO_PKT_OK, SIO_EVENT, -1, 1}, /* the last wins */
    {M("\x84" K_TYPE "\x02" NSP_ROOT K_DATA ARR_A1 "\xa5" "extra\xc0"), SIO_PKT_OK, SIO_EVENT, -1, 1},
    {M("\x84" K_TYPE "\x02" NSP_ROOT K_DATA ARR_A1 "\x01\x02"), SIO_PKT_OK, SIO_EVENT, -1, 1}, /* a number key */
    /* errors */
    {M(""), SIO_PKT_EEMPTY, 0, 0, 0},
    {M("\x90"), SIO_PKT_ETYPE, 0, 0, 0},
    {M("\x82" NSP_ROOT K_DATA ARR_A1), SIO_PKT_ETYPE, 0, 0, 0},
    {M("\x83" K_TYPE "\x05" NSP_ROOT K_DATA ARR_A1), SIO_PKT_ETYPE, 0, 0, 0}, /* no binary types */
    {M("\x83" K_TYPE "\xa1\x32" NSP_ROOT K_DATA ARR_A1), SIO_PKT_ETYPE, 0, 0, 0},
    {M("\x83" K_TYPE "\xff" NSP_ROOT K_DATA ARR_A1), SIO_PKT_ETYPE, 0, 0, 0},
    {M("\x82" K_TYPE "\x02" K_DATA ARR_A1), SIO_PKT_ENSP, 0, 0, 0},
    {M("\x83" K_TYPE "\x02" K_NSP "\x01" K_DATA ARR_A1), SIO_PKT_ENSP, 0, 0, 0},
    {M("\x82" K_TYPE "\x02" NSP_ROOT), SIO_PKT_EPAYLOAD, 0, 0, 0},
    {M("\x83" K_TYPE "\x02" NSP_ROOT K_DATA "\x80"), SIO_PKT_EPAYLOAD, 0, 0, 0},
    {M("\x83" K_TYPE "\x00" NSP_ROOT K_DATA "\x90"), SIO_PKT_EPAYLOAD, 0, 0, 0},
    {M("\x83" K_TYPE "\x00" NSP_ROOT K_DATA "\xc0"), SIO_PKT_EPAYLOAD, 0, 0, 0},
    {M("\x83" K_TYPE "\x01" NSP_ROOT K_DATA "\x90"), SIO_PKT_EPAYLOAD, 0, 0, 0},
    {M("\x82" K_TYPE "\x04" NSP_ROOT), SIO_PKT_EPAYLOAD, 0, 0, 0},
    {M("\x84" K_TYPE "\x02" NSP_ROOT K_DATA ARR_A1 K_ID "\xff"), SIO_PKT_EID, 0, 0, 0},
    {M("\x84" K_TYPE "\x02" NSP_ROOT K_DATA ARR_A1 K_ID "\xc0"), SIO_PKT_EID, 0, 0, 0},
    {M("\x84" K_TYPE "\x02" NSP_ROOT K_DATA ARR_A1 K_ID "\xcb\x3f\xf8\0\0\0\0\0\0"), SIO_PKT_EID, 0, 0, 0},
    {M("\x84" K_TYPE "\x02" NSP_ROOT K_DATA ARR_A1 K_ID "\xcf\0\x20\0\0\0\0\0\0"), SIO_PKT_EID, 0, 0, 0},
    {M("\x83" K_TYPE "\x02" NSP_ROOT K_DATA ARR_A1 "\x00"), SIO_PKT_EPAYLOAD, 0, 0, 0}, /* trailing byte */
    {M("\x83" K_TYPE "\x02" NSP_ROOT K_DATA "\x92\xa1"), SIO_PKT_EPAYLOAD, 0, 0, 0},  /* truncated */
    {M("\x81" K_DATA "\xdd\xff\xff\xff\xff"), SIO_PKT_EPAYLOAD, 0, 0, 0},            /* 2^32 elements declared */
};

TEST(msgpack_decode)
{
    for (size_t i = 0; i < sizeof(mp_vectors) / sizeof(mp_vectors[0]); i++) {
        sio_packet_t p;
        msgpack_unpacked u;
        char *in = dup_exact(mp_vectors[i].in, mp_vectors[i].n);
        msgpack_unpacked_init(&u);
        int rc = sio_decode_msgpack(in, mp_vectors[i].n, &lim, &u, &p);
        if (rc != mp_vectors[i].rc)
            fprintf(stderr, "  msgpack vector %zu:\n", i);
        CHECK_EQ_INT(rc, mp_vectors[i].rc);
        if (rc == SIO_PKT_OK) {
            CHECK_EQ_INT(p.type, mp_vectors[i].type);
            CHECK_EQ_INT(p.id, mp_vectors[i].id);
            CHECK_EQ_INT(p.obj != NULL, mp_vectors[i].has_data);
            CHECK(slice_is(p.nsp, "/"));
            CHECK_EQ_INT(p.data.len, 0);
        }
        msgpack_unpacked_destroy(&u);
        free(in);
    }
}

TEST(msgpack_limits)
{
    /* a namespace of 256 bytes is fine, 257 is too long (str16 lengths) */
    for (size_t len = 256; len <= 257; len++) {
        char in[300];
        size_t n = 0;
        sio_packet_t p;
        msgpack_unpacked u;
        static const char head[] = "\x82" K_TYPE "\x00" K_NSP "\xda";
        memcpy(in, head, sizeof(head) - 1);
        n = sizeof(head) - 1;
        in[n++] = (char)(len >> 8);
        in[n++] = (char)len;
        in[n++] = '/';
        memset(in + n, 'a', len - 1);
        n += len - 1;
        msgpack_unpacked_init(&u);
        CHECK_EQ_INT(sio_decode_msgpack(in, n, &lim, &u, &p), len == 256 ? SIO_PKT_OK : SIO_PKT_ENSP);
        msgpack_unpacked_destroy(&u);
    }
}

/* msgpack-c nests 32 containers at most: the packet's map and 31 more (its data array included). */
TEST(msgpack_depth)
{
    for (int depth = 31; depth <= 32; depth++) {
        static const char head[] = "\x83" K_TYPE "\x02" NSP_ROOT K_DATA "\x92\xa1" "e";
        char in[128];
        size_t n = sizeof(head) - 1;
        sio_packet_t p;
        msgpack_unpacked u;
        memcpy(in, head, n);
        for (int i = 1; i < depth; i++) /* the data array is the first of them */
            in[n++] = (char)0x91;
        in[n++] = (char)0xc0;
        msgpack_unpacked_init(&u);
        CHECK_EQ_INT(sio_decode_msgpack(in, n, &lim, &u, &p), depth == 31 ? SIO_PKT_OK : SIO_PKT_EPAYLOAD);
        msgpack_unpacked_destroy(&u);
    }
}

TEST(msgpack_encode)
{
    sio_packet_t p = {SIO_EVENT, 0, SLICE_LIT("/"), -1, {M(ARR_A1)}, NULL};
    rbuf_t *b = sio_encode_msgpack(&p);
    CHECK(b->flags & RBUF_BINARY);
    CHECK_EQ_MEM(rbuf_payload(b), b->len, "\x83" K_TYPE "\x02" K_DATA ARR_A1 NSP_ROOT);
    rbuf_unref(b);
    sio_packet_t ack = {SIO_ACK, 0, SLICE_LIT("/admin"), 3, {M("\x90")}, NULL};
    b = sio_encode_msgpack(&ack);
    CHECK_EQ_MEM(rbuf_payload(b), b->len, "\x84" K_ID "\x03" K_TYPE "\x03" K_DATA "\x90" K_NSP "\xa6/admin");
    /* and it decodes back */
    sio_packet_t d;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    CHECK_EQ_INT(sio_decode_msgpack(rbuf_payload(b), b->len, &lim, &u, &d), SIO_PKT_OK);
    CHECK(d.type == SIO_ACK && d.id == 3 && slice_is(d.nsp, "/admin") && d.obj != NULL);
    msgpack_unpacked_destroy(&u);
    rbuf_unref(b);
    sio_packet_t ev = {SIO_EVENT, 0, SLICE_LIT("/"), 7, {M(ARR_A1)}, NULL};
    b = sio_encode_msgpack(&ev);
    CHECK_EQ_MEM(rbuf_payload(b), b->len, "\x84" K_TYPE "\x02" K_DATA ARR_A1 K_ID "\x07" NSP_ROOT);
    rbuf_unref(b);
    sio_packet_t dis = {SIO_DISCONNECT, 0, SLICE_LIT("/"), -1, {"", 0}, NULL};
    b = sio_encode_msgpack(&dis);
    CHECK_EQ_MEM(rbuf_payload(b), b->len, "\x82" K_TYPE "\x01" NSP_ROOT);
    rbuf_unref(b);

    buf_t o = BUF_INIT;
    sio_control_data(SIO_PARSER_MSGPACK, &o, "sid", "x", NULL, NULL);
    CHECK_EQ_MEM(o.base, o.len, "\x81\xa3sid\xa1x");
    o.len = 0;
    sio_control_data(SIO_PARSER_JSON, &o, "message", "Invalid namespace", NULL, NULL);
    CHECK_EQ_MEM(o.base, o.len, "{\"message\":\"Invalid namespace\"}");
    buf_free(&o);
    int parser = -1;
    CHECK(sio_parser_from_name("msgpack", &parser) == 0 && parser == SIO_PARSER_MSGPACK);
    CHECK(sio_parser_from_name("default", &parser) == 0 && parser == SIO_PARSER_JSON);
    CHECK(sio_parser_from_name("MsgPack", &parser) == -1);
}

TEST(msgpack_cut_at_every_byte)
{
    static const char full[] = "\x84" K_TYPE "\x02" NSP_ROOT K_DATA "\x93\xa1" "a\xc4\x02xy\x81\xa1k\x90" K_ID "\x05";
    for (size_t cut = 0; cut < sizeof(full) - 1; cut++) {
        sio_packet_t p;
        msgpack_unpacked u;
        char *in = dup_exact(full, cut);
        msgpack_unpacked_init(&u);
        CHECK(sio_decode_msgpack(in, cut, &lim, &u, &p) != SIO_PKT_OK);
        msgpack_unpacked_destroy(&u);
        free(in);
    }
}

int main(void)
{
    RUN(decode_and_roundtrip);
    RUN(default_limits);
    RUN(encode);
    RUN(errors);
    RUN(limits);
    RUN(strerror);
    RUN(cut_at_every_byte);
    RUN(msgpack_decode);
    RUN(msgpack_limits);
    RUN(msgpack_depth);
    RUN(msgpack_encode);
    RUN(msgpack_cut_at_every_byte);
    return test_summary();
}
