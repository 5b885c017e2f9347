/* ws: WebSocket (RFC 6455) server connections on wslay.
 * - Handshake: ws_check_request() validates the upgrade, ws_accept() answers 101.
 * - Input: frames are parsed by a wslay event context that exists only while the connection is
 *   receiving (a partial frame or a fragmented message); an idle connection holds none.
 * - Output: encode once. ws_frame() writes a frame header into an rbuf's headroom once; every
 *   recipient then shares the same bytes (server frames are unmasked, so they are identical).
 * - Close: ws_close() sends a close frame and closes after it is written. */
#ifndef SL_WS_H
#define SL_WS_H

#include <stdint.h>

#include "buf.h"
#include "http.h"
#include "net.h"

typedef struct ws_conn ws_conn_t;

typedef enum {
    WS_CLOSED_PEER = 0, /* the peer sent a close frame or closed TCP cleanly */
    WS_CLOSED_ERROR,    /* protocol violation, bad UTF-8, too big, reset, slow reader */
    WS_CLOSED_LOCAL,    /* ws_close() */
} ws_close_reason_t;

typedef struct {
    /* One whole message. `data` is borrowed: use or copy it before returning. The handler may call
     * ws_close() inside; freeing is deferred. */
    void (*on_message)(ws_conn_t *ws, int binary, const char *data, size_t len, void *ud);
    /* The connection is gone. Last callback for ws; ws is freed after it returns. */
    void (*on_close)(ws_conn_t *ws, ws_close_reason_t why, void *ud);
} ws_handler_t;

/* The other WebSocket limits (fragments per message, output backpressure, close timeout) are the
 * connection's: ws_accept takes them from http_limits(req) (ws_max_fragments, ws_pause_bytes,
 * ws_close_timeout). ws_accept keeps its own copy of all of them, shared by the connections that
 * have the same values: `lim` need not outlive the call. */
typedef struct {
    uint64_t max_message; /* bytes per message (maxHttpBufferSize); over it: close 1009 */
} ws_limits_t;

/* 0 if req is a valid WebSocket upgrade (GET, Upgrade: websocket, Connection: upgrade,
 * Sec-WebSocket-Version: 13, a Sec-WebSocket-Key); else -1 and *err says why. */
int ws_check_request(const http_req_t *req, const char **err);

/* Answers 101 Switching Protocols (with the extra headers) and takes the connection from http.
 * Nothing is read until ws_start(), so the caller can store the returned pointer first.
 * If req fails ws_check_request() it is answered 400 instead and NULL is returned. */
ws_conn_t *ws_accept(http_req_t *req, const http_hdr_t *extra, size_t nextra, const ws_handler_t *h,
                     const ws_limits_t *lim, void *ud);
/* Processes bytes the client sent along with the handshake, then reads. Callbacks may fire inside. */
void ws_start(ws_conn_t *ws);

/* Writes the frame header for b (text, or binary if b->flags has RBUF_BINARY) into its headroom, once.
 * Returns b. After this, b's frame is data + RBUF_HEADROOM - b->hdr, length b->hdr + b->len. */
rbuf_t *ws_frame(rbuf_t *b);
/* Sends b as one frame (framing it first if needed). Takes a reference only if it must queue. */
void ws_send(ws_conn_t *ws, rbuf_t *b);
/* Sends a close frame with code (and a short reason; code 0: no code and no reason, the peer reads
 * 1005), then closes once it is written. Idempotent. */
void ws_close(ws_conn_t *ws, uint16_t code, const char *reason);
/* Closes the TCP connection now (no close frame). */
void ws_abort(ws_conn_t *ws);
/* Bytes queued for output. */
size_t ws_queued(const ws_conn_t *ws);

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + RFC 6455 GUID)), NUL-terminated. */
void ws_accept_key(const char *key, size_t keylen, char out[29]);
/* 1 while ws holds a wslay context (a frame or fragmented message in progress), else 0: an idle
 * connection holds none. For tests. */
int ws_has_ctx(const ws_conn_t *ws);

#endif
