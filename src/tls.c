/* tls: see tls.h.
 * The session's BIO is our own source/sink (one BIO_METHOD per tls_ctx_t) rather than OpenSSL's
 * BIO_s_mem: a mem BIO keeps, for the life of the session, a buffer as large as the largest burst
 * it ever held (a 64 KiB read, a 1 MB message), which is what an idle connection must not cost.
 * Ours reads from the window the owner fed (borrowed; the unread rest is copied by tls_feed_done
 * only when the owner stopped reading halfway) and appends what OpenSSL writes to one growable
 * rbuf that tls_output hands over whole, so ciphertext is never copied again before the socket.
 * OpenSSL's error queue is per thread and is cleared before each call into a session, so one
 * client's failure cannot be reported as another's. */
#include "tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TLS_PLAIN_MAX 16384 /* one record's plaintext: what tls_read hands out at most */

struct tls_ctx {
    SSL_CTX *ssl;          /* the current certificate and key: new sessions start on it */
    BIO_METHOD *bio;       /* the sessions' BIO (below) */
    char *cert, *key;      /* the files, read again by tls_ctx_reload */
    char desc[256];        /* tls_ctx_describe */
    char plain[TLS_PLAIN_MAX]; /* tls_read's output, shared by the sessions (used before the next read) */
};

struct tls_conn {
    SSL *ssl;
    tls_ctx_t *ctx;
    const char *in;      /* fed bytes not read yet: borrowed from the owner, or in keep */
    size_t inlen;
    buf_t keep;          /* unread input kept across tls_feed_done (empty and freed when none) */
    rbuf_t *out;         /* ciphertext not taken yet (out->len bytes used of out_cap), or NULL */
    size_t out_cap;
    const char *err;     /* tls_error */
    uint8_t borrowed;    /* in points into the owner's buffer */
    uint8_t established; /* the handshake is complete */
    uint8_t failed;      /* a fatal error happened: the session is over */
    uint8_t sent_close;  /* close_notify is in the output */
};

/* ---------------------------------------------------------------- the sessions' BIO */

/* Makes room for n more output bytes in s->out: allocated on first use with just that room (a
 * queued message holds little more than its bytes), grown by doubling (a handshake flight comes
 * in several writes). */
static void out_reserve(tls_conn_t *s, size_t n)
{
    if (s->out == NULL) {
        s->out_cap = n;
        s->out = rbuf_new(s->out_cap);
        s->out->len = 0;
        return;
    }
    if (s->out->len + n <= s->out_cap)
        return;
    s->out_cap = s->out_cap * 2 > s->out->len + n ? s->out_cap * 2 : s->out->len + n;
    s->out = xrealloc(s->out, sizeof(rbuf_t) + RBUF_HEADROOM + s->out_cap);
}

static int bio_write(BIO *b, const char *p, int n)
{
    tls_conn_t *s = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (n <= 0)
        return 0;
    out_reserve(s, (size_t)n);
    memcpy(rbuf_payload(s->out) + s->out->len, p, (size_t)n);
    s->out->len += (uint32_t)n;
    return n;
}

static int bio_read(BIO *b, char *p, int n)
{
    tls_conn_t *s = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (s->inlen == 0) {
        BIO_set_retry_read(b); /* "no more for now", never end of file: EOF is the socket's news */
        return -1;
    }
    size_t k = (size_t)n < s->inlen ? (size_t)n : s->inlen;
    memcpy(p, s->in, k);
    s->in += k;
    s->inlen -= k;
    return (int)k;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH: /* OpenSSL flushes after each flight: nothing to do, the output is taken whole */
        return 1;
    case BIO_CTRL_PENDING:
        return (long)((tls_conn_t *)BIO_get_data(b))->inlen;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* ---------------------------------------------------------------- context */

/* RFC 7301: the one protocol spoken here; a client that offers ALPN without it is refused with
 * no_application_protocol (a client that offers none goes on without ALPN). */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg)
{
    static const unsigned char ours[] = "\x08http/1.1";
    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto((unsigned char **)out, outlen, ours, sizeof(ours) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    return SSL_TLSEXT_ERR_OK;
}

/* An encrypted key would make OpenSSL ask for its passphrase on the terminal: refuse instead. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* "what: OpenSSL's reason" into err, and OpenSSL's error queue emptied. */
static void ssl_fail(char *err, size_t errlen, const char *what, const char *file)
{
    unsigned long e = ERR_peek_last_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    snprintf(err, errlen, "tls: %s %s: %s", what, file, why ? why : "unknown error");
    ERR_clear_error();
}

static SSL_CTX *make_ctx(const char *cert, const char *key, char *err, size_t errlen)
{
    SSL_CTX *c = SSL_CTX_new(TLS_server_method());
    if (c == NULL) {
        ssl_fail(err, errlen, "cannot create a context for", cert);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
    /* No server-side session cache (it would grow to 20,480 sessions): resumption uses tickets,
     * whose key is the context's, so a rotation also retires the tickets made under the old one. */
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_alpn_select_cb(c, alpn_select, NULL);
    SSL_CTX_set_default_passwd_cb(c, no_passphrase);
    if (SSL_CTX_use_certificate_chain_file(c, cert) != 1)
        ssl_fail(err, errlen, "cannot read the certificate chain from", cert);
    else if (SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
            ssl_fail(err, errlen, "the private key does not match the certificate in", cert);
        else
            ssl_fail(err, errlen, "cannot read the private key from", key);
    }
    else if (SSL_CTX_check_private_key(c) != 1)
        ssl_fail(err, errlen, "the private key does not match the certificate in", cert);
    else
        return c;
    SSL_CTX_free(c);
    return NULL;
}

static void describe(tls_ctx_t *t)
{
    X509 *x = SSL_CTX_get0_certificate(t->ssl);
    char subject[128] = "?", until[32] = "?", *serial = NULL;
    struct tm tm;
    BIGNUM *bn = x ? ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL) : NULL;
    if (x != NULL) {
        X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof(subject));
        if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
            strftime(until, sizeof(until), "%Y-%m-%d %H:%M UTC", &tm);
    }
    if (bn != NULL)
        serial = BN_bn2hex(bn);
    snprintf(t->desc, sizeof(t->desc), "%s, serial %s, valid until %s%s", subject, serial ? serial : "?", until,
             x != NULL && X509_cmp_current_time(X509_get0_notAfter(x)) < 0 ? " (EXPIRED)" : "");
    OPENSSL_free(serial);
    BN_free(bn);
}

tls_ctx_t *tls_ctx_new(const char *cert, const char *key, char *err, size_t errlen)
{
    SSL_CTX *c = make_ctx(cert, key, err, errlen);
    if (c == NULL)
        return NULL;
    tls_ctx_t *t = xcalloc(1, sizeof(*t));
    t->ssl = c;
    t->cert = xstrndup(cert, strlen(cert));
    t->key = xstrndup(key, strlen(key));
    t->bio = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "siolua tls");
    if (t->bio == NULL) {
        fputs("siolua: out of memory\n", stderr);
        abort();
    }
    BIO_meth_set_write(t->bio, bio_write);
    BIO_meth_set_read(t->bio, bio_read);
    BIO_meth_set_ctrl(t->bio, bio_ctrl);
    BIO_meth_set_create(t->bio, bio_create);
    describe(t);
    return t;
}

int tls_ctx_reload(tls_ctx_t *t, char *err, size_t errlen)
{
    SSL_CTX *c = make_ctx(t->cert, t->key, err, errlen);
    if (c == NULL)
        return -1;
    SSL_CTX_free(t->ssl); /* open sessions hold their own reference to it */
    t->ssl = c;
    describe(t);
    return 0;
}

const char *tls_ctx_describe(const tls_ctx_t *t)
{
    return t->desc;
}

void tls_ctx_free(tls_ctx_t *t)
{
    if (t == NULL)
        return;
    SSL_CTX_free(t->ssl);
    BIO_meth_free(t->bio);
    free(t->cert);
    free(t->key);
    free(t);
}

/* ---------------------------------------------------------------- sessions */

tls_conn_t *tls_conn_new(tls_ctx_t *t)
{
    tls_conn_t *s = xcalloc(1, sizeof(*s));
    BIO *b;
    s->ctx = t;
    s->ssl = SSL_new(t->ssl);
    b = BIO_new(t->bio);
    if (s->ssl == NULL || b == NULL) {
        fputs("siolua: out of memory\n", stderr);
        abort();
    }
    BIO_set_data(b, s);
    SSL_set_bio(s->ssl, b, b); /* one BIO both ways: the session owns it */
    SSL_set_accept_state(s->ssl);
    return s;
}

void tls_conn_free(tls_conn_t *s)
{
    if (s == NULL)
        return;
    SSL_free(s->ssl);
    rbuf_unref(s->out);
    buf_free(&s->keep);
    free(s);
}

void tls_feed_done(tls_conn_t *s)
{
    if (s->inlen == 0) {
        buf_free(&s->keep);
        s->in = NULL;
    } else if (s->borrowed) {
        s->keep.len = 0;
        buf_append(&s->keep, s->in, s->inlen);
        s->in = s->keep.base;
    } else if (s->in != s->keep.base) {
        memmove(s->keep.base, s->in, s->inlen);
        s->keep.len = s->inlen;
        s->in = s->keep.base;
    }
    s->borrowed = 0;
}

void tls_feed(tls_conn_t *s, const char *p, size_t n)
{
    if (s->inlen == 0) {
        s->in = p;
        s->inlen = n;
        s->borrowed = 1;
        return;
    }
    tls_feed_done(s); /* unread bytes first: they are in keep from here */
    buf_append(&s->keep, p, n);
    s->in = s->keep.base;
    s->inlen = s->keep.len;
}

int tls_has_input(const tls_conn_t *s)
{
    return !s->failed && (s->inlen > 0 || SSL_has_pending(s->ssl));
}

/* The session is over: remembers why (the first error of the queue is the cause) and empties
 * OpenSSL's error queue. */
static void fail(tls_conn_t *s)
{
    unsigned long e = ERR_get_error();
    s->failed = 1;
    if (e == 0)
        s->err = "unexpected end of the session";
    else if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_HTTP_REQUEST)
        s->err = "plain HTTP request";
    else if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_HTTPS_PROXY_REQUEST)
        s->err = "HTTP proxy request";
    else
        s->err = ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "TLS error";
    ERR_clear_error();
}

int tls_handshake(tls_conn_t *s)
{
    int r;
    if (s->established)
        return TLS_OK;
    if (s->failed)
        return TLS_ERROR;
    ERR_clear_error();
    r = SSL_do_handshake(s->ssl);
    if (r == 1) {
        s->established = 1;
        return TLS_OK;
    }
    switch (SSL_get_error(s->ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return TLS_AGAIN;
    default:
        fail(s);
        return TLS_ERROR;
    }
}

ssize_t tls_read(tls_conn_t *s, const char **out)
{
    int r;
    if (!s->established || s->failed)
        return s->failed ? TLS_ERROR : TLS_AGAIN;
    ERR_clear_error();
    r = SSL_read(s->ssl, s->ctx->plain, sizeof(s->ctx->plain));
    if (r > 0) {
        *out = s->ctx->plain;
        return r;
    }
    switch (SSL_get_error(s->ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return TLS_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return TLS_CLOSED;
    default:
        fail(s);
        return TLS_ERROR;
    }
}

int tls_write(tls_conn_t *s, const void *p, size_t n)
{
    if (!s->established || s->failed || s->sent_close)
        return TLS_ERROR;
    if (n == 0)
        return 0;
    /* room for the records' overhead too (header, tag, padding: well under 64 bytes a record) */
    out_reserve(s, n + (n / TLS_PLAIN_MAX + 1) * 64);
    ERR_clear_error();
    if (SSL_write(s->ssl, p, (int)n) != (int)n) { /* our BIO takes everything: only a failure is short */
        fail(s);
        return TLS_ERROR;
    }
    return 0;
}

void tls_close_notify(tls_conn_t *s)
{
    if (!s->established || s->failed || s->sent_close)
        return;
    s->sent_close = 1;
    ERR_clear_error();
    SSL_shutdown(s->ssl); /* 0: ours is sent, the peer's is not awaited */
    ERR_clear_error();
}

rbuf_t *tls_output(tls_conn_t *s)
{
    rbuf_t *b = s->out;
    s->out = NULL;
    s->out_cap = 0;
    if (b != NULL && b->len == 0) { /* room reserved for a write that failed: no idle buffer */
        rbuf_unref(b);
        b = NULL;
    }
    return b;
}

const char *tls_error(const tls_conn_t *s)
{
    return s->err ? s->err : "";
}

const char *tls_version(const tls_conn_t *s)
{
    return s->established ? SSL_get_version(s->ssl) : "";
}
