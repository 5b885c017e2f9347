/* libFuzzer harness for the TLS record path (tls.c: our BIO, the unread-input copy, the session's
 * states), sans I/O. The first byte picks the mode, the second how the bytes are cut into reads:
 *   mode 0: the rest is what a client sends from the start (ClientHellos, garbage);
 *   mode 1: after a real handshake with an OpenSSL client in memory, the rest goes on the wire raw;
 *   mode 2: after the handshake, the rest is the client's plaintext, sent as real records: what the
 *           server reads must be exactly those bytes, however the records are cut.
 * A self-signed certificate is made at start-up (P-256) in a temporary folder.
 * clang -std=c11 -D_GNU_SOURCE -Isrc -g -O1 -fsanitize=fuzzer,address,undefined
 *   tests/fuzz/fuzz_tls.c src/tls.c src/buf.c -lssl -lcrypto -o build/fuzz/fuzz_tls */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tls.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tls_ctx_t *T;
static SSL_CTX *C;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    char dir[] = "/tmp/siolua-fuzz-tls-XXXXXX", cert[64], key[64], err[256];
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    FILE *f;
    if (mkdtemp(dir) == NULL)
        abort();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, k);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)"fuzz", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_sign(x, k, EVP_sha256());
    snprintf(cert, sizeof(cert), "%s/c.pem", dir);
    snprintf(key, sizeof(key), "%s/k.pem", dir);
    f = fopen(cert, "w");
    PEM_write_X509(f, x);
    fclose(f);
    f = fopen(key, "w");
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    T = tls_ctx_new(cert, key, err, sizeof(err));
    unlink(cert);
    unlink(key);
    rmdir(dir);
    X509_free(x);
    EVP_PKEY_free(k);
    C = SSL_CTX_new(TLS_client_method());
    if (T == NULL || C == NULL)
        abort();
    return 0;
}

static void to_client(tls_conn_t *s, BIO *cin);

/* Feeds p in reads of `cut` bytes (from a scratch copy that is overwritten after each, as the
 * loop-wide buffer is); appends the plaintext read to *out; the session's output goes to the
 * client's BIO cin (dropped when NULL). Returns the last result. */
static int feed(tls_conn_t *s, const uint8_t *p, size_t n, size_t cut, buf_t *out, BIO *cin)
{
    static char scratch[65536];
    int r = TLS_AGAIN;
    for (size_t off = 0; off < n; off += cut) {
        size_t k = n - off < cut ? n - off : cut;
        const char *q;
        ssize_t m;
        memcpy(scratch, p + off, k);
        tls_feed(s, scratch, k);
        r = tls_handshake(s);
        while (r == TLS_OK && (m = tls_read(s, &q)) > 0)
            buf_append(out, q, (size_t)m);
        tls_feed_done(s);
        memset(scratch, 0xEE, k);
        to_client(s, cin);
        if (r == TLS_ERROR)
            break;
    }
    return r;
}

/* Moves what one side wrote to the other: the client's mem BIO <-> the session. */
static void to_client(tls_conn_t *s, BIO *cin)
{
    rbuf_t *b = tls_output(s);
    if (b != NULL && cin != NULL)
        BIO_write(cin, rbuf_payload(b), (int)b->len);
    rbuf_unref(b);
}

static size_t drain(BIO *cout, uint8_t *buf, size_t cap)
{
    int n = BIO_read(cout, buf, (int)cap);
    return n > 0 ? (size_t)n : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t wire[1 << 20];
    if (size < 2 || size > 32768)
        return 0;
    int mode = data[0] % 3;
    size_t cut = (size_t)data[1] + 1;
    data += 2, size -= 2;
    tls_conn_t *s = tls_conn_new(T);
    buf_t plain = BUF_INIT;
    if (mode == 0) {
        feed(s, data, size, cut, &plain, NULL);
        tls_conn_free(s);
        buf_free(&plain);
        return 0;
    }
    /* a real handshake first (TLS 1.3 or 1.2, by the cut's parity) */
    SSL *c = SSL_new(C);
    BIO *cin = BIO_new(BIO_s_mem()), *cout = BIO_new(BIO_s_mem());
    SSL_set_bio(c, cin, cout);
    SSL_set_max_proto_version(c, cut & 1 ? TLS1_2_VERSION : TLS1_3_VERSION);
    SSL_set_connect_state(c);
    int ok = 0;
    for (int i = 0; i < 8 && !ok; i++) {
        int cr = SSL_do_handshake(c);
        size_t n = drain(cout, wire, sizeof(wire));
        int sr = n > 0 ? feed(s, wire, n, sizeof(wire), &plain, cin) : tls_handshake(s);
        ok = cr == 1 && sr == TLS_OK;
    }
    if (!ok)
        abort(); /* the handshake between OpenSSL and us must succeed */
    if (mode == 1) {
        feed(s, data, size, cut, &plain, cin);
    } else if (size > 0) {
        int r;
        SSL_write(c, data, (int)size);
        r = feed(s, wire, drain(cout, wire, sizeof(wire)), cut, &plain, cin);
        if (r != TLS_OK || plain.len != size || memcmp(plain.base, data, size) != 0)
            abort(); /* the plaintext must come out whole and in order */
    }
    SSL_free(c);
    tls_conn_free(s);
    buf_free(&plain);
    return 0;
}
