/* eio_packet: the Engine.IO v4 packet codec; see eio_packet.h.
 * Behaviour follows socketio/socket.io packages/engine.io-parser (decodePacket.ts, encodePacket.ts,
 * index.ts): one type character then the data; over polling, records are separated by 0x1e and a
 * record starting with 'b' is a base64 binary message. */
#include "eio_packet.h"

#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>

#include "utf8.h"

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

/* Decoding follows Node's Buffer.from(text, "base64"), which engine.io's parser decodes every "b"
 * record with, and not RFC 4648: OpenSSL's decoders refuse what Node takes, and clients rely on
 * Node taking it (engine.io-client-java writes MIME-style base64, a line break every 76 characters
 * and one at the end: "bAAEC/w==\n"). Node reads the text character by character: a character of
 * either alphabet ("+/" or "-_") is data, the first '=' ends the data, and anything else (line
 * breaks, spaces, any other byte) is skipped; a last group of 2 or 3 characters gives 1 or 2
 * bytes, a lone last character none. Before that, Node has decoded the UTF-8 body into UTF-16 and
 * its decoder reads each code unit as its low byte (U+0141 reads as 'A', an emoji's surrogates as
 * '=' or not). No library decodes by these rules: the characters are filtered here into the plain
 * alphabet and OpenSSL decodes the result. */

/* The value (0-63) of a base64 character of either alphabet, 64 for '=', 0xff for the others. */
static unsigned char b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return (unsigned char)(c - 'A');
    if (c >= 'a' && c <= 'z')
        return (unsigned char)(c - 'a' + 26);
    if (c >= '0' && c <= '9')
        return (unsigned char)(c - '0' + 52);
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return c == '=' ? 64 : 0xff;
}

void eio_base64_decode(buf_t *out, const char *text, size_t n)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = (const unsigned char *)text;
    buf_t plain = BUF_INIT; /* the characters Node decodes, in the plain alphabet, then padding */
    size_t pad = 0, i = 0;
    const char *q;
    buf_reserve(&plain, n + 2);
    while (i < n) {
        /* the UTF-16 code units of the character at p[i], each cut to its low byte (an ill-formed
         * sequence is U+FFFD for Node, whose low byte is no base64 character: none) */
        unsigned char u[2];
        uint32_t cp = p[i];
        int k = 1, len = p[i] < 0x80 ? 1 : utf8_seq(p + i, n - i, &cp, 0);
        if (len < 0) {
            i += (size_t)-len;
            continue;
        }
        i += (size_t)len;
        if (cp < 0x10000) {
            u[0] = (unsigned char)cp;
        } else {
            u[0] = (unsigned char)((cp - 0x10000) >> 10); /* the high surrogate's low byte */
            u[1] = (unsigned char)cp;                      /* the low surrogate's */
            k = 2;
        }
        for (int j = 0; j < k; j++) {
            unsigned char v = b64_value(u[j]);
            if (v == 64)
                goto end; /* '=' ends the data */
            if (v < 64)
                plain.base[plain.len++] = alphabet[v];
        }
    }
end:
    switch (plain.len % 4) {
    case 1:
        plain.len--; /* one character of a group carries no whole byte */
        break;
    case 2:
        pad = 2;
        break;
    case 3:
        pad = 1;
        break;
    }
    for (size_t k = 0; k < pad; k++)
        plain.base[plain.len++] = '=';

    /* the plain text decodes without error: OpenSSL's block decoder, chunk by chunk */
    n = plain.len;
    q = plain.base;
    buf_reserve(out, n / 4 * 3);
    while (n > 0) {
        size_t take = n < B64_CHUNK_OUT ? n : B64_CHUNK_OUT;
        int w = EVP_DecodeBlock((unsigned char *)out->base + out->len, (const unsigned char *)q, (int)take);
        out->len += (size_t)w;
        q += take;
        n -= take;
    }
    out->len -= pad; /* only the last chunk can carry padding */
    buf_free(&plain);
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
        eio_base64_decode(&it->scratch, rec + 1, n - 1); /* never fails, as in the reference */
        out->type = EIO_MESSAGE;
        out->binary = 1;
        out->data.ptr = it->scratch.base ? it->scratch.base : "";
        out->data.len = it->scratch.len;
        rc = EIO_PKT_OK;
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
