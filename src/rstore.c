/* rstore: see rstore.h. Packets sit in a ring indexed by their sequence number (offsets are
 * consecutive and eviction takes the oldest, so an offset is found without a hash), and each is
 * listed under its targets (its rooms, or "every socket"), so that a replay visits the packets of
 * the session's rooms only, not the whole store (10,000 sessions coming back to a million kept
 * packets); sessions sit in a hash by pid and a list in the order they left (which is the order
 * they expire in). */
#include "rstore.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* ---------------------------------------------------------------- the structures */

typedef struct nsp_name {
    struct nsp_name *next;
    uint32_t index;             /* its number in the state file */
    char name[];
} nsp_name_t;

typedef struct {
    uint64_t at;                /* emitted (wall clock, ms) */
    const char *nsp;            /* interned (st->nsps) */
    rbuf_t *pkt;
    uint32_t size;              /* bytes counted against max_bytes */
    uint16_t natt, nrooms, nexcept;
    rbuf_t *att[];              /* natt attachments, then the rooms and except names
                                   (NUL-terminated each): pkt_names() */
} spkt_t;

static const char *pkt_names(const spkt_t *p) { return (const char *)(p->att + p->natt); }

/* A target of packets: room `name` of a namespace (the empty name: every socket of it), with the
 * sequence numbers of the kept packets sent to it, oldest first (seqs[head..n)). */
typedef struct target {
    struct target *hnext;
    const char *nsp;            /* interned */
    uint64_t *seqs;
    size_t head, n, cap;
    uint32_t hash;
    uint32_t len;
    char name[];
} target_t;

typedef struct sess {
    struct sess *prev, *next;   /* in the order they left */
    struct sess *hnext;         /* pid hash chain */
    uint64_t at;                /* left (wall clock, ms) */
    const char *nsp;            /* interned */
    uint32_t size, datalen;
    uint16_t nrooms;
    uint8_t pidlen, sidlen;
    char blob[];                /* pid, sid, rooms (NUL-terminated each), data */
} sess_t;

struct rstore {
    uint64_t max_age;           /* ms, 0: none */
    size_t max_bytes;           /* 0: none */
    size_t bytes;               /* packets' and sessions' sizes */
    spkt_t **ring;              /* packets, oldest at head */
    size_t cap, head, n;        /* cap: a power of two */
    uint64_t first_seq;         /* the sequence number of ring[head] (next one when empty) */
    sess_t **buckets;           /* pid -> session */
    size_t nbuckets, nsess;
    sess_t *oldest, *newest;
    nsp_name_t *nsps;
    uint32_t nnsps;
    target_t **targets;         /* (nsp, room) -> its packets */
    size_t ntbuckets, ntargets;
};

static const char ALPHABET[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_";

static void seq_text(uint64_t seq, char *out)
{
    char tmp[RSTORE_OFFSET_MAX];
    size_t n = 0;
    do {
        tmp[n++] = ALPHABET[seq & 63];
        seq >>= 6;
    } while (seq != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
}

static int seq_parse(slice_t t, uint64_t *out)
{
    uint64_t v = 0;
    if (t.len == 0 || t.len > 11)
        return -1;
    for (size_t i = 0; i < t.len; i++) {
        const char *p = memchr(ALPHABET, t.ptr[i], 64);
        if (p == NULL || t.ptr[i] == '\0')
            return -1;
        v = v << 6 | (uint64_t)(p - ALPHABET);
    }
    *out = v;
    return 0;
}

static uint32_t hash_bytes(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 16777619u;
    return h;
}

static const char *intern(rstore_t *st, const char *name)
{
    nsp_name_t *x;
    for (x = st->nsps; x; x = x->next)
        if (strcmp(x->name, name) == 0)
            return x->name;
    size_t n = strlen(name);
    x = xmalloc(sizeof(*x) + n + 1);
    memcpy(x->name, name, n + 1);
    x->index = st->nnsps++;
    x->next = st->nsps;
    st->nsps = x;
    return x->name;
}

static uint32_t nsp_index(const char *interned)
{
    return ((const nsp_name_t *)(interned - offsetof(nsp_name_t, name)))->index;
}

rstore_t *rstore_new(uint64_t first_seq)
{
    rstore_t *st = xcalloc(1, sizeof(*st));
    st->first_seq = first_seq;
    return st;
}

static void spkt_free(spkt_t *p)
{
    rbuf_unref(p->pkt);
    for (size_t i = 0; i < p->natt; i++)
        rbuf_unref(p->att[i]);
    free(p);
}

static void targets_free(rstore_t *st);

void rstore_free(rstore_t *st)
{
    if (st == NULL)
        return;
    targets_free(st);
    for (size_t i = 0; i < st->n; i++)
        spkt_free(st->ring[(st->head + i) & (st->cap - 1)]);
    free(st->ring);
    for (sess_t *s = st->oldest, *nx; s; s = nx) {
        nx = s->next;
        free(s);
    }
    free(st->buckets);
    for (nsp_name_t *x = st->nsps, *nx; x; x = nx) {
        nx = x->next;
        free(x);
    }
    free(st);
}

void rstore_set_limits(rstore_t *st, uint64_t max_age, size_t max_bytes)
{
    st->max_age = max_age;
    st->max_bytes = max_bytes;
}

void rstore_stats(const rstore_t *st, rstore_stats_t *out)
{
    out->packets = st->n;
    out->sessions = st->nsess;
    out->bytes = st->bytes;
    out->first_seq = st->first_seq;
    out->next_seq = st->first_seq + st->n;
}

/* ---------------------------------------------------------------- targets */

static uint32_t target_hash(const char *nsp, const char *name, size_t len)
{
    return hash_bytes(name, len) ^ (uint32_t)((uintptr_t)nsp >> 4) * 2654435761u;
}

/* The target (nsp, name), made when create is set; NULL when it has no packets. */
static target_t *target_get(rstore_t *st, const char *nsp, const char *name, int create)
{
    size_t len = strlen(name);
    uint32_t h = target_hash(nsp, name, len);
    target_t *t;
    if (st->ntbuckets != 0)
        for (t = st->targets[h & (st->ntbuckets - 1)]; t; t = t->hnext)
            if (t->hash == h && t->nsp == nsp && t->len == len && memcmp(t->name, name, len) == 0)
                return t;
    if (!create)
        return NULL;
    if (st->ntargets + 1 > st->ntbuckets) {
        size_t nb = st->ntbuckets ? st->ntbuckets * 2 : 64;
        target_t **b = xcalloc(nb, sizeof(*b));
        for (size_t i = 0; i < st->ntbuckets; i++)
            for (target_t *x = st->targets[i], *nx; x; x = nx) {
                nx = x->hnext;
                x->hnext = b[x->hash & (nb - 1)];
                b[x->hash & (nb - 1)] = x;
            }
        free(st->targets);
        st->targets = b;
        st->ntbuckets = nb;
    }
    t = xcalloc(1, sizeof(*t) + len + 1);
    t->nsp = nsp;
    t->hash = h;
    t->len = (uint32_t)len;
    memcpy(t->name, name, len + 1);
    t->hnext = st->targets[h & (st->ntbuckets - 1)];
    st->targets[h & (st->ntbuckets - 1)] = t;
    st->ntargets++;
    return t;
}

static void target_push(target_t *t, uint64_t seq)
{
    if (t->n == t->cap) {
        if (t->head > 0) { /* the consumed front is reused first */
            memmove(t->seqs, t->seqs + t->head, (t->n - t->head) * sizeof(uint64_t));
            t->n -= t->head;
            t->head = 0;
        }
        if (t->n == t->cap) {
            t->cap = t->cap ? t->cap * 2 : 4;
            t->seqs = xrealloc(t->seqs, t->cap * sizeof(uint64_t));
        }
    }
    t->seqs[t->n++] = seq;
}

/* The oldest packet (seq) leaves target (nsp, name): the front of its list; an empty target goes. */
static void target_pop(rstore_t *st, const char *nsp, const char *name, uint64_t seq)
{
    target_t *t = target_get(st, nsp, name, 0);
    if (t == NULL || t->head == t->n || t->seqs[t->head] != seq)
        return; /* (cannot be: every packet is listed under each of its targets) */
    if (++t->head < t->n)
        return;
    target_t **pp = &st->targets[t->hash & (st->ntbuckets - 1)];
    while (*pp != t)
        pp = &(*pp)->hnext;
    *pp = t->hnext;
    st->ntargets--;
    free(t->seqs);
    free(t);
}

static void targets_free(rstore_t *st)
{
    for (size_t i = 0; i < st->ntbuckets; i++)
        for (target_t *x = st->targets[i], *nx; x; x = nx) {
            nx = x->hnext;
            free(x->seqs);
            free(x);
        }
    free(st->targets);
}

/* ---------------------------------------------------------------- packets */

static spkt_t *pkt_at(const rstore_t *st, size_t i)
{
    return st->ring[(st->head + i) & (st->cap - 1)];
}


static void drop_oldest_packet(rstore_t *st)
{
    spkt_t *p = st->ring[st->head];
    const char *room = pkt_names(p);
    if (p->nrooms == 0)
        target_pop(st, p->nsp, "", st->first_seq);
    for (size_t i = 0; i < p->nrooms; i++, room += strlen(room) + 1)
        target_pop(st, p->nsp, room, st->first_seq);
    st->bytes -= p->size;
    spkt_free(p);
    st->head = (st->head + 1) & (st->cap - 1);
    st->n--;
    st->first_seq++;
}

static void push_packet(rstore_t *st, spkt_t *p)
{
    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 64;
        spkt_t **ring = xmalloc(cap * sizeof(*ring));
        for (size_t i = 0; i < st->n; i++)
            ring[i] = pkt_at(st, i);
        free(st->ring);
        st->ring = ring;
        st->cap = cap;
        st->head = 0;
    }
    uint64_t seq = st->first_seq + st->n;
    const char *room = pkt_names(p);
    st->ring[(st->head + st->n) & (st->cap - 1)] = p;
    st->n++;
    st->bytes += p->size;
    if (p->nrooms == 0)
        target_push(target_get(st, p->nsp, "", 1), seq);
    for (size_t i = 0; i < p->nrooms; i++, room += strlen(room) + 1)
        target_push(target_get(st, p->nsp, room, 1), seq);
}

void rstore_next_offset(const rstore_t *st, char *out)
{
    seq_text(st->first_seq + st->n, out);
}

static size_t names_len(const slice_t *v, size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += v[i].len + 1;
    return len;
}

static char *put_names(char *w, const slice_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        memcpy(w, v[i].ptr, v[i].len);
        w[v[i].len] = '\0';
        w += v[i].len + 1;
    }
    return w;
}

/* A packet entry made of its parts (references taken). */
static spkt_t *make_packet(rstore_t *st, uint64_t at, const char *nsp, const slice_t *rooms, size_t nrooms,
                           const slice_t *except, size_t nexcept, rbuf_t *pkt, rbuf_t *const *att, size_t natt)
{
    size_t alen = natt * sizeof(rbuf_t *), nlen = names_len(rooms, nrooms) + names_len(except, nexcept);
    spkt_t *p = xmalloc(sizeof(*p) + alen + nlen);
    p->at = at;
    p->nsp = intern(st, nsp);
    p->pkt = rbuf_ref(pkt);
    p->natt = (uint16_t)natt;
    p->nrooms = (uint16_t)nrooms;
    p->nexcept = (uint16_t)nexcept;
    size_t size = sizeof(*p) + alen + nlen + sizeof(rbuf_t) + RBUF_HEADROOM + pkt->len + sizeof(spkt_t *) +
                  (nrooms ? nrooms : 1) * sizeof(uint64_t); /* + its place in its targets' lists */
    for (size_t i = 0; i < natt; i++) {
        p->att[i] = rbuf_ref(att[i]);
        size += sizeof(rbuf_t) + RBUF_HEADROOM + att[i]->len;
    }
    put_names(put_names((char *)(p->att + natt), rooms, nrooms), except, nexcept);
    p->size = (uint32_t)size;
    return p;
}

void rstore_add(rstore_t *st, uint64_t now, const char *nsp, const slice_t *rooms, size_t nrooms,
                const slice_t *except, size_t nexcept, rbuf_t *pkt, rbuf_t *const *att, size_t natt)
{
    if (nrooms > UINT16_MAX || nexcept > UINT16_MAX || natt > UINT16_MAX)
        return; /* (never: the callers' limits are far lower) a packet not kept is one not restored */
    push_packet(st, make_packet(st, now, nsp, rooms, nrooms, except, nexcept, pkt, att, natt));
    rstore_trim(st, now);
}

/* ---------------------------------------------------------------- sessions */

static const char *sess_rooms(const sess_t *s) { return s->blob + s->pidlen + 1 + s->sidlen + 1; }

static void unlink_session(rstore_t *st, sess_t *s)
{
    sess_t **pp = &st->buckets[hash_bytes(s->blob, s->pidlen) & (st->nbuckets - 1)];
    while (*pp != s)
        pp = &(*pp)->hnext;
    *pp = s->hnext;
    if (s->prev)
        s->prev->next = s->next;
    else
        st->oldest = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        st->newest = s->prev;
    st->nsess--;
    st->bytes -= s->size;
}

static sess_t *find_session(const rstore_t *st, slice_t pid)
{
    if (st->nbuckets == 0)
        return NULL;
    for (sess_t *s = st->buckets[hash_bytes(pid.ptr, pid.len) & (st->nbuckets - 1)]; s; s = s->hnext)
        if (s->pidlen == pid.len && memcmp(s->blob, pid.ptr, pid.len) == 0)
            return s;
    return NULL;
}

static void link_session(rstore_t *st, sess_t *s)
{
    if (st->nsess + 1 > st->nbuckets) {
        size_t nb = st->nbuckets ? st->nbuckets * 2 : 64;
        sess_t **b = xcalloc(nb, sizeof(*b));
        for (sess_t *x = st->oldest; x; x = x->next) {
            size_t h = hash_bytes(x->blob, x->pidlen) & (nb - 1);
            x->hnext = b[h];
            b[h] = x;
        }
        free(st->buckets);
        st->buckets = b;
        st->nbuckets = nb;
    }
    size_t h = hash_bytes(s->blob, s->pidlen) & (st->nbuckets - 1);
    s->hnext = st->buckets[h];
    st->buckets[h] = s;
    s->next = NULL;
    s->prev = st->newest;
    if (st->newest)
        st->newest->next = s;
    else
        st->oldest = s;
    st->newest = s;
    st->nsess++;
    st->bytes += s->size;
}

static sess_t *make_session(rstore_t *st, uint64_t at, const char *nsp, slice_t sid, slice_t pid,
                            const slice_t *rooms, size_t nrooms, slice_t data)
{
    size_t len = pid.len + 1 + sid.len + 1 + names_len(rooms, nrooms) + data.len + 1;
    sess_t *s = xmalloc(sizeof(*s) + len);
    char *w = s->blob;
    s->at = at;
    s->nsp = intern(st, nsp);
    s->pidlen = (uint8_t)pid.len;
    s->sidlen = (uint8_t)sid.len;
    s->nrooms = (uint16_t)nrooms;
    s->datalen = (uint32_t)data.len;
    w = put_names(w, &pid, 1);
    w = put_names(w, &sid, 1);
    w = put_names(w, rooms, nrooms);
    memcpy(w, data.ptr, data.len);
    w[data.len] = '\0';
    s->size = (uint32_t)(sizeof(*s) + len + 2 * sizeof(void *)); /* + its hash slot, about */
    return s;
}

void rstore_persist(rstore_t *st, uint64_t now, const char *nsp, slice_t sid, slice_t pid, const slice_t *rooms,
                    size_t nrooms, slice_t data)
{
    sess_t *old;
    if (pid.len == 0 || pid.len > RSTORE_ID_MAX || sid.len == 0 || sid.len > RSTORE_ID_MAX || nrooms > UINT16_MAX ||
        data.len > UINT32_MAX / 2)
        return;
    if ((old = find_session(st, pid)) != NULL) {
        unlink_session(st, old);
        free(old);
    }
    link_session(st, make_session(st, now, nsp, sid, pid, rooms, nrooms, data));
    rstore_trim(st, now);
}

void rstore_trim(rstore_t *st, uint64_t now)
{
    uint64_t limit = st->max_age != 0 && now > st->max_age ? now - st->max_age : 0;
    while (st->n > 0 && (st->ring[st->head]->at < limit || (st->max_bytes != 0 && st->bytes > st->max_bytes)))
        drop_oldest_packet(st);
    while (st->oldest != NULL && (st->oldest->at < limit || (st->max_bytes != 0 && st->bytes > st->max_bytes))) {
        sess_t *s = st->oldest;
        unlink_session(st, s);
        free(s);
    }
}

/* The stored packet of sequence number seq, or NULL. */
static spkt_t *packet_of(const rstore_t *st, uint64_t seq)
{
    if (seq < st->first_seq || seq - st->first_seq >= st->n)
        return NULL;
    return pkt_at(st, (size_t)(seq - st->first_seq));
}

int rstore_take(rstore_t *st, uint64_t now, const char *nsp, slice_t pid, slice_t offset, rstore_session_t *out)
{
    uint64_t seq;
    spkt_t *p;
    rstore_trim(st, now); /* an expired session or packet is not restored */
    sess_t *s = find_session(st, pid);
    if (s == NULL || strcmp(s->nsp, nsp) != 0 || seq_parse(offset, &seq) != 0)
        return -1;
    if ((p = packet_of(st, seq)) == NULL || p->nsp != s->nsp)
        return -1; /* the offset is unknown, or its packet (and maybe later ones) was evicted */
    memset(out, 0, sizeof(*out));
    memcpy(out->pid, s->blob, s->pidlen + 1u);
    memcpy(out->sid, s->blob + s->pidlen + 1, s->sidlen + 1u);
    out->seq = seq;
    out->nsp = s->nsp;
    out->nrooms = s->nrooms;
    out->rooms = xmalloc((s->nrooms ? s->nrooms : 1) * sizeof(char *));
    const char *r = sess_rooms(s);
    for (size_t i = 0; i < s->nrooms; i++) {
        size_t n = strlen(r);
        out->rooms[i] = xstrndup(r, n);
        r += n + 1;
    }
    out->data = xstrndup(r, s->datalen);
    out->datalen = s->datalen;
    unlink_session(st, s);
    free(s);
    return 0;
}

static int has_name(const char *names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(names);
        if (strcmp(names, name) == 0)
            return 1;
        names += len + 1;
    }
    return 0;
}

static const char *skip_names(const char *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        names += strlen(names) + 1;
    return names;
}

/* The reference's shouldIncludePacket: in one of the packet's rooms (or it has none), in none of
 * its except. */
static int meant_for(const spkt_t *p, const rstore_session_t *s)
{
    const char *rooms = pkt_names(p), *except = skip_names(rooms, p->nrooms);
    int included = p->nrooms == 0;
    for (size_t i = 0; i < s->nrooms; i++) {
        if (!included && has_name(rooms, p->nrooms, s->rooms[i]))
            included = 1;
        if (p->nexcept > 0 && has_name(except, p->nexcept, s->rooms[i]))
            return 0;
    }
    return included;
}

long rstore_replay(const rstore_t *st, rstore_session_t *s,
                   void (*each)(void *ud, rbuf_t *pkt, rbuf_t *const *att, size_t natt), void *ud)
{
    long count = 0;
    uint64_t end = st->first_seq + st->n;
    size_t nt = s->nrooms + 1, k;
    if (s->seq + 1 < st->first_seq)
        return -1; /* packets after its offset were evicted: some may have been for it */
    /* the lists of its targets (every socket, each of its rooms), each from its first packet after
     * the offset (a binary search), merged in order; a packet listed under two of them once */
    target_t **ts = xmalloc(nt * sizeof(*ts));
    size_t *pos = xmalloc(nt * sizeof(*pos));
    rstore_t *mst = (rstore_t *)st; /* (target_get does not change the store without create) */
    for (k = 0; k < nt; k++) {
        ts[k] = target_get(mst, s->nsp, k == 0 ? "" : s->rooms[k - 1], 0);
        size_t lo = ts[k] ? ts[k]->head : 0, hi = ts[k] ? ts[k]->n : 0;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (ts[k]->seqs[mid] <= s->seq)
                lo = mid + 1;
            else
                hi = mid;
        }
        pos[k] = lo;
    }
    for (;;) {
        uint64_t q = UINT64_MAX;
        for (k = 0; k < nt; k++)
            if (ts[k] != NULL && pos[k] < ts[k]->n && ts[k]->seqs[pos[k]] < q)
                q = ts[k]->seqs[pos[k]];
        if (q == UINT64_MAX)
            break;
        for (k = 0; k < nt; k++)
            while (ts[k] != NULL && pos[k] < ts[k]->n && ts[k]->seqs[pos[k]] == q)
                pos[k]++;
        spkt_t *p = packet_of(st, q);
        if (p == NULL || !meant_for(p, s))
            continue;
        each(ud, p->pkt, p->att, p->natt);
        count++;
    }
    free(ts);
    free(pos);
    if (end > 0 && end - 1 > s->seq)
        s->seq = end - 1;
    return count;
}

void rstore_session_free(rstore_session_t *s)
{
    for (size_t i = 0; i < s->nrooms; i++)
        free(s->rooms[i]);
    free(s->rooms);
    free(s->data);
    s->rooms = NULL;
    s->data = NULL;
    s->nrooms = 0;
}

/* ---------------------------------------------------------------- the state file */

/* Layout (little-endian): "SIOLUARS", u32 version, u32 parser, u64 first_seq, u32 nnsps, nnsps
 * strings; u64 npackets, each: u64 at, u32 nsp, u16 natt, u16 nrooms, u16 nexcept, the rooms and
 * except strings, the packet and its attachments as blobs (u8 flags + string); u64 nsessions, each:
 * u64 at, u32 nsp, pid, sid, u16 nrooms, the rooms, data; then u32 CRC-32 of everything before it.
 * A string is u32 length + bytes. */
static const char MAGIC[8] = {'S', 'I', 'O', 'L', 'U', 'A', 'R', 'S'};

static void put_u(buf_t *b, uint64_t v, int bytes)
{
    uint8_t t[8];
    for (int i = 0; i < bytes; i++)
        t[i] = (uint8_t)(v >> (8 * i));
    buf_append(b, t, (size_t)bytes);
}

static void put_str(buf_t *b, const char *p, size_t n)
{
    put_u(b, n, 4);
    buf_append(b, p, n);
}

static void put_rbuf(buf_t *b, rbuf_t *r)
{
    put_u(b, r->flags & RBUF_BINARY, 1);
    put_str(b, rbuf_payload(r), r->len);
}

static const char *put_cstrs(buf_t *b, const char *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(names);
        put_str(b, names, len);
        names += len + 1;
    }
    return names;
}

static void serialize(const rstore_t *st, int parser, buf_t *b)
{
    buf_append(b, MAGIC, sizeof(MAGIC));
    put_u(b, RSTORE_VERSION, 4);
    put_u(b, (uint64_t)parser, 4);
    put_u(b, st->first_seq, 8);
    put_u(b, st->nnsps, 4);
    const char **names = xcalloc(st->nnsps ? st->nnsps : 1, sizeof(char *));
    for (nsp_name_t *x = st->nsps; x; x = x->next)
        names[x->index] = x->name;
    for (uint32_t i = 0; i < st->nnsps; i++)
        put_str(b, names[i], strlen(names[i]));
    free(names);
    put_u(b, st->n, 8);
    for (size_t i = 0; i < st->n; i++) {
        const spkt_t *p = pkt_at(st, i);
        put_u(b, p->at, 8);
        put_u(b, nsp_index(p->nsp), 4);
        put_u(b, p->natt, 2);
        put_u(b, p->nrooms, 2);
        put_u(b, p->nexcept, 2);
        put_cstrs(b, put_cstrs(b, pkt_names(p), p->nrooms), p->nexcept);
        put_rbuf(b, p->pkt);
        for (size_t k = 0; k < p->natt; k++)
            put_rbuf(b, p->att[k]);
    }
    put_u(b, st->nsess, 8);
    for (const sess_t *s = st->oldest; s; s = s->next) {
        put_u(b, s->at, 8);
        put_u(b, nsp_index(s->nsp), 4);
        put_str(b, s->blob, s->pidlen);
        put_str(b, s->blob + s->pidlen + 1, s->sidlen);
        put_u(b, s->nrooms, 2);
        put_str(b, put_cstrs(b, sess_rooms(s), s->nrooms), s->datalen);
    }
    put_u(b, (uint32_t)crc32(0L, (const Bytef *)b->base, (uInt)b->len), 4);
}

int rstore_save(const rstore_t *st, const char *path, int parser, const char **err)
{
    buf_t b = BUF_INIT;
    size_t plen = strlen(path);
    char *tmp = xmalloc(plen + 32);
    int fd, rc = -1;
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    serialize(st, parser, &b);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        *err = "cannot create the temporary file";
        goto out;
    }
    for (size_t off = 0; off < b.len;) {
        ssize_t w = write(fd, b.base + off, b.len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            *err = "cannot write the temporary file";
            close(fd);
            unlink(tmp);
            goto out;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        *err = "cannot write the temporary file (fsync)";
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        *err = "cannot rename the temporary file over the state file";
        unlink(tmp);
        goto out;
    }
    rc = 0;
out:
    free(tmp);
    buf_free(&b);
    return rc;
}

/* A bounded reader: every read is checked against what is left; the first failure sticks. */
typedef struct {
    const uint8_t *p, *end;
    int bad;
} rd_t;

static uint64_t get_u(rd_t *r, int bytes)
{
    uint64_t v = 0;
    if (r->bad || (size_t)(r->end - r->p) < (size_t)bytes) {
        r->bad = 1;
        return 0;
    }
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)r->p[i] << (8 * i);
    r->p += bytes;
    return v;
}

/* A string: a slice into the input (valid while it is). */
static slice_t get_str(rd_t *r)
{
    uint64_t n = get_u(r, 4);
    slice_t s = {NULL, 0};
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = 1;
        return s;
    }
    s.ptr = (const char *)r->p;
    s.len = (size_t)n;
    r->p += n;
    return s;
}

static int has_nul(slice_t s) { return memchr(s.ptr, '\0', s.len) != NULL; }

static rbuf_t *get_rbuf(rd_t *r)
{
    uint64_t flags = get_u(r, 1);
    slice_t s = get_str(r);
    if (r->bad || flags > RBUF_BINARY)
        return r->bad = 1, NULL;
    rbuf_t *b = rbuf_from(s.ptr, s.len);
    b->flags = (uint8_t)flags;
    return b;
}

#define MAX_NAMES 4096 /* rooms, except or attachments of one entry in a file (a sanity bound) */

/* Reads n names (no NUL inside) into v. */
static void get_names(rd_t *r, slice_t *v, size_t n)
{
    for (size_t i = 0; i < n && !r->bad; i++) {
        v[i] = get_str(r);
        if (!r->bad && has_nul(v[i]))
            r->bad = 1;
    }
}

rstore_t *rstore_parse(const uint8_t *p, size_t len, int parser, const char **err)
{
    rd_t r = {p, p + len, 0};
    rstore_t *st = NULL;
    const char **nsps = NULL;
    slice_t *rooms = NULL, *except = NULL;
    rbuf_t **att = NULL;
    uint32_t nnsps;
    uint64_t n;
    if (len < sizeof(MAGIC) + 12 || memcmp(p, MAGIC, sizeof(MAGIC)) != 0) {
        *err = "not a siolua state file";
        return NULL;
    }
    if ((uint32_t)crc32(0L, p, (uInt)(len - 4)) != (uint32_t)(p[len - 4] | p[len - 3] << 8 | p[len - 2] << 16 |
                                                               (uint32_t)p[len - 1] << 24)) {
        *err = "corrupt (checksum mismatch)";
        return NULL;
    }
    r.end -= 4;
    r.p += sizeof(MAGIC);
    if (get_u(&r, 4) != RSTORE_VERSION) {
        *err = "written by another version of siolua (format version differs)";
        return NULL;
    }
    if (get_u(&r, 4) != (uint64_t)parser) {
        *err = "written with another parser (--parser differs)";
        return NULL;
    }
    st = rstore_new(get_u(&r, 8));
    nnsps = (uint32_t)get_u(&r, 4);
    if (nnsps > (size_t)(r.end - r.p) / 4)
        r.bad = 1;
    nsps = xcalloc(r.bad || nnsps == 0 ? 1 : nnsps, sizeof(char *));
    for (uint32_t i = 0; i < nnsps && !r.bad; i++) {
        slice_t s = get_str(&r);
        if (r.bad || has_nul(s) || s.len > 1024) {
            r.bad = 1;
            break;
        }
        char *tmp = xstrndup(s.ptr, s.len);
        nsps[i] = intern(st, tmp);
        free(tmp);
        if (nsp_index(nsps[i]) != i)
            r.bad = 1; /* a name twice */
    }
    rooms = xmalloc(MAX_NAMES * sizeof(slice_t));
    except = xmalloc(MAX_NAMES * sizeof(slice_t));
    att = xcalloc(MAX_NAMES, sizeof(rbuf_t *));
    n = get_u(&r, 8);
    for (uint64_t i = 0; i < n && !r.bad; i++) {
        uint64_t at = get_u(&r, 8), ns = get_u(&r, 4);
        size_t natt = (size_t)get_u(&r, 2), nrooms = (size_t)get_u(&r, 2), nexcept = (size_t)get_u(&r, 2);
        size_t k;
        if (ns >= nnsps || natt > MAX_NAMES || nrooms > MAX_NAMES || nexcept > MAX_NAMES) {
            r.bad = 1;
            break;
        }
        get_names(&r, rooms, nrooms);
        get_names(&r, except, nexcept);
        rbuf_t *pkt = get_rbuf(&r);
        for (k = 0; k < natt && !r.bad; k++)
            att[k] = get_rbuf(&r);
        if (!r.bad)
            push_packet(st, make_packet(st, at, nsps[ns], rooms, nrooms, except, nexcept, pkt, att, natt));
        rbuf_unref(pkt);
        for (size_t j = 0; j < k; j++) {
            rbuf_unref(att[j]);
            att[j] = NULL;
        }
    }
    n = get_u(&r, 8);
    for (uint64_t i = 0; i < n && !r.bad; i++) {
        uint64_t at = get_u(&r, 8), ns = get_u(&r, 4);
        slice_t pid = get_str(&r), sid = get_str(&r);
        size_t nrooms = (size_t)get_u(&r, 2);
        if (r.bad || ns >= nnsps || nrooms > MAX_NAMES || pid.len == 0 || pid.len > RSTORE_ID_MAX || sid.len == 0 ||
            sid.len > RSTORE_ID_MAX || has_nul(pid) || has_nul(sid) || find_session(st, pid) != NULL) {
            r.bad = 1;
            break;
        }
        get_names(&r, rooms, nrooms);
        slice_t data = get_str(&r);
        if (r.bad || has_nul(data) || data.len > UINT32_MAX / 2)
            r.bad = 1;
        else
            link_session(st, make_session(st, at, nsps[ns], sid, pid, rooms, nrooms, data));
    }
    if (!r.bad && r.p != r.end)
        r.bad = 1; /* bytes left over */
    free(nsps);
    free(rooms);
    free(except);
    free(att);
    if (r.bad) {
        *err = "malformed";
        rstore_free(st);
        return NULL;
    }
    return st;
}

rstore_t *rstore_load(const char *path, int parser, const char **err)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data;
    long size;
    rstore_t *st;
    if (f == NULL) {
        *err = errno == ENOENT ? "no such file" : "cannot open it";
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        *err = "cannot read it";
        return NULL;
    }
    data = xmalloc((size_t)size + 1);
    if (fread(data, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        free(data);
        *err = "cannot read it";
        return NULL;
    }
    fclose(f);
    st = rstore_parse(data, (size_t)size, parser, err);
    free(data);
    return st;
}
