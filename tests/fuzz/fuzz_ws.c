/* libFuzzer harness for the WebSocket frame path: an upgrade request is assembled by http.c,
 * answered by ws_accept(), then the input's bytes go to ws.c (wslay underneath) as the client's
 * frames, in two reads cut where the first byte says: the first read arrives with the handshake
 * (ws_start feeds it), the second from the socket. Every message is echoed with ws_send(); an odd
 * message length closes with ws_close() from inside the callback. Runs on one end of a socketpair.
 * When the first byte's top bit is set, the handshake offers permessage-deflate (agreed, threshold
 * 16): RSV1 frames go through the inflater and the echoes of 16 bytes or more are compressed.
 * clang -std=c11 -D_GNU_SOURCE -Isrc -I/usr/share/include/llhttp -g -O1 -fsanitize=fuzzer,address,undefined
 *   tests/fuzz/fuzz_ws.c src/ws.c src/pmd.c src/zip.c src/jsnum.c src/utf8.c src/http.c src/net.c src/tq.c
 *   src/buf.c src/log.c
 *   /usr/share/llhttp/[a-z]*.c -luv -lwslay -lcrypto -lz -lm -o build/fuzz/fuzz_ws */
#include "http.h"
#include "ws.h"
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_message(ws_conn_t *ws, int binary, const char *msg, size_t len, void *ud)
{
    (void)ud;
    rbuf_t *b = rbuf_from(msg, len);
    if (binary)
        b->flags |= RBUF_BINARY;
    ws_send(ws, b);
    rbuf_unref(b);
    if (len & 1)
        ws_close(ws, 4000, "odd");
}

static void on_wsclose(ws_conn_t *ws, ws_close_reason_t why, void *ud)
{
    (void)ws, (void)why, (void)ud;
}

static const ws_handler_t wh = {on_message, on_wsclose};

static void on_request(http_req_t *req, void *ud)
{
    (void)ud;
    static const pmd_config_t pmd = {1, 16, -1, 0, 0, 0, ZIP_DEFAULTS};
    static const ws_limits_t wlim = {.max_message = 4096, .deflate = &pmd};
    ws_conn_t *ws = ws_accept(req, NULL, 0, &wh, &wlim, NULL);
    if (ws != NULL)
        ws_start(ws);
}

static const char hs[] = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
static const char hs_z[] = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                           "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static net_ctx_t ctx; /* 64 KiB read buffer: not on the stack */
    static const http_handler_t h = {on_request};
    static const http_limits_t lim = {.max_body = 4096, .ws_max_fragments = 16, .ws_pause_bytes = 256};
    int sv[2];
    if (size == 0 || size > 65536 - sizeof(hs_z) || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return 0;
    ctx.loop = uv_default_loop();
    net_conn_t *c = xcalloc(1, sizeof(*c));
    c->ctx = &ctx;
    ctx.nconns = 1;
    uv_tcp_init(ctx.loop, &c->tcp);
    uv_tcp_open(&c->tcp, sv[0]);
    http_conn_new(c, &h, &lim, NULL);
    size_t cut = 1 + (data[0] & 0x7f) % size;
    const char *hsx = data[0] & 0x80 ? hs_z : hs;
    size_t hslen = strlen(hsx);
    char *first = malloc(hslen + cut - 1);
    memcpy(first, hsx, hslen);
    memcpy(first + hslen, data + 1, cut - 1);
    c->ops->on_read(c, first, hslen + cut - 1); /* the handshake and the first frames */
    free(first);
    if (c->ops != NULL && !net_closing(c) && !net_paused(c))
        c->ops->on_read(c, (const char *)data + cut, size - cut);
    for (int i = 0; i < 4; i++)
        uv_run(ctx.loop, UV_RUN_NOWAIT);
    close(sv[1]);
    if (ctx.nconns > 0) /* still open: c not freed yet */
        net_close(c);
    uv_run(ctx.loop, UV_RUN_DEFAULT);
    return 0;
}
