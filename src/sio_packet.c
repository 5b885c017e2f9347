/* sio_packet: the Socket.IO v5 packet codec; see sio_packet.h.
 * The decoder walks the string as socket.io-parser's Decoder.decodeString does
 * (socketio/socket.io packages/socket.io-parser/lib/index.ts): type digit, attachments up to '-'
 * for binary types, a namespace from '/' to ',' (or the end), an optional decimal ack id, then the
 * JSON payload. Only a cheap structural check of the payload is done here (its first character per
 * type); the full JSON parse happens in the Lua layer. Where the reference's loose JS coercions
 * would accept oddities (" 1" as a number, hex attachment counts), this decoder accepts ASCII
 * digits only: no official client produces anything else. */
#include "sio_packet.h"

#include <assert.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>

/* Ack ids are JS numbers on the other side: beyond 2^53-1 they lose precision. 16 digits is the
 * length of 2^53-1, so longer runs are rejected before they are accumulated. */
#define SIO_MAX_ID ((int64_t)9007199254740991)
#define SIO_MAX_ID_DIGITS 16

static const sio_limits_t default_limits = {10, 256};

static int isdigit_(char c)
{
    return c >= '0' && c <= '9';
}

/* Index of the first byte of p[from, n) that is not JSON whitespace, or n. */
static size_t skip_ws(const char *p, size_t from, size_t n)
{
    while (from < n && (p[from] == ' ' || p[from] == '\t' || p[from] == '\n' || p[from] == '\r'))
        from++;
    return from;
}

/* The payload checks of the reference's isPayloadValid, reduced to what the first character tells.
 * An absent payload is fine for CONNECT, DISCONNECT and CONNECT_ERROR; EVENT and ACK payloads are
 * mandatory arrays (protocol v5: "The payload is mandatory"). */
static int payload_ok(sio_type_t type, const char *p, size_t n)
{
    if (n == 0)
        return type == SIO_CONNECT || type == SIO_DISCONNECT || type == SIO_CONNECT_ERROR;
    size_t i = skip_ws(p, 0, n);
    char c = i < n ? p[i] : '\0';
    switch (type) {
    case SIO_CONNECT:
        return c == '{';
    case SIO_DISCONNECT:
        return 0;
    case SIO_CONNECT_ERROR:
        return c == '{' || c == '"';
    case SIO_EVENT:
    case SIO_BINARY_EVENT:
    case SIO_ACK:
    case SIO_BINARY_ACK:
        return c == '[';
    }
    return 0;
}

int sio_decode(const char *p, size_t n, const sio_limits_t *lim, sio_packet_t *out)
{
    if (lim == NULL)
        lim = &default_limits;
    if (n == 0)
        return SIO_PKT_EEMPTY;
    if (p[0] < '0' || p[0] > '6')
        return SIO_PKT_ETYPE;
    sio_type_t type = (sio_type_t)(p[0] - '0');
    size_t i = 1; /* next unread byte */

    /* attachments: digits up to a mandatory '-', at least 1 and at most the limit */
    uint32_t attachments = 0;
    if (type == SIO_BINARY_EVENT || type == SIO_BINARY_ACK) {
        size_t start = i;
        uint64_t v = 0;
        while (i < n && p[i] != '-') {
            if (!isdigit_(p[i]))
                return SIO_PKT_EATTACHMENTS;
            if (v <= lim->max_attachments) /* stop growing once over the limit: no overflow */
                v = v * 10 + (uint64_t)(p[i] - '0');
            i++;
        }
        if (i == n || i == start || v < 1 || v > lim->max_attachments)
            return SIO_PKT_EATTACHMENTS;
        attachments = (uint32_t)v;
        i++; /* the '-' */
    }

    /* namespace: from '/' to the first ',' (consumed) or to the end of the string */
    slice_t nsp = SLICE_LIT("/");
    if (i < n && p[i] == '/') {
        const char *comma = memchr(p + i, ',', n - i);
        size_t end = comma ? (size_t)(comma - p) : n;
        nsp.ptr = p + i;
        nsp.len = end - i;
        if (nsp.len > lim->max_nsp)
            return SIO_PKT_ENSP;
        i = comma ? end + 1 : n;
    }

    /* ack id: a run of digits right after the namespace */
    int64_t id = -1;
    if (i < n && isdigit_(p[i])) {
        size_t start = i;
        int64_t v = 0;
        while (i < n && isdigit_(p[i])) {
            if (i - start >= SIO_MAX_ID_DIGITS)
                return SIO_PKT_EID;
            v = v * 10 + (p[i] - '0');
            i++;
        }
        if (v > SIO_MAX_ID)
            return SIO_PKT_EID;
        id = v;
    }

    if (!payload_ok(type, p + i, n - i))
        return SIO_PKT_EPAYLOAD;

    out->type = type;
    out->attachments = attachments;
    out->nsp = nsp;
    out->id = id;
    out->data.ptr = p + i;
    out->data.len = n - i;
    out->obj = NULL;
    return SIO_PKT_OK;
}

int sio_parser_from_name(const char *name, int *out)
{
    if (strcmp(name, "default") == 0 || strcmp(name, "json") == 0)
        *out = SIO_PARSER_JSON;
    else if (strcmp(name, "msgpack") == 0)
        *out = SIO_PARSER_MSGPACK;
    else
        return -1;
    return 0;
}

const char *sio_strerror(int code)
{
    switch (code) {
    case SIO_PKT_OK:
        return "ok";
    case SIO_PKT_EEMPTY:
        return "empty packet";
    case SIO_PKT_ETYPE:
        return "unknown packet type";
    case SIO_PKT_EATTACHMENTS:
        return "Illegal attachments";
    case SIO_PKT_ENSP:
        return "invalid namespace";
    case SIO_PKT_EID:
        return "invalid ack id";
    case SIO_PKT_EPAYLOAD:
        return "invalid payload";
    }
    return "unknown error";
}

/* Writes v in decimal at p, returns the length (every ack is numbered: no printf per packet). */
static size_t put_u64(char *p, uint64_t v)
{
    char t[20];
    size_t n = 0;
    do
        t[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    for (size_t i = 0; i < n; i++)
        p[i] = t[n - 1 - i];
    return n;
}

/* The namespace must not contain ',' (the wire format has no escape); namespaces are validated when
 * they are created, so this is not re-checked per packet. */
rbuf_t *sio_encode(const sio_packet_t *pkt)
{
    assert(pkt->type >= SIO_CONNECT && pkt->type <= SIO_BINARY_ACK);
    char head[16]; /* "4" + type + up to 10 digits + "-" */
    size_t hn = 0;
    head[hn++] = '4';
    head[hn++] = (char)('0' + (int)pkt->type);
    if (pkt->type == SIO_BINARY_EVENT || pkt->type == SIO_BINARY_ACK) {
        hn += put_u64(head + hn, pkt->attachments);
        head[hn++] = '-';
    }

    int with_nsp = pkt->nsp.len > 0 && !(pkt->nsp.len == 1 && pkt->nsp.ptr[0] == '/');
    char idb[24];
    size_t idn = pkt->id >= 0 ? put_u64(idb, (uint64_t)pkt->id) : 0;

    size_t total = hn + (with_nsp ? pkt->nsp.len + 1 : 0) + idn + pkt->data.len;
    rbuf_t *b = rbuf_new(total);
    char *w = rbuf_payload(b);
    memcpy(w, head, hn);
    w += hn;
    if (with_nsp) {
        memcpy(w, pkt->nsp.ptr, pkt->nsp.len);
        w += pkt->nsp.len;
        *w++ = ',';
    }
    if (idn) {
        memcpy(w, idb, idn);
        w += idn;
    }
    if (pkt->data.len)
        memcpy(w, pkt->data.ptr, pkt->data.len);
    return b;
}

/* ---------------------------------------------------------------- msgpack parser */

/* Big-endian k-byte integer at p. */
static size_t be_size(const unsigned char *p, int k)
{
    size_t v = 0;
    for (int i = 0; i < k; i++)
        v = v << 8 | p[i];
    return v;
}

/* msgpack-c allocates a container's elements from its declared count before reading them (five
 * bytes declaring 2^32 elements ask for ~100 GB), and has no limit to set in its C API. Every
 * element is a token of its own, at least one byte, so a message whose containers declare more
 * elements in all than it has bytes cannot be valid: this refuses it before unpacking, which then
 * allocates at most ~24 bytes per input byte. A linear walk over the tokens (msgpack is a flat,
 * pre-order token stream, so no stack is needed). Returns 1 if the sizes fit; a truncated token
 * ends the walk (the unpacker reports it). */
int sio_msgpack_sizes_fit(const char *text, size_t n)
{
    const unsigned char *p = (const unsigned char *)text;
    static const uint8_t fixed[] = {4, 8, 1, 2, 4, 8, 1, 2, 4, 8};
    size_t i = 0, elements = 0;
    while (i < n) {
        unsigned c = p[i++];
        size_t count = 0, skip = 0;
        int hdr = 0; /* bytes of length or count after the type byte */
        if (c >= 0x80 && c <= 0x8f)
            count = 2 * (c & 0x0f);
        else if (c >= 0x90 && c <= 0x9f)
            count = c & 0x0f;
        else if (c >= 0xa0 && c <= 0xbf)
            skip = c & 0x1f;
        else if (c >= 0xca && c <= 0xd3) /* float32/64, uint8-64, int8-64 */
            skip = fixed[c - 0xca];
        else if (c >= 0xd4 && c <= 0xd8) /* fixext 1-16: type byte + data */
            skip = 1 + ((size_t)1 << (c - 0xd4));
        else if (c >= 0xc4 && c <= 0xc9) /* bin8-32, ext8-32 (+ a type byte) */
            hdr = 1 << ((c - 0xc4) % 3);
        else if (c >= 0xd9 && c <= 0xdb) /* str8-32 */
            hdr = 1 << (c - 0xd9);
        else if (c >= 0xdc && c <= 0xdf) /* array16/32, map16/32 */
            hdr = c == 0xdc || c == 0xde ? 2 : 4;
        if (hdr > 0) {
            size_t v;
            if ((size_t)hdr > n - i)
                return 1;
            v = be_size(p + i, hdr);
            i += (size_t)hdr;
            if (c >= 0xdc)
                count = c >= 0xde ? 2 * v : v;
            else
                skip = v + (c >= 0xc7 && c <= 0xc9);
        }
        if (count > n - elements || (elements += count) > n)
            return 0;
        if (skip > n - i)
            return 1;
        i += skip;
    }
    return 1;
}

/* notepack's undefined: fixext 1 of type 0 (socket.io-msgpack-parser sees an absent field). */
static int is_undefined(const msgpack_object *o)
{
    return o->type == MSGPACK_OBJECT_EXT && o->via.ext.type == 0;
}

/* The value of o if it is an integer (a JS number: a float with an integral value counts) in
 * [0, max], else -1. */
static int64_t small_int(const msgpack_object *o, int64_t max)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return o->via.u64 <= (uint64_t)max ? (int64_t)o->via.u64 : -1;
    if (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64) {
        double d = o->via.f64;
        return d == floor(d) && d >= 0 && d <= (double)max ? (int64_t)d : -1;
    }
    return -1; /* a negative integer too: -0.0 is the only one JS has in range, as a float */
}

int sio_decode_msgpack(const char *p, size_t n, const sio_limits_t *lim, msgpack_unpacked *u, sio_packet_t *out)
{
    const msgpack_object *type = NULL, *nsp = NULL, *data = NULL, *id = NULL;
    size_t off = 0;
    int64_t t, idv = -1;
    if (lim == NULL)
        lim = &default_limits;
    if (n == 0)
        return SIO_PKT_EEMPTY;
    if (!sio_msgpack_sizes_fit(p, n))
        return SIO_PKT_EPAYLOAD;
    if (msgpack_unpack_next(u, p, n, &off) != MSGPACK_UNPACK_SUCCESS || off != n)
        return SIO_PKT_EPAYLOAD; /* notepack throws on it, and on trailing bytes */
    if (u->data.type != MSGPACK_OBJECT_MAP)
        return SIO_PKT_ETYPE;
    for (uint32_t i = 0; i < u->data.via.map.size; i++) {
        const msgpack_object_kv *kv = &u->data.via.map.ptr[i];
        const msgpack_object *v = is_undefined(&kv->val) ? NULL : &kv->val;
        slice_t k;
        if (kv->key.type != MSGPACK_OBJECT_STR)
            continue;
        k = (slice_t){kv->key.via.str.ptr, kv->key.via.str.size};
        if (slice_eq(k, "type"))
            type = v;
        else if (slice_eq(k, "nsp"))
            nsp = v;
        else if (slice_eq(k, "data"))
            data = v;
        else if (slice_eq(k, "id"))
            id = v;
    }
    if (type == NULL || (t = small_int(type, SIO_CONNECT_ERROR)) < 0)
        return SIO_PKT_ETYPE;
    if (nsp == NULL || nsp->type != MSGPACK_OBJECT_STR || nsp->via.str.size > lim->max_nsp)
        return SIO_PKT_ENSP;
    switch ((sio_type_t)t) {
    case SIO_CONNECT:
        if (data != NULL && data->type != MSGPACK_OBJECT_MAP)
            return SIO_PKT_EPAYLOAD;
        break;
    case SIO_DISCONNECT:
        if (data != NULL)
            return SIO_PKT_EPAYLOAD;
        break;
    case SIO_CONNECT_ERROR:
        if (data == NULL || (data->type != MSGPACK_OBJECT_STR && data->type != MSGPACK_OBJECT_MAP))
            return SIO_PKT_EPAYLOAD;
        break;
    default:
        if (data == NULL || data->type != MSGPACK_OBJECT_ARRAY)
            return SIO_PKT_EPAYLOAD;
        break;
    }
    if (id != NULL && (idv = small_int(id, SIO_MAX_ID)) < 0)
        return SIO_PKT_EID;
    out->type = (sio_type_t)t;
    out->attachments = 0;
    out->nsp = (slice_t){nsp->via.str.ptr, nsp->via.str.size};
    out->id = idv;
    out->data = (slice_t){"", 0};
    out->obj = data;
    return SIO_PKT_OK;
}

static int buf_write(void *data, const char *p, size_t n)
{
    buf_append(data, p, n);
    return 0;
}

static void pack_cstr(msgpack_packer *pk, const char *p, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, p, n);
}

rbuf_t *sio_encode_msgpack(const sio_packet_t *pkt)
{
    buf_t b = BUF_INIT;
    msgpack_packer pk;
    rbuf_t *r;
    int ack = pkt->type == SIO_ACK || pkt->type == SIO_BINARY_ACK;
    msgpack_packer_init(&pk, &b, buf_write);
    msgpack_pack_map(&pk, 2 + (pkt->data.len > 0) + (pkt->id >= 0));
    if (ack && pkt->id >= 0) {
        pack_cstr(&pk, "id", 2);
        msgpack_pack_int64(&pk, pkt->id);
    }
    pack_cstr(&pk, "type", 4);
    msgpack_pack_int(&pk, ack ? SIO_ACK : pkt->type == SIO_BINARY_EVENT ? SIO_EVENT : (int)pkt->type);
    if (pkt->data.len > 0) {
        pack_cstr(&pk, "data", 4);
        buf_append(&b, pkt->data.ptr, pkt->data.len); /* already msgpack */
    }
    if (!ack && pkt->id >= 0) {
        pack_cstr(&pk, "id", 2);
        msgpack_pack_int64(&pk, pkt->id);
    }
    pack_cstr(&pk, "nsp", 3);
    pack_cstr(&pk, pkt->nsp.len ? pkt->nsp.ptr : "/", pkt->nsp.len ? pkt->nsp.len : 1);
    r = rbuf_from(b.base, b.len);
    r->flags |= RBUF_BINARY;
    buf_free(&b);
    return r;
}

void sio_control_data(int parser, buf_t *out, const char *key, const char *value, const char *key2,
                      const char *value2)
{
    if (parser == SIO_PARSER_MSGPACK) {
        msgpack_packer pk;
        msgpack_packer_init(&pk, out, buf_write);
        msgpack_pack_map(&pk, key2 ? 2 : 1);
        pack_cstr(&pk, key, strlen(key));
        pack_cstr(&pk, value, strlen(value));
        if (key2) {
            pack_cstr(&pk, key2, strlen(key2));
            pack_cstr(&pk, value2, strlen(value2));
        }
        return;
    }
    buf_appendstr(out, "{\"");
    buf_appendstr(out, key);
    buf_appendstr(out, "\":\"");
    buf_appendstr(out, value);
    if (key2) {
        buf_appendstr(out, "\",\"");
        buf_appendstr(out, key2);
        buf_appendstr(out, "\":\"");
        buf_appendstr(out, value2);
    }
    buf_appendstr(out, "\"}");
}
