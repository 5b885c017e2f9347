/* loopback: the unit tests' network harness. The server under test runs on a uv loop in the test
 * process, listening on 127.0.0.1:0 through net; clients are plain non-blocking sockets that the
 * test drives between loop turns. Every wait is for an event (bytes, EOF, a condition) and ends at
 * a generous wall-clock deadline (LB_DEADLINE_MS) rather than after a fixed sleep; a wait that
 * reaches it says so on stderr and the test's own checks then fail.
 * Also here: the client side of HTTP/1.1 (one response at a time) and of WebSocket (masked
 * frames out, server frames in), shared by the tests of http, ws, eio and sio. */
#ifndef SL_TEST_LOOPBACK_H
#define SL_TEST_LOOPBACK_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "net.h"

/* How long any single wait may take: far more than anything takes on a loaded 2-core machine
 * under ASan; it only bounds a test that is going to fail. */
#define LB_DEADLINE_MS 10000

typedef struct {
    uv_loop_t loop;
    net_ctx_t net;
} lb_t;

/* ---------------------------------------------------------------- loop and listener */

/* Initialises lb->loop and listens on 127.0.0.1 with a free port. Returns 0 or a UV_E* code. */
int lb_start(lb_t *lb, net_accept_cb on_accept, void *data);
/* Waits for every server connection to close (the test closes its client sockets first), stops
 * the listener, runs the loop until no handle is left and closes it. Returns 0, or -1 when a
 * connection or handle was left behind (they are printed on stderr). */
int lb_stop(lb_t *lb);

/* A deadline LB_DEADLINE_MS from now (uv_hrtime based), for LB_UNTIL and lb_turn. */
uint64_t lb_deadline(void);
/* One turn: waits (a few ms at most) until the loop has I/O or a timer due, or fd (if >= 0) is
 * readable, then runs the loop once without blocking. Returns 0 (without running it) once
 * `deadline` has passed. */
int lb_turn(lb_t *lb, int fd, uint64_t deadline);
/* Runs the loop until cond holds (evaluated between turns) or the deadline passes:
 *   LB_UNTIL(&s.lb, s.nclosed == 1); CHECK_EQ_INT(s.nclosed, 1); */
#define LB_UNTIL(lb, cond) for (uint64_t lb_end_ = lb_deadline(); !(cond) && lb_turn((lb), -1, lb_end_);)
/* Runs the loop until nothing is ready (no input unread by the server, no timer due, nothing
 * closing): for steps that produce nothing to wait for, and to make the server read what a client
 * just sent before it sends more. */
void lb_settle(lb_t *lb);
/* Runs the loop for about ms milliseconds (to show that something does NOT happen). */
void lb_run_for(lb_t *lb, int ms);

/* ---------------------------------------------------------------- client sockets */

/* A client socket connected to lb's listener: non-blocking, TCP_NODELAY. -1 on error. */
int lb_connect(lb_t *lb);
/* Writes all n bytes (waiting for room without running the loop: use it for what fits in the
 * socket buffers, or with a loop that reads). */
void lb_send(int fd, const void *p, size_t n);
void lb_sends(int fd, const char *s);
/* Runs the loop and appends what fd receives to *in until it holds `want` bytes, or until EOF
 * when want == 0. Returns 1 when EOF (or a reset) was seen, 0 otherwise. */
int lb_pump(lb_t *lb, int fd, buf_t *in, size_t want);

/* ---------------------------------------------------------------- HTTP client */

/* Sends a request: "METHOD target HTTP/1.1", Host, the given header lines (each ending in CRLF,
 * or NULL), then Content-Length and the body when body != NULL. */
void lb_request(int fd, const char *method, const char *target, const char *headers, const void *body, size_t len);

typedef struct {
    int status;
    slice_t head; /* status line and headers, without the blank line */
    slice_t body; /* Content-Length bytes (none without Content-Length) */
    size_t size;  /* bytes of the whole response in the buffer */
} lb_response_t;

/* Reads one whole response from the front of *in (running the loop and reading fd as needed).
 * The slices point into *in: buf_consume(in, r->size) when done. Returns 0, or -1 if no whole
 * response came (EOF, deadline, a head that is not HTTP). */
int lb_response(lb_t *lb, int fd, buf_t *in, lb_response_t *r);
/* The value of header `name` (ASCII case-insensitive) in r, ptr == NULL if absent. */
slice_t lb_header(const lb_response_t *r, const char *name);

/* ---------------------------------------------------------------- WebSocket client */

/* The client handshake's headers (a fixed key) and the matching Sec-WebSocket-Accept. */
#define LB_WS_HEADERS                                                                                                  \
    "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n"                           \
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define LB_WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

/* Connects and sends a WebSocket handshake for `target` ("/socket.io/?EIO=4&transport=websocket"),
 * then reads the answer into *in. Returns the fd once a 101 came (what followed it stays in *in),
 * or -1 (the socket is closed; *in holds what came). */
int lb_ws_connect(lb_t *lb, const char *target, buf_t *in);
/* Appends a client frame (masked with a fixed key) to b. */
void lb_ws_frame(buf_t *b, int fin, int op, const void *payload, size_t len);
/* Sends one client frame (op 1 text, 2 binary, 0 continuation, 8 close, 9 ping, ...). */
void lb_ws_send(int fd, int fin, int op, const void *payload, size_t len);
/* Reads one server frame from the front of *in (reading fd as needed), checks that it is not
 * masked, puts its payload in *payload (replaced) and consumes it. Returns its first byte (FIN and
 * opcode: 0x81 text, 0x82 binary, 0x88 close, ...), or -1 (EOF, deadline, a masked frame). */
int lb_ws_read(lb_t *lb, int fd, buf_t *in, buf_t *payload);

#endif
