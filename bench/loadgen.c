/* loadgen: the benchmark's Engine.IO v4 / Socket.IO v5 client (bench/run.sh drives it).
 *
 * A test peer, not part of siolua: one libuv loop, hand-rolled RFC 6455 client framing (masked
 * frames out, unmasked in), HTTP long-polling through llhttp in response mode, OpenSSL for the
 * Sec-WebSocket-Key and its Accept check. It runs one scenario against a server that is already
 * listening, samples that server's CPU time (utime+stime, /proc/PID/stat) and RSS
 * (/proc/PID/status VmRSS) exactly at the edges of the measured phase, and prints one JSON line.
 * Being in C on one loop, it costs the machine less than the servers it measures (its own CPU time
 * is in the JSON as client_cpu_ms so that can be checked).
 *
 * Scenarios (--scenario):
 *   idle   connect N clients (WebSocket + CONNECT), hold them with heartbeats, RSS growth per client
 *   echo   N clients, closed loop of acked "echo" (1 in flight each): server CPU per round trip;
 *          then a fixed total rate (--rate) for latency p50/p99
 *   bcast  N receivers ("join" acked) + 1 sender of "bcast" with a 100-byte payload, at most
 *          --window broadcasts undelivered: server CPU per delivered message, deliveries/s
 *   churn  --lanes concurrent connect + CONNECT + disconnect cycles: cycles per server CPU second
 *   poll   the echo closed loop over HTTP long-polling (a GET and a POST connection per client)
 *
 * TLS: --tls makes every connection HTTPS/WSS (OpenSSL, memory BIOs, no certificate check: a
 * benchmark peer of a server started with a test certificate); the handshake is part of connecting.
 * Compression: --deflate offers permessage-deflate (RFC 7692, as ws and browsers do: context takeover
 * both ways), inflates the server's compressed frames with one stream per client and compresses its
 * own messages of 1024 bytes or more (one deflate stream per client that sends one, made on first
 * need). --text makes every echo / broadcast payload different (words at random) instead of one
 * repeated string, so that compression has real work. --warm-echo BYTES (idle): each client sends
 * one echo of that many bytes and waits for its answer before it counts as connected, so the
 * server holds whatever a client that talked once costs.
 *
 * Source addresses: --src 127.0.0.2-127.0.0.40 binds each connection to the next address of the
 * range (IP_BIND_ADDRESS_NO_PORT, so the port is chosen per 4-tuple at connect time), which lifts
 * the ~28k ephemeral-port limit of a single source address.
 *
 * One static context (`G`): this is a single-purpose test tool, not server code. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <llhttp.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <uv.h>
#include <zlib.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define container_of(p, T, m) ((T *)((char *)(p) - offsetof(T, m)))
#define ACK_RING 64          /* acks in flight per client, at most */
#define MAX_LEFTOVER (1u << 20)
#define PAYLOAD_MAX 65536

/* ------------------------------------------------------------------------------ types */

typedef struct client client_t;

enum { SC_IDLE, SC_ECHO, SC_BCAST, SC_CHURN, SC_POLL };
enum { PH_CONNECT, PH_SETTLE, PH_WARMUP, PH_MEASURE, PH_RATE, PH_HOLD, PH_DONE };
enum {
    ST_TCP,       /* TCP connecting / polling handshake GET */
    ST_UPGRADE,   /* waiting for 101 */
    ST_OPEN_WAIT, /* waiting for the Engine.IO open packet */
    ST_SIO_WAIT,  /* "40" sent, waiting for the CONNECT answer */
    ST_JOIN_WAIT, /* bcast receivers: "join" sent, waiting for its ack */
    ST_READY,
    ST_LEAVING,   /* churn: "41" + close frame sent, waiting for the server to close */
    ST_CLOSED,
};

/* One TCP connection: the WebSocket, or one of a polling client's two HTTP connections. */
typedef struct {
    uv_tcp_t tcp;
    uv_connect_t creq;
    client_t *cl;
    char *in;              /* leftover input (WebSocket only) */
    size_t inlen, incap;
    char *body;            /* polling response body being received */
    size_t blen, bcap;
    llhttp_t hp;
    SSL *ssl;              /* --tls: the session (memory BIOs), NULL otherwise */
    BIO *rbio, *wbio;
    uint8_t used, closing, busy, kind, connected; /* kind 0: WebSocket or polling GET, 1: polling POST */
    uint8_t tls_up;        /* --tls: the handshake is done */
} hconn_t;

struct client {
    hconn_t h[2];
    int slot;
    uint8_t state, polling, sender, nopen, ready_seen, we_close;
    char sid[64];
    char *pq;              /* polling: packets waiting for the next POST, \x1e-separated */
    size_t pqlen, pqcap;
    uint32_t next_ack, inflight;
    uint64_t t0;
    uint64_t sent_at[ACK_RING];
    uint8_t sent_tag[ACK_RING];
    char key[32];
    /* --deflate: what the server agreed to, and this client's streams (made on first need) */
    uint8_t z, z_snct, z_cnct;
    z_stream *inf, *def;
};

typedef struct {
    uint64_t *v;
    size_t n, cap;
} samples_t;

static struct {
    uv_loop_t *loop;
    uv_timer_t sched, rate_timer;
    struct sockaddr_in server;
    char host[64];
    int port;
    int scenario;
    const char *label, *target;
    int run;
    int server_pid;      /* the first of server_pids */
    int server_pids[64]; /* --server-pid A,B,...: a server of several processes (--workers, Node's
                            cluster): their CPU and RSS are summed */
    int nserver_pids;
    /* parameters */
    int nclients, conc, lanes, window, rate, payload_len;
    double warmup, duration, rate_duration, hold, settle, connect_timeout, hs_timeout;
    int64_t sample_at_ms; /* idle/scale: absolute wall-clock time (ms) of the final sample, or 0 */
    SSL_CTX *tls;         /* --tls */
    uint32_t src_first, src_count, src_next;
    /* state */
    int phase;
    uint64_t phase_t0, t_start, t_connected;
    client_t **slots;
    int nslots, launched, inflight_hs, ready, failed, dropped, alive;
    int fail_timeout, fail_refused, fail_http, fail_closed;
    int drop_eof, drop_error, drop_eio_close, drop_sio_disconnect;
    uint64_t pings;
    char payload[PAYLOAD_MAX + 1];
    char bcast_msg[PAYLOAD_MAX + 64];
    size_t bcast_len;
    /* measured phase */
    uint64_t cpu0, cpu1;       /* server CPU, clock ticks */
    long rss_base, rss_conn, rss_end;
    uint64_t m_t0, m_t1;
    uint64_t ops, ops_total;
    samples_t lat_closed, lat_rate;
    uint64_t rate_sent, rate_acked, rate_t0;
    uint64_t r_cpu0, r_cpu1, r_t0, r_t1;
    int rr;
    /* bcast */
    uint64_t b_expected, b_delivered, b_delivered_m, b_sent, b_last_progress;
    int b_receivers_ready, stalls;
    /* churn */
    uint64_t cycles, cycles_m;
    uint64_t hold_cpu0, hold_cpu1, pings_hold0;
    /* CPU used by everything else on the machine over the measured phase (noise) */
    uint64_t sys0, sys1, self0, self1;
    uint64_t rng;
    /* compression */
    int deflate, text, warm_echo;
    uint64_t z_in, z_in_raw, z_out, z_out_raw; /* compressed frames received / sent, bytes on the
                                                   wire and inflated / before compression */
} G;

static char g_readbuf[65536];

/* ------------------------------------------------------------------------------ helpers */

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "loadgen: out of memory\n");
        abort();
    }
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) {
        fprintf(stderr, "loadgen: out of memory\n");
        abort();
    }
    return p;
}

static void append(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
    if (*len + n > *cap) {
        size_t c = *cap ? *cap : 256;
        while (c < *len + n)
            c *= 2;
        *buf = xrealloc(*buf, c);
        *cap = c;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
}

static uint64_t now_ns(void) { return uv_hrtime(); }

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t rnd32(void)
{
    /* xorshift64*: masking keys only need to vary, not to be secret (test peer). */
    G.rng ^= G.rng >> 12;
    G.rng ^= G.rng << 25;
    G.rng ^= G.rng >> 27;
    return (uint32_t)((G.rng * 2685821657736338717ull) >> 32);
}

/* A process's CPU time (utime+stime, clock ticks, all threads) or 0 when unknown. */
static uint64_t proc_cpu(int pid)
{
    if (pid <= 0)
        return 0;
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    p += 2; /* field 3 (state) */
    unsigned long long ut = 0, st = 0;
    /* fields 3..13 skipped, 14 utime, 15 stime */
    if (sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return ut + st;
}

static uint64_t server_cpu(void)
{
    uint64_t t = 0;
    for (int i = 0; i < G.nserver_pids; i++)
        t += proc_cpu(G.server_pids[i]);
    return t;
}

static long proc_rss_kb(int pid);

static long server_rss_kb(void)
{
    long t = -1;
    for (int i = 0; i < G.nserver_pids; i++) {
        long kb = proc_rss_kb(G.server_pids[i]);
        if (kb >= 0)
            t = (t < 0 ? 0 : t) + kb;
    }
    return t;
}

static long proc_rss_kb(int pid)
{
    if (pid <= 0)
        return -1;
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* Busy CPU ticks of the whole machine (all but idle and iowait), from /proc/stat. */
static uint64_t sys_busy(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
                   &v[7]);
    fclose(f);
    if (n < 8)
        return 0;
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
}

/* This process's CPU ticks, from /proc/self/stat (same clock as the others). */
static uint64_t self_ticks(void) { return proc_cpu(getpid()); }

static double ticks_to_us(uint64_t t) { return (double)t * 1e6 / (double)sysconf(_SC_CLK_TCK); }

static double self_cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static void sample_add(samples_t *s, uint64_t v)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->n++] = v;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(samples_t *s, double p)
{
    if (s->n == 0)
        return -1;
    qsort(s->v, s->n, sizeof(*s->v), cmp_u64);
    size_t i = (size_t)(p * (double)(s->n - 1) + 0.5);
    return (double)s->v[i] / 1e3;
}

/* ------------------------------------------------------------------------------ output */

static char g_json[8192];
static size_t g_jlen;

static void jraw(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(g_json + g_jlen, sizeof(g_json) - g_jlen, fmt, ap);
    va_end(ap);
    if (n > 0 && g_jlen + (size_t)n < sizeof(g_json))
        g_jlen += (size_t)n;
}
static void jnum(const char *k, double v)
{
    if (v == (double)(int64_t)v && v < 1e15 && v > -1e15)
        jraw(",\"%s\":%" PRId64, k, (int64_t)v);
    else
        jraw(",\"%s\":%.3f", k, v);
}

static void finish(void)
{
    static const char *names[] = {"idle", "echo", "bcast", "churn", "poll"};
    g_jlen = 0;
    jraw("{\"scenario\":\"%s\",\"target\":\"%s\",\"run\":%d", G.label ? G.label : names[G.scenario],
         G.target ? G.target : "", G.run);
    jnum("clients", G.nclients);
    jnum("connected", G.ready);
    jnum("failed", G.failed);
    jnum("dropped", G.dropped);
    if (G.failed)
        jraw(",\"fail_detail\":{\"timeout\":%d,\"refused\":%d,\"http\":%d,\"closed\":%d}", G.fail_timeout,
             G.fail_refused, G.fail_http, G.fail_closed);
    if (G.dropped)
        jraw(",\"drop_detail\":{\"eof\":%d,\"error\":%d,\"eio_close\":%d,\"sio_disconnect\":%d}", G.drop_eof,
             G.drop_error, G.drop_eio_close, G.drop_sio_disconnect);
    double secs = (double)(G.m_t1 - G.m_t0) / 1e9;
    double cpu_us = ticks_to_us(G.cpu1 - G.cpu0);
    switch (G.scenario) {
    case SC_IDLE: {
        int n = G.ready;
        jnum("alive_end", G.alive);
        jnum("connect_s", (double)(G.t_connected - G.t_start) / 1e9);
        jnum("rss_base_kb", (double)G.rss_base);
        jnum("rss_connected_kb", (double)G.rss_conn);
        jnum("rss_end_kb", (double)G.rss_end);
        jnum("kb_per_client", n > 0 ? (double)(G.rss_end - G.rss_base) / n : -1);
        jnum("bytes_per_client", n > 0 ? (double)(G.rss_end - G.rss_base) * 1024.0 / n : -1);
        jnum("hold_s", (double)(G.m_t1 - G.m_t0) / 1e9);
        jnum("hold_cpu_ms", ticks_to_us(G.hold_cpu1 - G.hold_cpu0) / 1e3);
        jnum("pings_hold", (double)(G.pings - G.pings_hold0));
        break;
    }
    case SC_ECHO:
    case SC_POLL:
        jnum("ops", (double)G.ops);
        jnum("secs", secs);
        jnum("ops_per_s", secs > 0 ? (double)G.ops / secs : 0);
        jnum("server_cpu_ms", cpu_us / 1e3);
        jnum("us_per_op", G.ops ? cpu_us / (double)G.ops : -1);
        jnum("closed_p50_us", pct_us(&G.lat_closed, 0.50));
        jnum("closed_p99_us", pct_us(&G.lat_closed, 0.99));
        if (G.scenario == SC_ECHO) {
            double rs = (double)(G.r_t1 - G.r_t0) / 1e9;
            jnum("rate", G.rate);
            jnum("rate_sent", (double)G.rate_sent);
            jnum("rate_acked", (double)G.rate_acked);
            jnum("rate_secs", rs);
            jnum("rate_us_per_op", G.rate_acked ? ticks_to_us(G.r_cpu1 - G.r_cpu0) / (double)G.rate_acked : -1);
            jnum("p50_us", pct_us(&G.lat_rate, 0.50));
            jnum("p99_us", pct_us(&G.lat_rate, 0.99));
            jnum("p999_us", pct_us(&G.lat_rate, 0.999));
            jnum("max_us", pct_us(&G.lat_rate, 1.0));
        }
        break;
    case SC_BCAST:
        jnum("receivers", G.nclients);
        jnum("payload_bytes", G.payload_len);
        jnum("sent", (double)G.b_sent);
        jnum("delivered", (double)G.b_delivered_m);
        jnum("secs", secs);
        jnum("delivered_per_s", secs > 0 ? (double)G.b_delivered_m / secs : 0);
        jnum("server_cpu_ms", cpu_us / 1e3);
        jnum("us_per_delivered", G.b_delivered_m ? cpu_us / (double)G.b_delivered_m : -1);
        jnum("stalls", G.stalls);
        break;
    case SC_CHURN:
        jnum("lanes", G.lanes);
        jnum("cycles", (double)G.cycles_m);
        jnum("secs", secs);
        jnum("cycles_per_s", secs > 0 ? (double)G.cycles_m / secs : 0);
        jnum("server_cpu_ms", cpu_us / 1e3);
        jnum("cycles_per_cpu_s", cpu_us > 0 ? (double)G.cycles_m / (cpu_us / 1e6) : -1);
        jnum("us_per_cycle", G.cycles_m ? cpu_us / (double)G.cycles_m : -1);
        break;
    }
    if (G.scenario != SC_IDLE)
        jnum("server_rss_kb", (double)G.rss_end);
    if (G.sys1 > G.sys0 && secs > 0) {
        double other = ticks_to_us(G.sys1 - G.sys0) - ticks_to_us(G.cpu1 - G.cpu0) - ticks_to_us(G.self1 - G.self0);
        jnum("other_cpu_cores", (other > 0 ? other : 0) / 1e6 / secs);
    }
    if (G.deflate) {
        jnum("z_frames_in_bytes", (double)G.z_in);
        jnum("z_frames_in_inflated", (double)G.z_in_raw);
        jnum("z_frames_out_bytes", (double)G.z_out);
        jnum("z_frames_out_raw", (double)G.z_out_raw);
    }
    jnum("client_cpu_ms", self_cpu_ms());
    jraw("}\n");
    fwrite(g_json, 1, g_jlen, stdout);
    fflush(stdout);
    /* The servers see every connection reset at once; they are stopped right after anyway. */
    _exit(0);
}

/* ------------------------------------------------------------------------------ connections */

static void client_close(client_t *c, int why);
static void on_text(client_t *c, const char *s, size_t n);
static void client_ready(client_t *c);
static void launch_more(void);
static void bcast_pump(void);
static void poll_get(client_t *c);
static void post_flush(client_t *c);

enum { WHY_LOCAL, WHY_EOF, WHY_ERROR, WHY_TIMEOUT, WHY_REFUSED, WHY_HTTP, WHY_EIO_CLOSE, WHY_SIO_DISC };

typedef struct {
    uv_write_t req;
    uv_buf_t buf;
    char data[];
} wreq_t;

static void on_written(uv_write_t *req, int status)
{
    (void)status;
    free(container_of(req, wreq_t, req));
}

static void hc_send_raw(hconn_t *h, const char *p, size_t n)
{
    if (h->closing)
        return;
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    int r = uv_try_write((uv_stream_t *)&h->tcp, &b, 1);
    if (r == (int)n)
        return;
    if (r < 0 && r != UV_EAGAIN) {
        client_close(h->cl, WHY_ERROR);
        return;
    }
    if (r < 0)
        r = 0;
    wreq_t *w = xmalloc(sizeof(*w) + n - (size_t)r);
    memcpy(w->data, p + r, n - (size_t)r);
    w->buf = uv_buf_init(w->data, (unsigned)(n - (size_t)r));
    if (uv_write(&w->req, (uv_stream_t *)&h->tcp, &w->buf, 1, on_written) != 0) {
        free(w);
        client_close(h->cl, WHY_ERROR);
    }
}

/* --tls: sends what the session has written into its memory BIO. */
static void tls_flush(hconn_t *h)
{
    char tmp[16384 + 512];
    int n;
    while ((n = BIO_read(h->wbio, tmp, sizeof(tmp))) > 0)
        hc_send_raw(h, tmp, (size_t)n);
}

static void hc_write(hconn_t *h, const char *p, size_t n)
{
    if (h->ssl == NULL) {
        hc_send_raw(h, p, n);
        return;
    }
    if (h->closing || SSL_write(h->ssl, p, (int)n) != (int)n) {
        if (!h->closing)
            client_close(h->cl, WHY_ERROR);
        return;
    }
    tls_flush(h);
}

/* --deflate: p compressed on the client's stream (sync flush, tail dropped: RFC 7692 7.2.1) into a
 * buffer of the caller's (returned; *n updated). */
static char *deflate_msg(client_t *c, const char *p, size_t *n)
{
    if (c->def == NULL) {
        c->def = xmalloc(sizeof(*c->def));
        memset(c->def, 0, sizeof(*c->def));
        if (deflateInit2(c->def, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            abort();
    }
    size_t cap = deflateBound(c->def, (uLong)*n) + 16;
    char *out = xmalloc(cap);
    c->def->next_in = (Bytef *)p;
    c->def->avail_in = (uInt)*n;
    c->def->next_out = (Bytef *)out;
    c->def->avail_out = (uInt)cap;
    deflate(c->def, Z_SYNC_FLUSH);
    G.z_out_raw += *n;
    *n = cap - c->def->avail_out - 4;
    G.z_out += *n;
    if (c->z_cnct)
        deflateReset(c->def);
    return out;
}

/* One masked client frame (RFC 6455 5.3); with --deflate, data of 1024 bytes or more compressed. */
static void ws_send(client_t *c, int opcode, const char *p, size_t n)
{
    char *zp = NULL;
    int rsv1 = 0;
    if (c->z && (opcode == 1 || opcode == 2) && n >= 1024) {
        zp = deflate_msg(c, p, &n);
        p = zp;
        rsv1 = 0x40;
    }
    char stackbuf[4096];
    size_t hl = n < 126 ? 6 : n < 65536 ? 8 : 14;
    char *f = hl + n <= sizeof(stackbuf) ? stackbuf : xmalloc(hl + n);
    uint8_t *u = (uint8_t *)f;
    u[0] = (uint8_t)(0x80 | rsv1 | opcode);
    if (n < 126) {
        u[1] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        u[1] = 0x80 | 126;
        u[2] = (uint8_t)(n >> 8);
        u[3] = (uint8_t)n;
    } else {
        u[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            u[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
    }
    uint32_t m = rnd32();
    uint8_t *mk = u + hl - 4;
    memcpy(mk, &m, 4);
    for (size_t i = 0; i < n; i++)
        u[hl + i] = (uint8_t)p[i] ^ mk[i & 3];
    hc_write(&c->h[0], f, hl + n);
    if (f != stackbuf)
        free(f);
    free(zp);
}

static void send_eio(client_t *c, const char *p, size_t n)
{
    if (c->state == ST_CLOSED)
        return;
    if (!c->polling) {
        ws_send(c, 1, p, n);
        return;
    }
    if (c->pqlen)
        append(&c->pq, &c->pqlen, &c->pqcap, "\x1e", 1);
    append(&c->pq, &c->pqlen, &c->pqcap, p, n);
    post_flush(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    *buf = uv_buf_init(g_readbuf, sizeof(g_readbuf));
}

static void on_hc_closed(uv_handle_t *hh)
{
    hconn_t *h = container_of((uv_tcp_t *)hh, hconn_t, tcp);
    client_t *c = h->cl;
    free(h->in);
    free(h->body);
    h->in = h->body = NULL;
    SSL_free(h->ssl); /* and its BIOs */
    h->ssl = NULL;
    if (--c->nopen > 0)
        return;
    /* the whole client is gone */
    if (G.scenario == SC_CHURN && c->ready_seen && c->we_close) {
        G.cycles++;
        if (G.phase == PH_MEASURE)
            G.cycles_m++;
    }
    if (G.slots[c->slot] == c)
        G.slots[c->slot] = NULL;
    free(c->pq);
    if (c->inf) {
        inflateEnd(c->inf);
        free(c->inf);
    }
    if (c->def) {
        deflateEnd(c->def);
        free(c->def);
    }
    free(c);
    if (G.scenario == SC_CHURN && G.phase != PH_DONE) {
        G.inflight_hs--;
        launch_more();
    }
}

static void hc_close(hconn_t *h)
{
    if (!h->used || h->closing)
        return;
    h->closing = 1;
    uv_close((uv_handle_t *)&h->tcp, on_hc_closed);
}

static void client_close(client_t *c, int why)
{
    if (c->state == ST_CLOSED)
        return;
    int was = c->state;
    c->state = ST_CLOSED;
    if (was < ST_READY) {
        G.failed++;
        switch (why) {
        case WHY_TIMEOUT: G.fail_timeout++; break;
        case WHY_REFUSED: G.fail_refused++; break;
        case WHY_HTTP: G.fail_http++; break;
        default: G.fail_closed++; break;
        }
        if (G.scenario != SC_CHURN) {
            G.inflight_hs--;
            launch_more();
        }
    } else if (was == ST_READY && why != WHY_LOCAL) {
        G.dropped++;
        G.alive--;
        switch (why) {
        case WHY_EOF: G.drop_eof++; break;
        case WHY_EIO_CLOSE: G.drop_eio_close++; break;
        case WHY_SIO_DISC: G.drop_sio_disconnect++; break;
        default: G.drop_error++; break;
        }
        if (G.dropped <= 5)
            fprintf(stderr, "loadgen: client %d dropped by the server (reason %d)\n", c->slot, why);
    } else if (was == ST_READY) {
        G.alive--;
    }
    hc_close(&c->h[0]);
    hc_close(&c->h[1]);
}

/* ------------------------------------------------------------------------------ WebSocket */

static int ws_accept_ok(const client_t *c, const char *hdr, size_t n)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char in[64 + sizeof(guid)];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    char want[64];
    size_t kl = strlen(c->key);
    memcpy(in, c->key, kl);
    memcpy(in + kl, guid, sizeof(guid) - 1);
    EVP_Digest(in, kl + sizeof(guid) - 1, md, &mdlen, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)want, md, (int)mdlen);
    size_t wl = strlen(want);
    for (size_t i = 0; i + 21 + wl <= n; i++)
        if (strncasecmp(hdr + i, "sec-websocket-accept:", 21) == 0) {
            const char *v = hdr + i + 21;
            while (*v == ' ')
                v++;
            return (size_t)(v - hdr) + wl <= n && memcmp(v, want, wl) == 0;
        }
    return 0;
}

static void ws_upgrade_request(client_t *c)
{
    unsigned char raw[16];
    RAND_bytes(raw, sizeof(raw));
    EVP_EncodeBlock((unsigned char *)c->key, raw, sizeof(raw));
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                     "Host: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                     G.host, G.port, c->key,
                     G.deflate ? "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" : "");
    c->state = ST_UPGRADE;
    hc_write(&c->h[0], req, (size_t)n);
}

/* Parses as much of p[0..n) as forms whole frames; returns the bytes consumed. */
static size_t ws_frames(client_t *c, const uint8_t *p, size_t n)
{
    size_t off = 0;
    while (c->state != ST_CLOSED && n - off >= 2) {
        const uint8_t *f = p + off;
        int op = f[0] & 0x0f, masked = f[1] & 0x80;
        uint64_t len = f[1] & 0x7f;
        size_t hl = 2;
        if (len == 126) {
            if (n - off < 4)
                break;
            len = (uint64_t)f[2] << 8 | f[3];
            hl = 4;
        } else if (len == 127) {
            if (n - off < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | f[2 + i];
            hl = 10;
        }
        if (masked)
            hl += 4;
        if (len > MAX_LEFTOVER) {
            client_close(c, WHY_ERROR);
            return n;
        }
        if (n - off < hl + len)
            break;
        const char *pl = (const char *)f + hl;
        if (masked) { /* servers must not mask; unmask in place anyway */
            uint8_t *m = (uint8_t *)f + hl - 4, *q = (uint8_t *)f + hl;
            for (uint64_t i = 0; i < len; i++)
                q[i] ^= m[i & 3];
        }
        if (!(f[0] & 0x80) || op == 0) {
            /* Fragmented messages: the servers under test send none for these sizes. */
            fprintf(stderr, "loadgen: fragmented frame not supported\n");
            client_close(c, WHY_ERROR);
            return n;
        }
        off += hl + len;
        if ((f[0] & 0x40) && c->z) { /* RSV1: inflate (RFC 7692 7.2.2), with the window kept */
            static char *zbuf;
            static size_t zcap;
            static const uint8_t tail[4] = {0, 0, 0xff, 0xff};
            if (c->inf == NULL) {
                c->inf = xmalloc(sizeof(*c->inf));
                memset(c->inf, 0, sizeof(*c->inf));
                if (inflateInit2(c->inf, -15) != Z_OK)
                    abort();
            }
            size_t got = 0;
            for (int part = 0; part < 2; part++) {
                c->inf->next_in = part ? (Bytef *)tail : (Bytef *)pl;
                c->inf->avail_in = part ? 4 : (uInt)len;
                do {
                    if (zcap - got < 65536) {
                        zcap = zcap ? zcap * 2 : 1 << 20;
                        zbuf = xrealloc(zbuf, zcap);
                    }
                    c->inf->next_out = (Bytef *)zbuf + got;
                    c->inf->avail_out = (uInt)(zcap - got);
                    int r = inflate(c->inf, Z_SYNC_FLUSH);
                    got = zcap - c->inf->avail_out;
                    if (r != Z_OK && r != Z_BUF_ERROR && r != Z_STREAM_END) {
                        fprintf(stderr, "loadgen: bad compressed frame from the server\n");
                        client_close(c, WHY_ERROR);
                        return n;
                    }
                } while (c->inf->avail_out == 0);
            }
            if (c->z_snct)
                inflateReset(c->inf);
            G.z_in += len;
            G.z_in_raw += got;
            pl = zbuf;
            len = got;
        }
        switch (op) {
        case 1:
            on_text(c, pl, len);
            break;
        case 2:
            break;
        case 8:
            /* leaving: wait for the server's FIN, so the close is clean on both sides */
            if (c->state != ST_LEAVING) {
                client_close(c, WHY_EOF);
                return n;
            }
            break;
        case 9:
            ws_send(c, 10, pl, len);
            break;
        default:
            break;
        }
    }
    return off;
}

static size_t ws_input(client_t *c, const char *p, size_t n)
{
    size_t off = 0;
    if (c->state == ST_UPGRADE) {
        const char *e = memmem(p, n, "\r\n\r\n", 4);
        if (!e)
            return n > 16384 ? (client_close(c, WHY_HTTP), n) : 0;
        size_t hl = (size_t)(e - p) + 4;
        if (n < 12 || memcmp(p, "HTTP/1.1 101", 12) != 0 || !ws_accept_ok(c, p, hl)) {
            if (G.failed < 3)
                fprintf(stderr, "loadgen: bad upgrade answer: %.*s\n", (int)(hl < 200 ? hl : 200), p);
            client_close(c, WHY_HTTP);
            return n;
        }
        c->state = ST_OPEN_WAIT;
        off = hl;
        const char *ext = G.deflate ? memmem(p, hl, "permessage-deflate", 18) : NULL;
        if (ext != NULL) {
            const char *eol = memmem(ext, hl - (size_t)(ext - p), "\r\n", 2);
            size_t el = (size_t)(eol - ext);
            c->z = 1;
            c->z_snct = memmem(ext, el, "server_no_context_takeover", 26) != NULL;
            c->z_cnct = memmem(ext, el, "client_no_context_takeover", 26) != NULL;
        } else if (G.deflate) {
            if (G.failed < 3)
                fprintf(stderr, "loadgen: the server did not agree to permessage-deflate\n");
            client_close(c, WHY_HTTP);
            return n;
        }
    }
    return off + ws_frames(c, (const uint8_t *)p + off, n - off);
}

/* ------------------------------------------------------------------------------ polling */

static int hp_on_body(llhttp_t *hp, const char *at, size_t len)
{
    hconn_t *h = hp->data;
    if (h->blen + len > MAX_LEFTOVER)
        return -1;
    append(&h->body, &h->blen, &h->bcap, at, len);
    return 0;
}

static int hp_on_complete(llhttp_t *hp)
{
    hconn_t *h = hp->data;
    client_t *c = h->cl;
    if (c->state == ST_CLOSED)
        return -1;
    int status = llhttp_get_status_code(hp);
    h->busy = 0;
    size_t blen = h->blen;
    h->blen = 0;
    if (status != 200) {
        if (G.failed + G.dropped < 3)
            fprintf(stderr, "loadgen: polling answer %d: %.*s\n", status, (int)(blen < 200 ? blen : 200), h->body);
        client_close(c, c->state == ST_READY ? WHY_ERROR : WHY_HTTP);
        return -1;
    }
    if (h->kind == 1) { /* POST answered ("ok") */
        post_flush(c);
        return 0;
    }
    /* A GET answered: the handshake, or packets separated by \x1e. */
    const char *b = h->body;
    if (c->state == ST_TCP) {
        const char *s = blen ? memmem(b, blen, "\"sid\":\"", 7) : NULL;
        if (!s || b[0] != '0') {
            client_close(c, WHY_HTTP);
            return -1;
        }
        s += 7;
        size_t i = 0;
        while (s + i < b + blen && s[i] != '"' && i < sizeof(c->sid) - 1) {
            c->sid[i] = s[i];
            i++;
        }
        c->sid[i] = 0;
        c->state = ST_SIO_WAIT;
        /* the POST connection carries "40"; it connects now */
        send_eio(c, "40", 2);
        poll_get(c);
        return 0;
    }
    size_t start = 0;
    for (size_t i = 0; i <= blen && c->state != ST_CLOSED; i++)
        if (i == blen || b[i] == 0x1e) {
            if (i > start)
                on_text(c, b + start, i - start);
            start = i + 1;
        }
    if (c->state != ST_CLOSED && c->state != ST_LEAVING)
        poll_get(c);
    return 0;
}

static llhttp_settings_t g_hp_settings;

static void hc_start(client_t *c, int kind);

static void poll_get(client_t *c)
{
    hconn_t *h = &c->h[0];
    if (h->busy || h->closing)
        return;
    char req[512];
    int n;
    if (c->sid[0])
        n = snprintf(req, sizeof(req), "GET /socket.io/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\nHost: %s:%d\r\n\r\n",
                     c->sid, G.host, G.port);
    else
        n = snprintf(req, sizeof(req), "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: %s:%d\r\n\r\n", G.host,
                     G.port);
    h->busy = 1;
    hc_write(h, req, (size_t)n);
}

static void post_flush(client_t *c)
{
    hconn_t *h = &c->h[1];
    if (!c->pqlen || c->state == ST_CLOSED)
        return;
    if (!h->used) {
        hc_start(c, 1);
        return;
    }
    if (h->busy || h->closing || !h->connected)
        return;
    char hdr[512];
    int n = snprintf(hdr, sizeof(hdr),
                     "POST /socket.io/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\nHost: %s:%d\r\n"
                     "Content-Type: text/plain;charset=UTF-8\r\nContent-Length: %zu\r\n\r\n",
                     c->sid, G.host, G.port, c->pqlen);
    char *req = xmalloc((size_t)n + c->pqlen);
    memcpy(req, hdr, (size_t)n);
    memcpy(req + n, c->pq, c->pqlen);
    h->busy = 1;
    size_t total = (size_t)n + c->pqlen;
    c->pqlen = 0;
    hc_write(h, req, total);
    free(req);
}

/* ------------------------------------------------------------------------------ reading */

static void hc_input(hconn_t *h, const char *data, size_t len);
static void hc_opened(hconn_t *h);

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    hconn_t *h = container_of((uv_tcp_t *)s, hconn_t, tcp);
    client_t *c = h->cl;
    if (nread == 0)
        return;
    if (nread < 0) {
        client_close(c, c->state == ST_LEAVING ? WHY_LOCAL : nread == UV_EOF ? WHY_EOF : WHY_ERROR);
        return;
    }
    if (c->state == ST_CLOSED)
        return;
    if (h->ssl == NULL) {
        hc_input(h, buf->base, (size_t)nread);
        return;
    }
    /* --tls: decrypt, then the same input path */
    static char plain[16384];
    int r;
    BIO_write(h->rbio, buf->base, (int)nread);
    if (!h->tls_up) {
        r = SSL_do_handshake(h->ssl);
        tls_flush(h);
        if (r != 1) {
            if (SSL_get_error(h->ssl, r) != SSL_ERROR_WANT_READ)
                client_close(c, WHY_HTTP);
            return;
        }
        h->tls_up = 1;
        hc_opened(h);
    }
    while (c->state != ST_CLOSED && h->ssl != NULL && (r = SSL_read(h->ssl, plain, sizeof(plain))) > 0)
        hc_input(h, plain, (size_t)r);
    if (c->state != ST_CLOSED && h->ssl != NULL)
        tls_flush(h); /* KeyUpdate answers */
}

/* Bytes from the server (plaintext). */
static void hc_input(hconn_t *h, const char *data, size_t len)
{
    client_t *c = h->cl;
    if (c->polling) {
        enum llhttp_errno e = llhttp_execute(&h->hp, data, len);
        if (e != HPE_OK && c->state != ST_CLOSED) {
            fprintf(stderr, "loadgen: HTTP parse error: %s\n", llhttp_errno_name(e));
            client_close(c, WHY_HTTP);
        }
        return;
    }
    const char *p = data;
    size_t n = len;
    if (h->inlen) {
        if (h->inlen + n > MAX_LEFTOVER) {
            client_close(c, WHY_ERROR);
            return;
        }
        append(&h->in, &h->inlen, &h->incap, p, n);
        size_t used = ws_input(c, h->in, h->inlen);
        if (c->state == ST_CLOSED)
            return;
        memmove(h->in, h->in + used, h->inlen - used);
        h->inlen -= used;
        if (h->inlen == 0 && h->incap > 4096) {
            free(h->in);
            h->in = NULL;
            h->incap = 0;
        }
        return;
    }
    size_t used = ws_input(c, p, n);
    if (c->state != ST_CLOSED && used < n)
        append(&h->in, &h->inlen, &h->incap, p + used, n - used);
}

static void on_connect(uv_connect_t *req, int status)
{
    hconn_t *h = container_of(req, hconn_t, creq);
    client_t *c = h->cl;
    if (c->state == ST_CLOSED)
        return;
    if (status < 0) {
        if (G.failed < 3)
            fprintf(stderr, "loadgen: connect: %s\n", uv_strerror(status));
        client_close(c, WHY_REFUSED);
        return;
    }
    h->connected = 1;
    uv_tcp_nodelay(&h->tcp, 1);
    uv_read_start((uv_stream_t *)&h->tcp, on_alloc, on_read);
    if (G.tls != NULL) { /* the request goes once the handshake is done (on_read) */
        h->ssl = SSL_new(G.tls);
        h->rbio = BIO_new(BIO_s_mem());
        h->wbio = BIO_new(BIO_s_mem());
        SSL_set_bio(h->ssl, h->rbio, h->wbio);
        SSL_set_connect_state(h->ssl);
        SSL_do_handshake(h->ssl);
        tls_flush(h);
        return;
    }
    hc_opened(h);
}

/* The connection can carry requests: the first one goes. */
static void hc_opened(hconn_t *h)
{
    client_t *c = h->cl;
    if (!c->polling)
        ws_upgrade_request(c);
    else if (h->kind == 0)
        poll_get(c);
    else
        post_flush(c);
}

static void hc_start(client_t *c, int kind)
{
    hconn_t *h = &c->h[kind];
    h->cl = c;
    h->kind = (uint8_t)kind;
    h->used = 1;
    c->nopen++;
    uv_tcp_init_ex(G.loop, &h->tcp, AF_INET);
    if (c->polling) {
        llhttp_init(&h->hp, HTTP_RESPONSE, &g_hp_settings);
        h->hp.data = h;
    }
    if (G.src_count) {
        uv_os_fd_t fd;
        int one = 1;
        if (uv_fileno((uv_handle_t *)&h->tcp, &fd) == 0)
            setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        struct sockaddr_in sa;
        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(G.src_first + G.src_next++ % G.src_count);
        int r = uv_tcp_bind(&h->tcp, (struct sockaddr *)&sa, 0);
        if (r != 0) {
            fprintf(stderr, "loadgen: bind: %s\n", uv_strerror(r));
            client_close(c, WHY_REFUSED);
            return;
        }
    }
    int r = uv_tcp_connect(&h->creq, &h->tcp, (struct sockaddr *)&G.server, on_connect);
    if (r != 0) {
        if (G.failed < 3)
            fprintf(stderr, "loadgen: connect: %s\n", uv_strerror(r));
        client_close(c, WHY_REFUSED);
    }
}

static void client_start(int slot)
{
    client_t *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    c->slot = slot;
    c->polling = G.scenario == SC_POLL;
    c->sender = G.scenario == SC_BCAST && slot == G.nclients;
    c->t0 = now_ns();
    c->state = ST_TCP;
    G.slots[slot] = c;
    G.launched++;
    G.inflight_hs++;
    hc_start(c, 0);
}

/* ------------------------------------------------------------------------------ Engine.IO / Socket.IO */

/* --text: n bytes of words picked at random (a chat's kind of text: compressible, never the same). */
static void fill_text(char *dst, size_t n)
{
    static const char *const words[] = {"the ", "socket ", "room ", "message ", "hello ", "world ", "server ",
                                        "client ", "and ", "of ", "is ", "chat ", "event ", "data ", "42 ", "you "};
    size_t i = 0;
    while (i < n) {
        const char *w = words[rnd32() % 16];
        while (*w && i < n)
            dst[i++] = *w++;
    }
    dst[n] = '\0';
}

static void send_echo_n(client_t *c, uint8_t tag, const char *payload)
{
    char msg[PAYLOAD_MAX + 64];
    uint32_t id = c->next_ack++;
    int n = snprintf(msg, sizeof(msg), "42%u[\"echo\",\"%s\"]", id, payload);
    c->sent_at[id % ACK_RING] = now_ns();
    c->sent_tag[id % ACK_RING] = tag;
    c->inflight++;
    send_eio(c, msg, (size_t)n);
}

static void send_echo(client_t *c, uint8_t tag)
{
    if (G.text)
        fill_text(G.payload, (size_t)G.payload_len);
    send_echo_n(c, tag, G.payload);
}

static void on_ack(client_t *c, uint32_t id)
{
    if (c->inflight == 0)
        return;
    c->inflight--;
    uint64_t dt = now_ns() - c->sent_at[id % ACK_RING];
    uint8_t tag = c->sent_tag[id % ACK_RING];
    if (c->state == ST_JOIN_WAIT) {
        c->state = ST_READY;
        client_ready(c);
        return;
    }
    if (G.scenario != SC_ECHO && G.scenario != SC_POLL)
        return;
    if (tag == PH_RATE) {
        if (G.phase == PH_RATE) {
            G.rate_acked++;
            sample_add(&G.lat_rate, dt);
        }
        return;
    }
    if (G.phase == PH_MEASURE) {
        G.ops++;
        sample_add(&G.lat_closed, dt);
    }
    if (G.phase == PH_WARMUP || G.phase == PH_MEASURE)
        send_echo(c, (uint8_t)G.phase);
}

static void on_event(client_t *c, const char *p, size_t n)
{
    (void)c;
    if (n >= 9 && memcmp(p, "[\"bcast\"", 8) == 0) {
        G.b_delivered++;
        if (G.phase == PH_MEASURE)
            G.b_delivered_m++;
        bcast_pump();
    }
}

static void on_text(client_t *c, const char *s, size_t n)
{
    if (n == 0)
        return;
    switch (s[0]) {
    case '0': /* open */
        if (c->state == ST_OPEN_WAIT) {
            c->state = ST_SIO_WAIT;
            send_eio(c, "40", 2);
        }
        return;
    case '1':
        client_close(c, WHY_EIO_CLOSE);
        return;
    case '2':
        G.pings++;
        send_eio(c, "3", 1);
        return;
    case '4':
        break;
    default:
        return;
    }
    if (n < 2)
        return;
    switch (s[1]) {
    case '0': /* CONNECT answer */
        if (c->state != ST_SIO_WAIT)
            return;
        if (G.scenario == SC_IDLE && G.warm_echo > 0) { /* one message each, then idle */
            char text[PAYLOAD_MAX + 1];
            fill_text(text, (size_t)G.warm_echo);
            c->state = ST_JOIN_WAIT;
            send_echo_n(c, 0, text);
            return;
        }
        if (G.scenario == SC_BCAST && !c->sender) {
            char msg[64];
            uint32_t id = c->next_ack++;
            int m = snprintf(msg, sizeof(msg), "42%u[\"join\",\"bench\"]", id);
            c->sent_at[id % ACK_RING] = now_ns();
            c->inflight++;
            c->state = ST_JOIN_WAIT;
            send_eio(c, msg, (size_t)m);
            return;
        }
        c->state = ST_READY;
        client_ready(c);
        return;
    case '1':
        client_close(c, c->state == ST_LEAVING ? WHY_LOCAL : WHY_SIO_DISC);
        return;
    case '2':
        on_event(c, s + 2, n - 2);
        return;
    case '3': {
        uint32_t id = 0;
        size_t i = 2;
        while (i < n && isdigit((unsigned char)s[i]))
            id = id * 10 + (uint32_t)(s[i++] - '0');
        on_ack(c, id);
        return;
    }
    case '4':
        if (G.failed < 3)
            fprintf(stderr, "loadgen: connect_error: %.*s\n", (int)(n < 200 ? n : 200), s);
        client_close(c, WHY_HTTP);
        return;
    default:
        return;
    }
}

static void client_ready(client_t *c)
{
    G.ready++;
    G.alive++;
    c->ready_seen = 1;
    if (G.scenario != SC_CHURN)
        G.inflight_hs--;
    switch (G.scenario) {
    case SC_CHURN: {
        /* leave: Socket.IO DISCONNECT, then a WebSocket close frame; the server closes the TCP */
        static const uint8_t close_payload[2] = {0x03, 0xe8};
        send_eio(c, "41", 2);
        ws_send(c, 8, (const char *)close_payload, 2);
        c->state = ST_LEAVING;
        c->we_close = 1;
        G.alive--;
        c->t0 = now_ns();
        return;
    }
    case SC_ECHO:
    case SC_POLL:
        if (G.phase == PH_WARMUP || G.phase == PH_MEASURE)
            send_echo(c, (uint8_t)G.phase);
        break;
    case SC_BCAST:
        if (!c->sender)
            G.b_receivers_ready++;
        break;
    }
    launch_more();
}

/* ------------------------------------------------------------------------------ scenario driver */

static void launch_more(void)
{
    if (G.phase != PH_CONNECT && G.scenario != SC_CHURN)
        return;
    if (G.scenario == SC_CHURN) {
        if (G.phase == PH_DONE)
            return;
        for (int i = 0; i < G.lanes; i++)
            if (!G.slots[i] && G.inflight_hs < G.lanes) {
                G.inflight_hs++;
                client_t *c = calloc(1, sizeof(*c));
                if (!c)
                    abort();
                c->slot = i;
                c->t0 = now_ns();
                c->state = ST_TCP;
                G.slots[i] = c;
                G.launched++;
                hc_start(c, 0);
            }
        return;
    }
    int total = G.nclients + (G.scenario == SC_BCAST ? 1 : 0);
    /* bcast: the sender connects last, once every receiver has joined */
    int limit = G.scenario == SC_BCAST ? G.nclients : total;
    while (G.launched < limit && G.inflight_hs < G.conc)
        client_start(G.launched);
    if (G.scenario == SC_BCAST && G.launched == G.nclients && G.inflight_hs == 0)
        client_start(G.nclients);
}

static void bcast_pump(void)
{
    if (G.phase != PH_WARMUP && G.phase != PH_MEASURE)
        return;
    client_t *s = G.slots[G.nclients];
    if (!s || s->state != ST_READY)
        return;
    uint64_t limit = (uint64_t)G.window * (uint64_t)(G.alive - 1);
    while (G.b_expected - G.b_delivered < limit || G.b_expected < G.b_delivered) {
        if (G.b_expected < G.b_delivered)
            G.b_expected = G.b_delivered;
        G.b_sent++;
        G.b_expected += (uint64_t)(G.alive - 1);
        if (G.text) {
            fill_text(G.payload, (size_t)G.payload_len);
            G.bcast_len = (size_t)snprintf(G.bcast_msg, sizeof(G.bcast_msg), "42[\"bcast\",\"bench\",\"%s\"]", G.payload);
        }
        send_eio(s, G.bcast_msg, G.bcast_len);
        if (s->state != ST_READY)
            return;
    }
}

static void phase_to(int ph)
{
    G.phase = ph;
    G.phase_t0 = now_ns();
}

static void rate_tick(uv_timer_t *t)
{
    (void)t;
    if (G.phase != PH_RATE)
        return;
    uint64_t el = now_ns() - G.rate_t0;
    uint64_t due = (uint64_t)((double)G.rate * (double)el / 1e9);
    int tries = 0;
    while (G.rate_sent < due && tries < G.nslots * 2) {
        client_t *c = G.slots[G.rr++ % G.nslots];
        tries++;
        if (!c || c->state != ST_READY || c->inflight >= ACK_RING - 1)
            continue;
        send_echo(c, PH_RATE);
        G.rate_sent++;
        tries = 0;
    }
}

static void check_timeouts(void)
{
    uint64_t now = now_ns();
    uint64_t lim = (uint64_t)(G.hs_timeout * 1e9);
    for (int i = 0; i < G.nslots; i++) {
        client_t *c = G.slots[i];
        if (c && (c->state < ST_READY || c->state == ST_LEAVING) && now - c->t0 > lim)
            client_close(c, c->state == ST_LEAVING ? WHY_LOCAL : WHY_TIMEOUT);
    }
}

static double since(uint64_t t) { return (double)(now_ns() - t) / 1e9; }

static void noise_start(void)
{
    G.sys0 = sys_busy();
    G.self0 = self_ticks();
}

static void noise_end(void)
{
    G.sys1 = sys_busy();
    G.self1 = self_ticks();
}

static void start_measure(void)
{
    noise_start();
    G.cpu0 = server_cpu();
    G.m_t0 = now_ns();
    phase_to(PH_MEASURE);
}

static void end_measure(void)
{
    noise_end();
    G.cpu1 = server_cpu();
    G.m_t1 = now_ns();
    G.rss_end = server_rss_kb();
}

static void sched_cb(uv_timer_t *t)
{
    (void)t;
    static uint64_t last_scan;
    uint64_t now = now_ns();
    if (now - last_scan > 250000000ull) {
        last_scan = now;
        check_timeouts();
    }
    switch (G.phase) {
    case PH_CONNECT: {
        launch_more();
        int total = G.nclients + (G.scenario == SC_BCAST ? 1 : 0);
        int done = G.launched == total && G.inflight_hs == 0;
        if (done || since(G.t_start) > G.connect_timeout) {
            G.t_connected = now_ns();
            if (!done)
                fprintf(stderr, "loadgen: connect phase timed out: %d ready, %d failed, %d in flight\n", G.ready,
                        G.failed, G.inflight_hs);
            if (G.scenario == SC_IDLE) {
                phase_to(PH_SETTLE);
            } else {
                phase_to(PH_WARMUP);
                if (G.scenario == SC_ECHO || G.scenario == SC_POLL)
                    for (int i = 0; i < G.nslots; i++)
                        if (G.slots[i] && G.slots[i]->state == ST_READY)
                            send_echo(G.slots[i], PH_WARMUP);
                if (G.scenario == SC_BCAST)
                    bcast_pump();
            }
        }
        break;
    }
    case PH_SETTLE: /* idle: let the server finish its connect work before the first sample */
        if (since(G.phase_t0) >= G.settle) {
            G.rss_conn = server_rss_kb();
            G.hold_cpu0 = server_cpu();
            G.cpu0 = G.hold_cpu0;
            noise_start();
            G.pings_hold0 = G.pings;
            G.m_t0 = now_ns();
            phase_to(PH_HOLD);
        }
        break;
    case PH_HOLD:
        if ((G.sample_at_ms > 0 && wall_ms() >= G.sample_at_ms) || (G.sample_at_ms <= 0 && since(G.phase_t0) >= G.hold)) {
            G.hold_cpu1 = server_cpu();
            G.cpu1 = G.hold_cpu1;
            noise_end();
            G.m_t1 = now_ns();
            G.rss_end = server_rss_kb();
            phase_to(PH_DONE);
            finish();
        }
        break;
    case PH_WARMUP:
        if (G.scenario == SC_CHURN)
            launch_more();
        if (since(G.phase_t0) >= G.warmup)
            start_measure();
        if (G.scenario == SC_BCAST)
            bcast_pump();
        break;
    case PH_MEASURE:
        if (G.scenario == SC_BCAST) {
            /* a receiver that dropped mid-flight leaves the window short: resynchronise */
            static uint64_t last_del, last_t;
            if (G.b_delivered != last_del) {
                last_del = G.b_delivered;
                last_t = now;
            } else if (now - last_t > 500000000ull) {
                G.stalls++;
                G.b_expected = G.b_delivered;
                last_t = now;
                bcast_pump();
            }
        }
        if (since(G.phase_t0) >= G.duration) {
            end_measure();
            if (G.scenario == SC_ECHO && G.rate > 0) {
                phase_to(PH_RATE);
                G.rate_t0 = G.r_t0 = now_ns();
                G.r_cpu0 = server_cpu();
                uv_timer_start(&G.rate_timer, rate_tick, 1, 1);
            } else {
                phase_to(PH_DONE);
                finish();
            }
        }
        break;
    case PH_RATE:
        if (since(G.phase_t0) >= G.rate_duration) {
            G.r_cpu1 = server_cpu();
            G.r_t1 = now_ns();
            phase_to(PH_DONE);
            finish();
        }
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------------------------ main */

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen --scenario idle|echo|bcast|churn|poll --port N [options]\n"
            "  --host A            server address (127.0.0.1)\n"
            "  --server-pid PID    the server process to sample (CPU, RSS)\n"
            "  --clients N         clients (bcast: receivers; the sender is one more)\n"
            "  --conc N            handshakes in flight at once (256)\n"
            "  --lanes N           churn: concurrent connect/disconnect loops (16)\n"
            "  --warmup S --duration S   measured phase (1, 5)\n"
            "  --rate R --rate-duration S  echo: total acked echoes/s for latency (2000, 5)\n"
            "  --window W          bcast: broadcasts in flight (8)\n"
            "  --payload BYTES     echo/bcast payload (32 / 100)\n"
            "  --settle S --hold S idle: wait before the first sample, hold time after it (2, 6)\n"
            "  --sample-at MS      idle: take the final sample at this wall-clock time (epoch ms)\n"
            "  --connect-timeout S time for the whole connect phase (60)\n"
            "  --hs-timeout S      time for one client's handshake (10)\n"
            "  --src A[-B]         bind source addresses A..B (127.0.0.x), round robin\n"
            "  --tls               HTTPS/WSS (no certificate check)\n"
            "  --deflate           offer permessage-deflate (and require it)\n"
            "  --text              payloads of random words, a new one for every message\n"
            "  --warm-echo BYTES   idle: each client sends one echo of BYTES (random words) first\n"
            "  --target NAME --run N --label NAME   copied into the JSON line\n");
    exit(2);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    strcpy(G.host, "127.0.0.1");
    G.conc = 256;
    G.lanes = 16;
    G.window = 8;
    G.rate = 2000;
    G.payload_len = -1;
    G.warmup = 1;
    G.duration = 5;
    G.rate_duration = 5;
    G.settle = 2;
    G.hold = 6;
    G.connect_timeout = 60;
    G.hs_timeout = 10;
    G.nclients = 100;
    G.scenario = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && v && (i++, 1))
        if (OPT("--scenario")) {
            G.scenario = !strcmp(v, "idle")    ? SC_IDLE
                         : !strcmp(v, "echo")  ? SC_ECHO
                         : !strcmp(v, "bcast") ? SC_BCAST
                         : !strcmp(v, "churn") ? SC_CHURN
                         : !strcmp(v, "poll")  ? SC_POLL
                                               : -1;
        } else if (OPT("--host"))
            snprintf(G.host, sizeof(G.host), "%s", v);
        else if (OPT("--port"))
            G.port = atoi(v);
        else if (OPT("--server-pid"))
        {
            for (const char *q = v; *q && G.nserver_pids < 64; q = strchr(q, ',') ? strchr(q, ',') + 1 : "")
                G.server_pids[G.nserver_pids++] = atoi(q);
            G.server_pid = G.server_pids[0];
        }
        else if (OPT("--clients"))
            G.nclients = atoi(v);
        else if (OPT("--conc"))
            G.conc = atoi(v);
        else if (OPT("--lanes"))
            G.lanes = atoi(v);
        else if (OPT("--warmup"))
            G.warmup = atof(v);
        else if (OPT("--duration"))
            G.duration = atof(v);
        else if (OPT("--rate"))
            G.rate = atoi(v);
        else if (OPT("--rate-duration"))
            G.rate_duration = atof(v);
        else if (OPT("--window"))
            G.window = atoi(v);
        else if (OPT("--payload"))
            G.payload_len = atoi(v);
        else if (OPT("--settle"))
            G.settle = atof(v);
        else if (OPT("--hold"))
            G.hold = atof(v);
        else if (OPT("--sample-at"))
            G.sample_at_ms = atoll(v);
        else if (OPT("--connect-timeout"))
            G.connect_timeout = atof(v);
        else if (OPT("--hs-timeout"))
            G.hs_timeout = atof(v);
        else if (OPT("--target"))
            G.target = v;
        else if (OPT("--label"))
            G.label = v;
        else if (OPT("--run"))
            G.run = atoi(v);
        else if (strcmp(a, "--deflate") == 0)
            G.deflate = 1;
        else if (strcmp(a, "--text") == 0)
            G.text = 1;
        else if (OPT("--warm-echo"))
            G.warm_echo = atoi(v);
        else if (OPT("--src")) {
            char first[32], last[32];
            const char *dash = strchr(v, '-');
            snprintf(first, sizeof(first), "%.*s", dash ? (int)(dash - v) : (int)strlen(v), v);
            snprintf(last, sizeof(last), "%s", dash ? dash + 1 : v);
            struct in_addr a1, a2;
            if (inet_pton(AF_INET, first, &a1) != 1 || inet_pton(AF_INET, last, &a2) != 1 ||
                ntohl(a2.s_addr) < ntohl(a1.s_addr))
                usage();
            G.src_first = ntohl(a1.s_addr);
            G.src_count = ntohl(a2.s_addr) - G.src_first + 1;
        } else if (strcmp(a, "--tls") == 0) {
            G.tls = SSL_CTX_new(TLS_client_method()); /* verification off (SSL_VERIFY_NONE) */
            SSL_CTX_set_mode(G.tls, SSL_MODE_RELEASE_BUFFERS);
        } else
            usage();
#undef OPT
    }
    if (G.scenario < 0 || G.port <= 0 || G.nclients < 1 || G.conc < 1 || G.lanes < 1 || G.window < 1)
        usage();
    if (G.payload_len < 0)
        G.payload_len = G.scenario == SC_BCAST ? 100 : 32;
    if (G.payload_len > PAYLOAD_MAX || G.warm_echo > PAYLOAD_MAX)
        usage();
    for (int i = 0; i < G.payload_len; i++)
        G.payload[i] = (char)('a' + i % 26);
    G.payload[G.payload_len] = 0;
    G.bcast_len = (size_t)snprintf(G.bcast_msg, sizeof(G.bcast_msg), "42[\"bcast\",\"bench\",\"%s\"]", G.payload);
    G.rng = (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
    if (uv_ip4_addr(G.host, G.port, &G.server) != 0)
        usage();

    llhttp_settings_init(&g_hp_settings);
    g_hp_settings.on_body = hp_on_body;
    g_hp_settings.on_message_complete = hp_on_complete;

    G.nslots = G.scenario == SC_CHURN ? G.lanes : G.nclients + 1;
    G.slots = calloc((size_t)G.nslots, sizeof(*G.slots));
    G.loop = uv_default_loop();
    G.rss_base = server_rss_kb();
    G.t_start = now_ns();
    phase_to(PH_CONNECT);
    if (G.scenario == SC_CHURN) {
        phase_to(PH_WARMUP);
        G.t_connected = G.t_start;
    }
    uv_timer_init(G.loop, &G.sched);
    uv_timer_init(G.loop, &G.rate_timer);
    uv_timer_start(&G.sched, sched_cb, 10, 10);
    launch_more();
    uv_run(G.loop, UV_RUN_DEFAULT);
    return 1;
}
