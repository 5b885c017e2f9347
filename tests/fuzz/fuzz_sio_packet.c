/* libFuzzer harness for sio_packet: decode, and for every packet that decodes, encode it and check
 * that the encoding decodes to the same packet. Build and run: see tests/fuzz/README.md. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sio_packet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same(slice_t a, slice_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const sio_limits_t lim = {10, 256};
    sio_packet_t pkt, again;
    int rc = sio_decode((const char *)data, size, &lim, &pkt);
    if (rc != SIO_PKT_OK) {
        if (rc < SIO_PKT_EPAYLOAD || sio_strerror(rc) == NULL)
            abort();
        return 0;
    }
    if (memchr(pkt.nsp.ptr, ',', pkt.nsp.len) != NULL)
        abort();
    rbuf_t *b = sio_encode(&pkt);
    const char *enc = rbuf_payload(b);
    if (b->len < 2 || enc[0] != '4' || sio_decode(enc + 1, b->len - 1, &lim, &again) != SIO_PKT_OK)
        abort();
    slice_t main_nsp = SLICE_LIT("/");
    int nsp_ok = same(again.nsp, pkt.nsp) || (same(pkt.nsp, main_nsp) && same(again.nsp, main_nsp));
    if (again.type != pkt.type || again.attachments != pkt.attachments || again.id != pkt.id ||
        !same(again.data, pkt.data) || !nsp_ok)
        abort();
    rbuf_unref(b);
    return 0;
}
