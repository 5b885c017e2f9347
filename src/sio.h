/* sio: Socket.IO v5 server side - clients (one per Engine.IO session), namespaces, sockets,
 * binary reassembly, connect timeout, broadcast.
 * The upper layer (the Lua host) decides whether a CONNECT is accepted and what events mean; sio
 * only moves packets. Packets are encoded once (sio_encode) and the same rbufs are queued on every
 * recipient. Lifetime: sio owns clients and sockets; a socket's memory outlives its closing while
 * its refs are held (sio_socket_ref), so C code that called into Lua can re-check s->state. */
#ifndef SL_SIO_H
#define SL_SIO_H

#include <stdint.h>

#include "buf.h"
#include "eio.h"
#include "rooms.h"
#include "sio_packet.h"
#include "tq.h"

typedef struct sio_server sio_server_t;
typedef struct sio_nsp sio_nsp_t;
typedef struct sio_socket sio_socket_t;
typedef struct sio_client sio_client_t;
typedef struct sio_resolve sio_resolve_t;

typedef enum { SIO_S_CONNECTING = 0, SIO_S_CONNECTED, SIO_S_CLOSED } sio_state_t;

struct sio_socket {
    char *id;                          /* NUL-terminated: idbuf, or allocated (a longer id) */
    uint16_t idlen;
    char idbuf[21];                    /* a 20-character id: every socket's, but a Socket.IO v2
                                          client's outside "/", which is "<nsp>#<session id>" */
    sio_state_t state;
    uint32_t refs;                     /* holders; the socket is freed when closed and refs == 0 */
    sio_nsp_t *nsp;
    sio_client_t *client;              /* NULL once closed */
    struct sio_socket *nprev, *nnext;  /* namespace list (connected sockets) */
    struct sio_socket *cnext;          /* client's socket list */
    struct sio_socket *idnext;         /* namespace id table chain (rooms.c) */
    room_member_t *rooms;              /* rooms joined (its own id is implicit) */
    uint32_t mark;                     /* selection epoch that last visited it (dedup) */
    uint8_t upper_flags;               /* bits of the upper layer (LSOCKET_F_*) */
    uint8_t aborts;                    /* upper layer: its handler calls aborted in the window... */
    int handle_ref;                    /* upper layer: the Lua registry ref of its handle */
    char *pid;                         /* connection state recovery: its private id, sent in the
                                          CONNECT reply (NULL: recovery off, or a v2 client) */
    uint32_t aborts_since;             /* ...that began at this loop time (s) */
    void *data;                        /* upper layer */
};

struct sio_nsp {
    char *name;                        /* "/", "/admin" */
    size_t nsockets;                   /* connected sockets */
    sio_socket_t head;                 /* sentinel of the connected-socket list */
    room_index_t rooms;                /* rooms and socket ids of this namespace */
    int64_t next_ack;                  /* ack ids, per namespace as in the reference */
    struct sio_nsp *next;              /* server's namespace list */
    struct sio_server *srv;
    uint32_t nrefs;                    /* sockets (any state, until freed) that point to it, and
                                          sio_server_close while it walks the namespaces */
    uint8_t removable;                 /* a dynamic namespace's child: freed once empty if the
                                          server's cleanup_empty_children is on */
    void *data;                        /* upper layer (Lua handlers) */
};

typedef struct {
    /* CONNECT to an existing namespace: the upper layer must answer with sio_socket_accept() or
     * sio_socket_refuse(), now or later. auth is the raw JSON ("" when absent), or with the
     * msgpack parser the msgpack bytes of the auth map; for a Socket.IO v2
     * client (sio_socket_protocol(s) == 3), the query string its CONNECT put after the namespace
     * ("/admin?token=abc": "token=abc"), which the reference reads as URLSearchParams. Such a
     * client is connected to "/" as soon as its session opens, without a CONNECT, as in the
     * reference. */
    void (*on_connect)(sio_socket_t *s, slice_t auth, void *ud);
    /* EVENT/ACK (binary ones complete with their attachments) for a connected socket.
     * Return 0, or -1 if the payload is invalid (the client is then closed: "forced close"). */
    int (*on_packet)(sio_socket_t *s, const sio_packet_t *p, rbuf_t *const *att, size_t natt, void *ud);
    /* The socket left (reason as the reference). Called once, for connected sockets only. */
    void (*on_disconnect)(sio_socket_t *s, const char *reason, void *ud);
    /* A client was refused (connect_error) or its socket closed before accept: release s->data. */
    void (*on_release)(sio_socket_t *s, void *ud);
    /* CONNECT to a namespace that does not exist (dynamic namespaces): the upper layer answers
     * with sio_resolve_done(r, nsp) during the call or later (NULL: CONNECT_ERROR "Invalid
     * namespace"), within connect_timeout, after which the CONNECT is refused with a warning. name
     * and auth (as on_connect's: a query string when sio_resolve_protocol(r) == 3) are valid
     * during the call only. Optional (NULL: every such CONNECT is refused). */
    void (*resolve)(sio_resolve_t *r, slice_t name, slice_t auth, void *ud);
    /* A removable namespace lost its last socket and is about to be freed (cleanupEmptyChild-
     * Namespaces): the upper layer forgets it. Optional. */
    void (*on_nsp_free)(sio_nsp_t *nsp, void *ud);
} sio_handler_t;

typedef struct {
    uint64_t connect_timeout;  /* ms before a session that joined no namespace is closed, 45000 */
    sio_limits_t limits;       /* attachments per packet, namespace length */
    int cleanup_empty_children;/* cleanupEmptyChildNamespaces: free removable namespaces once empty */
    uint32_t max_nsps_per_client; /* namespaces one connection may join (0 = no limit), 100 */
    int parser;                /* SIO_PARSER_*: how packets are encoded, for every client */
} sio_config_t;

struct sio_server {
    const sio_config_t *cfg;
    uint32_t epoch;            /* selection counter (sio_select) */
    const sio_handler_t *h;
    void *ud;
    sio_nsp_t *nsps;           /* namespaces; "/" first */
    tq_t q_connect;            /* clients waiting for their first CONNECT */
    tq_t q_resolve;            /* CONNECTs waiting for resolve's answer (connect_timeout) */
    size_t nclients;
    struct sio_client *clients; /* every open client */
    struct metrics *metrics;   /* packets, connects, disconnects, broadcasts are counted there (NULL: not) */
};

void sio_server_init(sio_server_t *srv, uv_loop_t *loop, const sio_config_t *cfg, const sio_handler_t *h,
                     void *ud);
/* The Engine.IO handler that feeds sio; pass it to eio_server_init with ud = srv. */
extern const eio_handler_t sio_eio_handler;

sio_nsp_t *sio_nsp_find(sio_server_t *srv, const char *name, size_t len);
sio_nsp_t *sio_nsp_create(sio_server_t *srv, const char *name, size_t len);

/* resolve's answer (see sio_handler_t): nsp, or NULL to refuse. Ignored once r was answered,
 * timed out, or its client closed. The CONNECT may be handled inside (on_connect called). */
void sio_resolve_done(sio_resolve_t *r, sio_nsp_t *nsp);
/* 1 while r waits for its answer. An upper layer that answers later holds a reference. */
int sio_resolve_pending(const sio_resolve_t *r);
void sio_resolve_ref(sio_resolve_t *r);
void sio_resolve_unref(sio_resolve_t *r);

/* The Engine.IO protocol of r's client: 4, or 3 for a Socket.IO v2 client. */
int sio_resolve_protocol(const sio_resolve_t *r);

/* Answers a pending CONNECT: sends CONNECT {"sid":id} ({"sid":id,"pid":pid} when s->pid is set;
 * to a v2 client: CONNECT without data) and adds s to its namespace. */
void sio_socket_accept(sio_socket_t *s);
/* Connection state recovery, on a pending CONNECT (v4 clients): s takes the id of the socket it
 * restores (1 to RSTORE_ID_MAX base64url characters; 0, or -1 when s is not pending or a connected
 * socket of the namespace has that id) and the pid its CONNECT reply carries (a copy). */
int sio_socket_set_id(sio_socket_t *s, const char *id, size_t len);
void sio_socket_set_pid(sio_socket_t *s, const char *pid, size_t len);
/* Answers a pending CONNECT with CONNECT_ERROR carrying json (an object {"message":...}, in the
 * parser's format: JSON text, or msgpack bytes with the msgpack parser; for a v2 client, which
 * reads it as an ERROR packet, the reference sends err.data || err.message). */
void sio_socket_refuse(sio_socket_t *s, const char *json, size_t len);
/* The same with the object {"message": message} (a static text that needs no escaping), in the
 * server's parser format. */
void sio_socket_refuse_message(sio_socket_t *s, const char *message);
/* The Engine.IO protocol of s's client: 4, or 3 for a Socket.IO v2 client (allowEIO3); 4 once s
 * is closed. */
int sio_socket_protocol(const sio_socket_t *s);

/* Sends one packet (from sio_encode) and its attachments to s; takes references. */
void sio_socket_send(sio_socket_t *s, rbuf_t *pkt, rbuf_t *const *att, size_t natt);

/* Which sockets of a namespace an operation is for (the reference's BroadcastOptions): members of
 * any of `rooms` (every socket when nrooms is 0), minus members of any of `except`. A socket id
 * names that socket's own room. Each socket is selected once. */
typedef struct {
    const slice_t *rooms;
    size_t nrooms;
    const slice_t *except;
    size_t nexcept;
} sio_target_t;

/* A snapshot of the selected connected sockets, each with a reference held (so the caller may call
 * into Lua while using it). Returns the count; *out is freed by sio_release(). */
size_t sio_select(sio_server_t *srv, sio_nsp_t *nsp, const sio_target_t *t, sio_socket_t ***out);
void sio_release(sio_socket_t **v, size_t n);
/* Every socket of every client (connecting ones too), referenced as sio_select's. */
size_t sio_all_sockets(sio_server_t *srv, sio_socket_t ***out);
/* Sends to each socket of v still connected. With `volatile_`, sockets whose transport is busy
 * are skipped (the packet is dropped for them). Returns how many were sent to. */
size_t sio_send_many(sio_socket_t **v, size_t n, int volatile_, rbuf_t *pkt, rbuf_t *const *att, size_t natt);

/* Rooms of a connected socket. join/leave return 1 when something changed. */
int sio_socket_join(sio_socket_t *s, const char *room, size_t len);
int sio_socket_leave(sio_socket_t *s, const char *room, size_t len);
void sio_socket_leave_all(sio_socket_t *s);
/* Server-side disconnect: sends DISCONNECT, on_disconnect("server namespace disconnect");
 * with close, the whole client (every namespace and the connection) is closed too. */
void sio_socket_disconnect(sio_socket_t *s, int close);
/* Closes up to max clients (the oldest first): their sockets get on_disconnect(reason), then their
 * Engine.IO sessions close. Returns how many clients are left open. */
size_t sio_close_clients(sio_server_t *srv, size_t max, const char *reason);
/* Closes every client: sockets get on_disconnect(reason). */
void sio_server_close(sio_server_t *srv, const char *reason);
/* Frees the namespaces (after the loop ended: no client left, q_connect and q_resolve closed).
 * The upper layer's nsp->data must be released already. */
void sio_server_free(sio_server_t *srv);

static inline void sio_socket_ref(sio_socket_t *s) { s->refs++; }
void sio_socket_unref(sio_socket_t *s);
eio_session_t *sio_socket_session(const sio_socket_t *s); /* NULL once closed */

#endif
