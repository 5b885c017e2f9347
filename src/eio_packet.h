/* eio_packet: the Engine.IO v4 packet codec (sans I/O: bytes in, packets out).
 * An outgoing packet is an rbuf whose payload is the packet as a WebSocket text frame carries it
 * ("4hello", "2", "3probe"), or, with RBUF_BINARY, the raw bytes of a binary message.
 * Over polling, packets are joined with the record separator 0x1e and binary messages become
 * "b<base64>". */
#ifndef SL_EIO_PACKET_H
#define SL_EIO_PACKET_H

#include <stddef.h>

#include "buf.h"

typedef enum {
    EIO_OPEN = 0,
    EIO_CLOSE = 1,
    EIO_PING = 2,
    EIO_PONG = 3,
    EIO_MESSAGE = 4,
    EIO_UPGRADE = 5,
    EIO_NOOP = 6,
} eio_type_t;

#define EIO_SEPARATOR '\x1e'

typedef struct {
    eio_type_t type;
    int binary;   /* a binary message (type is EIO_MESSAGE) */
    slice_t data; /* payload after the type character; borrowed (from the input, or from the
                     iterator's scratch buffer for decoded base64) */
} eio_packet_t;

enum {
    EIO_PKT_OK = 0,
    EIO_PKT_EEMPTY = -1,   /* empty packet */
    EIO_PKT_ETYPE = -2,    /* unknown packet type */
    EIO_PKT_ETOOMANY = -4, /* more packets in one payload than allowed */
};

/* One packet from a WebSocket message. A binary frame is a binary message. */
int eio_decode_ws(int binary, const char *p, size_t n, eio_packet_t *out);

/* Iterates over the packets of a polling POST body. */
typedef struct {
    const char *p, *end;
    size_t count, max_packets; /* packets seen; limit (0 = none) */
    buf_t scratch;             /* decoded base64 of the current packet */
} eio_payload_iter_t;

void eio_payload_init(eio_payload_iter_t *it, const char *p, size_t n, size_t max_packets);
/* 1 and *out filled, 0 at the end, or an EIO_PKT_E* code. out->data is valid until the next call. */
int eio_payload_next(eio_payload_iter_t *it, eio_packet_t *out);
void eio_payload_free(eio_payload_iter_t *it);

/* Appends packet b to a polling response body (a separator first if out is not empty). */
void eio_payload_append(buf_t *out, const rbuf_t *b);

/* New text packet: type character + data. */
rbuf_t *eio_packet_new(eio_type_t type, const char *data, size_t n);

/* Base64. encode appends the standard padded form (OpenSSL EVP). decode appends the bytes of text as
 * the reference decodes a "b" record (Node's Buffer.from(text, "base64")): line breaks and other
 * characters outside the alphabets are skipped, "-_" count as "+/", the first '=' ends the data,
 * a UTF-8 character counts as the low bytes of its UTF-16 code units. It never fails. */
void eio_base64_encode(buf_t *out, const unsigned char *p, size_t n);
void eio_base64_decode(buf_t *out, const char *text, size_t n);

#endif
