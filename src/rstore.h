/* rstore: the store of connection state recovery (the reference's SessionAwareAdapter, in C: it
 * outlives hot reloads, is written to a file on shutdown and read back at start). It keeps
 *   - packets emitted for recovery, each as it was sent (the encoded packet and its attachments,
 *     refcounted rbufs: stored once whatever the number of recipients), with its offset (a
 *     consecutive sequence number, the string offset its last argument carries), namespace, rooms
 *     and except (which sessions it was for), and the time it was emitted;
 *   - sessions of sockets that left for a recoverable reason: id, pid, namespace, rooms, data (JSON
 *     text), the time they left.
 * Bounded by age (max_age: packets and sessions older are dropped) and by bytes (max_bytes, packets
 * then sessions, oldest first). A session is restored only if every packet after its client's
 * offset is still held: never with a gap. Pure (no I/O but rstore_save/rstore_load, no clock: the
 * caller gives `now`, wall-clock ms). */
#ifndef SL_RSTORE_H
#define SL_RSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define RSTORE_OFFSET_MAX 16  /* an offset's text, NUL included */
#define RSTORE_VERSION 1      /* the state file's format */
#define RSTORE_ID_MAX 64      /* longest sid or pid kept (siolua's are 20 characters) */

typedef struct rstore rstore_t;

/* A session taken from the store (rstore_take): the caller owns it (rstore_session_free). */
typedef struct {
    char sid[RSTORE_ID_MAX + 1];
    char pid[RSTORE_ID_MAX + 1];
    uint64_t seq;          /* the offset its client had: the packets after it are the missed ones */
    size_t nrooms;
    char **rooms;          /* NUL-terminated names (its own id among them, as socket.rooms) */
    char *data;            /* socket.data as JSON text (NUL-terminated), "" for none */
    size_t datalen;
    const char *nsp;       /* borrowed from the store (valid while it lives) */
} rstore_session_t;

/* A new, empty store whose first offset is first_seq (a fresh server: the time, so that a client's
 * offset from a previous process is not mistaken for a new one). */
rstore_t *rstore_new(uint64_t first_seq);
void rstore_free(rstore_t *st);
/* The bounds (ms, bytes; 0: none); applied at the next change or rstore_trim. */
void rstore_set_limits(rstore_t *st, uint64_t max_age, size_t max_bytes);
/* Drops what is older than max_age at `now`, then the oldest until under max_bytes. */
void rstore_trim(rstore_t *st, uint64_t now);

/* The offset text of the next packet rstore_add stores (out: RSTORE_OFFSET_MAX bytes). */
void rstore_next_offset(const rstore_t *st, char *out);
/* Stores the packet the last rstore_next_offset named, sent to namespace nsp, to the members of
 * any of rooms (none: every socket) but those of except. Takes references on pkt and att. */
void rstore_add(rstore_t *st, uint64_t now, const char *nsp, const slice_t *rooms, size_t nrooms,
                const slice_t *except, size_t nexcept, rbuf_t *pkt, rbuf_t *const *att, size_t natt);

/* Keeps the session of a socket that left (replacing one with the same pid). data: JSON text. */
void rstore_persist(rstore_t *st, uint64_t now, const char *nsp, slice_t sid, slice_t pid, const slice_t *rooms,
                    size_t nrooms, slice_t data);
/* Takes the session pid of namespace nsp if its client's offset is still held (the packet of that
 * offset, in that namespace, and every later one): 0 and *out filled (the session leaves the store),
 * or -1 (no such session, expired, other namespace, offset unknown or evicted: the session stays,
 * as in the reference, until it expires). */
int rstore_take(rstore_t *st, uint64_t now, const char *nsp, slice_t pid, slice_t offset, rstore_session_t *out);
/* Calls each() with the packets after s->seq meant for s (its namespace, its rooms), oldest first,
 * then advances s->seq past the last stored one. Returns how many, or -1 when one of them is no
 * longer held (evicted since rstore_take: a gap), without calling each(). */
long rstore_replay(const rstore_t *st, rstore_session_t *s,
                   void (*each)(void *ud, rbuf_t *pkt, rbuf_t *const *att, size_t natt), void *ud);
void rstore_session_free(rstore_session_t *s);

/* What the store holds (tests, the benchmark, logs). */
typedef struct {
    size_t packets, sessions, bytes;
    uint64_t first_seq, next_seq;
} rstore_stats_t;
void rstore_stats(const rstore_t *st, rstore_stats_t *out);

/* Writes the store to path atomically (path.tmp, fsync, rename): 0, or -1 with *err a static text
 * (errno tells more). parser: the packets' format (sio_config_t.parser), checked by rstore_load. */
int rstore_save(const rstore_t *st, const char *path, int parser, const char **err);
/* Reads a store written by rstore_save: the store, or NULL with *err (a missing file, another
 * version or parser, a corrupt or truncated file: nothing of it is kept). */
rstore_t *rstore_load(const char *path, int parser, const char **err);
/* The same from bytes in memory (the fuzz harness and the unit tests). */
rstore_t *rstore_parse(const uint8_t *p, size_t len, int parser, const char **err);

#endif
