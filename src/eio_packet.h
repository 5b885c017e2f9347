/* eio_packet: the Engine.IO packet codec (sans I/O: bytes in, packets out), protocol v4 and, for
 * Socket.IO v2 clients (allowEIO3), v3 (engine.io's lib/parser-v3).
 * An outgoing packet is an rbuf whose payload is the packet as a WebSocket text frame carries it
 * ("4hello", "2", "3probe"), or, with RBUF_BINARY, the raw bytes of a binary message.
 * Over v4 polling, packets are joined with the record separator 0x1e and binary messages become
 * "b<base64>". v3 polling payloads are length-prefixed ("6:4hello2:40", lengths in UTF-16 code
 * units as JavaScript counts them, binary messages as "b4<base64>"), or binary ("XHR2", for a
 * client that did not ask for b64=1: per packet 0 (text) or 1 (binary), the length's decimal digits
 * as bytes 0-9, 255, then the packet: text as UTF-8, binary as its type byte 4 and the bytes). */
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
    EIO_PKT_EFRAMING = -3, /* v3 payload: a bad length, or a text packet that is not UTF-8 */
    EIO_PKT_ETOOMANY = -4, /* more packets in one payload than allowed */
};

/* One packet from a WebSocket message. A binary frame is a binary message. */
int eio_decode_ws(int binary, const char *p, size_t n, eio_packet_t *out);

/* One packet from a WebSocket message of a v3 session: a binary frame is its type byte and the
 * data, a text frame "b<type><base64>" a base64 one. A type the reference does not know in those
 * two forms is ignored there, as a noop here. Decoded base64 goes to scratch (out->data points
 * into it). */
int eio_decode_ws3(int binary, const char *p, size_t n, buf_t *scratch, eio_packet_t *out);

/* Iterates over the packets of a polling POST body. */
typedef struct {
    const char *p, *end;
    size_t count, max_packets; /* packets seen; limit (0 = none) */
    int mode;                  /* EIO_PAYLOAD_* */
    int first_rc;              /* an error the first call returns (an empty or ill-framed body) */
    buf_t scratch;             /* decoded base64 of the current packet */
} eio_payload_iter_t;

enum {
    EIO_PAYLOAD_V4 = 0,     /* records separated by 0x1e */
    EIO_PAYLOAD_V3 = 1,     /* v3 text: "<length>:<packet>"... */
    EIO_PAYLOAD_V3_BIN = 2, /* v3 binary (a POST with Content-Type application/octet-stream) */
};

void eio_payload_init(eio_payload_iter_t *it, const char *p, size_t n, size_t max_packets);
/* The same for a v3 payload (mode EIO_PAYLOAD_V3 or EIO_PAYLOAD_V3_BIN). Lengths are plain decimal
 * digits (the reference's Number() would also take " 5", "1e1" or "0x5": no client writes them);
 * a length that ends inside a character outside the BMP (the reference would cut it into a lone
 * surrogate, then fail on the next length), or a binary length past the end (the reference takes
 * the shorter packet) is invalid; a text packet of a binary payload must be UTF-8 (lone surrogates
 * allowed, as utf8.js' non-strict decoding). A binary payload whose framing is invalid yields no
 * packet, as the reference checks it whole first. */
void eio_payload_init3(eio_payload_iter_t *it, const char *p, size_t n, int mode, size_t max_packets);
/* 1 and *out filled, 0 at the end, or an EIO_PKT_E* code. out->data is valid until the next call. */
int eio_payload_next(eio_payload_iter_t *it, eio_packet_t *out);
void eio_payload_free(eio_payload_iter_t *it);

/* Appends packet b to a polling response body (a separator first if out is not empty). */
void eio_payload_append(buf_t *out, const rbuf_t *b);
/* Appends packet b to a v3 polling response body: text (binary messages as "b4<base64>") or, with
 * `binary`, the binary payload's form. */
void eio_payload_append3(buf_t *out, const rbuf_t *b, int binary);

/* New text packet: type character + data. */
rbuf_t *eio_packet_new(eio_type_t type, const char *data, size_t n);

/* Base64. encode appends the standard padded form (OpenSSL EVP). decode appends the bytes of text as
 * the reference decodes a "b" record (Node's Buffer.from(text, "base64")): line breaks and other
 * characters outside the alphabets are skipped, "-_" count as "+/", the first '=' ends the data,
 * a UTF-8 character counts as the low bytes of its UTF-16 code units. It never fails. */
void eio_base64_encode(buf_t *out, const unsigned char *p, size_t n);
void eio_base64_decode(buf_t *out, const char *text, size_t n);

#endif
