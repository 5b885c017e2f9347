/* eio_packet: the Engine.IO v4 packet codec; see eio_packet.h.
 * Behaviour follows socketio/socket.io packages/engine.io-parser (decodePacket.ts, encodePacket.ts,
 * index.ts): one type character then the data; over polling, records are separated by 0x1e and a
 * record starting with 'b' is a base64 binary message. */
#include "eio_packet.h"

#include <string.h>

#include <openssl/evp.h>

/* ---------------------------------------------------------------- base64 */

/* EVP_EncodeBlock/EVP_DecodeBlock take an int length: large inputs are processed in chunks whose
 * sizes are multiples of 3 (encode) and 4 (decode), so every chunk but the last has no padding. */
#define B64_CHUNK_IN (3 * 4096)
#define B64_CHUNK_OUT (4 * 4096)

/* Appends the padded encoding of p[0, n) to out. */
void eio_base64_encode(buf_t *out, const unsigned char *p, size_t n)
{
    while (n > 0) {
        size_t take = n < B64_CHUNK_IN ? n : B64_CHUNK_IN;
        size_t enc = 4 * ((take + 2) / 3);
        buf_reserve(out, enc + 1); /* EVP_EncodeBlock writes a NUL after the output */
        int w = EVP_EncodeBlock((unsigned char *)out->base + out->len, p, (int)take);
        out->len += (size_t)w;
        p += take;
        n -= take;
    }
}

static int isb64(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* EVP_DecodeBlock is lenient (it skips surrounding whitespace and decodes '=' anywhere as zero bits)
 * and reports the length including the padding zeros, so the input is validated here first: only the
 * standard alphabet, a length that is a multiple of 4, and at most two '=' at the very end. Padding
 * is required (every client sends it). The bytes are appended to out, which is left as it was on
 * failure. */
int eio_base64_decode(buf_t *out, const char *p, size_t n)
{
    if (n % 4 != 0)
        return -1;
    size_t pad = 0;
    if (n >= 4 && p[n - 1] == '=')
        pad = p[n - 2] == '=' ? 2 : 1;
    for (size_t i = 0; i < n - pad; i++)
        if (!isb64((unsigned char)p[i]))
            return -1;

    size_t start = out->len;
    buf_reserve(out, n / 4 * 3);
    while (n > 0) {
        size_t take = n < B64_CHUNK_OUT ? n : B64_CHUNK_OUT;
        int w = EVP_DecodeBlock((unsigned char *)out->base + out->len, (const unsigned char *)p, (int)take);
        if (w < 0) {
            out->len = start;
            return -1;
        }
        out->len += (size_t)w;
        p += take;
        n -= take;
    }
    out->len -= pad; /* only the last chunk can carry padding */
    return 0;
}

/* ---------------------------------------------------------------- decoding */

/* A text packet: type digit then data. */
static int decode_text(const char *p, size_t n, eio_packet_t *out)
{
    if (n == 0)
        return EIO_PKT_EEMPTY;
    if (p[0] < '0' || p[0] > '6')
        return EIO_PKT_ETYPE;
    out->type = (eio_type_t)(p[0] - '0');
    out->binary = 0;
    out->data.ptr = p + 1;
    out->data.len = n - 1;
    return EIO_PKT_OK;
}

/* Over WebSocket a binary message is its own frame; a text frame starting with 'b' is not base64
 * here (the reference would decode it, but no client sends it: they all use binary frames). */
int eio_decode_ws(int binary, const char *p, size_t n, eio_packet_t *out)
{
    if (binary) {
        out->type = EIO_MESSAGE;
        out->binary = 1;
        out->data.ptr = n ? p : "";
        out->data.len = n;
        return EIO_PKT_OK;
    }
    return decode_text(p, n, out);
}

void eio_payload_init(eio_payload_iter_t *it, const char *p, size_t n, size_t max_packets)
{
    /* it->p == NULL marks the end, so an empty body (possibly p == NULL) still yields its one empty
     * record, which is an error as in the reference (decodePayload("") gives an error packet). */
    if (p == NULL)
        p = "";
    it->p = p;
    it->end = p + n;
    it->count = 0;
    it->max_packets = max_packets;
    it->scratch = (buf_t)BUF_INIT;
}

/* Every record is decoded, including an empty one after a trailing separator (an error, as
 * "split" in the reference yields it too). After an error the iterator is at its end: the caller
 * drops the whole payload, as the reference stops at its first error packet. */
int eio_payload_next(eio_payload_iter_t *it, eio_packet_t *out)
{
    if (it->p == NULL)
        return 0;
    const char *rec = it->p;
    const char *sep = memchr(rec, EIO_SEPARATOR, (size_t)(it->end - rec));
    size_t n = (size_t)((sep ? sep : it->end) - rec);
    it->p = sep ? sep + 1 : NULL;

    if (++it->count > it->max_packets && it->max_packets) {
        it->p = NULL;
        return EIO_PKT_ETOOMANY;
    }

    int rc;
    if (n > 0 && rec[0] == 'b') {
        it->scratch.len = 0;
        if (eio_base64_decode(&it->scratch, rec + 1, n - 1) != 0) {
            rc = EIO_PKT_EBASE64;
        } else {
            out->type = EIO_MESSAGE;
            out->binary = 1;
            out->data.ptr = it->scratch.base ? it->scratch.base : "";
            out->data.len = it->scratch.len;
            rc = EIO_PKT_OK;
        }
    } else {
        rc = decode_text(rec, n, out);
    }
    if (rc != EIO_PKT_OK) {
        it->p = NULL;
        return rc;
    }
    return 1;
}

void eio_payload_free(eio_payload_iter_t *it)
{
    buf_free(&it->scratch);
    it->p = NULL;
}

/* ---------------------------------------------------------------- encoding */

void eio_payload_append(buf_t *out, const rbuf_t *b)
{
    const char *payload = b->data + RBUF_HEADROOM;
    if (out->len > 0)
        buf_appendc(out, EIO_SEPARATOR);
    if (b->flags & RBUF_BINARY) {
        buf_appendc(out, 'b');
        eio_base64_encode(out, (const unsigned char *)payload, b->len);
    } else {
        buf_append(out, payload, b->len);
    }
}

rbuf_t *eio_packet_new(eio_type_t type, const char *data, size_t n)
{
    rbuf_t *b = rbuf_new(1 + n);
    char *p = rbuf_payload(b);
    p[0] = (char)('0' + (int)type);
    if (n)
        memcpy(p + 1, data, n);
    return b;
}
