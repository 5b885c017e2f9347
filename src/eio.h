/* eio: Engine.IO v4 server side - sessions, the polling and websocket transports, the upgrade from
 * one to the other, heartbeats, and the protocol's error answers.
 * The upper layer (sio) sees a session as an ordered, reliable message pipe: on_open, on_message,
 * eio_send(), eio_close(), on_close. Everything below (HTTP requests, WebSocket frames, which
 * transport carries the session right now) is hidden here.
 * Lifetime: eio owns sessions. A session is freed after on_close has returned and every transport
 * attached to it is gone, and then only from the loop (an idle callback), never inside an eio call:
 * a caller holding the pointer across eio_send() finds a closed session, not freed memory. The
 * pointer must not be kept after on_close. */
#ifndef SL_EIO_H
#define SL_EIO_H

#include <stdint.h>
#include <string.h>
#include <uv.h>

#include "buf.h"
#include "eio_packet.h"
#include "http.h"
#include "pmd.h"
#include "tq.h"
#include "zip.h"

typedef struct eio_server eio_server_t;
typedef struct eio_session eio_session_t;

enum { EIO_T_POLLING = 1, EIO_T_WEBSOCKET = 2 };

/* Engine.IO's error table (the reference's Server.errors / errorMessages). */
typedef enum {
    EIO_ERR_UNKNOWN_TRANSPORT = 0,
    EIO_ERR_UNKNOWN_SID = 1,
    EIO_ERR_BAD_HANDSHAKE_METHOD = 2,
    EIO_ERR_BAD_REQUEST = 3,
    EIO_ERR_FORBIDDEN = 4,
    EIO_ERR_UNSUPPORTED_PROTOCOL_VERSION = 5,
} eio_error_t;
const char *eio_error_message(eio_error_t code);

typedef struct {
    char **origins;     /* allowed origins: one is always sent, several are matched against Origin;
                           none with origin_any = 0 means CORS is off */
    size_t norigins;
    int origin_any;     /* "*" */
    char *methods;      /* "GET,POST" (the reference's cors default: GET,HEAD,PUT,PATCH,POST,DELETE) */
    char *allowed_headers; /* NULL: reflect Access-Control-Request-Headers */
    int credentials;
} eio_cors_t;

/* The reference's `cookie` option: a Set-Cookie with the session id on the handshake answer, for
 * load balancers that route on it (sticky sessions). name == NULL: no cookie (the default). */
typedef struct {
    char *name;                 /* "io" */
    char *path;                 /* "/" (NULL: no Path attribute) */
    char *domain;               /* NULL: none */
    char *same_site;            /* "Lax" (NULL: none) */
    long max_age;               /* seconds; < 0: none (a session cookie) */
    int http_only;              /* 1 */
    int secure;                 /* 0 */
} eio_cookie_t;

/* The reference's httpCompression option: polling answers of `threshold` bytes or more are
 * compressed, gzip or deflate as the request's Accept-Encoding prefers (engine.io's choice). */
typedef struct {
    int enabled;                /* 1, the reference's default (false turns it off) */
    size_t threshold;           /* 1024 */
    zip_params_t zlib;          /* level, memLevel, strategy, windowBits */
} eio_http_compression_t;

#define EIO_HTTP_COMPRESSION_DEFAULTS {1, 1024, ZIP_DEFAULTS}

typedef struct {
    uint64_t ping_interval;     /* ms, 25000 */
    uint64_t ping_timeout;      /* ms, 20000 */
    uint64_t upgrade_timeout;   /* ms, 10000 */
    size_t max_payload;         /* maxHttpBufferSize, 1e6 */
    int transports;             /* EIO_T_* bits, both */
    int allow_upgrades;         /* 1 */
    size_t max_packets_per_post;/* packets in one polling POST, 0 = unlimited */
    size_t max_buffered;        /* bytes queued for a polling client between two GETs */
    uint64_t allow_timeout;     /* ms allowRequest may take to answer; then the request is refused */
    int allow_eio3;             /* allowEIO3: protocol v3 (Socket.IO v2 clients) too, 0 */
    eio_cors_t cors;
    eio_cookie_t cookie;
    eio_http_compression_t http_compression;
    pmd_config_t per_message_deflate; /* WebSocket permessage-deflate (off by default) */
} eio_config_t;

/* Frees the CORS and cookie strings of cfg (owned by whoever filled them in). */
void eio_config_free(eio_config_t *cfg);

/* What the upper layer can know of the request that opened a session (socket.handshake). */
typedef struct {
    slice_t url;           /* raw request target */
    slice_t query;         /* raw query string */
    size_t nheaders;
    const char *headers;   /* nheaders "name\0value\0" pairs, packed (no slice arrays: this copy
                              lives as long as the session); walk them with eio_header_next() */
    const char *address;   /* peer IP */
    uint64_t issued;       /* ms since the epoch */
    int secure;            /* the request came over TLS */
} eio_handshake_t;

/* Reads the header at *p (a position in eio_handshake_t.headers) and moves *p to the next one.
 * Header names and values never hold a NUL: llhttp refuses them. */
static inline void eio_header_next(const char **p, slice_t *name, slice_t *value)
{
    name->ptr = *p;
    name->len = strlen(*p);
    *p += name->len + 1;
    value->ptr = *p;
    value->len = strlen(*p);
    *p += value->len + 1;
}

typedef struct {
    /* A new session is open (the open packet is on its way). */
    void (*on_open)(eio_session_t *s, void *ud);
    /* A message packet. data is borrowed. May close the session inside. */
    void (*on_message)(eio_session_t *s, int binary, const char *data, size_t len, void *ud);
    /* The session closed (reason as the reference: "transport close", "transport error",
     * "ping timeout", "parse error", "forced close"). Last call for s. */
    void (*on_close)(eio_session_t *s, const char *reason, void *ud);
    /* The session moved to WebSocket. Optional. */
    void (*on_upgrade)(eio_session_t *s, void *ud);
} eio_handler_t;

/* Observers: the reference's engine events (io.engine.on(...)), for a layer that watches sessions
 * it does not own. Every field is optional. They may call into Lua: eio holds a reference on the
 * session across each call and re-checks its state afterwards. */
typedef struct {
    /* A session opened ("connection"), after h->on_open and after the open packet was answered. */
    void (*on_connection)(eio_session_t *s, void *ud);
    /* A packet from the client ("packet"), before eio acts on it; p->data is borrowed. Only for
     * open sessions; probe packets of an upgrade are not reported (as the reference). */
    void (*on_packet)(eio_session_t *s, const eio_packet_t *p, void *ud);
    /* A message ("data", "message"), before h->on_message (which is skipped if the observer closed
     * the session). data borrowed. */
    void (*on_message)(eio_session_t *s, int binary, const char *data, size_t len, void *ud);
    /* The session moved to WebSocket ("upgrade"), after h->on_upgrade. */
    void (*on_upgrade)(eio_session_t *s, void *ud);
    /* The session closed, after h->on_close (s is still valid during the call). */
    void (*on_close)(eio_session_t *s, const char *reason, void *ud);
    /* A request was refused from the error table ("connection_error"), before the answer. The
     * event's message is the table's (eio_error_message(code)); context is the refusal's own
     * message (allowRequest's, which the answer carries) or NULL; name is the reference's
     * context.name ("INVALID_ORIGIN", "TRANSPORT_MISMATCH", ...) or NULL. */
    void (*on_error)(const http_req_t *req, eio_error_t code, const char *context, const char *name, void *ud);
    /* The headers of a 200 polling answer or a 101 ("headers"; also "initial_headers" when
     * `initial`, the handshake). hdrs[0..n) are eio's own (Content-Type, cache-control); the
     * observer may replace values, remove entries and append up to cap - n, and returns the new
     * count. Its strings must stay valid until its next call. CORS headers are added after. */
    size_t (*on_headers)(const http_req_t *req, int initial, http_hdr_t *hdrs, size_t n, size_t cap, void *ud);
    /* One of the EIO_W_* events below, for a session that watches it (eio_session_watch): pkts are
     * the packets concerned (borrowed), n their count. May call into Lua, like the others. */
    void (*on_notify)(eio_session_t *s, unsigned what, rbuf_t *const *pkts, size_t n, void *ud);
} eio_observer_t;

/* The reference's per-packet engine events, reported to on_notify only for the sessions that watch
 * them, so that no other session pays for them. */
enum {
    EIO_W_PACKET_CREATE = 1, /* a packet of the session is about to be queued ("packetCreate"): pkts[0] */
    EIO_W_FLUSH = 2,         /* packets go to the transport ("flush"): a polling answer's, or each
                                packet on a WebSocket */
    EIO_W_DRAIN = 4,         /* after each flush ("drain"), n = 0 */
    EIO_W_HEARTBEAT = 8,     /* a pong came ("heartbeat"), n = 0 */
    EIO_W_UPGRADING = 16,    /* a probe sent 2probe and was answered ("upgrading"), n = 0 */
};

/* Headers an observer may add to one answer. */
#define EIO_MAX_EXTRA_HEADERS 16

/* allowRequest: a handshake request waits for its owner's decision, given with eio_allow_done()
 * during the call or later (after a timer, a lookup), within cfg->allow_timeout: past it the
 * request is refused (403) with a warning. req is valid during the call only; an owner that
 * answers later keeps `a` with eio_allow_ref() and drops it with eio_allow_unref(). */
typedef struct eio_allow eio_allow_t;
typedef void (*eio_allow_cb)(eio_allow_t *a, const http_req_t *req, void *ud);
/* Answers a: 1 accepts the handshake, 0 refuses it (403 Forbidden, with `message` if not NULL; it
 * is copied). Ignored once a was answered, timed out, or its client went away. After the call,
 * the handshake may have happened (observers called). */
void eio_allow_done(eio_allow_t *a, int ok, const char *message);
/* 1 while a waits for its answer. */
int eio_allow_pending(const eio_allow_t *a);
void eio_allow_ref(eio_allow_t *a);
void eio_allow_unref(eio_allow_t *a);

struct eio_server {
    uv_loop_t *loop;
    const eio_config_t *cfg;
    const eio_handler_t *h;
    void *ud;
    const http_limits_t *http_limits;
    eio_allow_cb allow_request;   /* optional, set by the owner after init */
    void *allow_ud;
    const eio_observer_t *obs;    /* optional, set by the owner after init */
    void *obs_ud;
    void (*on_freed)(eio_server_t *srv); /* see eio_server_shutdown */
    int shutting;                 /* eio_server_shutdown was called */
    char cookie_buf[512];         /* the Set-Cookie being written (cookie option) */
    int ntimers;                  /* handles not yet closed (5 timers + the reaper) */
    size_t nalive;                /* sessions not yet freed (closed ones included) */
    struct eio_session *zombies;  /* closed sessions freed by the reaper (deferred free) */
    uv_idle_t reaper;
    struct eio_session **buckets; /* sid -> session hash, chained */
    size_t nbuckets;
    size_t nsessions;
    tq_t q_ping;     /* sessions waiting to send the next ping (pingInterval) */
    tq_t q_pong;     /* sessions waiting for a pong (pingTimeout); also closing polling sessions */
    tq_t q_upgrade;  /* WebSocket probes waiting for the upgrade packet (upgradeTimeout) */
    tq_t q_allow;    /* handshakes waiting for allowRequest's answer (allow_timeout) */
    tq_t q_ping3;    /* v3 sessions waiting for the client's next ping (pingInterval + pingTimeout) */
    struct metrics *metrics; /* handshakes, refusals, upgrades are counted there (NULL: not counted) */
};

void eio_server_init(eio_server_t *srv, uv_loop_t *loop, const eio_config_t *cfg, const http_limits_t *lim,
                     const eio_handler_t *h, void *ud);
/* The heartbeat and upgrade deadlines wait for the loop to poll after them (tq_clock_t): a pong
 * that arrived during a stall is read before its session is judged. */
void eio_server_watch(eio_server_t *srv, const tq_clock_t *clock);
/* Closes every session with `reason` and releases the timers. */
void eio_server_close(eio_server_t *srv, const char *reason);
/* The same, then calls on_freed(srv) from the loop once the timers are closed, so that srv's
 * memory (if it was allocated) can be freed there. Never calls on_freed synchronously. */
void eio_server_shutdown(eio_server_t *srv, const char *reason, void (*on_freed)(eio_server_t *srv));
/* A snapshot of the open sessions, each with a reference held (so the caller may call into Lua
 * while walking it). Returns the count; release with eio_sessions_release(). */
size_t eio_server_sessions(eio_server_t *srv, eio_session_t ***out);
void eio_sessions_release(eio_session_t **v, size_t n);

/* Handles a request whose path is the Engine.IO path: handshake, poll, post, upgrade, preflight,
 * or the error answer. Always answers (or takes) req. */
void eio_handle_request(eio_server_t *srv, http_req_t *req);
/* A request on the Engine.IO path was cut before its body was whole (http_handler_t.on_cut): a
 * polling POST of an open session closes it with "transport error", as the reference's polling
 * transport does when its data request closes prematurely. Anything else is ignored. */
void eio_handle_cut(eio_server_t *srv, const http_req_t *req);
/* Adds the CORS headers for req to hdrs (at most 5 entries, pointing into static or req memory).
 * Returns the number added. Used for every answer on the Engine.IO path. */
size_t eio_cors_headers(const eio_config_t *cfg, const http_req_t *req, http_hdr_t *hdrs);

/* Queues a packet (an rbuf as described in eio_packet.h) for the session; takes a reference.
 * A no-op once the session is closing. */
void eio_send(eio_session_t *s, rbuf_t *pkt);
/* Closes the session: pending packets are flushed first where the transport allows, then
 * on_close(s, "forced close") follows (possibly synchronously). */
void eio_close(eio_session_t *s);

const char *eio_session_id(const eio_session_t *s);
/* 1 if a packet sent now would go out at once (a GET is held, or the WebSocket has nothing
 * queued): volatile packets are only sent then. */
int eio_session_writable(const eio_session_t *s);
int eio_session_transport(const eio_session_t *s); /* EIO_T_* */
/* The Engine.IO protocol revision of the session: 4, or 3 (a Socket.IO v2 client, allowEIO3). In
 * v3 the client pings every pingInterval and the server answers; a client that sends no ping for
 * pingInterval + pingTimeout is closed ("ping timeout"), also after an upgrade (the reference
 * stops judging a v3 session once it has upgraded). */
int eio_session_protocol(const eio_session_t *s);
const eio_handshake_t *eio_session_handshake(const eio_session_t *s);
void *eio_session_data(const eio_session_t *s);
void eio_session_set_data(eio_session_t *s, void *data);
/* A second slot for the observer (eio_observer_t), independent of the owner's. */
void *eio_session_obs_data(const eio_session_t *s);
void eio_session_set_obs_data(eio_session_t *s, void *data);
/* 1 while the session is open (not closing or closed). */
int eio_session_is_open(const eio_session_t *s);
/* 1 once the session has moved from polling to WebSocket (the reference's socket.upgraded). */
int eio_session_upgraded(const eio_session_t *s);
/* The EIO_W_* events the observer gets for s (replaces the previous set). */
void eio_session_watch(eio_session_t *s, unsigned what);

/* A new random id: 20 characters of base64url from 15 bytes of OpenSSL RAND_bytes. */
void eio_generate_id(char out[21]);
/* --workers: this process is worker `index` (0..4095); every id generated from now on names it in
 * its first two characters, so that any worker can tell which one holds a session (set once, by
 * main, before serving). */
void eio_set_worker(int index);
/* The worker a 20-character id names (the inverse of the above), or -1 for anything else. */
int eio_worker_of(const char *id, size_t len);

#endif
