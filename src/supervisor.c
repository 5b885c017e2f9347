/* supervisor: see supervisor.h. */
#include "supervisor.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "net.h"
#include "wbus.h"

extern char **environ;

#define RESTART_MIN 100   /* ms before a worker that died is started again */
#define RESTART_MAX 5000  /* ... doubling while it dies before it is ready */

typedef struct sup sup_t;

typedef struct {
    sup_t *sup;
    int index;
    uv_process_t proc;
    wbus_t bus;
    uv_timer_t restart;
    int running;    /* the process is alive */
    int ready;      /* it said WBUS_READY since it was started */
    int handles;    /* proc and bus.pipe not closed yet (a restart waits for 0) */
    uint64_t delay; /* the next restart's delay */
} worker_t;

struct sup {
    uv_loop_t *loop;
    const sl_config_t *cfg;
    char **argv;
    char exe[4096];
    int lfd;       /* the address the workers listen on, bound (not listening) */
    int port;
    worker_t *w;
    int n;
    int announced; /* "listening" said: every worker was ready once */
    int stopping;
    int status;    /* the exit status so far */
    uv_signal_t sigint, sigterm, sighup;
};

static int spawn(worker_t *w);

static int running(const sup_t *s)
{
    int k = 0;
    for (int i = 0; i < s->n; i++)
        k += s->w[i].running;
    return k;
}

/* Tells every worker how many run now (the adapter's server count). */
static void send_count(sup_t *s)
{
    int k = 0;
    for (int i = 0; i < s->n; i++)
        k += s->w[i].running && s->w[i].ready;
    char c[2];
    wbus_put16(c, (unsigned)k);
    for (int i = 0; i < s->n; i++)
        if (s->w[i].running)
            wbus_send(&s->w[i].bus, WBUS_COUNT, WBUS_SUPERVISOR, (unsigned)i, c, 2, NULL, 0, NULL, NULL, NULL);
}

static void stop_all(sup_t *s, int signum)
{
    for (int i = 0; i < s->n; i++) {
        uv_timer_stop(&s->w[i].restart);
        if (s->w[i].running)
            uv_process_kill(&s->w[i].proc, signum);
    }
}

static void finish(sup_t *s)
{
    close(s->lfd);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sighup, NULL);
    for (int i = 0; i < s->n; i++)
        uv_close((uv_handle_t *)&s->w[i].restart, NULL);
}

/* ---------------------------------------------------------------- the channel: relaying */

static void relayed(void *arg, int status)
{
    (void)status;
    uv_close(arg, (uv_close_cb)free);
}

static void on_frame(wbus_t *b, int type, unsigned src, unsigned dst, const char *p, size_t len, void *ud)
{
    worker_t *w = ud;
    sup_t *s = w->sup;
    (void)src;
    switch (type) {
    case WBUS_READY:
        w->ready = 1;
        w->delay = RESTART_MIN;
        if (!s->announced) {
            int k = 0;
            for (int i = 0; i < s->n; i++)
                k += s->w[i].ready;
            if (k == s->n) {
                s->announced = 1;
                log_with(LOG_INFO, LOG_FIELDS(LOG_S("host", s->cfg->host), LOG_I("port", s->port), LOG_I("workers", s->n)),
                         "siolua listening on http://%s:%d (%d workers)", s->cfg->host, s->port, s->n);
            }
        } else {
            log_info("siolua: worker %d is back (pid %d)", w->index, w->proc.pid);
        }
        send_count(s);
        break;
    case WBUS_PUBLISH: /* to every other worker */
        for (int i = 0; i < s->n; i++)
            if (i != w->index && s->w[i].running)
                wbus_send(&s->w[i].bus, WBUS_PUBLISH, (unsigned)w->index, WBUS_ALL, p, len, NULL, 0, NULL, NULL, NULL);
        break;
    case WBUS_HANDOFF: /* the socket goes on to its worker; if it is gone, the socket closes */
        if ((int)dst < s->n && s->w[dst].running) {
            uv_tcp_t *t = xmalloc(sizeof(*t));
            uv_stream_t *from = wbus_take(b);
            uv_tcp_init(s->loop, t);
            if (from == NULL || uv_accept(from, (uv_stream_t *)t) != 0 ||
                wbus_send(&s->w[dst].bus, WBUS_HANDOFF, (unsigned)w->index, dst, p, len, NULL, 0, (uv_stream_t *)t,
                          relayed, t) != 0)
                uv_close((uv_handle_t *)t, (uv_close_cb)free);
        }
        break;
    default:
        break;
    }
}

static void on_bus_close(wbus_t *b, void *ud)
{
    (void)b;
    (void)ud; /* the process's exit says what happened */
}

/* ---------------------------------------------------------------- workers: start, exit, restart */

static void handle_closed(uv_handle_t *h)
{
    worker_t *w = h->data;
    w->handles--;
}

static void pipe_closed(uv_handle_t *h)
{
    wbus_t *b = h->data; /* (the pipe's data is its wbus) */
    worker_t *w = (worker_t *)(void *)((char *)b - offsetof(worker_t, bus));
    w->handles--;
}

static void on_restart(uv_timer_t *t)
{
    worker_t *w = t->data;
    if (w->sup->stopping)
        return;
    if (w->handles > 0) { /* the last one's handles are still closing */
        uv_timer_start(&w->restart, on_restart, 10, 0);
        return;
    }
    if (spawn(w) != 0)
        uv_timer_start(&w->restart, on_restart, w->delay, 0);
}

static void on_exit_cb(uv_process_t *proc, int64_t status, int signum)
{
    worker_t *w = proc->data;
    sup_t *s = w->sup;
    int was_ready = w->ready;
    w->running = 0;
    w->ready = 0;
    wbus_close(&w->bus);
    uv_close((uv_handle_t *)proc, handle_closed);
    if (s->stopping) {
        int bad = status != 0 || (signum != 0 && signum != SIGTERM && signum != SIGINT);
        if (bad && s->status == 0)
            s->status = 1;
        if (bad)
            log_warn("siolua: worker %d exited with status %d%s%s", w->index, (int)status, signum ? ", signal " : "",
                     signum ? strsignal(signum) : "");
        if (running(s) == 0)
            finish(s);
        return;
    }
    if (!s->announced && !was_ready) { /* it could not start (the app failed to load...): give up */
        log_error("siolua: worker %d could not start (exit status %d%s%s): stopping", w->index, (int)status,
                  signum ? ", signal " : "", signum ? strsignal(signum) : "");
        s->stopping = 1;
        s->status = 1;
        stop_all(s, SIGTERM);
        if (running(s) == 0)
            finish(s);
        return;
    }
    if (status == 0 && signum == 0 && was_ready) { /* io.close() in that worker: it is not started again */
        log_info("siolua: worker %d (pid %d) closed (io.close()); %d workers left", w->index, proc->pid, running(s));
        send_count(s);
        if (running(s) == 0)
            finish(s);
        return;
    }
    log_with(LOG_WARN, LOG_FIELDS(LOG_I("worker", w->index), LOG_I("status", status), LOG_I("signal", signum)),
             "siolua: worker %d (pid %d) %s %d: restarting it in %llu ms (its clients reconnect)", w->index,
             proc->pid, signum ? "was killed by signal" : "exited with status", signum ? signum : (int)status,
             (unsigned long long)w->delay);
    send_count(s);
    uv_timer_start(&w->restart, on_restart, w->delay, 0);
    if (!was_ready) /* dying before it is ready again: back off */
        w->delay = w->delay * 2 > RESTART_MAX ? RESTART_MAX : w->delay * 2;
}

static int spawn(worker_t *w)
{
    sup_t *s = w->sup;
    uv_process_options_t o;
    uv_stdio_container_t stdio[5];
    size_t nenv = 0;
    char tag[64];
    int r;
    while (environ[nenv] != NULL)
        nenv++;
    char **env = xcalloc(nenv + 2, sizeof(*env));
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++)
        if (strncmp(environ[i], SUPERVISOR_ENV "=", strlen(SUPERVISOR_ENV) + 1) != 0)
            env[k++] = environ[i];
    snprintf(tag, sizeof(tag), "%s=%d:%d", SUPERVISOR_ENV, (int)getpid(), w->index);
    env[k++] = tag;
    env[k] = NULL;
    memset(&o, 0, sizeof(o));
    wbus_free(&w->bus); /* the last process's */
    memset(&w->bus, 0, sizeof(w->bus));
    w->bus.on_pipe_closed = pipe_closed;
    uv_pipe_init(s->loop, &w->bus.pipe, 1);
    for (int i = 0; i < 3; i++) {
        stdio[i].flags = UV_INHERIT_FD;
        stdio[i].data.fd = i;
    }
    stdio[3].flags = UV_INHERIT_FD;
    stdio[3].data.fd = s->lfd;
    stdio[4].flags = UV_CREATE_PIPE | UV_READABLE_PIPE | UV_WRITABLE_PIPE;
    stdio[4].data.stream = (uv_stream_t *)&w->bus.pipe;
    o.file = s->exe;
    o.args = s->argv;
    o.env = env;
    o.stdio = stdio;
    o.stdio_count = 5;
    o.exit_cb = on_exit_cb;
    w->proc.data = w;
    r = uv_spawn(s->loop, &w->proc, &o);
    free(env);
    w->handles = 2;
    if (r != 0) {
        log_error("siolua: cannot start worker %d: %s", w->index, uv_strerror(r));
        uv_close((uv_handle_t *)&w->proc, handle_closed);
        w->bus.pipe.data = &w->bus;
        uv_close((uv_handle_t *)&w->bus.pipe, pipe_closed);
        return -1;
    }
    w->running = 1;
    wbus_start(&w->bus, s->loop, -1, on_frame, on_bus_close, w);
    return 0;
}

/* ---------------------------------------------------------------- signals */

static void on_stop_signal(uv_signal_t *sig, int signum)
{
    sup_t *s = sig->data; /* (a second one is passed on too: a worker that ignored the first) */
    log_info("siolua: %s received, stopping %d workers", signum == SIGINT ? "SIGINT" : "SIGTERM", running(s));
    s->stopping = 1;
    stop_all(s, signum);
    if (running(s) == 0)
        finish(s);
}

static void on_sighup(uv_signal_t *sig, int signum)
{
    sup_t *s = sig->data;
    (void)signum;
    log_info("siolua: SIGHUP received: every worker reloads");
    for (int i = 0; i < s->n; i++)
        if (s->w[i].running)
            uv_process_kill(&s->w[i].proc, SIGHUP);
}

/* ---------------------------------------------------------------- public */

int supervisor_worker_index(void)
{
    const char *v = getenv(SUPERVISOR_ENV);
    long ppid, index;
    char *end;
    if (v == NULL)
        return -1;
    ppid = strtol(v, &end, 10);
    if (*end != ':' || ppid != (long)getppid())
        return -1; /* not our parent's: a stray variable, not a worker */
    index = strtol(end + 1, &end, 10);
    return *end == '\0' && index >= 0 && index < 4096 ? (int)index : -1;
}

/* Binds (without listening) the address every worker listens on: each worker opens a socket of its
 * own on it with SO_REUSEPORT (net_listen_fd), and the kernel spreads new connections over them
 * (one shared accepting socket would give nearly all of them to whichever worker wakes first).
 * This one only holds the port (a --port 0 is chosen once, here) and tells the workers which. */
static int bind_listener(sup_t *s)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    const char *host = s->cfg->host;
    int r = strchr(host, ':') != NULL ? uv_ip6_addr(host, s->cfg->port, (struct sockaddr_in6 *)&ss)
                                      : uv_ip4_addr(host, s->cfg->port, (struct sockaddr_in *)&ss);
    if (r != 0) {
        log_error("siolua: cannot listen on %s:%d: %s (bad listen address)", host, s->cfg->port, uv_strerror(r));
        return -1;
    }
    s->lfd = net_bind_shared((struct sockaddr *)&ss, ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                                               : sizeof(struct sockaddr_in));
    if (s->lfd < 0 || getsockname(s->lfd, (struct sockaddr *)&ss, &sl) != 0) {
        log_error("siolua: cannot listen on %s:%d: %s (bind)", host, s->cfg->port, strerror(errno));
        if (s->lfd >= 0)
            close(s->lfd);
        return -1;
    }
    s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

int supervisor_run(const sl_config_t *cfg, char **argv)
{
    sup_t s;
    size_t len = sizeof(s.exe);
    memset(&s, 0, sizeof(s));
    s.loop = uv_default_loop();
    s.cfg = cfg;
    s.argv = argv;
    s.n = cfg->workers;
    if (uv_exepath(s.exe, &len) != 0) {
        log_error("siolua: cannot find its own executable to start the workers");
        return 1;
    }
    if (bind_listener(&s) != 0)
        return 1;
    uv_signal_init(s.loop, &s.sigint);
    uv_signal_init(s.loop, &s.sigterm);
    uv_signal_init(s.loop, &s.sighup);
    s.sigint.data = s.sigterm.data = s.sighup.data = &s;
    uv_signal_start(&s.sigint, on_stop_signal, SIGINT);
    uv_signal_start(&s.sigterm, on_stop_signal, SIGTERM);
    uv_signal_start(&s.sighup, on_sighup, SIGHUP);
    log_info("siolua: supervisor (pid %d) starting %d workers", (int)getpid(), s.n);
    s.w = xcalloc((size_t)s.n, sizeof(*s.w));
    for (int i = 0; i < s.n; i++) {
        worker_t *w = &s.w[i];
        w->sup = &s;
        w->index = i;
        w->delay = RESTART_MIN;
        uv_timer_init(s.loop, &w->restart);
        w->restart.data = w;
    }
    for (int i = 0; i < s.n && !s.stopping; i++)
        if (spawn(&s.w[i]) != 0) {
            s.stopping = 1;
            s.status = 1;
            stop_all(&s, SIGTERM);
        }
    if (s.stopping && running(&s) == 0)
        finish(&s);
    uv_run(s.loop, UV_RUN_DEFAULT);
    for (int i = 0; i < s.n; i++)
        wbus_free(&s.w[i].bus);
    free(s.w);
    uv_loop_close(s.loop);
    return s.status;
}
