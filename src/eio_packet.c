/* eio_packet: the Engine.IO v4 packet codec; see eio_packet.h.
 * Behaviour follows socketio/socket.io packages/engine.io-parser (decodePacket.ts, encodePacket.ts,
 * index.ts): one type character then the data; over polling, records are separated by 0x1e and a
 * record starting with 'b' is a base64 binary message. */
#include "eio_packet.h"

#include <stdint.h>
#include <stdio.h>
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
    it->mode = EIO_PAYLOAD_V4;
    it->first_rc = 0;
    it->scratch = (buf_t)BUF_INIT;
}

/* Every record is decoded, including an empty one after a trailing separator (an error, as
 * "split" in the reference yields it too). After an error the iterator is at its end: the caller
 * drops the whole payload, as the reference stops at its first error packet. */
static int next3(eio_payload_iter_t *it, eio_packet_t *out);
static int next3_binary(eio_payload_iter_t *it, eio_packet_t *out);

int eio_payload_next(eio_payload_iter_t *it, eio_packet_t *out)
{
    if (it->first_rc != 0) {
        int rc = it->first_rc;
        it->first_rc = 0;
        it->p = NULL;
        return rc;
    }
    if (it->p == NULL)
        return 0;
    if (it->mode == EIO_PAYLOAD_V3)
        return next3(it, out);
    if (it->mode == EIO_PAYLOAD_V3_BIN)
        return next3_binary(it, out);
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

/* ---------------------------------------------------------------- protocol v3 (Socket.IO v2 clients) */

/* A v3 packet in its text form (a text payload's record, a text packet of a binary payload, a
 * WebSocket text frame): "b<type><base64>" is a base64 binary packet (an unknown type is ignored
 * by the reference: a noop), anything else a text packet. */
static int decode_text3(buf_t *scratch, const char *p, size_t n, eio_packet_t *out)
{
    if (n == 0 || p[0] != 'b')
        return decode_text(p, n, out);
    out->binary = 1;
    if (n < 2 || p[1] < '0' || p[1] > '6') {
        out->type = EIO_NOOP;
        out->data = (slice_t){"", 0};
        return EIO_PKT_OK;
    }
    scratch->len = 0;
    eio_base64_decode(scratch, p + 2, n - 2);
    out->type = (eio_type_t)(p[1] - '0');
    out->data.ptr = scratch->base ? scratch->base : "";
    out->data.len = scratch->len;
    return EIO_PKT_OK;
}

int eio_decode_ws3(int binary, const char *p, size_t n, buf_t *scratch, eio_packet_t *out)
{
    if (!binary)
        return decode_text3(scratch, p, n, out);
    /* the type byte, then the data; a type the reference does not know is ignored there */
    out->binary = 1;
    if (n == 0 || (unsigned char)p[0] > EIO_NOOP) {
        out->type = EIO_NOOP;
        out->data = (slice_t){"", 0};
        return EIO_PKT_OK;
    }
    out->type = (eio_type_t)p[0];
    out->data = (slice_t){p + 1, n - 1};
    return EIO_PKT_OK;
}

/* The bytes of a UTF-8 character starting with lead byte c (its length as utf8_seq would find it
 * in valid input). */
static size_t utf8_len(unsigned char c)
{
    return c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
}

/* UTF-16 code units of the valid UTF-8 text p[0, n): what JavaScript's length counts. */
static size_t utf16_units(const char *p, size_t n)
{
    size_t units = 0;
    for (size_t i = 0; i < n; i += utf8_len((unsigned char)p[i]))
        units += (unsigned char)p[i] >= 0xf0 ? 2 : 1;
    return units;
}

/* The binary payload's framing, as decodePayloadAsBinary reads it: a kind byte, the length's
 * digits as bytes 0-9 (at most 310 of them), 255. Returns the packet's offset and fills *len and
 * *text, or 0 if the framing is invalid. */
static size_t frame3(const unsigned char *p, size_t n, size_t *len, int *text)
{
    size_t i = 1, v = 0, nd = 0;
    if (n == 0)
        return 0;
    *text = p[0] == 0;
    for (; i < n && p[i] != 255; i++) {
        if (p[i] > 9 || ++nd > 310)
            return 0;
        if (v <= n) /* stops growing once past any possible length: no overflow */
            v = v * 10 + p[i];
    }
    if (i == n || nd == 0 || v > n - i - 1)
        return 0;
    *len = v;
    return i + 1;
}

void eio_payload_init3(eio_payload_iter_t *it, const char *p, size_t n, int mode, size_t max_packets)
{
    eio_payload_init(it, p, n, max_packets);
    it->mode = mode;
    if (n == 0) {
        it->first_rc = EIO_PKT_EEMPTY; /* decodePayload("") is an error */
        return;
    }
    if (mode == EIO_PAYLOAD_V3_BIN) {
        /* the reference splits the whole body before it decodes any packet */
        const unsigned char *q = (const unsigned char *)p;
        size_t left = n, len, off;
        int text;
        while (left > 0) {
            if ((off = frame3(q, left, &len, &text)) == 0) {
                it->first_rc = EIO_PKT_EFRAMING;
                return;
            }
            q += off + len;
            left -= off + len;
        }
    }
}

static int count_packet(eio_payload_iter_t *it)
{
    if (++it->count > it->max_packets && it->max_packets) {
        it->p = NULL;
        return EIO_PKT_ETOOMANY;
    }
    return 0;
}

/* "<length>:<packet>" records; a length counts UTF-16 code units; "0:" is skipped. */
static int next3(eio_payload_iter_t *it, eio_packet_t *out)
{
    for (;;) {
        const char *q = it->p, *m;
        size_t len = 0, nd = 0, units = 0;
        int rc;
        if (q == it->end) {
            it->p = NULL;
            return 0;
        }
        for (; q < it->end && *q != ':'; q++) {
            if (*q < '0' || *q > '9' || ++nd > 16)
                goto bad;
            len = len * 10 + (size_t)(*q - '0');
        }
        if (q == it->end || nd == 0)
            goto bad;
        for (m = ++q; units < len; units += utf8_len((unsigned char)*m) == 4 ? 2 : 1, m += utf8_len((unsigned char)*m))
            if (m == it->end || utf8_len((unsigned char)*m) > (size_t)(it->end - m))
                goto bad;
        if (units != len)
            goto bad; /* the length ends between the two halves of a surrogate pair */
        it->p = m;
        if (m == q)
            continue;
        if ((rc = count_packet(it)) != 0)
            return rc;
        if ((rc = decode_text3(&it->scratch, q, (size_t)(m - q), out)) != EIO_PKT_OK) {
            it->p = NULL;
            return rc;
        }
        return 1;
    bad:
        it->p = NULL;
        return EIO_PKT_EFRAMING;
    }
}

/* The binary payload (its framing was checked whole by eio_payload_init3). */
static int next3_binary(eio_payload_iter_t *it, eio_packet_t *out)
{
    const unsigned char *q = (const unsigned char *)it->p;
    size_t len, off;
    int text, rc;
    if (q == (const unsigned char *)it->end) {
        it->p = NULL;
        return 0;
    }
    off = frame3(q, (size_t)(it->end - it->p), &len, &text);
    it->p += off + len;
    if ((rc = count_packet(it)) != 0)
        return rc;
    q += off;
    if (!text)
        rc = eio_decode_ws3(1, (const char *)q, len, &it->scratch, out);
    else if (len > 0 && q[0] == 'b') /* base64 before any UTF-8 decoding, as decodePacket */
        rc = decode_text3(&it->scratch, (const char *)q, len, out);
    else {
        /* utf8.js, non-strict: lone surrogates pass, anything else ill-formed is an error */
        uint32_t cp;
        for (size_t i = 0; i < len; i += (size_t)rc) {
            if ((rc = utf8_seq(q + i, len - i, &cp, 1)) < 0) {
                it->p = NULL;
                return EIO_PKT_EFRAMING;
            }
        }
        rc = decode_text((const char *)q, len, out);
    }
    if (rc != EIO_PKT_OK) {
        it->p = NULL;
        return rc;
    }
    return 1;
}

void eio_payload_append3(buf_t *out, const rbuf_t *b, int binary)
{
    const char *payload = b->data + RBUF_HEADROOM;
    int isbin = (b->flags & RBUF_BINARY) != 0;
    char num[24];
    int nd;
    if (binary) {
        /* kind, the length's digits as bytes, 255, then the packet (binary: its type byte first) */
        nd = snprintf(num, sizeof(num), "%zu", (size_t)b->len + (size_t)isbin);
        buf_reserve(out, (size_t)nd + 3 + b->len);
        buf_appendc(out, (char)isbin);
        for (int i = 0; i < nd; i++)
            buf_appendc(out, (char)(num[i] - '0'));
        buf_appendc(out, (char)0xff);
        if (isbin)
            buf_appendc(out, (char)EIO_MESSAGE);
        buf_append(out, payload, b->len);
        return;
    }
    if (isbin) {
        nd = snprintf(num, sizeof(num), "%zu:b4", 2 + 4 * (((size_t)b->len + 2) / 3));
        buf_append(out, num, (size_t)nd);
        eio_base64_encode(out, (const unsigned char *)payload, b->len);
        return;
    }
    /* The length is the client's count of the text it decodes: ill-formed UTF-8 (which no packet of
     * Socket.IO holds) is sent as the U+FFFD it would read. */
    buf_t fixed = BUF_INIT;
    size_t n = b->len;
    if (utf8_valid_prefix(payload, n) != n) {
        utf8_repair(&fixed, payload, n, 0);
        payload = fixed.base;
        n = fixed.len;
    }
    nd = snprintf(num, sizeof(num), "%zu:", utf16_units(payload, n));
    buf_append(out, num, (size_t)nd);
    buf_append(out, payload, n);
    buf_free(&fixed);
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
