/* sio_packet: the Socket.IO v5 packet codecs (sans I/O), one per parser option:
 * - socket.io-parser (the default): <type>[<attachments>-][<nsp>,][<id>][<JSON payload>]; the JSON
 *   payload stays text here: mapping it to values is the Lua layer's job (lvalue.h). Binary
 *   attachments travel as the following Engine.IO binary messages.
 * - socket.io-msgpack-parser: a packet is one Engine.IO binary message, the msgpack map
 *   {type, data, id, nsp} as notepack.io encodes the packet object (types 0-4 only: binary data
 *   is msgpack bin wherever it is, no attachments); through msgpack-c. */
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

struct msgpack_object;
struct msgpack_unpacked;

typedef struct {
    sio_type_t type;
    uint32_t attachments; /* binary packets only */
    slice_t nsp;          /* "/" when absent */
    int64_t id;           /* ack id, -1 when absent */
    slice_t data;         /* the payload in the parser's format (JSON text, or the msgpack bytes of
                             the data value), empty when absent */
    const struct msgpack_object *obj; /* decoded by the msgpack parser: the data value (data is then
                                         empty), NULL when absent; always NULL for JSON */
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

/* msgpack parser. Decodes the Engine.IO binary message p[0..n) into *u (initialised by the caller,
 * who destroys it once done with out) and fills out: nsp points into u, out->obj is the data value
 * (NULL when absent, or notepack's undefined). The checks are socket.io-msgpack-parser's (an
 * integer type 0-4, a string nsp, data by type: CONNECT absent or a map, DISCONNECT absent,
 * CONNECT_ERROR a string or a map, EVENT and ACK an array) plus the JSON parser's limits (nsp
 * length; an ack id is an integer in [0, 2^53), where the reference takes any integer); keys
 * other than those four are ignored, the last of a repeated key counts. A message whose
 * containers declare more elements than it has bytes is refused before msgpack-c allocates them.
 * Returns SIO_PKT_OK or an SIO_PKT_E* code. */
int sio_decode_msgpack(const char *p, size_t n, const sio_limits_t *lim, struct msgpack_unpacked *u,
                       sio_packet_t *out);
/* Encodes pkt as the msgpack parser's Engine.IO binary message (a new RBUF_BINARY rbuf): the map
 * {type, data, id, nsp} (an ACK: {id, type, data, nsp}, the reference's order), pkt->data being
 * the msgpack bytes of the data value (no data key when empty), id only when >= 0, an empty nsp
 * written as "/". */
rbuf_t *sio_encode_msgpack(const sio_packet_t *pkt);
/* Appends the object {key: value[, key2: value2]} (strings that need no escaping in JSON: ids,
 * static texts; key2 NULL: one pair) to out in the parser's format, for the packets sio makes
 * itself (CONNECT {sid} or {sid, pid}, CONNECT_ERROR {message}). */
void sio_control_data(int parser, buf_t *out, const char *key, const char *value, const char *key2,
                      const char *value2);
/* 0 if a msgpack message of n bytes at p cannot be valid because its containers declare more
 * elements in all than it has bytes (msgpack-c would allocate them before reading them), else 1. */
int sio_msgpack_sizes_fit(const char *p, size_t n);

#endif
