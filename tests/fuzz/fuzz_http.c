/* libFuzzer harness for the HTTP request assembly (http.c on llhttp, small limits). The input is
 * fed in two reads cut where its first byte says, through a real net connection on one end of a
 * socketpair (responses go to the other end, unread); every request is answered at once.
 * clang -std=c11 -D_GNU_SOURCE -Isrc -I/usr/share/include/llhttp -g -O1 -fsanitize=fuzzer,address,undefined
 *   tests/fuzz/fuzz_http.c src/http.c src/net.c src/tq.c src/buf.c src/log.c /usr/share/llhttp/[a-z]*.c -luv -o build/fuzz/fuzz_http */
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_request(http_req_t *req, void *ud)
{
    buf_t v = BUF_INIT;
    (void)ud;
    http_query(req, "sid", &v);
    slice_t h = http_header(req, "host");
    if (req->upgrade && h.len == 1) { /* exercise http_detach too */
        net_close(http_detach(req, &v));
        buf_free(&v);
        return;
    }
    http_respond(req, req->too_large ? 413 : 200, NULL, 0, req->body.base, req->body.len);
    buf_free(&v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static net_ctx_t ctx; /* 64 KiB read buffer: not on the stack */
    static const http_handler_t h = {on_request};
    static const http_limits_t lim = {.max_head = 1024, .max_headers = 16, .max_url = 256, .max_body = 4096};
    int sv[2];
    if (size == 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return 0;
    ctx.loop = uv_default_loop();
    net_conn_t *c = xcalloc(1, sizeof(*c));
    c->ctx = &ctx;
    ctx.nconns = 1;
    uv_tcp_init(ctx.loop, &c->tcp);
    uv_tcp_open(&c->tcp, sv[0]);
    http_conn_new(c, &h, &lim, NULL);
    size_t cut = 1 + data[0] % size;
    c->ops->on_read(c, (const char *)data + 1, cut - 1);
    if (c->ops != NULL && !net_closing(c))
        c->ops->on_read(c, (const char *)data + cut, size - cut);
    for (int i = 0; i < 8; i++) /* pipelined requests resume from the loop */
        uv_run(ctx.loop, UV_RUN_NOWAIT);
    close(sv[1]);
    if (ctx.nconns > 0) /* still open: c not freed yet */
        net_close(c);
    uv_run(ctx.loop, UV_RUN_DEFAULT);
    return 0;
}
