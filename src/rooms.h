/* rooms: the room <-> socket index of one namespace, in both directions, plus the namespace's
 * socket-by-id table. Joining, leaving and counting are O(1) (leaving by name scans the socket's own
 * short list); a broadcast to a room visits only its members.
 * A socket's own id is a *virtual* room: it is found through the id table, so an idle socket costs
 * no room entry. Rooms are created on first join and freed when their last member leaves. */
#ifndef SL_ROOMS_H
#define SL_ROOMS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct sio_socket;
typedef struct room room_t;

typedef struct room_member {
    room_t *room;
    struct sio_socket *socket;
    struct room_member *rprev, *rnext; /* the room's member list */
    struct room_member *snext;         /* the socket's room list */
} room_member_t;

struct room {
    room_t *hnext;       /* hash chain */
    uint32_t hash;
    size_t count;        /* members */
    room_member_t head;  /* sentinel of the member list */
    size_t len;
    char name[];         /* NUL-terminated */
};

typedef struct {
    room_t **rooms;                 /* name -> room, chained */
    size_t nrooms_buckets, nrooms;
    struct sio_socket **ids;        /* id -> socket, chained through sio_socket.idnext */
    size_t nid_buckets, nids;
} room_index_t;

/* [join] returns 1 if s joined, 0 if it was already in the room. */
int room_join(room_index_t *x, struct sio_socket *s, const char *name, size_t len);
/* [leave] returns 1 if s left, 0 if it was not in the room. */
int room_leave(room_index_t *x, struct sio_socket *s, const char *name, size_t len);
void room_leave_all(room_index_t *x, struct sio_socket *s);
room_t *room_find(const room_index_t *x, const char *name, size_t len);

void room_add_id(room_index_t *x, struct sio_socket *s);
void room_remove_id(room_index_t *x, struct sio_socket *s);
struct sio_socket *room_find_id(const room_index_t *x, const char *id, size_t len);

void room_index_free(room_index_t *x);

#endif
