/* libFuzzer harness for eio_packet: polling payloads, WebSocket packets and base64.
 * Build and run: see tests/fuzz/README.md. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "eio_packet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    eio_payload_iter_t it;
    eio_packet_t pkt;
    buf_t out = BUF_INIT;
    int rc;
    eio_payload_init(&it, p, size, 16);
    while ((rc = eio_payload_next(&it, &pkt)) == 1) {
        /* re-encoding a decoded binary message must give a payload that decodes to the same bytes */
        rbuf_t *b = rbuf_from(pkt.data.ptr, pkt.data.len);
        b->flags |= pkt.binary ? RBUF_BINARY : 0;
        out.len = 0;
        eio_payload_append(&out, b);
        if (pkt.binary) {
            buf_t back = BUF_INIT;
            eio_base64_decode(&back, out.base + 1, out.len - 1);
            if (back.len != pkt.data.len ||
                (back.len && memcmp(back.base, pkt.data.ptr, back.len) != 0))
                abort();
            buf_free(&back);
        }
        rbuf_unref(b);
    }
    if (rc > 0 || rc < EIO_PKT_ETOOMANY)
        abort();
    eio_payload_free(&it);
    buf_free(&out);
    eio_decode_ws(0, p, size, &pkt);
    eio_decode_ws(1, p, size, &pkt);
    return 0;
}
