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
