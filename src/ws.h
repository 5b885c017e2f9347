/* ws: WebSocket (RFC 6455) server connections on wslay.
 * - Handshake: ws_check_request() validates the upgrade, ws_accept() answers 101.
 * - Input: frames are parsed by a wslay event context that exists only while the connection is
 *   receiving (a partial frame or a fragmented message); an idle connection holds none.
 * - Output: encode once. ws_frame() writes a frame header into an rbuf's headroom once; every
 *   recipient then shares the same bytes (server frames are unmasked, so they are identical).
 * - Compression: permessage-deflate (pmd.h) when the limits enable it and the client offers it:
 *   compressed messages are inflated, bounded by max_message while they inflate; a message of the
 *   threshold or more goes out compressed, compressed once (rbuf_t.alt) for every recipient.
 * - Close: ws_close() sends a close frame and closes after it is written. */
#ifndef SL_WS_H
#define SL_WS_H

#include <stdint.h>

#include "buf.h"
#include "http.h"
#include "net.h"
#include "pmd.h"

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
    uint64_t max_message;        /* bytes per message (maxHttpBufferSize), compressed or inflated;
                                    over it: close 1009 */
    const pmd_config_t *deflate; /* perMessageDeflate; NULL or not enabled: never negotiated. Not
                                    copied: it must outlive the connections */
} ws_limits_t;

/* 0 if req is a valid WebSocket upgrade (GET, Upgrade: websocket, Connection: upgrade,
 * Sec-WebSocket-Version: 13, a Sec-WebSocket-Key, and a Sec-WebSocket-Extensions that lim's
 * perMessageDeflate can answer, when it is on); else -1 and *err says why. */
int ws_check_request(const http_req_t *req, const ws_limits_t *lim, const char **err);

/* Answers 101 Switching Protocols (with the extra headers) and takes the connection from http.
 * Nothing is read until ws_start(), so the caller can store the returned pointer first.
 * If req fails ws_check_request() it is answered 400 instead and NULL is returned. */
ws_conn_t *ws_accept(http_req_t *req, const http_hdr_t *extra, size_t nextra, const ws_handler_t *h,
                     const ws_limits_t *lim, void *ud);
/* Processes bytes the client sent along with the handshake, then reads. Callbacks may fire inside. */
void ws_start(ws_conn_t *ws);

/* Writes the frame header for b (text, or binary if b->flags has RBUF_BINARY; RSV1 if it has
 * RBUF_DEFLATED) into its headroom, once.
 * Returns b. After this, b's frame is data + RBUF_HEADROOM - b->hdr, length b->hdr + b->len. */
rbuf_t *ws_frame(rbuf_t *b);
/* Sends b as one frame (framing it first if needed), compressed when permessage-deflate was agreed
 * and b is at least the threshold long (b->alt: compressed once for all). Takes a reference only if
 * it must queue. */
void ws_send(ws_conn_t *ws, rbuf_t *b);
/* Sends b as one frame whose payload is the byte `prefix` then b's payload (an Engine.IO v3 binary
 * message: its type byte, then the bytes): the header and that byte are written for this
 * connection, b's payload is queued by reference, still shared; or, when permessage-deflate was
 * agreed and the whole is at least the threshold long, the whole compressed for this connection. */
void ws_send_prefixed(ws_conn_t *ws, uint8_t prefix, rbuf_t *b);
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
/* 1 if permessage-deflate was agreed with ws; *window (may be NULL) gets the bytes of the client's
 * window kept between its messages (context takeover). For tests. */
int ws_deflate_state(const ws_conn_t *ws, size_t *window);

#endif
