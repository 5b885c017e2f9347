/* sio_packet: the Socket.IO v5 packet codec (sans I/O), format of socket.io-parser:
 *   <type>[<attachments>-][<nsp>,][<id>][<JSON payload>]
 * The JSON payload stays text here: mapping it to values is the Lua layer's job (lvalue.h).
 * Binary attachments travel as the following Engine.IO binary messages. */
#ifndef SL_SIO_PACKET_H
#define SL_SIO_PACKET_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef enum {
    SIO_CONNECT = 0,
    SIO_DISCONNECT = 1,
    SIO_EVENT = 2,
    SIO_ACK = 3,
    SIO_CONNECT_ERROR = 4,
    SIO_BINARY_EVENT = 5,
    SIO_BINARY_ACK = 6,
} sio_type_t;

typedef struct {
    sio_type_t type;
    uint32_t attachments; /* binary packets only */
    slice_t nsp;          /* "/" when absent */
    int64_t id;           /* ack id, -1 when absent */
    slice_t data;         /* raw JSON payload, empty when absent */
} sio_packet_t;

enum {
    SIO_PKT_OK = 0,
    SIO_PKT_EEMPTY = -1,       /* empty string */
    SIO_PKT_ETYPE = -2,        /* unknown packet type */
    SIO_PKT_EATTACHMENTS = -3, /* bad or too many attachments ("Illegal attachments") */
    SIO_PKT_ENSP = -4,         /* namespace too long or malformed */
    SIO_PKT_EID = -5,          /* ack id out of range */
    SIO_PKT_EPAYLOAD = -6,     /* payload cannot be valid for this type (e.g. DISCONNECT with data,
                                  EVENT whose payload does not start with '[') */
};

/* The packet encodings (the reference's `parser` option). */
enum {
    SIO_PARSER_JSON = 0,    /* socket.io-parser: text packets, binary as attachments */
    SIO_PARSER_MSGPACK = 1, /* socket.io-msgpack-parser: a packet is one msgpack binary message */
};
/* Reads a parser's name ("default" or "json", "msgpack") into *out: 0, or -1 if unknown. */
int sio_parser_from_name(const char *name, int *out);

typedef struct {
    uint32_t max_attachments; /* default 10 */
    size_t max_nsp;           /* namespace name bytes, default 256 */
} sio_limits_t;

/* Decodes one packet from an Engine.IO message payload (without the leading '4').
 * Slices point into p. Returns SIO_PKT_OK or an SIO_PKT_E* code. */
int sio_decode(const char *p, size_t n, const sio_limits_t *lim, sio_packet_t *out);
const char *sio_strerror(int code);

/* Encodes pkt as an Engine.IO message: a new text rbuf with payload "4" + header + pkt->data.
 * pkt->attachments is written for binary types; the nsp is omitted when it is "/". */
rbuf_t *sio_encode(const sio_packet_t *pkt);

#endif
