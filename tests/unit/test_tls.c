/* tls: server sessions driven by an OpenSSL client in memory (handshake, records both ways, input
 * cut at every byte, ALPN, refused handshakes, certificate rotation, close_notify), then over net
 * on a real loopback connection (the owner hears of a connection only after the handshake, the
 * handshake deadline, plaintext held while the owner pauses). The certificates are made here with
 * libcrypto: a CA and leaves for 127.0.0.1, written to a temporary folder. */
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loopback.h"
#include "net.h"
#include "test.h"
#include "tls.h"

/* ---------------------------------------------------------------- certificates */

static char dir[64];        /* the temporary folder */
static EVP_PKEY *ca_key;
static X509 *ca_cert;

static char *path_of(const char *name)
{
    static char paths[8][128];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof(paths[0]), "%s/%s", dir, name);
    return p;
}

/* A certificate for cn, serial, signed by the CA (or self-signed when ca is 0), valid for a day,
 * for IP 127.0.0.1. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, long serial, int ca)
{
    X509 *x = X509_new();
    X509V3_CTX v3;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, ca ? X509_get_subject_name(x) : X509_get_subject_name(ca_cert));
    X509V3_set_ctx(&v3, ca ? x : ca_cert, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, ca ? NID_basic_constraints : NID_subject_alt_name,
                                            ca ? "critical,CA:TRUE" : "IP:127.0.0.1");
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    X509_sign(x, ca ? key : ca_key, EVP_sha256());
    return x;
}

static void write_pem(const char *name, X509 *x, EVP_PKEY *key, const char *pass)
{
    FILE *f = fopen(path_of(name), "w");
    if (x != NULL)
        PEM_write_X509(f, x);
    if (key != NULL)
        PEM_write_PrivateKey(f, key, pass ? EVP_aes_128_cbc() : NULL, (unsigned char *)pass, pass ? 4 : 0, NULL,
                             NULL);
    fclose(f);
}

/* Leaf number `serial` in leafN.pem / leafN.key (N = serial). */
static void make_leaf(long serial)
{
    char c[32], k[32];
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = make_cert(key, "127.0.0.1", serial, 0);
    snprintf(c, sizeof(c), "leaf%ld.pem", serial);
    snprintf(k, sizeof(k), "leaf%ld.key", serial);
    write_pem(c, x, NULL, NULL);
    write_pem(k, NULL, key, NULL);
    X509_free(x);
    EVP_PKEY_free(key);
}

static void make_pki(void)
{
    snprintf(dir, sizeof(dir), "/tmp/siolua-test-tls-XXXXXX");
    if (mkdtemp(dir) == NULL)
        abort();
    ca_key = EVP_EC_gen("P-256");
    ca_cert = make_cert(ca_key, "siolua test CA", 1, 1);
    write_pem("ca.pem", ca_cert, NULL, NULL);
    make_leaf(2);
    make_leaf(3);
    {
        EVP_PKEY *key = EVP_EC_gen("P-256");
        write_pem("encrypted.key", NULL, key, "pass");
        EVP_PKEY_free(key);
    }
    write_pem("garbage.pem", NULL, NULL, NULL); /* empty */
}

static void drop_pki(void)
{
    const char *names[] = {"ca.pem", "leaf2.pem", "leaf2.key", "leaf3.pem", "leaf3.key", "encrypted.key",
                           "garbage.pem", "cur.pem", "cur.key"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        unlink(path_of(names[i]));
    rmdir(dir);
    X509_free(ca_cert);
    EVP_PKEY_free(ca_key);
}

static void copy_file(const char *from, const char *to)
{
    char buf[8192];
    size_t n;
    FILE *in = fopen(path_of(from), "r"), *out = fopen(path_of(to), "w");
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        fwrite(buf, 1, n, out);
    fclose(in);
    fclose(out);
}

/* ---------------------------------------------------------------- a client in memory */

typedef struct {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *in, *out; /* server -> client, client -> server */
} cli_t;

/* maxver 0: any; alpn NULL: none offered. The client verifies the chain and the IP. */
static void cli_new(cli_t *c, int minver, int maxver, const char *alpn, size_t alpn_len)
{
    c->ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_security_level(c->ctx, 0); /* lets the test offer TLS 1.1 */
    SSL_CTX_set_min_proto_version(c->ctx, minver);
    SSL_CTX_set_max_proto_version(c->ctx, maxver);
    SSL_CTX_load_verify_locations(c->ctx, path_of("ca.pem"), NULL);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    if (alpn != NULL)
        SSL_CTX_set_alpn_protos(c->ctx, (const unsigned char *)alpn, (unsigned)alpn_len);
    c->ssl = SSL_new(c->ctx);
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), "127.0.0.1");
    c->in = BIO_new(BIO_s_mem());
    c->out = BIO_new(BIO_s_mem());
    SSL_set_bio(c->ssl, c->in, c->out);
    SSL_set_connect_state(c->ssl);
}

static void cli_free(cli_t *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
}

/* The server side's state, as a test sees it. */
typedef struct {
    tls_conn_t *s;
    int hs;      /* last tls_handshake result (TLS_OK once done), or TLS_CLOSED/TLS_ERROR from tls_read */
    buf_t plain; /* what tls_read gave */
} srv_t;

static void srv_step(srv_t *v)
{
    const char *p;
    ssize_t r;
    if (v->hs != TLS_OK) {
        v->hs = tls_handshake(v->s);
        if (v->hs != TLS_OK)
            return;
    }
    while ((r = tls_read(v->s, &p)) > 0)
        buf_append(&v->plain, p, (size_t)r);
    if (r != TLS_AGAIN)
        v->hs = (int)r;
}

/* What the client wrote, fed to the server `step` bytes at a time (from a buffer that is
 * scribbled over after each tls_feed_done, as the loop-wide read buffer would be). */
static void to_server(cli_t *c, srv_t *v, size_t step)
{
    char tmp[65536], piece[65536];
    int n;
    while ((n = BIO_read(c->out, tmp, sizeof(tmp))) > 0) {
        for (size_t off = 0; off < (size_t)n; off += step) {
            size_t k = (size_t)n - off < step ? (size_t)n - off : step;
            memcpy(piece, tmp + off, k);
            tls_feed(v->s, piece, k);
            srv_step(v);
            tls_feed_done(v->s);
            memset(piece, 0xAA, k);
        }
    }
}

static void to_client(cli_t *c, srv_t *v)
{
    rbuf_t *b = tls_output(v->s);
    if (b != NULL) {
        BIO_write(c->in, rbuf_payload(b), (int)b->len);
        rbuf_unref(b);
    }
}

/* Runs both handshakes to their end; 1 if both succeeded. */
static int handshake(cli_t *c, srv_t *v, size_t step)
{
    int cr = 0;
    for (int i = 0; i < 10 && (cr != 1 || v->hs != TLS_OK); i++) {
        cr = SSL_do_handshake(c->ssl);
        to_server(c, v, step);
        to_client(c, v);
        if (v->hs == TLS_ERROR)
            break;
    }
    return cr == 1 && v->hs == TLS_OK;
}

/* Client reads whatever the server sent. */
static void cli_read(cli_t *c, buf_t *out)
{
    char tmp[16384];
    int n;
    while ((n = SSL_read(c->ssl, tmp, sizeof(tmp))) > 0)
        buf_append(out, tmp, (size_t)n);
}

static long peer_serial(cli_t *c)
{
    X509 *x = SSL_get1_peer_certificate(c->ssl);
    long s = x ? ASN1_INTEGER_get(X509_get_serialNumber(x)) : -1;
    X509_free(x);
    return s;
}

static tls_ctx_t *ctx_leaf(long serial)
{
    char err[256] = "", c[32], k[32];
    snprintf(c, sizeof(c), "leaf%ld.pem", serial);
    snprintf(k, sizeof(k), "leaf%ld.key", serial);
    tls_ctx_t *t = tls_ctx_new(path_of(c), path_of(k), err, sizeof(err));
    if (t == NULL)
        fprintf(stderr, "  %s\n", err);
    return t;
}

/* ---------------------------------------------------------------- sessions in memory */

static void exchange(size_t step, int maxver, const char *version)
{
    tls_ctx_t *t = ctx_leaf(2);
    cli_t c;
    srv_t v = {tls_conn_new(t), TLS_AGAIN, BUF_INIT};
    buf_t got = BUF_INIT, big = BUF_INIT;
    const unsigned char *alpn;
    unsigned alen;
    cli_new(&c, TLS1_2_VERSION, maxver, "\x02h2\x08http/1.1", 12);
    CHECK(handshake(&c, &v, step));
    CHECK_EQ_MEM(tls_version(v.s), strlen(tls_version(v.s)), version);
    SSL_get0_alpn_selected(c.ssl, &alpn, &alen);
    CHECK_EQ_MEM(alpn, alen, "http/1.1");
    CHECK_EQ_INT(peer_serial(&c), 2);
    /* client -> server: two writes, cut at every `step` bytes */
    SSL_write(c.ssl, "GET / HTTP/1.1\r\n", 16);
    SSL_write(c.ssl, "Host: x\r\n\r\n", 11);
    to_server(&c, &v, step);
    CHECK_EQ_MEM(v.plain.base, v.plain.len, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(!tls_has_input(v.s));
    /* server -> client: 100 KB in one write (7 records), and a small one */
    for (int i = 0; i < 100000; i++)
        buf_appendc(&big, (char)('a' + i % 26));
    CHECK_EQ_INT(tls_write(v.s, big.base, big.len), 0);
    CHECK_EQ_INT(tls_write(v.s, "end", 3), 0);
    to_client(&c, &v);
    cli_read(&c, &got);
    CHECK_EQ_INT(got.len, 100003);
    CHECK(got.len == 100003 && memcmp(got.base, big.base, big.len) == 0 && memcmp(got.base + 100000, "end", 3) == 0);
    CHECK(tls_output(v.s) == NULL); /* all taken */
    /* the client's close_notify ends the session */
    SSL_shutdown(c.ssl);
    to_server(&c, &v, step);
    CHECK_EQ_INT(v.hs, TLS_CLOSED);
    buf_free(&got);
    buf_free(&big);
    buf_free(&v.plain);
    tls_conn_free(v.s);
    cli_free(&c);
    tls_ctx_free(t);
}

TEST(tls13_whole)
{
    exchange(65536, 0, "TLSv1.3");
}

TEST(tls12_whole)
{
    exchange(65536, TLS1_2_VERSION, "TLSv1.2");
}

/* Every read of one byte: the session keeps what it could not use yet, and nothing is lost. */
TEST(tls13_byte_at_a_time)
{
    exchange(1, 0, "TLSv1.3");
}

TEST(tls12_cut_at_7)
{
    exchange(7, TLS1_2_VERSION, "TLSv1.2");
}

/* The server's close_notify reaches the client; writes after it are refused. */
TEST(close_notify)
{
    tls_ctx_t *t = ctx_leaf(2);
    cli_t c;
    srv_t v = {tls_conn_new(t), TLS_AGAIN, BUF_INIT};
    buf_t got = BUF_INIT;
    char tmp[16];
    cli_new(&c, TLS1_2_VERSION, 0, NULL, 0);
    CHECK(handshake(&c, &v, 65536));
    CHECK_EQ_INT(tls_write(v.s, "bye", 3), 0);
    tls_close_notify(v.s);
    tls_close_notify(v.s); /* once */
    CHECK_EQ_INT(tls_write(v.s, "late", 4), TLS_ERROR);
    to_client(&c, &v);
    cli_read(&c, &got);
    CHECK_EQ_MEM(got.base, got.len, "bye");
    CHECK_EQ_INT(SSL_read(c.ssl, tmp, sizeof(tmp)), 0);
    CHECK_EQ_INT(SSL_get_error(c.ssl, 0), SSL_ERROR_ZERO_RETURN);
    buf_free(&got);
    tls_conn_free(v.s);
    cli_free(&c);
    tls_ctx_free(t);
}

/* Refused: ALPN without http/1.1, TLS 1.1, plain HTTP, garbage, a record over the maximum. Each
 * is TLS_ERROR with its reason, after at most the bytes it took to tell. */
static void refused(const char *bytes, size_t n, const char *reason)
{
    tls_ctx_t *t = ctx_leaf(2);
    tls_conn_t *s = tls_conn_new(t);
    tls_feed(s, bytes, n);
    CHECK_EQ_INT(tls_handshake(s), TLS_ERROR);
    tls_feed_done(s);
    CHECK(strcmp(tls_error(s), reason) == 0);
    if (strcmp(tls_error(s), reason) != 0)
        fprintf(stderr, "  got \"%s\", expected \"%s\"\n", tls_error(s), reason);
    CHECK_EQ_INT(tls_handshake(s), TLS_ERROR); /* stays failed */
    CHECK(!tls_has_input(s));
    rbuf_unref(tls_output(s)); /* an alert, or nothing */
    tls_conn_free(s);
    tls_ctx_free(t);
}

TEST(refused_plain_http)
{
    refused("GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27, "plain HTTP request");
    refused("POST /socket.io/ HTTP/1.1\r\n", 27, "plain HTTP request");
    refused("CONNECT x:443 HTTP/1.1\r\n", 24, "HTTP proxy request");
}

TEST(refused_garbage)
{
    refused("\x16\x03\x01\x00\x05hello", 10, "unexpected message");
    refused("\x17\x03\x03\x00\x05hello", 10, "unexpected message");
    /* a record header that declares 40000 bytes */
    refused("\x16\x03\x01\x9c\x40", 5, "packet length too long");
}

static void refused_client(int minver, int maxver, const char *alpn, size_t alen, const char *reason)
{
    tls_ctx_t *t = ctx_leaf(2);
    cli_t c;
    srv_t v = {tls_conn_new(t), TLS_AGAIN, BUF_INIT};
    cli_new(&c, minver, maxver, alpn, alen);
    CHECK(!handshake(&c, &v, 65536));
    CHECK_EQ_INT(v.hs, TLS_ERROR);
    CHECK(strcmp(tls_error(v.s), reason) == 0);
    if (strcmp(tls_error(v.s), reason) != 0)
        fprintf(stderr, "  got \"%s\", expected \"%s\"\n", tls_error(v.s), reason);
    tls_conn_free(v.s);
    cli_free(&c);
    tls_ctx_free(t);
}

TEST(refused_alpn_and_version)
{
    refused_client(TLS1_2_VERSION, 0, "\x02h2", 3, "no application protocol");
    refused_client(TLS1_VERSION, TLS1_1_VERSION, NULL, 0, "unsupported protocol");
}

/* TLS 1.2 renegotiation asked by the client is refused with a no_renegotiation warning (the
 * client may give up then; OpenSSL's does): the server's session is not broken by it. */
TEST(renegotiation_refused)
{
    tls_ctx_t *t = ctx_leaf(2);
    cli_t c;
    srv_t v = {tls_conn_new(t), TLS_AGAIN, BUF_INIT};
    cli_new(&c, TLS1_2_VERSION, TLS1_2_VERSION, NULL, 0);
    CHECK(handshake(&c, &v, 65536));
    CHECK_EQ_INT(SSL_renegotiate(c.ssl), 1);
    SSL_do_handshake(c.ssl);
    to_server(&c, &v, 65536);
    CHECK_EQ_INT(v.hs, TLS_OK);
    {
        rbuf_t *alert = tls_output(v.s); /* warning alert: 0x15, then (encrypted) level 1, 100 */
        CHECK(alert != NULL && alert->len > 5 && rbuf_payload(alert)[0] == 0x15);
        rbuf_unref(alert);
    }
    CHECK_EQ_INT(tls_write(v.s, "still here", 10), 0);
    buf_free(&v.plain);
    tls_conn_free(v.s);
    cli_free(&c);
    tls_ctx_free(t);
}

/* TLS 1.3 KeyUpdate with update_requested: the server answers with its own (output after a read
 * that returned no data), and both directions go on with the new keys. */
TEST(key_update)
{
    tls_ctx_t *t = ctx_leaf(2);
    cli_t c;
    srv_t v = {tls_conn_new(t), TLS_AGAIN, BUF_INIT};
    buf_t got = BUF_INIT;
    cli_new(&c, TLS1_3_VERSION, 0, NULL, 0);
    CHECK(handshake(&c, &v, 65536));
    cli_read(&c, &got); /* the session tickets */
    CHECK_EQ_INT(SSL_key_update(c.ssl, SSL_KEY_UPDATE_REQUESTED), 1);
    SSL_write(c.ssl, "after update", 12);
    to_server(&c, &v, 65536);
    CHECK_EQ_MEM(v.plain.base, v.plain.len, "after update");
    CHECK_EQ_INT(tls_write(v.s, "reply", 5), 0);
    to_client(&c, &v);
    cli_read(&c, &got);
    CHECK_EQ_MEM(got.base, got.len, "reply");
    /* the client's record after the exchange needs the server's new receive key */
    v.plain.len = 0;
    SSL_write(c.ssl, "again", 5);
    to_server(&c, &v, 65536);
    CHECK_EQ_MEM(v.plain.base, v.plain.len, "again");
    CHECK_EQ_INT(v.hs, TLS_OK);
    buf_free(&got);
    buf_free(&v.plain);
    tls_conn_free(v.s);
    cli_free(&c);
    tls_ctx_free(t);
}

/* ---------------------------------------------------------------- context and rotation */

TEST(ctx_errors)
{
    char err[256];
    CHECK(tls_ctx_new(path_of("nope.pem"), path_of("leaf2.key"), err, sizeof(err)) == NULL);
    CHECK(strstr(err, "cannot read the certificate chain from") != NULL && strstr(err, "nope.pem") != NULL);
    CHECK(tls_ctx_new(path_of("garbage.pem"), path_of("leaf2.key"), err, sizeof(err)) == NULL);
    CHECK(strstr(err, "garbage.pem") != NULL);
    CHECK(tls_ctx_new(path_of("leaf2.pem"), path_of("leaf3.key"), err, sizeof(err)) == NULL);
    CHECK(strstr(err, "does not match") != NULL);
    /* an encrypted key is refused at once (OpenSSL would otherwise ask on the terminal) */
    CHECK(tls_ctx_new(path_of("leaf2.pem"), path_of("encrypted.key"), err, sizeof(err)) == NULL);
    CHECK(strstr(err, "cannot read the private key from") != NULL);
    CHECK(ERR_peek_error() == 0); /* the error queue is left empty */
}

/* A reload: sessions begun before keep their certificate, new ones get the new one; files that
 * cannot be used leave the loaded certificate in place. */
TEST(rotation)
{
    char err[256];
    cli_t c1, c2, c3;
    copy_file("leaf2.pem", "cur.pem");
    copy_file("leaf2.key", "cur.key");
    tls_ctx_t *t = tls_ctx_new(path_of("cur.pem"), path_of("cur.key"), err, sizeof(err));
    CHECK(t != NULL && strstr(tls_ctx_describe(t), "serial 02") != NULL);
    srv_t v1 = {tls_conn_new(t), TLS_AGAIN, BUF_INIT};
    cli_new(&c1, TLS1_2_VERSION, 0, NULL, 0);
    CHECK(handshake(&c1, &v1, 65536));
    srv_t v0 = {tls_conn_new(t), TLS_AGAIN, BUF_INIT}; /* made before the reload, handshake after */

    copy_file("leaf3.pem", "cur.pem");
    copy_file("leaf3.key", "cur.key");
    CHECK_EQ_INT(tls_ctx_reload(t, err, sizeof(err)), 0);
    CHECK(strstr(tls_ctx_describe(t), "serial 03") != NULL);
    srv_t v2 = {tls_conn_new(t), TLS_AGAIN, BUF_INIT};
    cli_new(&c2, TLS1_2_VERSION, 0, NULL, 0);
    CHECK(handshake(&c2, &v2, 65536));
    CHECK_EQ_INT(peer_serial(&c2), 3);
    cli_new(&c3, TLS1_2_VERSION, 0, NULL, 0);
    CHECK(handshake(&c3, &v0, 65536));
    CHECK_EQ_INT(peer_serial(&c3), 2);
    /* the old session still works both ways */
    CHECK_EQ_INT(tls_write(v1.s, "old", 3), 0);
    to_client(&c1, &v1);
    {
        buf_t got = BUF_INIT;
        cli_read(&c1, &got);
        CHECK_EQ_MEM(got.base, got.len, "old");
        buf_free(&got);
    }
    /* a key that does not match: refused, serial 03 stays */
    copy_file("leaf2.key", "cur.key");
    CHECK_EQ_INT(tls_ctx_reload(t, err, sizeof(err)), -1);
    CHECK(strstr(err, "does not match") != NULL);
    CHECK(strstr(tls_ctx_describe(t), "serial 03") != NULL);
    tls_conn_free(v0.s);
    tls_conn_free(v1.s);
    tls_conn_free(v2.s);
    cli_free(&c1);
    cli_free(&c2);
    cli_free(&c3);
    tls_ctx_free(t);
}

/* ---------------------------------------------------------------- over net */

typedef struct {
    lb_t lb;
    int naccepted, nclosed, why;
    int pause_after_read; /* pause on the first on_read */
    net_conn_t *conn;
    buf_t got;
} net_srv_t;

static void n_read(net_conn_t *c, const char *data, size_t len)
{
    net_srv_t *s = c->owner;
    buf_append(&s->got, data, len);
    if (s->pause_after_read) {
        s->pause_after_read = 0;
        net_pause(c);
    }
    if (len >= 4 && memcmp(data, "echo", 4) == 0)
        net_write_copy(c, data, len);
}

static void n_close(net_conn_t *c, net_close_reason_t why)
{
    net_srv_t *s = c->owner;
    s->nclosed++;
    s->why = (int)why;
    s->conn = NULL;
}

static const net_ops_t n_ops = {.on_read = n_read, .on_close = n_close};

static void n_accept(net_conn_t *c, void *data)
{
    net_srv_t *s = data;
    CHECK(net_secure(c));
    s->naccepted++;
    s->conn = c;
    net_set_owner(c, &n_ops, s);
}

static void net_start(net_srv_t *s, tls_ctx_t *t, uint64_t timeout)
{
    memset(s, 0, sizeof(*s));
    CHECK_EQ_INT(lb_start(&s->lb, n_accept, s), 0);
    s->lb.net.tls = t;
    s->lb.net.tls_timeout = timeout;
}

/* A client over the socket fd: its handshake, run between loop turns. 1 if it completed. */
static int sock_handshake(net_srv_t *s, cli_t *c, int fd)
{
    uint64_t end = lb_deadline();
    SSL_set_fd(c->ssl, fd);
    for (;;) {
        int r = SSL_connect(c->ssl);
        if (r == 1)
            return 1;
        if (SSL_get_error(c->ssl, r) != SSL_ERROR_WANT_READ || !lb_turn(&s->lb, fd, end))
            return 0;
    }
}

/* Reads from the socket until `want` plaintext bytes came (or EOF / the deadline). */
static void sock_read(net_srv_t *s, cli_t *c, int fd, buf_t *out, size_t want)
{
    uint64_t end = lb_deadline();
    while (out->len < want) {
        char tmp[16384];
        int n = SSL_read(c->ssl, tmp, sizeof(tmp));
        if (n > 0) {
            buf_append(out, tmp, (size_t)n);
            continue;
        }
        if (SSL_get_error(c->ssl, n) != SSL_ERROR_WANT_READ || !lb_turn(&s->lb, fd, end))
            return;
    }
}

TEST(net_owner_after_handshake)
{
    net_srv_t s;
    tls_ctx_t *t = ctx_leaf(2);
    cli_t c;
    buf_t got = BUF_INIT;
    net_start(&s, t, 10000);
    int fd = lb_connect(&s.lb);
    LB_UNTIL(&s.lb, s.lb.net.nconns == 1);
    lb_settle(&s.lb);
    CHECK_EQ_INT(s.naccepted, 0); /* connected, no handshake yet: no owner */
    cli_new(&c, TLS1_2_VERSION, 0, "\x08http/1.1", 9);
    CHECK(sock_handshake(&s, &c, fd));
    LB_UNTIL(&s.lb, s.naccepted == 1);
    CHECK_EQ_INT(s.naccepted, 1);
    SSL_write(c.ssl, "echo hello", 10);
    sock_read(&s, &c, fd, &got, 10);
    CHECK_EQ_MEM(got.base, got.len, "echo hello");
    /* the server's close sends close_notify, then FIN */
    net_close_after_write(s.conn);
    {
        char tmp[16];
        int n;
        uint64_t end = lb_deadline();
        while ((n = SSL_read(c.ssl, tmp, sizeof(tmp))) <= 0 && SSL_get_error(c.ssl, n) == SSL_ERROR_WANT_READ &&
               lb_turn(&s.lb, fd, end))
            ;
        CHECK_EQ_INT(SSL_get_error(c.ssl, n), SSL_ERROR_ZERO_RETURN);
    }
    LB_UNTIL(&s.lb, s.nclosed == 1);
    CHECK_EQ_INT(s.why, NET_CLOSE_LOCAL);
    close(fd);
    CHECK_EQ_INT(lb_stop(&s.lb), 0);
    cli_free(&c);
    buf_free(&got);
    buf_free(&s.got);
    tls_ctx_free(t);
}

/* Half a ClientHello, then nothing: closed at the deadline, never handed to an owner. Plain HTTP:
 * closed at once, with nothing written back. */
TEST(net_handshake_deadline_and_plain_http)
{
    net_srv_t s;
    tls_ctx_t *t = ctx_leaf(2);
    buf_t in = BUF_INIT;
    net_start(&s, t, 200);
    int fd = lb_connect(&s.lb);
    lb_sends(fd, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
    CHECK_EQ_INT(lb_pump(&s.lb, fd, &in, 0), 1); /* EOF, after ~200 ms */
    CHECK_EQ_INT(in.len, 0);
    CHECK_EQ_INT(s.naccepted, 0);
    close(fd);
    fd = lb_connect(&s.lb);
    lb_sends(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_EQ_INT(lb_pump(&s.lb, fd, &in, 0), 1);
    CHECK_EQ_INT(in.len, 0);
    CHECK_EQ_INT(s.naccepted, 0);
    CHECK_EQ_INT(s.lb.net.tls_quiet + (s.lb.net.tls_warned != 0), 2); /* both counted, logged or not */
    close(fd);
    CHECK_EQ_INT(lb_stop(&s.lb), 0);
    buf_free(&in);
    tls_ctx_free(t);
}

/* With a per-IP limit, a connection over it is closed at once: no handshake is started for it. */
TEST(net_per_ip_before_handshake)
{
    net_srv_t s;
    tls_ctx_t *t = ctx_leaf(2);
    buf_t in = BUF_INIT;
    net_start(&s, t, 60000); /* a deadline past the harness's: only the limit can close c in time */
    s.lb.net.tls_max_per_ip = 2;
    int a = lb_connect(&s.lb), b = lb_connect(&s.lb);
    LB_UNTIL(&s.lb, s.lb.net.nconns == 2);
    int c = lb_connect(&s.lb);
    CHECK_EQ_INT(lb_pump(&s.lb, c, &in, 0), 1); /* EOF */
    CHECK_EQ_INT(in.len, 0);
    CHECK_EQ_INT(s.lb.net.nconns, 2);
    close(a);
    close(b);
    close(c);
    CHECK_EQ_INT(lb_stop(&s.lb), 0);
    buf_free(&in);
    tls_ctx_free(t);
}

/* The owner pauses after the first record: the second, read in the same segment, waits in the
 * session and comes after net_resume, in the same loop turn and not from inside net_resume. */
TEST(net_pause_holds_plaintext)
{
    net_srv_t s;
    tls_ctx_t *t = ctx_leaf(2);
    cli_t c;
    net_start(&s, t, 10000);
    int fd = lb_connect(&s.lb);
    cli_new(&c, TLS1_2_VERSION, 0, NULL, 0);
    CHECK(sock_handshake(&s, &c, fd));
    LB_UNTIL(&s.lb, s.naccepted == 1);
    s.pause_after_read = 1;
    {
        /* two records in one write(2): encrypt into memory, send at once */
        BIO *mem = BIO_new(BIO_s_mem());
        char tmp[4096];
        int n;
        SSL_set0_wbio(c.ssl, mem);
        SSL_write(c.ssl, "first", 5);
        SSL_write(c.ssl, "second", 6);
        n = BIO_read(mem, tmp, sizeof(tmp));
        lb_send(fd, tmp, (size_t)n);
        SSL_set_fd(c.ssl, fd);
    }
    LB_UNTIL(&s.lb, s.got.len >= 5);
    lb_settle(&s.lb);
    CHECK_EQ_MEM(s.got.base, s.got.len, "first");
    CHECK(net_paused(s.conn));
    net_resume(s.conn);
    CHECK_EQ_MEM(s.got.base, s.got.len, "first"); /* not synchronously */
    LB_UNTIL(&s.lb, s.got.len >= 11);
    CHECK_EQ_MEM(s.got.base, s.got.len, "firstsecond");
    shutdown(fd, SHUT_WR);
    LB_UNTIL(&s.lb, s.nclosed == 1);
    CHECK_EQ_INT(s.why, NET_CLOSE_EOF);
    close(fd);
    CHECK_EQ_INT(lb_stop(&s.lb), 0);
    cli_free(&c);
    buf_free(&s.got);
    tls_ctx_free(t);
}

int main(void)
{
    make_pki();
    RUN(tls13_whole);
    RUN(tls12_whole);
    RUN(tls13_byte_at_a_time);
    RUN(tls12_cut_at_7);
    RUN(close_notify);
    RUN(refused_plain_http);
    RUN(refused_garbage);
    RUN(refused_alpn_and_version);
    RUN(renegotiation_refused);
    RUN(key_update);
    RUN(ctx_errors);
    RUN(rotation);
    RUN(net_owner_after_handshake);
    RUN(net_handshake_deadline_and_plain_http);
    RUN(net_per_ip_before_handshake);
    RUN(net_pause_holds_plaintext);
    drop_pki();
    return test_summary();
}
