/* rstore: connection state recovery's store. Offsets, which packets a restored session gets
 * (rooms, except, namespaces), the bounds (age, bytes: never a restore with a gap), and the state
 * file: a round trip, then generated corruptions (every truncation, random byte changes, random
 * changes with the checksum made right again so that the parser itself must refuse them or read
 * something consistent) that must be refused whole, never crash (ASan runs this too). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "rstore.h"
#include "test.h"

#define T0 1700000000000ull /* a wall-clock time, ms */

static slice_t S(const char *s) { return (slice_t){s, strlen(s)}; }

/* Adds packet `text` (its payload) for rooms/except (comma-separated, "" for none) of nsp. */
static void add(rstore_t *st, uint64_t now, const char *nsp, const char *rooms, const char *except, const char *text)
{
    slice_t r[8], e[8];
    size_t nr = 0, ne = 0;
    char rb[128], eb[128];
    snprintf(rb, sizeof(rb), "%s", rooms);
    snprintf(eb, sizeof(eb), "%s", except);
    for (char *t = strtok(rb, ","); t; t = strtok(NULL, ","))
        r[nr++] = S(t);
    for (char *t = strtok(eb, ","); t; t = strtok(NULL, ","))
        e[ne++] = S(t);
    rbuf_t *pkt = rbuf_from(text, strlen(text));
    rstore_add(st, now, nsp, r, nr, e, ne, pkt, NULL, 0);
    rbuf_unref(pkt);
}

static void persist(rstore_t *st, uint64_t now, const char *nsp, const char *sid, const char *pid, const char *rooms)
{
    slice_t r[8];
    size_t nr = 0;
    char rb[128];
    snprintf(rb, sizeof(rb), "%s", rooms);
    for (char *t = strtok(rb, ","); t; t = strtok(NULL, ","))
        r[nr++] = S(t);
    rstore_persist(st, now, nsp, S(sid), S(pid), r, nr, S("{\"k\":1}"));
}

static void collect(void *ud, rbuf_t *pkt, rbuf_t *const *att, size_t natt)
{
    char *out = ud;
    (void)att;
    (void)natt;
    strncat(out, rbuf_payload(pkt), pkt->len);
    strcat(out, ";");
}

/* The offset text of the packet stored `back` packets ago. */
static void offset_of_last(rstore_t *st, int back, char *out)
{
    rstore_stats_t s;
    rstore_stats(st, &s);
    rstore_t *tmp = rstore_new(s.next_seq - (uint64_t)back);
    rstore_next_offset(tmp, out);
    rstore_free(tmp);
}

TEST(offsets_are_consecutive_texts)
{
    rstore_t *st = rstore_new(0);
    char a[RSTORE_OFFSET_MAX], b[RSTORE_OFFSET_MAX];
    rstore_next_offset(st, a);
    CHECK_EQ_MEM(a, strlen(a), "0");
    add(st, T0, "/", "", "", "x");
    rstore_next_offset(st, b);
    CHECK_EQ_MEM(b, strlen(b), "1");
    rstore_free(st);
    st = rstore_new(T0 << 10);
    rstore_next_offset(st, a);
    CHECK(strlen(a) <= 11);
    rstore_free(st);
}

TEST(restore_gets_the_packets_meant_for_the_session)
{
    rstore_t *st = rstore_new(100);
    char off[RSTORE_OFFSET_MAX], got[512] = "";
    rstore_session_t s;
    add(st, T0, "/", "", "", "seen");
    offset_of_last(st, 1, off);
    persist(st, T0, "/", "SID", "PID", "SID,news");
    add(st, T0, "/", "news", "", "a");        /* its room */
    add(st, T0, "/", "", "", "b");            /* everyone */
    add(st, T0, "/", "other", "", "c");       /* not its room */
    add(st, T0, "/", "", "news", "d");        /* except its room */
    add(st, T0, "/b", "", "", "e");           /* another namespace */
    add(st, T0, "/", "SID", "", "f");         /* to it */
    add(st, T0, "/", "other,news", "SID", "g"); /* except it */
    add(st, T0, "/", "news,SID,news", "", "i"); /* to two of its rooms (one twice): once */
    CHECK_EQ_INT(rstore_take(st, T0, "/b", S("PID"), S(off), &s), -1); /* other namespace */
    CHECK_EQ_INT(rstore_take(st, T0, "/", S("nope"), S(off), &s), -1);
    CHECK_EQ_INT(rstore_take(st, T0, "/", S("PID"), S("zz!"), &s), -1);
    CHECK_EQ_INT(rstore_take(st, T0, "/", S("PID"), S("0"), &s), -1);
    CHECK_EQ_INT(rstore_take(st, T0, "/", S("PID"), S(off), &s), 0);
    CHECK_EQ_MEM(s.sid, strlen(s.sid), "SID");
    CHECK_EQ_INT(s.nrooms, 2);
    CHECK_EQ_MEM(s.data, s.datalen, "{\"k\":1}");
    CHECK_EQ_INT(rstore_replay(st, &s, collect, got), 4);
    CHECK_EQ_MEM(got, strlen(got), "a;b;f;i;");
    /* taken: a second restore of the same pid finds nothing */
    rstore_session_t s2;
    CHECK_EQ_INT(rstore_take(st, T0, "/", S("PID"), S(off), &s2), -1);
    /* a replay later (middlewares ran) gets what came meanwhile only */
    add(st, T0, "/", "news", "", "h");
    got[0] = '\0';
    CHECK_EQ_INT(rstore_replay(st, &s, collect, got), 1);
    CHECK_EQ_MEM(got, strlen(got), "h;");
    rstore_session_free(&s);
    rstore_free(st);
}

TEST(age_bound)
{
    rstore_t *st = rstore_new(0);
    char off[RSTORE_OFFSET_MAX];
    rstore_session_t s;
    rstore_set_limits(st, 1000, 0);
    add(st, T0, "/", "", "", "x");
    offset_of_last(st, 1, off);
    persist(st, T0, "/", "SID", "PID", "SID");
    CHECK_EQ_INT(rstore_take(st, T0 + 1001, "/", S("PID"), S(off), &s), -1); /* expired */
    rstore_stats_t stats;
    rstore_stats(st, &stats);
    CHECK_EQ_INT(stats.sessions, 0);
    CHECK_EQ_INT(stats.packets, 0);
    rstore_free(st);
}

TEST(byte_bound_never_restores_with_a_gap)
{
    rstore_t *st = rstore_new(0);
    char off[RSTORE_OFFSET_MAX], big[1001], got[64] = "";
    rstore_session_t s;
    rstore_stats_t stats;
    memset(big, 'x', 1000);
    big[1000] = '\0';
    rstore_set_limits(st, 0, 8000);
    add(st, T0, "/", "", "", "x");
    offset_of_last(st, 1, off);
    persist(st, T0, "/", "SID", "PID", "SID");
    for (int i = 0; i < 20; i++)
        add(st, T0, "/", "", "", big); /* oldest first: its offset's packet goes */
    rstore_stats(st, &stats);
    CHECK(stats.bytes <= 8000);
    CHECK(stats.packets < 20);
    CHECK_EQ_INT(rstore_take(st, T0, "/", S("PID"), S(off), &s), -1);
    rstore_free(st);

    /* evicted between take and replay (middlewares ran): -1, nothing replayed */
    st = rstore_new(0);
    rstore_set_limits(st, 0, 8000);
    add(st, T0, "/", "", "", "x");
    offset_of_last(st, 1, off);
    persist(st, T0, "/", "SID", "PID", "SID");
    add(st, T0, "/", "", "", "y");
    CHECK_EQ_INT(rstore_take(st, T0, "/", S("PID"), S(off), &s), 0);
    for (int i = 0; i < 20; i++)
        add(st, T0, "/", "", "", big);
    CHECK_EQ_INT(rstore_replay(st, &s, collect, got), -1);
    CHECK_EQ_INT(got[0], '\0');
    rstore_session_free(&s);
    rstore_free(st);
}

/* A store with a bit of everything, and its state file's bytes. */
static rstore_t *sample(void)
{
    rstore_t *st = rstore_new(12345);
    add(st, T0, "/", "", "", "2[\"a\"]");
    persist(st, T0, "/", "SID1", "PID1", "SID1,news,x");
    add(st, T0, "/", "news", "SID2", "2[\"b\",1]");
    add(st, T0, "/admin", "", "", "2/admin,[\"c\"]");
    rbuf_t *pkt = rbuf_from("51-[\"bin\",{\"_placeholder\":true,\"num\":0}]", 39);
    rbuf_t *att = rbuf_from("\x00\x01\x02", 3);
    att->flags = RBUF_BINARY;
    slice_t room = S("SID1");
    rstore_add(st, T0, "/", &room, 1, NULL, 0, pkt, &att, 1);
    rbuf_unref(pkt);
    rbuf_unref(att);
    persist(st, T0 + 5, "/admin", "SID3", "PID3", "SID3");
    return st;
}

static uint8_t *file_bytes(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *p = malloc(1 << 16);
    *len = fread(p, 1, 1 << 16, f);
    fclose(f);
    return p;
}

static void fix_crc(uint8_t *p, size_t len)
{
    uint32_t c = (uint32_t)crc32(0L, p, (uInt)(len - 4));
    for (int i = 0; i < 4; i++)
        p[len - 4 + i] = (uint8_t)(c >> (8 * i));
}

/* The model's rule (the reference's shouldIncludePacket) for one packet: rooms and except are
 * comma-separated lists, session rooms too. */
static int in_list(const char *list, const char *name)
{
    char b[128];
    snprintf(b, sizeof(b), "%s", list);
    for (char *t = strtok(b, ","); t; t = strtok(NULL, ","))
        if (strcmp(t, name) == 0)
            return 1;
    return 0;
}

static int model_meant(const char *rooms, const char *except, const char *sess)
{
    char b[128];
    int included = rooms[0] == '\0';
    snprintf(b, sizeof(b), "%s", sess);
    char *save = NULL;
    for (char *t = strtok_r(b, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (in_list(rooms, t))
            included = 1;
        if (in_list(except, t))
            return 0;
    }
    return included;
}

/* The replay by targets against a scan of every kept packet by the reference's rule, on generated
 * stores (rooms, except, namespaces, evictions by bytes). */
TEST(replay_by_targets_matches_a_scan)
{
    static const char *const rooms[] = {"", "a", "b", "SID", "a,b", "b,SID", "a,a"};
    static const char *const nsps[] = {"/", "/x"};
    srand(7);
    int compared = 0;
    for (int round = 0; round < 300; round++) {
        rstore_t *st = rstore_new((uint64_t)round * 1000);
        char off[RSTORE_OFFSET_MAX], got[8192] = "", want[8192] = "";
        struct { const char *nsp, *rooms, *except; } m[64];
        const char *sess = rand() % 2 ? "SID,a" : "SID,b,a";
        rstore_set_limits(st, 0, (size_t)(3000 + rand() % 20000));
        add(st, T0, "/", "", "", "0");
        offset_of_last(st, 1, off);
        persist(st, T0, "/", "SID", "PID", sess);
        int n = rand() % 60;
        for (int i = 1; i <= n; i++) {
            char text[16];
            m[i].nsp = nsps[rand() % 2];
            m[i].rooms = rooms[rand() % 7];
            m[i].except = rand() % 4 ? "" : rooms[1 + rand() % 3];
            snprintf(text, sizeof(text), "%d", i);
            add(st, T0, m[i].nsp, m[i].rooms, m[i].except, text);
        }
        rstore_session_t s;
        if (rstore_take(st, T0, "/", S("PID"), S(off), &s) != 0) {
            rstore_free(st);
            continue; /* its offset was evicted: nothing to compare */
        }
        for (int i = 1; i <= n; i++)
            if (strcmp(m[i].nsp, "/") == 0 && model_meant(m[i].rooms, m[i].except, sess)) {
                char text[16];
                snprintf(text, sizeof(text), "%d;", i);
                strcat(want, text);
            }
        CHECK(rstore_replay(st, &s, collect, got) >= 0);
        CHECK(strcmp(got, want) == 0);
        compared++;
        rstore_session_free(&s);
        rstore_free(st);
    }
    CHECK(compared > 100);
}

TEST(state_file_round_trip)
{
    char path[] = "/tmp/siolua-rstore-XXXXXX";
    int fd = mkstemp(path);
    const char *err = NULL;
    rstore_t *st = sample(), *back;
    rstore_stats_t a, b;
    char off[RSTORE_OFFSET_MAX];
    close(fd);
    CHECK_EQ_INT(rstore_save(st, path, 0, &err), 0);
    back = rstore_load(path, 0, &err);
    CHECK(back != NULL);
    rstore_stats(st, &a);
    rstore_stats(back, &b);
    CHECK_EQ_INT(b.packets, a.packets);
    CHECK_EQ_INT(b.sessions, a.sessions);
    CHECK_EQ_INT(b.bytes, a.bytes);
    CHECK_EQ_INT(b.first_seq, a.first_seq);
    /* the same restore from both */
    rstore_t *both[2] = {st, back};
    char got[2][256] = {"", ""};
    for (int i = 0; i < 2; i++) {
        rstore_session_t s;
        rstore_t *tmp = rstore_new(12345);
        rstore_next_offset(tmp, off);
        rstore_free(tmp);
        CHECK_EQ_INT(rstore_take(both[i], T0, "/", S("PID1"), S(off), &s), 0);
        CHECK_EQ_INT(s.nrooms, 3);
        CHECK_EQ_INT(rstore_replay(both[i], &s, collect, got[i]), 2);
        rstore_session_free(&s);
    }
    CHECK(strcmp(got[0], got[1]) == 0);
    /* another parser, a missing file */
    CHECK(rstore_load(path, 1, &err) == NULL);
    CHECK(strstr(err, "parser") != NULL);
    unlink(path);
    CHECK(rstore_load(path, 0, &err) == NULL);
    CHECK(strcmp(err, "no such file") == 0);
    rstore_free(st);
    rstore_free(back);
}

TEST(generated_corruptions_are_refused_whole)
{
    char path[] = "/tmp/siolua-rstore-XXXXXX";
    int fd = mkstemp(path);
    const char *err;
    rstore_t *st = sample();
    size_t len;
    close(fd);
    CHECK_EQ_INT(rstore_save(st, path, 0, &err), 0);
    rstore_free(st);
    uint8_t *good = file_bytes(path, &len), *bad = malloc(len);
    unlink(path);
    CHECK(len > 100);
    /* every truncation */
    for (size_t n = 0; n < len; n++) {
        memcpy(bad, good, n);
        CHECK(rstore_parse(bad, n, 0, &err) == NULL);
    }
    /* random changes: the checksum catches them */
    srand(14);
    for (int i = 0; i < 3000; i++) {
        memcpy(bad, good, len);
        int k = 1 + rand() % 4;
        for (int j = 0; j < k; j++)
            bad[(size_t)rand() % len] ^= (uint8_t)(1 + rand() % 255);
        if (memcmp(bad, good, len) != 0)
            CHECK(rstore_parse(bad, len, 0, &err) == NULL);
    }
    /* random changes with a right checksum: the parser refuses them, or reads a consistent store
     * (a changed byte of a payload, a time...): never a crash, and nothing half-made (ASan) */
    int refused = 0;
    for (int i = 0; i < 20000; i++) {
        memcpy(bad, good, len);
        int k = 1 + rand() % 3;
        for (int j = 0; j < k; j++)
            bad[8 + (size_t)rand() % (len - 12)] = (uint8_t)rand();
        fix_crc(bad, len);
        rstore_t *x = rstore_parse(bad, len, 0, &err);
        if (x == NULL) {
            refused++;
            continue;
        }
        rstore_stats_t s;
        rstore_stats(x, &s);
        CHECK(s.packets <= 4 && s.sessions <= 2);
        rstore_free(x);
    }
    CHECK(refused > 1000);
    /* an old format version */
    memcpy(bad, good, len);
    bad[8] = 0;
    fix_crc(bad, len);
    CHECK(rstore_parse(bad, len, 0, &err) == NULL);
    CHECK(strstr(err, "version") != NULL);
    free(good);
    free(bad);
}

int main(void)
{
    RUN(offsets_are_consecutive_texts);
    RUN(restore_gets_the_packets_meant_for_the_session);
    RUN(age_bound);
    RUN(byte_bound_never_restores_with_a_gap);
    RUN(replay_by_targets_matches_a_scan);
    RUN(state_file_round_trip);
    RUN(generated_corruptions_are_refused_whole);
    return test_summary();
}
