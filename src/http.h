/* http: HTTP/1.1 server connections on llhttp (strict: no lenient flags).
 * Assembles one request at a time per connection, head and body bounded by http_limits_t, hands it
 * up complete, and writes responses. A request stays valid until it is answered with
 * http_respond() or taken over with http_detach() (WebSocket upgrade). While a request is
 * outstanding (a long-polling GET can wait for seconds), later pipelined bytes are kept, bounded,
 * and parsed once it is answered. The parser state exists only while the connection is open. */
#ifndef SL_HTTP_H
#define SL_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "net.h"

typedef struct http_conn http_conn_t;
typedef struct http_req http_req_t;

/* Limits of one client connection. Every connection begins as HTTP, so the connection-wide ones
 * (counts, and the WebSocket ones that apply after an upgrade: ws_accept reads them from here)
 * live here too. 0 in a field means its default, except where "0 = off" is said. */
typedef struct {
    size_t max_head;            /* request line + header bytes; over it: 431 (default 16384) */
    size_t max_headers;         /* header lines; over it: 431 (default 100) */
    size_t max_url;             /* URL bytes; over it: 414 (default 8192) */
    size_t max_body;            /* body bytes (maxHttpBufferSize, default 1e6): see http_req.too_large.
                                   A chunked body's chunk extensions count against it too */
    size_t max_chunk_ext;       /* chunk-extension bytes (";name=value") of one chunk; over it the
                                   request is too_large (Node's CVE-2024-22019 fix: 16384, the default) */
    size_t max_pipelined;       /* requests sent before the previous one was answered: the one that
                                   reaches it is answered with Connection: close and the bytes after
                                   it are dropped (default 16) */
    uint64_t header_timeout;    /* ms from the connect or a request's first byte to the end of its
                                   head; over: 408 and close (slowloris; default 10000) */
    uint64_t body_timeout;      /* ms from the end of the head to the end of the body; over: 408 and
                                   close (default 30000) */
    uint64_t keepalive_timeout; /* ms a keep-alive connection may idle between requests, then it
                                   is closed without a word (default 5000) */
    uint64_t send_timeout;      /* ms an answer may take to be written out once queued (a reader
                                   that never reads); then the connection is closed (default 10000) */
    size_t max_conns;           /* open connections (WebSockets included); a new one over it gets
                                   503 and is closed (0 = off, the default here; siolua's config
                                   sets the open-file limit less 64) */
    size_t max_conns_per_ip;    /* the same per client IP (0 = off, the default) */
    size_t ws_max_fragments;    /* WebSocket frames in one message; over: close 1009 (default 1024) */
    size_t ws_pause_bytes;      /* a WebSocket stops reading while more output than this is queued,
                                   so a client that pings but never reads cannot grow the pong
                                   queue (default 65536) */
    uint64_t ws_close_timeout;  /* ms a WebSocket close (our close frame, or our answer to the
                                   peer's) may take to be written; then TCP is closed (default 5000) */
} http_limits_t;

typedef struct {
    /* A complete request arrived (head + whole body, or head only when too_large is set).
     * The handler must answer it, now or later, with http_respond(), or take the connection with
     * http_detach(). `data` is the pointer given to http_conn_new(). */
    void (*on_request)(http_req_t *req, void *data);
    /* Optional: the request's head was accepted but its body never came whole: the connection was
     * reset or closed, the body timed out, or the body was malformed. req's head (method, url,
     * path, query, headers) is valid during the call, its body is not; it is never answered (the
     * connection is going). Called at most once per request, never for a delivered one. */
    void (*on_cut)(const http_req_t *req, void *data);
} http_handler_t;

/* HTTP methods we route on (others arrive as HTTP_M_OTHER). */
enum { HTTP_M_OTHER = 0, HTTP_M_GET, HTTP_M_POST, HTTP_M_OPTIONS, HTTP_M_HEAD };

struct http_req {
    http_conn_t *conn;
    uint8_t method;     /* HTTP_M_* */
    uint8_t keep_alive; /* the connection may serve another request after this one */
    uint8_t upgrade;    /* the client asked for a protocol upgrade (Upgrade + Connection: upgrade) */
    uint8_t too_large;  /* the body went over max_body: body is empty, answer 413 (the
                           connection closes after the answer) */
    slice_t url;        /* raw request target, e.g. "/socket.io/?EIO=4&transport=polling" */
    slice_t path;       /* url up to '?' (raw, not decoded) */
    slice_t query;      /* after '?' (raw), empty if none */
    size_t nheaders;
    const slice_t *names;  /* nheaders names, as sent */
    const slice_t *values; /* nheaders values, surrounding whitespace trimmed */
    buf_t body;            /* the whole body */
    /* Set by a handler that keeps the request (long-polling): called if the connection dies before
     * the answer. The request is invalid after it returns. */
    void (*on_abort)(http_req_t *req, void *data);
    void *abort_data;
};

/* Sets every 0 field of lim that has a default (above) to that default: the one place they live. */
void http_limits_fill(http_limits_t *lim);

/* Makes c an HTTP connection (owner of c) and starts reading. `data` is passed to the handler.
 * The connection keeps a copy of lim, with http_limits_fill() applied. */
http_conn_t *http_conn_new(net_conn_t *c, const http_handler_t *h, const http_limits_t *lim, void *data);

/* First header named `name` (ASCII case-insensitive); ptr == NULL if absent. */
slice_t http_header(const http_req_t *req, const char *name);
/* Every header named `name`, joined with ", " as Node joins a repeated list header; one alone is
 * returned as it is. tmp (initialised by the caller, who frees it) holds a joined value. */
slice_t http_header_all(const http_req_t *req, const char *name, buf_t *tmp);
/* Query parameter `name`, percent-decoded into *out (out->len reset first).
 * Returns 0 if present (possibly empty), -1 if absent. */
int http_query(const http_req_t *req, const char *name, buf_t *out);
/* The peer address ("127.0.0.1"). */
const char *http_peer(const http_req_t *req);
/* 1 if req came over TLS (HTTPS, WSS). */
int http_secure(const http_req_t *req);
/* The limits of req's connection, defaults filled in (for ws_accept). */
const http_limits_t *http_limits(const http_req_t *req);

typedef struct {
    const char *name;
    const char *value; /* NUL-terminated */
} http_hdr_t;

/* Answers req: status line, the given headers, Content-Length, Connection (keep-alive or close),
 * then body. Ends the request: req must not be used after. Never calls back synchronously.
 * Content-Length/Connection in hdrs are ignored (ours are authoritative). The connection closes
 * after the answer if the request was not keep-alive, was too_large, or was an upgrade. */
void http_respond(http_req_t *req, int status, const http_hdr_t *hdrs, size_t nhdrs, const void *body, size_t len);
/* Same as http_respond with a JSON body {"code":code,"message":msg} and
 * Content-Type: application/json (Engine.IO's error answer). */
void http_respond_json_error(http_req_t *req, int status, const http_hdr_t *hdrs, size_t nhdrs, int code,
                             const char *msg);

/* Ends HTTP on this connection (WebSocket upgrade): the request is released and the caller becomes
 * the owner of the returned connection (net_set_owner). Bytes the client sent after the request
 * head replace the content of *rest (an initialised buf_t: its storage is reused; the caller frees
 * it with buf_free). The connection comes back with no owner
 * and paused: set the owner, then net_resume() when ready to read. */
net_conn_t *http_detach(http_req_t *req, buf_t *rest);

/* The name of an HTTP_M_* method ("GET"), or NULL for HTTP_M_OTHER. */
const char *http_method_name(int method);

/* The standard reason phrase of a status ("Bad Request"). */
const char *http_status_text(int status);

#endif
