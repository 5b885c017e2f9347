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
    /* v3 (Socket.IO v2 clients): text and binary payloads; a binary message re-encoded in either
     * form decodes to the same bytes */
    for (int mode = EIO_PAYLOAD_V3; mode <= EIO_PAYLOAD_V3_BIN; mode++) {
        eio_payload_init3(&it, p, size, mode, 16);
        while ((rc = eio_payload_next(&it, &pkt)) == 1) {
            if (!pkt.binary || pkt.type != EIO_MESSAGE)
                continue;
            rbuf_t *b = rbuf_from(pkt.data.ptr, pkt.data.len);
            b->flags |= RBUF_BINARY;
            for (int bin = 0; bin <= 1; bin++) {
                eio_payload_iter_t back;
                eio_packet_t q;
                out.len = 0;
                eio_payload_append3(&out, b, bin);
                eio_payload_init3(&back, out.base, out.len, bin ? EIO_PAYLOAD_V3_BIN : EIO_PAYLOAD_V3, 0);
                if (eio_payload_next(&back, &q) != 1 || !q.binary || q.type != EIO_MESSAGE || q.data.len != pkt.data.len ||
                    (q.data.len && memcmp(q.data.ptr, pkt.data.ptr, q.data.len) != 0) || eio_payload_next(&back, &q) != 0)
                    abort();
                eio_payload_free(&back);
            }
            rbuf_unref(b);
        }
        if (rc > 0 || rc < EIO_PKT_ETOOMANY)
            abort();
        eio_payload_free(&it);
    }
    buf_free(&out);
    eio_decode_ws(0, p, size, &pkt);
    eio_decode_ws(1, p, size, &pkt);
    buf_t scratch = BUF_INIT;
    eio_decode_ws3(0, p, size, &scratch, &pkt);
    eio_decode_ws3(1, p, size, &scratch, &pkt);
    buf_free(&scratch);
    return 0;
}
