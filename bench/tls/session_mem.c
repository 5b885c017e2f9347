/* session_mem: heap bytes an idle TLS server session holds, by malloc's own accounting
 * (mallinfo2), without the noise of RSS: N sessions are opened against OpenSSL clients in memory
 * (handshake done, session tickets read), the clients freed, and the heap compared with before.
 *   siolua   sessions of src/tls.c, as siolua runs them (SSL_MODE_RELEASE_BUFFERS)
 *   kept     the same OpenSSL set-up without SSL_MODE_RELEASE_BUFFERS (mem BIOs): what an idle
 *            connection would cost if OpenSSL kept its record buffers
 * Usage: session_mem CERT KEY [N]; prints one JSON line. Built and run by bench/tls/run.sh. */
#include <malloc.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>

#include "tls.h"

static SSL_CTX *client;

static SSL *new_client(void)
{
    SSL *c = SSL_new(client);
    SSL_set_bio(c, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
    SSL_set_connect_state(c);
    return c;
}

/* One session of src/tls.c, established against c. */
static tls_conn_t *ours(tls_ctx_t *t, SSL *c)
{
    tls_conn_t *s = tls_conn_new(t);
    char buf[65536];
    const char *p;
    for (int i = 0; i < 8; i++) {
        int cr = SSL_do_handshake(c), n;
        while ((n = BIO_read(SSL_get_wbio(c), buf, sizeof(buf))) > 0) {
            tls_feed(s, buf, (size_t)n);
            if (tls_handshake(s) == TLS_OK)
                while (tls_read(s, &p) > 0)
                    ;
            tls_feed_done(s);
        }
        rbuf_t *b = tls_output(s);
        if (b != NULL) {
            BIO_write(SSL_get_rbio(c), rbuf_payload(b), (int)b->len);
            rbuf_unref(b);
        }
        if (cr == 1 && tls_handshake(s) == TLS_OK)
            break;
    }
    SSL_read(c, buf, sizeof(buf)); /* the tickets */
    return s;
}

/* The same with a bare OpenSSL server session on ctx (mem BIOs). */
static SSL *bare(SSL_CTX *ctx, SSL *c)
{
    SSL *s = SSL_new(ctx);
    char buf[65536];
    int n;
    SSL_set_bio(s, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
    SSL_set_accept_state(s);
    for (int i = 0; i < 8; i++) {
        int cr = SSL_do_handshake(c), sr;
        while ((n = BIO_read(SSL_get_wbio(c), buf, sizeof(buf))) > 0)
            BIO_write(SSL_get_rbio(s), buf, n);
        sr = SSL_do_handshake(s);
        while ((n = BIO_read(SSL_get_wbio(s), buf, sizeof(buf))) > 0)
            BIO_write(SSL_get_rbio(c), buf, n);
        if (cr == 1 && sr == 1)
            break;
    }
    SSL_read(c, buf, sizeof(buf));
    SSL_read(s, buf, sizeof(buf)); /* as an idle connection that has read: its input side is set up */
    return s;
}

int main(int argc, char **argv)
{
    char err[256];
    int n = argc > 3 ? atoi(argv[3]) : 2000;
    if (argc < 3) {
        fprintf(stderr, "usage: session_mem CERT KEY [N]\n");
        return 2;
    }
    tls_ctx_t *t = tls_ctx_new(argv[1], argv[2], err, sizeof(err));
    SSL_CTX *kept = SSL_CTX_new(TLS_server_method());
    client = SSL_CTX_new(TLS_client_method());
    if (t == NULL || kept == NULL || client == NULL) {
        fprintf(stderr, "session_mem: %s\n", t ? "OpenSSL" : err);
        return 1;
    }
    SSL_CTX_set_min_proto_version(kept, TLS1_2_VERSION);
    SSL_CTX_set_session_cache_mode(kept, SSL_SESS_CACHE_OFF);
    SSL_CTX_clear_mode(kept, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_use_certificate_chain_file(kept, argv[1]);
    SSL_CTX_use_PrivateKey_file(kept, argv[2], SSL_FILETYPE_PEM);
    void **v = calloc((size_t)n, sizeof(void *));
    SSL **c = calloc((size_t)n, sizeof(SSL *));
    double per[2];
    for (int k = 0; k < 2; k++) {
        tls_conn_free(ours(t, new_client())); /* warm-up: one-time allocations out of the count */
        SSL_free(bare(kept, new_client()));
        struct mallinfo2 m0 = mallinfo2();
        for (int i = 0; i < n; i++) {
            c[i] = new_client();
            v[i] = k == 0 ? (void *)ours(t, c[i]) : (void *)bare(kept, c[i]);
        }
        for (int i = 0; i < n; i++)
            SSL_free(c[i]);
        struct mallinfo2 m1 = mallinfo2();
        per[k] = ((double)m1.uordblks - (double)m0.uordblks) / n;
        for (int i = 0; i < n; i++) {
            if (k == 0)
                tls_conn_free(v[i]);
            else
                SSL_free(v[i]);
        }
    }
    printf("{\"scenario\":\"session_mem\",\"sessions\":%d,\"siolua_bytes\":%.0f,\"kept_buffers_bytes\":%.0f,"
           "\"protocol\":\"TLSv1.3\"}\n", n, per[0], per[1]);
    return 0;
}
