/* libFuzzer harness for permessage-deflate (pmd.c): the first byte picks what the rest is.
 *   0: a Sec-WebSocket-Extensions value, negotiated under one of 8 option sets (byte 1): the answer
 *      must be short enough and name windows of 8..15;
 *   1: a client's compressed messages, inflated in pieces (sizes from the data) with a small
 *      maximum: never more than it comes out; the window saved between messages is used again;
 *   2: a message compressed at a window from byte 1, then inflated in pieces: the same bytes back.
 * clang -std=c11 -D_GNU_SOURCE -Isrc -g -O1 -fsanitize=fuzzer,address,undefined
 *   tests/fuzz/fuzz_pmd.c src/pmd.c src/zip.c src/jsnum.c src/buf.c -lz -lm -o build/fuzz/fuzz_pmd */
#include <stdlib.h>
#include <string.h>

#include "pmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX 3000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pmd_inflater_t *z;
    static const zip_params_t zp = ZIP_DEFAULTS;
    if (size < 2)
        return 0;
    if (z == NULL)
        z = pmd_inflater_new(); /* kept across inputs, as ws.c lends one to many connections */
    uint8_t mode = data[0] % 3, arg = data[1];
    const uint8_t *p = data + 2;
    size_t n = size - 2;
    if (mode == 0) {
        pmd_config_t cfg = {1, 1024, (int8_t)(arg % 3) - 1, arg & 4 ? 1 : 0, arg & 8 ? 10 : arg & 16 ? -1 : 0,
                            arg & 32 ? 12 : arg & 64 ? -1 : 0, ZIP_DEFAULTS};
        pmd_params_t pp;
        char answer[PMD_ANSWER_MAX];
        if (pmd_negotiate(&cfg, (const char *)p, n, &pp, answer) == 1 &&
            (strlen(answer) >= PMD_ANSWER_MAX - 1 || pp.server_bits < 8 || pp.server_bits > 15 ||
             pp.client_bits < 8 || pp.client_bits > 15))
            abort();
        return 0;
    }
    buf_t out = BUF_INIT;
    int over;
    if (mode == 1) { /* messages end at each 0xfe byte; each goes in pieces of 1 + arg % 16 bytes */
        pmd_window_t *w = NULL;
        int bits = 8 + arg % 8, r = PMD_OK;
        pmd_inflate_start(z, bits, NULL);
        for (size_t off = 0; off <= n;) {
            const uint8_t *end = memchr(p + off, 0xfe, n - off);
            size_t len = end ? (size_t)(end - (p + off)) : n - off;
            for (size_t k = 0; k < len && r == PMD_OK; k += 1 + arg % 16)
                r = pmd_inflate(z, p + off + k, len - k < 1u + arg % 16 ? len - k : 1u + arg % 16, &out, MAX);
            if (r == PMD_OK)
                r = pmd_inflate_finish(z, &out, MAX, &over);
            if (out.len > MAX)
                abort();
            if (r == PMD_OK && !over)
                w = pmd_window_save(z, w); /* context takeover: the next message refers to this one */
            else
                pmd_window_free(w), w = NULL;
            pmd_inflate_start(z, bits, w);
            out.len = 0;
            r = PMD_OK;
            off += len + 1;
        }
        pmd_window_free(w);
    } else {
        rbuf_t *c = pmd_compress(&zp, 8 + arg % 8, p, n);
        if (c != NULL) {
            pmd_inflate_start(z, 8 + arg % 8, NULL);
            size_t step = 1 + arg / 8;
            for (size_t off = 0; off < c->len; off += step)
                if (pmd_inflate(z, rbuf_payload(c) + off, c->len - off < step ? c->len - off : step, &out, n) != PMD_OK)
                    abort();
            if (pmd_inflate_finish(z, &out, n, &over) != PMD_OK || out.len != n || memcmp(out.base, p, n) != 0)
                abort();
            rbuf_unref(c);
        }
    }
    buf_free(&out);
    return 0;
}
