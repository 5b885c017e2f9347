/* pmd: the permessage-deflate WebSocket extension (RFC 7692), with the option names, defaults and
 * negotiation of the npm `ws` 8 module that engine.io uses:
 * - pmd_negotiate() is sans-I/O: the client's Sec-WebSocket-Extensions in, the agreed parameters
 *   and our answer header out (ws's header parser and PerMessageDeflate.acceptAsServer);
 * - pmd_compress() compresses one outgoing message on its own: the server keeps no context, so the
 *   same compressed bytes suit every recipient (a broadcast compresses once; see pmd.c);
 * - the inflater decompresses a client's messages, bounded by a maximum size *while* it inflates
 *   (a compression bomb stops there), with the client's window kept between messages, compactly,
 *   when the client uses context takeover. */
#ifndef SL_PMD_H
#define SL_PMD_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "zip.h"

/* The reference's perMessageDeflate option (engine.io passes it to ws). */
typedef struct {
    int enabled;        /* perMessageDeflate: 0, off (the reference's default) */
    size_t threshold;   /* threshold: messages shorter than this many bytes go uncompressed (1024) */
    int8_t server_nct;  /* serverNoContextTakeover: -1 not set, 0 false (offers that ask for it are
                           refused), 1 true (always in the answer) */
    int8_t client_nct;  /* clientNoContextTakeover: 1 true (always in the answer), else the client's */
    int8_t server_bits; /* serverMaxWindowBits: 8..15, 0 not set (or true), -1 false (offers that ask
                           for it are refused) */
    int8_t client_bits; /* clientMaxWindowBits: 8..15 (offers that cannot take it are refused), 0 not
                           set (or true), -1 false (never in the answer) */
    zip_params_t zlib;  /* zlibDeflateOptions: level, memLevel, strategy (the window is negotiated) */
} pmd_config_t;

#define PMD_CONFIG_DEFAULTS                                                                                            \
    {                                                                                                                  \
        0, 1024, -1, 0, 0, 0, ZIP_DEFAULTS                                                                             \
    }

/* What one connection agreed to. */
typedef struct {
    uint8_t server_bits; /* the window our messages are compressed for (8..15) */
    uint8_t client_bits; /* the client's window, our inflater's (8..15) */
    uint8_t server_nct;  /* server_no_context_takeover is in the answer */
    uint8_t client_nct;  /* client_no_context_takeover is in the answer: every client message starts
                            afresh, no window is kept */
} pmd_params_t;

#define PMD_ANSWER_MAX 192

/* Reads a Sec-WebSocket-Extensions value (the request's such headers joined with ", ", as Node
 * does). Returns 1 when a permessage-deflate offer is accepted: *out is set, and `answer` holds the
 * value of our Sec-WebSocket-Extensions header (NUL-terminated); 0 when no permessage-deflate is
 * offered (or cfg is disabled): no extension; -1 when the header is malformed or no offer can be
 * accepted: the reference answers 400 "Invalid or unacceptable Sec-WebSocket-Extensions header". */
int pmd_negotiate(const pmd_config_t *cfg, const char *hdr, size_t len, pmd_params_t *out, char answer[PMD_ANSWER_MAX]);

/* Compresses one message for a window of 2^bits (RFC 7692 7.2.1: raw deflate, sync flush, its tail
 * left out). Returns a new rbuf (refs 1, flags 0) holding the compressed bytes, or NULL when they
 * would not be shorter than the message (it is then better sent as it is). */
rbuf_t *pmd_compress(const zip_params_t *zlib, int bits, const void *msg, size_t len);

/* ---------------------------------------------------------------- inflating a client's messages */

typedef struct pmd_inflater pmd_inflater_t; /* a zlib stream (~7 KB, and its window once used) */
typedef struct pmd_window pmd_window_t;     /* a saved window: the client's last bytes, up to 2^bits */

enum { PMD_OK = 0, PMD_TOO_BIG = -1, PMD_BAD = -2 };

pmd_inflater_t *pmd_inflater_new(void);
void pmd_inflater_free(pmd_inflater_t *z);

/* Starts a message on a fresh stream with a window of 2^bits (8..15), primed with w (NULL: none). */
void pmd_inflate_start(pmd_inflater_t *z, int bits, const pmd_window_t *w);
/* Inflates in[0..len) (a piece of the message, any size), appending to out. out->len never goes
 * over max (its storage may reach max + 1): PMD_TOO_BIG instead, and the rest is not inflated.
 * PMD_BAD: the bytes are not deflate data. Input after a final block is ignored (the stream is
 * over: see pmd_inflate_finish). */
int pmd_inflate(pmd_inflater_t *z, const void *in, size_t len, buf_t *out, size_t max);
/* Ends a message: inflates the 00 00 ff ff tail its sender left out. PMD_BAD if the data did not
 * end where a block ends (a cut message). *over = 1 when the stream ended with a final block (the
 * next message starts afresh: no window to keep), else 0. The stream may go on with the next
 * message's pmd_inflate (context takeover), or be saved first. */
int pmd_inflate_finish(pmd_inflater_t *z, buf_t *out, size_t max, int *over);

/* The stream's window (what the client's next message may refer to), in an allocation of exactly
 * its size; `old` is reused or freed. NULL if the window is empty. */
pmd_window_t *pmd_window_save(pmd_inflater_t *z, pmd_window_t *old);
size_t pmd_window_len(const pmd_window_t *w);
void pmd_window_free(pmd_window_t *w);

#endif
