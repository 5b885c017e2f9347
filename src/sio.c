/* sio: see sio.h.
 * A client is the Socket.IO view of one Engine.IO session: the sockets it opened (one per
 * namespace), the packet being reassembled from its binary attachments, and the connect timeout.
 * Clients and sockets are refcounted so that a Lua handler closing them mid-dispatch is safe. */
#include "sio.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

#define container_of(p, T, m) ((T *)((char *)(p) - offsetof(T, m)))

struct sio_client {
    sio_server_t *srv;
    struct sio_client *prev, *next; /* the server's client list */
    eio_session_t *session;   /* NULL once the session closed */
    sio_socket_t *sockets;    /* sockets of this client, linked by cnext */
    uint32_t refs;            /* 1 while open + 1 per dispatch in progress */
    tq_entry_t ct;            /* connect timeout, queued until the first CONNECT */
    struct sio_partial *partial; /* a binary packet waiting for its attachments, or NULL */
    uint8_t closing;          /* sio_close_clients closed it (its session closes) */
    sio_resolve_t *resolving; /* CONNECTs waiting for resolve's answer, linked by next */
};

/* A CONNECT to a namespace that does not exist yet, waiting for the upper layer (sio.h). */
struct sio_resolve {
    sio_client_t *client;     /* NULL once answered, timed out, or the client closed */
    struct sio_resolve *next; /* the client's list */
    tq_entry_t deadline;      /* in q_resolve while waiting */
    uint32_t refs;            /* the client's while waiting, the upper layer's, the caller's */
    uint8_t in_call;          /* inside resolve: an answer is applied once it returns */
    uint8_t answered;
    sio_nsp_t *nsp;           /* the answer */
    size_t nlen, alen;
    char data[];              /* the name, then the auth JSON */
};

/* Binary reassembly, one block while it lasts: the attachments' slots, then the packet's text. */
typedef struct sio_partial {
    size_t len; /* of text */
    char *text;
    uint32_t natt, want;
    rbuf_t *att[];
} sio_partial_t;

/* ---------------------------------------------------------------- sockets */

static void client_unref(sio_client_t *c)
{
    if (--c->refs > 0)
        return;
    free(c);
}

static void nsp_free(sio_server_t *srv, sio_nsp_t *nsp);

/* The last holder of a removable namespace is gone: the namespace goes too. */
static void nsp_unref(sio_nsp_t *nsp)
{
    if (--nsp->nrefs == 0 && nsp->removable && nsp->srv->cfg->cleanup_empty_children)
        nsp_free(nsp->srv, nsp);
}

void sio_socket_unref(sio_socket_t *s)
{
    sio_nsp_t *nsp;
    if (--s->refs > 0)
        return;
    nsp = s->nsp;
    if (s->id != s->idbuf)
        free(s->id);
    free(s->pid);
    free(s);
    nsp_unref(nsp);
}

eio_session_t *sio_socket_session(const sio_socket_t *s)
{
    return s->client ? s->client->session : NULL;
}

static sio_socket_t *client_socket(sio_client_t *c, slice_t nsp)
{
    for (sio_socket_t *s = c->sockets; s; s = s->cnext)
        if (slice_eq(nsp, s->nsp->name))
            return s;
    return NULL;
}

/* The one place a socket closes: unlinks it everywhere, tells the upper layer, drops the
 * client's reference. */
static void socket_close(sio_socket_t *s, const char *reason)
{
    sio_server_t *srv;
    sio_client_t *c = s->client;
    sio_state_t was = s->state;
    if (was == SIO_S_CLOSED)
        return;
    srv = c->srv;
    s->state = SIO_S_CLOSED;
    for (sio_socket_t **pp = &c->sockets; *pp; pp = &(*pp)->cnext)
        if (*pp == s) {
            *pp = s->cnext;
            break;
        }
    s->refs++; /* the handlers below may drop the last other reference */
    if (was == SIO_S_CONNECTED) {
        METRIC_ADD(srv->metrics, sio_disconnects[metrics_disconnect_index(reason)], 1);
        /* rooms are still readable in the handlers ("disconnecting"); the upper layer may leave
         * them itself before "disconnect", as the reference does */
        srv->h->on_disconnect(s, reason, srv->ud);
        room_leave_all(&s->nsp->rooms, s);
        room_remove_id(&s->nsp->rooms, s);
        s->nprev->nnext = s->nnext;
        s->nnext->nprev = s->nprev;
        s->nprev = s->nnext = NULL;
        s->nsp->nsockets--;
    } else {
        srv->h->on_release(s, srv->ud);
    }
    s->client = NULL;
    s->refs--;             /* the client's */
    sio_socket_unref(s);   /* the guard above */
}

/* Sends a packet that carries no payload for the application (CONNECT, DISCONNECT, CONNECT_ERROR);
 * data is in the server's parser format. */
static void send_control(sio_client_t *c, sio_type_t type, slice_t nsp, const char *data, size_t len)
{
    sio_packet_t p = {type, 0, nsp, -1, {data, len}, NULL};
    rbuf_t *b;
    if (c->session == NULL)
        return;
    b = c->srv->cfg->parser == SIO_PARSER_MSGPACK ? sio_encode_msgpack(&p) : sio_encode(&p);
    METRIC_ADD(c->srv->metrics, sio_out, 1);
    eio_send(c->session, b);
    rbuf_unref(b);
}

/* send_control with the object {key: value[, key2: value2]} as data (strings that need no
 * escaping; key2 NULL: none). */
static void send_control_kv(sio_client_t *c, sio_type_t type, slice_t nsp, const char *key, const char *value,
                            const char *key2, const char *value2)
{
    buf_t b = BUF_INIT;
    sio_control_data(c->srv->cfg->parser, &b, key, value, key2, value2);
    send_control(c, type, nsp, b.base, b.len);
    buf_free(&b);
}

int sio_socket_protocol(const sio_socket_t *s)
{
    return s->client != NULL && s->client->session != NULL ? eio_session_protocol(s->client->session) : 4;
}

void sio_socket_accept(sio_socket_t *s)
{
    sio_nsp_t *nsp = s->nsp;
    if (s->state != SIO_S_CONNECTING || s->client == NULL || s->client->session == NULL)
        return;
    s->state = SIO_S_CONNECTED;
    s->nprev = nsp->head.nprev;
    s->nnext = &nsp->head;
    nsp->head.nprev->nnext = s;
    nsp->head.nprev = s;
    nsp->nsockets++;
    METRIC_ADD(s->client->srv->metrics, sio_connects, 1);
    room_add_id(&nsp->rooms, s);
    if (eio_session_protocol(s->client->session) == 3) {
        /* Socket.IO v2: the client makes the socket's id itself */
        send_control(s->client, SIO_CONNECT, (slice_t){nsp->name, strlen(nsp->name)}, NULL, 0);
        return;
    }
    /* {"sid":"<id>"}, with recovery {"sid":"<id>","pid":"<pid>"}: base64url, nothing to escape */
    send_control_kv(s->client, SIO_CONNECT, (slice_t){nsp->name, strlen(nsp->name)}, "sid", s->id,
                    s->pid ? "pid" : NULL, s->pid);
}

static int base64url(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= '0' && p[i] <= '9') ||
              p[i] == '-' || p[i] == '_'))
            return 0;
    return 1;
}

int sio_socket_set_id(sio_socket_t *s, const char *id, size_t len)
{
    if (s->state != SIO_S_CONNECTING || s->client == NULL || s->id != s->idbuf || len == 0 || len > 64 ||
        !base64url(id, len) || room_find_id(&s->nsp->rooms, id, len) != NULL)
        return -1;
    if (len > 20) {
        s->id = xmalloc(len + 1);
    }
    memcpy(s->id, id, len);
    s->id[len] = '\0';
    s->idlen = (uint16_t)len;
    return 0;
}

void sio_socket_set_pid(sio_socket_t *s, const char *pid, size_t len)
{
    free(s->pid);
    s->pid = base64url(pid, len) ? xstrndup(pid, len) : NULL;
}

void sio_socket_refuse(sio_socket_t *s, const char *json, size_t len)
{
    if (s->state != SIO_S_CONNECTING || s->client == NULL)
        return;
    METRIC_ADD(s->client->srv->metrics, sio_connect_errors, 1);
    send_control(s->client, SIO_CONNECT_ERROR, (slice_t){s->nsp->name, strlen(s->nsp->name)}, json, len);
    socket_close(s, "connect error");
}

void sio_socket_refuse_message(sio_socket_t *s, const char *message)
{
    if (s->state != SIO_S_CONNECTING || s->client == NULL)
        return;
    METRIC_ADD(s->client->srv->metrics, sio_connect_errors, 1);
    send_control_kv(s->client, SIO_CONNECT_ERROR, (slice_t){s->nsp->name, strlen(s->nsp->name)}, "message", message, NULL, NULL);
    socket_close(s, "connect error");
}

static void send_all(sio_server_t *srv, eio_session_t *session, rbuf_t *pkt, rbuf_t *const *att, size_t natt)
{
    METRIC_ADD(srv->metrics, sio_out, 1);
    eio_send(session, pkt);
    for (size_t i = 0; i < natt; i++)
        eio_send(session, att[i]);
}

void sio_socket_send(sio_socket_t *s, rbuf_t *pkt, rbuf_t *const *att, size_t natt)
{
    if (s->state == SIO_S_CLOSED || s->client == NULL || s->client->session == NULL)
        return;
    send_all(s->client->srv, s->client->session, pkt, att, natt);
}

/* ---------------------------------------------------------------- selection */

static void mark_name(sio_nsp_t *nsp, slice_t name, uint32_t epoch, sio_socket_t ***v, size_t *n, size_t *cap)
{
    room_t *r = room_find(&nsp->rooms, name.ptr, name.len);
    sio_socket_t *one = r ? NULL : room_find_id(&nsp->rooms, name.ptr, name.len);
    room_member_t *m = r ? r->head.rnext : NULL;
    for (;;) {
        sio_socket_t *s;
        if (r != NULL) {
            if (m == &r->head)
                break;
            s = m->socket;
            m = m->rnext;
        } else {
            if (one == NULL)
                break;
            s = one;
            one = NULL;
        }
        if (s->mark == epoch)
            continue;
        s->mark = epoch;
        if (v == NULL)
            continue;
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 16;
            *v = xrealloc(*v, *cap * sizeof(**v));
        }
        s->refs++;
        (*v)[(*n)++] = s;
    }
}

size_t sio_select(sio_server_t *srv, sio_nsp_t *nsp, const sio_target_t *t, sio_socket_t ***out)
{
    sio_socket_t **v = NULL;
    size_t n = 0, cap = 0;
    uint32_t epoch = ++srv->epoch;
    if (epoch == 0) {
        /* the counter wrapped: forget every old mark */
        for (sio_nsp_t *x = srv->nsps; x; x = x->next)
            for (sio_socket_t *s = x->head.nnext; s != &x->head; s = s->nnext)
                s->mark = 0;
        epoch = srv->epoch = 1;
    }
    /* excluded sockets are marked first, so the inclusion pass skips them */
    for (size_t i = 0; i < t->nexcept; i++)
        mark_name(nsp, t->except[i], epoch, NULL, NULL, NULL);
    if (t->nrooms == 0) {
        cap = nsp->nsockets;
        v = xmalloc((cap ? cap : 1) * sizeof(*v));
        for (sio_socket_t *s = nsp->head.nnext; s != &nsp->head; s = s->nnext)
            if (s->mark != epoch) {
                s->mark = epoch;
                s->refs++;
                v[n++] = s;
            }
    } else {
        for (size_t i = 0; i < t->nrooms; i++)
            mark_name(nsp, t->rooms[i], epoch, &v, &n, &cap);
    }
    *out = v;
    return n;
}

size_t sio_all_sockets(sio_server_t *srv, sio_socket_t ***out)
{
    sio_socket_t **v = NULL;
    size_t n = 0, cap = 0;
    for (sio_client_t *c = srv->clients; c; c = c->next)
        for (sio_socket_t *s = c->sockets; s; s = s->cnext) {
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                v = xrealloc(v, cap * sizeof(*v));
            }
            s->refs++;
            v[n++] = s;
        }
    *out = v;
    return n;
}

void sio_release(sio_socket_t **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sio_socket_unref(v[i]);
    free(v);
}

size_t sio_send_many(sio_socket_t **v, size_t n, int volatile_, rbuf_t *pkt, rbuf_t *const *att, size_t natt)
{
    size_t sent = 0;
    for (size_t i = 0; i < n; i++) {
        sio_socket_t *s = v[i];
        if (s->state != SIO_S_CONNECTED || s->client == NULL || s->client->session == NULL)
            continue;
        if (volatile_ && !eio_session_writable(s->client->session))
            continue;
        send_all(s->client->srv, s->client->session, pkt, att, natt);
        sent++;
    }
    if (sent > 0) {
        struct metrics *m = v[0]->nsp->srv->metrics;
        METRIC_ADD(m, broadcasts, 1);
        METRIC_ADD(m, broadcast_recipients, sent);
    }
    return sent;
}

int sio_socket_join(sio_socket_t *s, const char *room, size_t len)
{
    if (s->state != SIO_S_CONNECTED)
        return 0;
    return room_join(&s->nsp->rooms, s, room, len);
}

int sio_socket_leave(sio_socket_t *s, const char *room, size_t len)
{
    if (s->state != SIO_S_CONNECTED && s->rooms == NULL)
        return 0;
    return room_leave(&s->nsp->rooms, s, room, len);
}

void sio_socket_leave_all(sio_socket_t *s)
{
    room_leave_all(&s->nsp->rooms, s);
}

static void client_close(sio_client_t *c)
{
    if (c->session != NULL)
        eio_close(c->session); /* on_close follows, now or once queued packets are out */
}

void sio_socket_disconnect(sio_socket_t *s, int close)
{
    sio_client_t *c = s->client;
    if (s->state != SIO_S_CONNECTED || c == NULL)
        return;
    if (close) {
        /* every socket of the client leaves, then the connection closes (the reference's
         * client._disconnect) */
        c->refs++;
        while (c->sockets != NULL) {
            sio_socket_t *o = c->sockets;
            if (o->state == SIO_S_CONNECTED) {
                send_control(c, SIO_DISCONNECT, (slice_t){o->nsp->name, strlen(o->nsp->name)}, NULL, 0);
                socket_close(o, "server namespace disconnect");
            } else {
                socket_close(o, "server namespace disconnect");
            }
        }
        client_close(c);
        client_unref(c);
        return;
    }
    send_control(c, SIO_DISCONNECT, (slice_t){s->nsp->name, strlen(s->nsp->name)}, NULL, 0);
    socket_close(s, "server namespace disconnect");
}

/* ---------------------------------------------------------------- clients */

static void clear_pending(sio_client_t *c)
{
    sio_partial_t *pa = c->partial;
    if (pa == NULL)
        return;
    for (uint32_t i = 0; i < pa->natt; i++)
        rbuf_unref(pa->att[i]);
    free(pa);
    c->partial = NULL;
}

/* How many namespaces the client joined or is joining. */
static uint32_t client_nsps(const sio_client_t *c)
{
    uint32_t n = 0;
    for (sio_socket_t *o = c->sockets; o; o = o->cnext)
        n++;
    for (sio_resolve_t *r = c->resolving; r; r = r->next)
        n++;
    return n;
}

static int too_many_nsps(sio_client_t *c, slice_t name)
{
    uint32_t max = c->srv->cfg->max_nsps_per_client;
    if (max == 0 || client_nsps(c) < max)
        return 0;
    /* one connection cannot pile up sockets (dynamic namespaces make that cheap) */
    METRIC_ADD(c->srv->metrics, sio_connect_errors, 1);
    send_control_kv(c, SIO_CONNECT_ERROR, name, "message", "Too many namespaces", NULL, NULL);
    return 1;
}

/* A CONNECT to nsp (NULL: "Invalid namespace"), which the client calls `name`. */
static void connect_socket(sio_client_t *c, sio_nsp_t *nsp, slice_t name, slice_t auth)
{
    sio_server_t *srv = c->srv;
    sio_socket_t *s;
    if (c->session == NULL)
        return;
    if (nsp == NULL) {
        METRIC_ADD(srv->metrics, sio_connect_errors, 1);
        send_control_kv(c, SIO_CONNECT_ERROR, name, "message", "Invalid namespace", NULL, NULL);
        return;
    }
    if (client_socket(c, name) != NULL)
        return; /* already connected (or connecting) to that namespace */
    if (too_many_nsps(c, name))
        return;
    tq_remove(&c->ct);
    s = xcalloc(1, sizeof(*s));
    s->id = s->idbuf;
    s->idlen = 20;
    if (eio_session_protocol(c->session) != 3) {
        eio_generate_id(s->id);
    } else if (nsp->name[0] == '/' && nsp->name[1] == '\0') {
        memcpy(s->id, eio_session_id(c->session), 21); /* v2: the Engine.IO id in "/"... */
    } else {
        size_t n = strlen(nsp->name); /* ...and "<nsp>#<Engine.IO id>" elsewhere */
        s->id = xmalloc(n + 22);
        memcpy(s->id, nsp->name, n);
        s->id[n] = '#';
        memcpy(s->id + n + 1, eio_session_id(c->session), 21);
        s->idlen = (uint16_t)(n + 21);
    }
    s->state = SIO_S_CONNECTING;
    s->refs = 1; /* the client's */
    s->nsp = nsp;
    nsp->nrefs++;
    s->client = c;
    s->cnext = c->sockets;
    c->sockets = s;
    srv->h->on_connect(s, auth, srv->ud);
}

/* ---------------------------------------------------------------- resolving namespaces */

void sio_resolve_ref(sio_resolve_t *r) { r->refs++; }

void sio_resolve_unref(sio_resolve_t *r)
{
    if (--r->refs == 0)
        free(r);
}

int sio_resolve_pending(const sio_resolve_t *r) { return r->client != NULL && !r->answered; }

int sio_resolve_protocol(const sio_resolve_t *r)
{
    return r->client != NULL && r->client->session != NULL ? eio_session_protocol(r->client->session) : 4;
}

/* Takes r off its client's list and the deadline queue; drops the client's reference. */
static void resolve_unlink(sio_resolve_t *r)
{
    for (sio_resolve_t **pp = &r->client->resolving; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    r->client = NULL;
    tq_remove(&r->deadline);
    sio_resolve_unref(r);
}

/* Applies r's answer to its CONNECT. */
static void settle(sio_resolve_t *r)
{
    sio_client_t *c = r->client;
    sio_resolve_ref(r);
    c->refs++;
    resolve_unlink(r);
    connect_socket(c, r->nsp, (slice_t){r->data, r->nlen}, (slice_t){r->data + r->nlen, r->alen});
    client_unref(c);
    sio_resolve_unref(r);
}

void sio_resolve_done(sio_resolve_t *r, sio_nsp_t *nsp)
{
    if (!sio_resolve_pending(r))
        return;
    r->answered = 1;
    r->nsp = nsp;
    if (!r->in_call)
        settle(r);
}

static void on_resolve_due(tq_t *q, tq_entry_t *e)
{
    sio_resolve_t *r = container_of(e, sio_resolve_t, deadline);
    log_warn("sio: the dynamic namespaces did not answer a CONNECT to %.*s within %llu ms: refused",
             (int)r->nlen, r->data, (unsigned long long)((sio_server_t *)q->data)->cfg->connect_timeout);
    r->answered = 1;
    r->nsp = NULL;
    settle(r);
}

/* Asks the upper layer about a CONNECT to a namespace that does not exist; it waits for the answer. */
static void ask_resolve(sio_client_t *c, slice_t name, slice_t auth)
{
    sio_server_t *srv = c->srv;
    sio_resolve_t *r;
    for (r = c->resolving; r; r = r->next)
        if (r->nlen == name.len && memcmp(r->data, name.ptr, name.len) == 0)
            return; /* the same CONNECT is waiting already: its answer will do */
    if (too_many_nsps(c, name))
        return;
    r = xmalloc(sizeof(*r) + name.len + auth.len);
    memset(r, 0, sizeof(*r));
    r->client = c;
    r->refs = 2; /* the client's, and this call's */
    r->nlen = name.len;
    r->alen = auth.len;
    memcpy(r->data, name.ptr, name.len);
    if (auth.len)
        memcpy(r->data + name.len, auth.ptr, auth.len);
    r->next = c->resolving;
    c->resolving = r;
    tq_add(&srv->q_resolve, &r->deadline);
    r->in_call = 1;
    srv->h->resolve(r, name, auth, srv->ud); /* eh_message holds a reference on c */
    r->in_call = 0;
    if (r->answered && r->client != NULL)
        settle(r);
    sio_resolve_unref(r);
}

static int buf_writer(void *data, const char *p, size_t n)
{
    buf_append(data, p, n);
    return 0;
}

static void on_connect_packet(sio_client_t *c, const sio_packet_t *p)
{
    sio_server_t *srv = c->srv;
    slice_t name = p->nsp, auth = p->data;
    sio_nsp_t *nsp;
    if (eio_session_protocol(c->session) == 3) {
        /* Socket.IO v2 puts the namespace's query in its name ("/admin?token=abc"), which the
         * reference reads as a URL: the path is the namespace, the query its auth (a fragment
         * is no part of either) */
        const char *q = memchr(name.ptr, '?', name.len), *h = memchr(name.ptr, '#', name.len);
        const char *end = name.ptr + name.len;
        if (h != NULL && (q == NULL || h < q))
            q = NULL;
        name.len = (size_t)((q ? q : h ? h : end) - name.ptr);
        auth = q ? (slice_t){q + 1, (size_t)((h ? h : end) - q - 1)} : (slice_t){"", 0};
    }
    buf_t packed = BUF_INIT;
    if (p->obj != NULL) {
        /* msgpack parser: the auth map as msgpack bytes, which the upper layer decodes (and a
         * CONNECT waiting for a dynamic namespace keeps) */
        msgpack_packer pk;
        msgpack_packer_init(&pk, &packed, buf_writer);
        msgpack_pack_object(&pk, *p->obj);
        auth = (slice_t){packed.base, packed.len};
    }
    nsp = sio_nsp_find(srv, name.ptr, name.len);
    if (nsp == NULL && srv->h->resolve != NULL)
        ask_resolve(c, name, auth);
    else
        connect_socket(c, nsp, name, auth);
    buf_free(&packed);
}

/* A complete packet (attachments gathered). Returns -1 when the client must be closed. */
static int dispatch(sio_client_t *c, const sio_packet_t *p, rbuf_t *const *att, size_t natt)
{
    sio_server_t *srv = c->srv;
    sio_socket_t *s;
    int rc = 0;
    if ((unsigned)p->type < METRICS_NSIO_TYPES)
        METRIC_ADD(srv->metrics, sio_in[p->type], 1);
    switch (p->type) {
    case SIO_CONNECT:
        on_connect_packet(c, p);
        return 0;
    case SIO_DISCONNECT:
        s = client_socket(c, p->nsp);
        if (s != NULL)
            socket_close(s, "client namespace disconnect");
        return 0;
    case SIO_EVENT:
    case SIO_BINARY_EVENT:
    case SIO_ACK:
    case SIO_BINARY_ACK:
        s = client_socket(c, p->nsp);
        if (s == NULL || s->state != SIO_S_CONNECTED)
            return 0; /* no socket for that namespace: ignored, as the reference does */
        s->refs++;
        rc = srv->h->on_packet(s, p, att, natt, srv->ud);
        sio_socket_unref(s);
        return rc;
    case SIO_CONNECT_ERROR:
        return 0;
    }
    return -1;
}

/* msgpack parser: a whole packet in one binary message. */
static void on_msgpack(sio_client_t *c, const char *data, size_t len)
{
    sio_packet_t p;
    msgpack_unpacked u;
    int rc;
    msgpack_unpacked_init(&u);
    rc = sio_decode_msgpack(data, len, &c->srv->cfg->limits, &u, &p);
    if (rc != SIO_PKT_OK) {
        log_debug("sio: invalid msgpack packet from %s: %s", eio_session_id(c->session), sio_strerror(rc));
        client_close(c);
    } else if (dispatch(c, &p, NULL, 0) < 0) {
        client_close(c);
    }
    msgpack_unpacked_destroy(&u);
}

static void on_text(sio_client_t *c, const char *data, size_t len)
{
    sio_packet_t p;
    int rc;
    if (c->srv->cfg->parser == SIO_PARSER_MSGPACK) {
        log_debug("sio: text message from %s with the msgpack parser", eio_session_id(c->session));
        client_close(c);
        return;
    }
    if (c->partial != NULL) {
        log_debug("sio: text packet while reassembling a binary packet");
        client_close(c);
        return;
    }
    rc = sio_decode(data, len, &c->srv->cfg->limits, &p);
    if (rc != SIO_PKT_OK) {
        log_with(LOG_DEBUG, LOG_FIELDS(LOG_S("sid", eio_session_id(c->session)), LOG_S("reason", sio_strerror(rc))),
                 "sio: invalid packet from %s: %s", eio_session_id(c->session), sio_strerror(rc));
        client_close(c);
        return;
    }
    if ((p.type == SIO_BINARY_EVENT || p.type == SIO_BINARY_ACK) && p.attachments > 0) {
        /* p.attachments is bounded by the decoder's limits */
        sio_partial_t *pa = xmalloc(sizeof(*pa) + p.attachments * sizeof(pa->att[0]) + len);
        pa->len = len;
        pa->text = (char *)&pa->att[p.attachments];
        memcpy(pa->text, data, len);
        pa->natt = 0;
        pa->want = p.attachments;
        c->partial = pa;
        return;
    }
    if (dispatch(c, &p, NULL, 0) < 0)
        client_close(c);
}

static void on_binary(sio_client_t *c, const char *data, size_t len)
{
    sio_packet_t p;
    int rc;
    sio_partial_t *pa = c->partial;
    if (c->srv->cfg->parser == SIO_PARSER_MSGPACK) {
        on_msgpack(c, data, len);
        return;
    }
    if (pa == NULL) {
        log_debug("sio: binary data outside of a binary packet");
        client_close(c);
        return;
    }
    pa->att[pa->natt++] = rbuf_from(data, len);
    if (pa->natt < pa->want)
        return;
    rc = sio_decode(pa->text, pa->len, &c->srv->cfg->limits, &p);
    if (rc == SIO_PKT_OK)
        rc = dispatch(c, &p, pa->att, pa->natt);
    clear_pending(c);
    if (rc < 0)
        client_close(c);
}

static void on_connect_due(tq_t *q, tq_entry_t *e)
{
    sio_client_t *c = container_of(e, sio_client_t, ct);
    (void)q;
    if (c->sockets == NULL) {
        log_debug("sio: session %s joined no namespace in time", eio_session_id(c->session));
        client_close(c);
    }
}

/* ---------------------------------------------------------------- Engine.IO handler */

static void eh_open(eio_session_t *session, void *ud)
{
    sio_server_t *srv = ud;
    sio_client_t *c = xcalloc(1, sizeof(*c));
    c->srv = srv;
    c->session = session;
    c->refs = 1;
    eio_session_set_data(session, c);
    tq_add(&srv->q_connect, &c->ct);
    srv->nclients++;
    c->next = srv->clients;
    if (srv->clients)
        srv->clients->prev = c;
    srv->clients = c;
    if (eio_session_protocol(session) == 3) {
        /* Socket.IO v2: every client is in "/" without asking (the reference's onconnection) */
        c->refs++;
        connect_socket(c, srv->nsps, SLICE_LIT("/"), (slice_t){"", 0});
        client_unref(c);
    }
}

static void eh_message(eio_session_t *session, int binary, const char *data, size_t len, void *ud)
{
    sio_client_t *c = eio_session_data(session);
    (void)ud;
    c->refs++;
    if (binary)
        on_binary(c, data, len);
    else
        on_text(c, data, len);
    client_unref(c);
}

static void eh_close(eio_session_t *session, const char *reason, void *ud)
{
    sio_server_t *srv = ud;
    sio_client_t *c = eio_session_data(session);
    c->refs++;
    c->session = NULL;
    tq_remove(&c->ct);
    while (c->resolving != NULL) /* unanswered: dropped */
        resolve_unlink(c->resolving);
    while (c->sockets != NULL)
        socket_close(c->sockets, reason);
    clear_pending(c);
    srv->nclients--;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->refs--;       /* the session's */
    client_unref(c); /* the dispatch guard */
}

const eio_handler_t sio_eio_handler = {eh_open, eh_message, eh_close, NULL};

/* ---------------------------------------------------------------- server */

sio_nsp_t *sio_nsp_find(sio_server_t *srv, const char *name, size_t len)
{
    for (sio_nsp_t *n = srv->nsps; n; n = n->next)
        if (strlen(n->name) == len && memcmp(n->name, name, len) == 0)
            return n;
    return NULL;
}

sio_nsp_t *sio_nsp_create(sio_server_t *srv, const char *name, size_t len)
{
    sio_nsp_t *n = sio_nsp_find(srv, name, len), **pp;
    if (n != NULL)
        return n;
    n = xcalloc(1, sizeof(*n));
    n->srv = srv;
    n->name = xstrndup(name, len);
    n->head.nprev = n->head.nnext = &n->head;
    for (pp = &srv->nsps; *pp; pp = &(*pp)->next)
        ;
    *pp = n;
    return n;
}

static void nsp_destroy(sio_nsp_t *nsp)
{
    room_index_free(&nsp->rooms);
    free(nsp->name);
    free(nsp);
}

static void nsp_free(sio_server_t *srv, sio_nsp_t *nsp)
{
    if (srv->h->on_nsp_free != NULL)
        srv->h->on_nsp_free(nsp, srv->ud);
    for (sio_nsp_t **pp = &srv->nsps; *pp; pp = &(*pp)->next)
        if (*pp == nsp) {
            *pp = nsp->next;
            break;
        }
    nsp_destroy(nsp);
}

void sio_server_init(sio_server_t *srv, uv_loop_t *loop, const sio_config_t *cfg, const sio_handler_t *h,
                     void *ud)
{
    memset(srv, 0, sizeof(*srv));
    srv->cfg = cfg;
    srv->h = h;
    srv->ud = ud;
    tq_init(&srv->q_connect, loop, cfg->connect_timeout, on_connect_due, srv);
    tq_init(&srv->q_resolve, loop, cfg->connect_timeout, on_resolve_due, srv);
    sio_nsp_create(srv, "/", 1);
}

size_t sio_close_clients(sio_server_t *srv, size_t max, const char *reason)
{
    /* a snapshot, each held: the disconnect handlers may close other clients */
    size_t n = 0, left = 0;
    sio_client_t **v = xmalloc((max ? max : 1) * sizeof(*v));
    for (sio_client_t *c = srv->clients; c && n < max; c = c->next) {
        if (c->closing)
            continue;
        c->closing = 1;
        c->refs++;
        v[n++] = c;
    }
    for (size_t i = 0; i < n; i++) {
        sio_client_t *c = v[i];
        while (c->session != NULL && c->sockets != NULL)
            socket_close(c->sockets, reason);
        client_close(c);
        client_unref(c);
    }
    free(v);
    for (sio_client_t *c = srv->clients; c; c = c->next)
        left += !c->closing;
    return left;
}

void sio_server_close(sio_server_t *srv, const char *reason)
{
    /* A snapshot of the namespaces, each held: closing the last socket of a removable one would
     * free it under the walk (cleanup_empty_children), and the handlers may make new ones. */
    size_t n = 0, i = 0;
    sio_nsp_t **v;
    for (sio_nsp_t *x = srv->nsps; x; x = x->next)
        n++;
    v = xmalloc((n ? n : 1) * sizeof(*v));
    for (sio_nsp_t *x = srv->nsps; x; x = x->next) {
        x->nrefs++;
        v[i++] = x;
    }
    for (i = 0; i < n; i++)
        while (v[i]->head.nnext != &v[i]->head)
            socket_close(v[i]->head.nnext, reason);
    for (i = 0; i < n; i++)
        nsp_unref(v[i]);
    free(v);
}

void sio_server_free(sio_server_t *srv)
{
    while (srv->nsps != NULL) {
        sio_nsp_t *n = srv->nsps;
        srv->nsps = n->next;
        nsp_destroy(n);
    }
}
