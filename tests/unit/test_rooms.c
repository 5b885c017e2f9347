/* rooms: the room <-> socket index of a namespace, in both directions. Sockets here are bare
 * sio_socket_t structs (rooms.c reads only id, rooms and idnext). Every case checks the index's
 * invariants (index_ok) and, where it fits, compares the index with a plain membership matrix
 * kept by the test. ASan (make asan) runs the same cases for leaks and use after free. */
#include <stdlib.h>

#include "rooms.h"
#include "sio.h"
#include "test.h"

/* ---------------------------------------------------------------- helpers */

static sio_socket_t *new_socket(int i)
{
    sio_socket_t *s = calloc(1, sizeof(*s));
    s->id = s->idbuf;
    s->idlen = 20;
    snprintf(s->id, sizeof(s->idbuf), "sock%016d", i); /* 20 characters, as eio_generate_id's */
    return s;
}

static int is_pow2(size_t n)
{
    return n != 0 && (n & (n - 1)) == 0;
}

static int in_list(const sio_socket_t *s, const room_member_t *m)
{
    for (const room_member_t *o = s->rooms; o; o = o->snext)
        if (o == m)
            return 1;
    return 0;
}

/* The index's invariants: every room is in the bucket its hash names, non-empty, with a
 * doubly-linked member list whose length is its count, each member also on its socket's list;
 * every socket's list names rooms of the index, once each; the counts match the tables. */
static int index_ok(const room_index_t *x, sio_socket_t **socks, size_t nsocks)
{
    size_t nrooms = 0, nids = 0;
    if (x->nrooms_buckets != 0 && !is_pow2(x->nrooms_buckets))
        return 0;
    if (x->nrooms > x->nrooms_buckets && x->nrooms != 0)
        return 0; /* grown before the load passes 1 */
    for (size_t i = 0; i < x->nrooms_buckets; i++)
        for (const room_t *r = x->rooms[i]; r; r = r->hnext) {
            size_t n = 0;
            const room_member_t *prev = &r->head;
            nrooms++;
            if ((r->hash & (x->nrooms_buckets - 1)) != i || r->count == 0 || r->name[r->len] != '\0')
                return 0;
            if (room_find(x, r->name, r->len) != r)
                return 0;
            for (const room_member_t *m = r->head.rnext; m != &r->head; m = m->rnext) {
                if (m->room != r || m->rprev != prev || !in_list(m->socket, m))
                    return 0;
                prev = m;
                if (++n > r->count)
                    return 0;
            }
            if (n != r->count || r->head.rprev != prev)
                return 0;
        }
    if (nrooms != x->nrooms)
        return 0;
    for (size_t k = 0; k < nsocks; k++) {
        if (socks[k] == NULL)
            continue;
        for (const room_member_t *m = socks[k]->rooms; m; m = m->snext) {
            if (m->socket != socks[k] || room_find(x, m->room->name, m->room->len) != m->room)
                return 0;
            for (const room_member_t *o = m->snext; o; o = o->snext)
                if (o->room == m->room)
                    return 0; /* in a room twice */
        }
    }
    for (size_t i = 0; i < x->nid_buckets; i++)
        for (const sio_socket_t *s = x->ids[i]; s; s = s->idnext)
            nids++;
    return nids == x->nids;
}

/* 1 if s is a member of the room named name (looked up from both sides, which must agree). */
static int member(const room_index_t *x, const sio_socket_t *s, const char *name, size_t len)
{
    const room_t *r = room_find(x, name, len);
    int by_room = 0, by_socket = 0;
    for (const room_member_t *m = r ? r->head.rnext : NULL; r && m != &r->head; m = m->rnext)
        by_room |= m->socket == s;
    for (const room_member_t *m = s->rooms; m; m = m->snext)
        by_socket |= m->room->len == len && memcmp(m->room->name, name, len) == 0;
    return by_room == by_socket ? by_room : -1;
}

static size_t room_count(const room_index_t *x, const char *name, size_t len)
{
    const room_t *r = room_find(x, name, len);
    return r ? r->count : 0;
}

/* ---------------------------------------------------------------- join / leave, table-driven */

enum { JOIN, LEAVE, LEAVE_ALL };

TEST(join_leave_table)
{
    static const struct {
        int op, sock;
        const char *name;
        size_t len;
        int ret;       /* join/leave's return (leave_all: ignored) */
        size_t count;  /* members of `name` after the step */
        size_t nrooms; /* rooms in the index after the step */
    } steps[] = {
        {JOIN, 0, "a", 1, 1, 1, 1},         {JOIN, 0, "a", 1, 0, 1, 1}, /* already in: nothing changes */
        {JOIN, 1, "a", 1, 1, 2, 1},         {JOIN, 0, "b", 1, 1, 1, 2},
        {JOIN, 0, "", 0, 1, 1, 3},                                       /* the empty name is a room too */
        {JOIN, 1, "a\0b", 3, 1, 1, 4},                                   /* names are bytes: "a\0b" is not "a" */
        {LEAVE, 2, "a", 1, 0, 2, 4},                                     /* not a member */
        {LEAVE, 0, "zz", 2, 0, 0, 4},                                    /* no such room */
        {LEAVE, 0, "a", 1, 1, 1, 4},        {LEAVE, 0, "a", 1, 0, 1, 4}, /* left already */
        {LEAVE, 1, "a", 1, 1, 0, 3},                                     /* its last member left: the room is gone */
        {JOIN, 2, "a", 1, 1, 1, 4},                                      /* and made again on the next join */
        {LEAVE_ALL, 0, "b", 1, 0, 0, 2},                                 /* 0 was in "b" and "": both gone */
        {LEAVE_ALL, 0, "b", 1, 0, 0, 2},                                 /* no rooms: a no-op */
        {LEAVE_ALL, 1, "a\0b", 3, 0, 0, 1}, {LEAVE, 2, "a", 1, 1, 0, 0},
    };
    room_index_t x = {0};
    sio_socket_t *s[3] = {new_socket(0), new_socket(1), new_socket(2)};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        sio_socket_t *so = s[steps[i].sock];
        int ret = 0;
        if (steps[i].op == JOIN)
            ret = room_join(&x, so, steps[i].name, steps[i].len);
        else if (steps[i].op == LEAVE)
            ret = room_leave(&x, so, steps[i].name, steps[i].len);
        else
            room_leave_all(&x, so);
        if (ret != steps[i].ret || room_count(&x, steps[i].name, steps[i].len) != steps[i].count ||
            x.nrooms != steps[i].nrooms || !index_ok(&x, s, 3)) {
            fprintf(stderr, "  step %zu: ret %d count %zu nrooms %zu\n", i, ret,
                    room_count(&x, steps[i].name, steps[i].len), x.nrooms);
            test_failed_now = 1;
        }
        if (steps[i].op == JOIN)
            CHECK_EQ_INT(member(&x, so, steps[i].name, steps[i].len), 1);
        else
            CHECK_EQ_INT(member(&x, so, steps[i].name, steps[i].len), 0);
    }
    CHECK(s[0]->rooms == NULL && s[1]->rooms == NULL && s[2]->rooms == NULL);
    room_index_free(&x);
    CHECK(x.rooms == NULL && x.ids == NULL && x.nrooms == 0 && x.nrooms_buckets == 0);
    for (int i = 0; i < 3; i++)
        free(s[i]);
}

/* A member list keeps join order (a broadcast reaches a room's members in the order they joined);
 * a socket's own list holds its rooms, newest first. */
TEST(member_order)
{
    room_index_t x = {0};
    sio_socket_t *s[4];
    for (int i = 0; i < 4; i++) {
        s[i] = new_socket(i);
        room_join(&x, s[i], "r", 1);
    }
    room_leave(&x, s[1], "r", 1);
    room_join(&x, s[1], "r", 1);
    const sio_socket_t *want[] = {s[0], s[2], s[3], s[1]};
    const room_t *r = room_find(&x, "r", 1);
    size_t k = 0;
    for (const room_member_t *m = r->head.rnext; m != &r->head; m = m->rnext, k++)
        CHECK(k < 4 && m->socket == want[k]);
    CHECK_EQ_INT(k, 4);
    room_join(&x, s[0], "q", 1);
    room_join(&x, s[0], "p", 1);
    CHECK(s[0]->rooms->room == room_find(&x, "p", 1));
    CHECK(s[0]->rooms->snext->room == room_find(&x, "q", 1));
    CHECK(s[0]->rooms->snext->snext->room == r);
    CHECK(index_ok(&x, s, 4));
    for (int i = 0; i < 4; i++) {
        room_leave_all(&x, s[i]);
        free(s[i]);
    }
    CHECK_EQ_INT(x.nrooms, 0);
    room_index_free(&x);
}

/* ---------------------------------------------------------------- the virtual id room */

TEST(id_table)
{
    room_index_t x = {0};
    sio_socket_t *a = new_socket(1), *b = new_socket(2);
    CHECK(room_find_id(&x, a->id, 20) == NULL); /* an empty index has no table yet */
    room_remove_id(&x, a);                      /* and removing from it is a no-op */
    room_add_id(&x, a);
    room_add_id(&x, b);
    CHECK_EQ_INT(x.nids, 2);
    CHECK(room_find_id(&x, a->id, 20) == a);
    CHECK(room_find_id(&x, b->id, 20) == b);
    CHECK(room_find_id(&x, a->id, 19) == NULL); /* an id is 20 characters */
    CHECK(room_find_id(&x, "sock0000000000000009", 20) == NULL);
    /* the id room costs no room entry, and a room by that name would be a different thing */
    CHECK_EQ_INT(x.nrooms, 0);
    CHECK(room_find(&x, a->id, 20) == NULL);
    room_remove_id(&x, a);
    room_remove_id(&x, a); /* not there any more: a no-op */
    CHECK_EQ_INT(x.nids, 1);
    CHECK(room_find_id(&x, a->id, 20) == NULL);
    CHECK(room_find_id(&x, b->id, 20) == b);
    CHECK(a->idnext == NULL);
    sio_socket_t *both[] = {a, b};
    CHECK(index_ok(&x, both, 2));
    room_remove_id(&x, b);
    CHECK_EQ_INT(x.nids, 0);
    room_index_free(&x);
    free(a);
    free(b);
}

/* ---------------------------------------------------------------- growth and scale */

TEST(buckets_grow)
{
    enum { NROOMS = 3000, NSOCKS = 5000 };
    room_index_t x = {0};
    sio_socket_t *s = new_socket(0);
    sio_socket_t **socks = calloc(NSOCKS, sizeof(*socks));
    char name[32];
    size_t seen_buckets = 0, grows = 0;
    for (int i = 0; i < NROOMS; i++) {
        int n = snprintf(name, sizeof(name), "room-%d", i);
        CHECK_EQ_INT(room_join(&x, s, name, (size_t)n), 1);
        if (x.nrooms_buckets != seen_buckets) {
            grows++;
            seen_buckets = x.nrooms_buckets;
        }
    }
    CHECK_EQ_INT(x.nrooms, NROOMS);
    CHECK(x.nrooms_buckets >= NROOMS && is_pow2(x.nrooms_buckets));
    CHECK(grows > 5); /* 16, 32, ... doubled along the way */
    for (int i = 0; i < NROOMS; i++) {
        int n = snprintf(name, sizeof(name), "room-%d", i);
        const room_t *r = room_find(&x, name, (size_t)n);
        CHECK(r != NULL && r->count == 1 && r->len == (size_t)n && memcmp(r->name, name, (size_t)n) == 0);
    }
    CHECK(index_ok(&x, &s, 1));
    for (int i = 0; i < NSOCKS; i++) {
        socks[i] = new_socket(1000 + i);
        room_add_id(&x, socks[i]);
    }
    CHECK_EQ_INT(x.nids, NSOCKS);
    CHECK(x.nid_buckets >= NSOCKS && is_pow2(x.nid_buckets));
    int found = 0;
    for (int i = 0; i < NSOCKS; i++)
        found += room_find_id(&x, socks[i]->id, 20) == socks[i];
    CHECK_EQ_INT(found, NSOCKS);
    for (int i = 0; i < NSOCKS; i += 2)
        room_remove_id(&x, socks[i]);
    found = 0;
    for (int i = 0; i < NSOCKS; i++)
        found += room_find_id(&x, socks[i]->id, 20) == (i % 2 ? socks[i] : NULL);
    CHECK_EQ_INT(found, NSOCKS);
    CHECK(index_ok(&x, socks, NSOCKS));
    room_leave_all(&x, s);
    CHECK_EQ_INT(x.nrooms, 0);
    room_index_free(&x);
    for (int i = 0; i < NSOCKS; i++)
        free(socks[i]);
    free(socks);
    free(s);
}

/* Many sockets and rooms, random joins and leaves (a fixed seed): the index always agrees with a
 * plain membership matrix, from both sides. */
TEST(random_against_a_model)
{
    enum { NS = 48, NR = 96, STEPS = 20000 };
    static unsigned char model[NS][NR];
    room_index_t x = {0};
    sio_socket_t *s[NS];
    char names[NR][32];
    size_t lens[NR];
    uint32_t seed = 12345;
    int bad = 0;
    memset(model, 0, sizeof(model));
    for (int i = 0; i < NS; i++) {
        s[i] = new_socket(i);
        room_add_id(&x, s[i]);
    }
    for (int j = 0; j < NR; j++)
        lens[j] = (size_t)snprintf(names[j], sizeof(names[j]), j % 7 ? "r%d" : "long room name %d", j);
    for (int step = 0; step < STEPS && !bad; step++) {
        seed = seed * 1103515245u + 12345u;
        int i = (int)((seed >> 8) % NS), j = (int)((seed >> 16) % NR), op = (int)((seed >> 4) % 16);
        if (op < 9) {
            int ret = room_join(&x, s[i], names[j], lens[j]);
            bad |= ret != !model[i][j];
            model[i][j] = 1;
        } else if (op < 15) {
            int ret = room_leave(&x, s[i], names[j], lens[j]);
            bad |= ret != model[i][j];
            model[i][j] = 0;
        } else {
            room_leave_all(&x, s[i]);
            memset(model[i], 0, sizeof(model[i]));
        }
        if (step % 500 == 0 || bad) {
            size_t nrooms = 0;
            for (int r = 0; r < NR; r++) {
                size_t count = 0;
                for (int k = 0; k < NS; k++) {
                    count += model[k][r];
                    bad |= member(&x, s[k], names[r], lens[r]) != model[k][r];
                }
                bad |= room_count(&x, names[r], lens[r]) != count;
                nrooms += count > 0;
            }
            bad |= x.nrooms != nrooms || !index_ok(&x, s, NS);
            if (bad)
                fprintf(stderr, "  the index and the model differ after step %d\n", step);
        }
    }
    CHECK(!bad);
    for (int i = 0; i < NS; i++) {
        room_leave_all(&x, s[i]);
        room_remove_id(&x, s[i]);
    }
    CHECK_EQ_INT(x.nrooms, 0);
    CHECK_EQ_INT(x.nids, 0);
    room_index_free(&x);
    for (int i = 0; i < NS; i++)
        free(s[i]);
}

/* ---------------------------------------------------------------- removal while iterating */

/* As sio_select + a broadcast handler do: a snapshot of a room's members, then each leaves it
 * (and others) while the snapshot is walked. The room goes when its last member leaves. */
TEST(leave_while_walking_a_snapshot)
{
    enum { N = 10 };
    room_index_t x = {0};
    sio_socket_t *s[N], *snap[N];
    size_t n = 0;
    for (int i = 0; i < N; i++) {
        s[i] = new_socket(i);
        room_join(&x, s[i], "all", 3);
        room_join(&x, s[i], i % 2 ? "odd" : "even", i % 2 ? 3 : 4);
    }
    const room_t *r = room_find(&x, "all", 3);
    for (const room_member_t *m = r->head.rnext; m != &r->head; m = m->rnext)
        snap[n++] = m->socket;
    CHECK_EQ_INT(n, N);
    for (size_t k = 0; k < n; k++) {
        CHECK_EQ_INT(room_leave(&x, snap[k], "all", 3), 1);
        if (k % 3 == 0)
            room_leave_all(&x, snap[k]);
        CHECK(index_ok(&x, s, N));
    }
    CHECK(room_find(&x, "all", 3) == NULL);
    CHECK_EQ_INT(x.nrooms, 2);
    for (int i = 0; i < N; i++)
        room_leave_all(&x, s[i]);
    CHECK_EQ_INT(x.nrooms, 0);
    room_index_free(&x);
    for (int i = 0; i < N; i++)
        free(s[i]);
}

/* A walk over a room's own list with a safe-next pointer, each member leaving every room as it is
 * visited (sio_server_close closing sockets one by one): no member node is read after it is freed,
 * and the walk stops at the count, since the room (its list head) is freed with the last one. */
TEST(leave_all_while_walking_the_room)
{
    enum { N = 6 };
    room_index_t x = {0};
    sio_socket_t *s[N];
    for (int i = 0; i < N; i++) {
        s[i] = new_socket(i);
        room_join(&x, s[i], "x", 1);
        room_join(&x, s[i], "y", 1);
        room_add_id(&x, s[i]);
    }
    room_t *r = room_find(&x, "x", 1);
    size_t left = r->count, visited = 0;
    for (room_member_t *m = r->head.rnext, *next; left > 0; m = next, left--) {
        next = m->rnext;
        sio_socket_t *so = m->socket;
        room_leave_all(&x, so);
        room_remove_id(&x, so);
        visited++;
    }
    CHECK_EQ_INT(visited, N);
    CHECK_EQ_INT(x.nrooms, 0);
    CHECK_EQ_INT(x.nids, 0);
    CHECK(index_ok(&x, s, N));
    room_index_free(&x);
    for (int i = 0; i < N; i++)
        free(s[i]);
}

int main(void)
{
    RUN(join_leave_table);
    RUN(member_order);
    RUN(id_table);
    RUN(buckets_grow);
    RUN(random_against_a_model);
    RUN(leave_while_walking_a_snapshot);
    RUN(leave_all_while_walking_the_room);
    return test_summary();
}
