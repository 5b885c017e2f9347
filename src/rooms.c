/* rooms: see rooms.h. Two chained hash tables (room names, socket ids) that double when their
 * load passes 1, and membership nodes linked into both the room and the socket. */
#include "rooms.h"

#include <stdlib.h>
#include <string.h>

#include "sio.h"

static uint32_t hash_bytes(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 16777619u;
    return h;
}

/* ---------------------------------------------------------------- rooms by name */

room_t *room_find(const room_index_t *x, const char *name, size_t len)
{
    uint32_t h;
    if (x->nrooms_buckets == 0)
        return NULL;
    h = hash_bytes(name, len);
    for (room_t *r = x->rooms[h & (x->nrooms_buckets - 1)]; r; r = r->hnext)
        if (r->hash == h && r->len == len && memcmp(r->name, name, len) == 0)
            return r;
    return NULL;
}

static void rooms_grow(room_index_t *x)
{
    size_t nb = x->nrooms_buckets ? x->nrooms_buckets * 2 : 16;
    room_t **b = xcalloc(nb, sizeof(*b));
    for (size_t i = 0; i < x->nrooms_buckets; i++) {
        room_t *r = x->rooms[i], *next;
        for (; r; r = next) {
            next = r->hnext;
            r->hnext = b[r->hash & (nb - 1)];
            b[r->hash & (nb - 1)] = r;
        }
    }
    free(x->rooms);
    x->rooms = b;
    x->nrooms_buckets = nb;
}

static room_t *room_create(room_index_t *x, const char *name, size_t len)
{
    room_t *r;
    if (x->nrooms + 1 > x->nrooms_buckets)
        rooms_grow(x);
    r = xcalloc(1, sizeof(*r) + len + 1);
    r->hash = hash_bytes(name, len);
    r->len = len;
    memcpy(r->name, name, len);
    r->head.rprev = r->head.rnext = &r->head;
    r->hnext = x->rooms[r->hash & (x->nrooms_buckets - 1)];
    x->rooms[r->hash & (x->nrooms_buckets - 1)] = r;
    x->nrooms++;
    return r;
}

static void room_destroy(room_index_t *x, room_t *r)
{
    room_t **pp = &x->rooms[r->hash & (x->nrooms_buckets - 1)];
    for (; *pp; pp = &(*pp)->hnext)
        if (*pp == r) {
            *pp = r->hnext;
            break;
        }
    x->nrooms--;
    free(r);
}

int room_join(room_index_t *x, struct sio_socket *s, const char *name, size_t len)
{
    room_t *r = room_find(x, name, len);
    room_member_t *m;
    if (r == NULL)
        r = room_create(x, name, len);
    for (m = s->rooms; m; m = m->snext)
        if (m->room == r)
            return 0;
    m = xmalloc(sizeof(*m));
    m->room = r;
    m->socket = s;
    m->rprev = r->head.rprev;
    m->rnext = &r->head;
    r->head.rprev->rnext = m;
    r->head.rprev = m;
    r->count++;
    m->snext = s->rooms;
    s->rooms = m;
    return 1;
}

static void unlink_member(room_index_t *x, room_member_t *m)
{
    room_t *r = m->room;
    m->rprev->rnext = m->rnext;
    m->rnext->rprev = m->rprev;
    if (--r->count == 0)
        room_destroy(x, r);
    free(m);
}

int room_leave(room_index_t *x, struct sio_socket *s, const char *name, size_t len)
{
    room_t *r = room_find(x, name, len);
    if (r == NULL)
        return 0;
    for (room_member_t **pp = &s->rooms; *pp; pp = &(*pp)->snext)
        if ((*pp)->room == r) {
            room_member_t *m = *pp;
            *pp = m->snext;
            unlink_member(x, m);
            return 1;
        }
    return 0;
}

void room_leave_all(room_index_t *x, struct sio_socket *s)
{
    while (s->rooms != NULL) {
        room_member_t *m = s->rooms;
        s->rooms = m->snext;
        unlink_member(x, m);
    }
}

/* ---------------------------------------------------------------- sockets by id */

static void ids_grow(room_index_t *x)
{
    size_t nb = x->nid_buckets ? x->nid_buckets * 2 : 64;
    struct sio_socket **b = xcalloc(nb, sizeof(*b));
    for (size_t i = 0; i < x->nid_buckets; i++) {
        struct sio_socket *s = x->ids[i], *next;
        for (; s; s = next) {
            uint32_t h = hash_bytes(s->id, s->idlen) & (nb - 1);
            next = s->idnext;
            s->idnext = b[h];
            b[h] = s;
        }
    }
    free(x->ids);
    x->ids = b;
    x->nid_buckets = nb;
}

void room_add_id(room_index_t *x, struct sio_socket *s)
{
    uint32_t h;
    if (x->nids + 1 > x->nid_buckets)
        ids_grow(x);
    h = hash_bytes(s->id, s->idlen) & (x->nid_buckets - 1);
    s->idnext = x->ids[h];
    x->ids[h] = s;
    x->nids++;
}

void room_remove_id(room_index_t *x, struct sio_socket *s)
{
    struct sio_socket **pp;
    if (x->nid_buckets == 0)
        return;
    for (pp = &x->ids[hash_bytes(s->id, s->idlen) & (x->nid_buckets - 1)]; *pp; pp = &(*pp)->idnext)
        if (*pp == s) {
            *pp = s->idnext;
            s->idnext = NULL;
            x->nids--;
            return;
        }
}

struct sio_socket *room_find_id(const room_index_t *x, const char *id, size_t len)
{
    if (x->nid_buckets == 0)
        return NULL;
    for (struct sio_socket *s = x->ids[hash_bytes(id, len) & (x->nid_buckets - 1)]; s; s = s->idnext)
        if (s->idlen == len && memcmp(s->id, id, len) == 0)
            return s;
    return NULL;
}

void room_index_free(room_index_t *x)
{
    for (size_t i = 0; i < x->nrooms_buckets; i++)
        while (x->rooms[i] != NULL) {
            room_t *r = x->rooms[i];
            x->rooms[i] = r->hnext;
            free(r);
        }
    free(x->rooms);
    free(x->ids);
    memset(x, 0, sizeof(*x));
}
