/* tls: TLS 1.2 / 1.3 server sessions on OpenSSL (libssl), sans I/O.
 * A tls_ctx_t holds the certificate and key, read from two PEM files; tls_ctx_reload() re-reads
 * them into a new OpenSSL context that new sessions start on, while open sessions keep the one
 * they began with (certificate rotation). A tls_conn_t is one session, driven by its owner (net.c)
 * with bytes only: ciphertext in (tls_feed), plaintext out (tls_read), plaintext in (tls_write),
 * ciphertext out (tls_output). No socket, no loop: the unit tests and the fuzzer drive it directly.
 * Memory: OpenSSL's record buffers are released while a session is idle (SSL_MODE_RELEASE_BUFFERS);
 * input is read straight from the caller's buffer and copied only when the owner stops reading
 * halfway; output is written by OpenSSL straight into the rbuf the owner then queues. */
#ifndef SL_TLS_H
#define SL_TLS_H

#include <stddef.h>
#include <sys/types.h>

#include "buf.h"

typedef struct tls_ctx tls_ctx_t;
typedef struct tls_conn tls_conn_t;

/* Results of tls_handshake and tls_read (a positive tls_read result is a byte count). */
enum {
    TLS_OK = 0,      /* tls_handshake: the session is established */
    TLS_AGAIN = -1,  /* more input is needed */
    TLS_CLOSED = -2, /* tls_read: the peer sent close_notify */
    TLS_ERROR = -3,  /* protocol error or refused handshake: close the connection (tls_error says why) */
};

/* Loads the certificate chain (PEM: the certificate, then its intermediates) and the private key
 * (PEM, not encrypted) and checks that they match. Returns NULL on failure, with a line of text
 * in err ("tls: cannot read the certificate chain from cert.pem: no start line"). The paths are
 * copied: tls_ctx_reload reads them again. Sessions accept TLS 1.2 and 1.3 with OpenSSL's default
 * ciphers, select ALPN "http/1.1" (a client that offers ALPN without it is refused), and refuse
 * renegotiation. */
tls_ctx_t *tls_ctx_new(const char *cert, const char *key, char *err, size_t errlen);
/* Reads the files again. Returns 0 when new sessions will use them; -1 with err set when they
 * cannot be used, and the loaded ones stay. Open sessions are not touched either way. */
int tls_ctx_reload(tls_ctx_t *t, char *err, size_t errlen);
/* "CN=example.org, serial 1A2B, valid until 2026-05-01 12:00 UTC": the loaded certificate, for logs. */
const char *tls_ctx_describe(const tls_ctx_t *t);
/* Frees t. Sessions made from it must be freed first. */
void tls_ctx_free(tls_ctx_t *t);

/* A server session on t's current certificate. */
tls_conn_t *tls_conn_new(tls_ctx_t *t);
void tls_conn_free(tls_conn_t *s);

/* Bytes from the peer. p is borrowed until tls_feed_done(), which the caller must call before it
 * reuses p: whatever the session has not read by then is copied and read first next time. */
void tls_feed(tls_conn_t *s, const char *p, size_t n);
void tls_feed_done(tls_conn_t *s);
/* 1 while fed bytes or decrypted data wait to be read by tls_read (or tls_handshake). */
int tls_has_input(const tls_conn_t *s);

/* Advances the handshake with the bytes fed. TLS_OK once it is complete (and on every call after),
 * TLS_AGAIN while it needs more input, TLS_ERROR when it failed. Output (the server's flight,
 * an alert) is left for tls_output either way. */
int tls_handshake(tls_conn_t *s);
/* The next piece of application data (at most 16 KiB): returns its length and points *out at it.
 * The bytes are borrowed from t: they are valid until the next tls_read on any session of t.
 * TLS_AGAIN when the bytes fed so far hold no more, TLS_CLOSED, or TLS_ERROR. Post-handshake
 * messages (a TLS 1.3 KeyUpdate) are handled inside and may leave output. */
ssize_t tls_read(tls_conn_t *s, const char **out);
/* Encrypts n bytes of application data (after TLS_OK) into the output. 0, or TLS_ERROR when the
 * session can no longer send (failed, or close_notify sent): the bytes are dropped. */
int tls_write(tls_conn_t *s, const void *p, size_t n);
/* Adds a close_notify alert to the output, once (after TLS_OK; a no-op before). */
void tls_close_notify(tls_conn_t *s);
/* Takes the ciphertext produced since the last call: one rbuf (refs 1, payload at RBUF_HEADROOM,
 * b->len bytes) that the caller now owns, or NULL when there is none. */
rbuf_t *tls_output(tls_conn_t *s);

/* Why the last TLS_ERROR happened, in words ("plain HTTP request", "wrong version number",
 * "no shared cipher"); a static string. */
const char *tls_error(const tls_conn_t *s);
/* The negotiated protocol version ("TLSv1.3"), or "" before the handshake ends. */
const char *tls_version(const tls_conn_t *s);

#endif
