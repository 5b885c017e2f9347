/* metrics: see metrics.h. The text format is Prometheus' exposition format 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/): numbers through "%.17g" (Go's
 * ParseFloat reads them back exactly), label values escaped (\\ \" \n), as its parsers expect. */
#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const double bounds[METRICS_NBUCKETS] = {0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05,
                                                0.1,    0.5,    1,     2,     5,    10};

static const char *const reasons[METRICS_NDISC] = {
    "transport close",  "transport error",           "ping timeout",
    "parse error",      "forced close",              "client namespace disconnect",
    "server namespace disconnect", "server shutting down", "forced server close", "other"};

static const char *const sio_types[METRICS_NSIO_TYPES] = {"connect", "disconnect",   "event",     "ack",
                                                          "connect_error", "binary_event", "binary_ack"};

static const char *const eio_errors[METRICS_NEIO_ERRORS] = {
    "Transport unknown", "Session ID unknown", "Bad handshake method", "Bad request", "Forbidden",
    "Unsupported protocol version"};

void metrics_observe(metrics_hist_t *h, double seconds)
{
    for (int i = 0; i < METRICS_NBUCKETS; i++)
        if (seconds <= bounds[i]) {
            h->buckets[i]++;
            break;
        }
    h->count++;
    h->sum += seconds;
}

int metrics_disconnect_index(const char *reason)
{
    for (int i = 0; i < METRICS_NDISC - 1; i++)
        if (strcmp(reason, reasons[i]) == 0)
            return i;
    return METRICS_NDISC - 1;
}

const char *metrics_disconnect_reason(int i) { return reasons[i]; }

/* ---------------------------------------------------------------- the text format */

static void number(buf_t *out, double v)
{
    char tmp[40];
    int n;
    if (isnan(v))
        n = snprintf(tmp, sizeof(tmp), "NaN");
    else if (isinf(v))
        n = snprintf(tmp, sizeof(tmp), v > 0 ? "+Inf" : "-Inf");
    else if (v == (double)(int64_t)v && fabs(v) < 9e15)
        n = snprintf(tmp, sizeof(tmp), "%lld", (long long)v);
    else
        n = snprintf(tmp, sizeof(tmp), "%.17g", v);
    buf_append(out, tmp, (size_t)n);
}

void metrics_family(buf_t *out, const char *name, const char *type, const char *help)
{
    buf_appendstr(out, "# HELP ");
    buf_appendstr(out, name);
    buf_appendc(out, ' ');
    buf_appendstr(out, help); /* static text of ours: no backslash or newline */
    buf_appendstr(out, "\n# TYPE ");
    buf_appendstr(out, name);
    buf_appendc(out, ' ');
    buf_appendstr(out, type);
    buf_appendc(out, '\n');
}

void metrics_sample(buf_t *out, const char *name, const char *lkey, const char *lval, double v)
{
    buf_appendstr(out, name);
    if (lkey != NULL) {
        buf_appendc(out, '{');
        buf_appendstr(out, lkey);
        buf_append(out, "=\"", 2);
        for (const char *p = lval; *p; p++) {
            if (*p == '\\' || *p == '"')
                buf_appendc(out, '\\');
            if (*p == '\n')
                buf_append(out, "\\n", 2);
            else
                buf_appendc(out, *p);
        }
        buf_append(out, "\"}", 2);
    }
    buf_appendc(out, ' ');
    number(out, v);
    buf_appendc(out, '\n');
}

void metrics_single(buf_t *out, const char *name, const char *type, const char *help, double v)
{
    metrics_family(out, name, type, help);
    metrics_sample(out, name, NULL, NULL, v);
}

static void counter(buf_t *out, const char *name, const char *help, uint64_t v)
{
    metrics_single(out, name, "counter", help, (double)v);
}

static void histogram(buf_t *out, const char *name, const char *help, const metrics_hist_t *h)
{
    char key[128], le[32];
    uint64_t cum = 0;
    metrics_family(out, name, "histogram", help);
    snprintf(key, sizeof(key), "%s_bucket", name);
    for (int i = 0; i < METRICS_NBUCKETS; i++) {
        cum += h->buckets[i];
        snprintf(le, sizeof(le), "%g", bounds[i]);
        metrics_sample(out, key, "le", le, (double)cum);
    }
    metrics_sample(out, key, "le", "+Inf", (double)h->count);
    snprintf(key, sizeof(key), "%s_sum", name);
    metrics_sample(out, key, NULL, NULL, h->sum);
    snprintf(key, sizeof(key), "%s_count", name);
    metrics_sample(out, key, NULL, NULL, (double)h->count);
}

/* a counter family with one label over a table of values */
static void labelled(buf_t *out, const char *name, const char *help, const char *lkey, const char *const *lvals,
                     const uint64_t *v, int n)
{
    metrics_family(out, name, "counter", help);
    for (int i = 0; i < n; i++)
        metrics_sample(out, name, lkey, lvals[i], (double)v[i]);
}

void metrics_write(buf_t *out, const metrics_t *m)
{
    counter(out, "siolua_connections_accepted_total", "TCP connections accepted.", m->accepted);
    counter(out, "siolua_received_bytes_total", "Bytes read from clients (TLS: encrypted bytes).", m->bytes_in);
    counter(out, "siolua_sent_bytes_total", "Bytes written to clients (TLS: encrypted bytes).", m->bytes_out);
    counter(out, "siolua_handshakes_total", "Engine.IO sessions opened.", m->eio_handshakes);
    labelled(out, "siolua_handshake_failures_total", "Engine.IO requests refused, by the protocol's error message.",
             "reason", eio_errors, m->eio_refused, METRICS_NEIO_ERRORS);
    counter(out, "siolua_upgrades_total", "Engine.IO sessions upgraded from polling to WebSocket.", m->eio_upgrades);
    counter(out, "siolua_namespace_connects_total", "Socket.IO namespace connections accepted.", m->sio_connects);
    counter(out, "siolua_namespace_connect_errors_total",
            "Socket.IO namespace connections refused (middleware error, unknown namespace).", m->sio_connect_errors);
    labelled(out, "siolua_disconnects_total", "Connected Socket.IO sockets that left, by reason.", "reason", reasons,
             m->sio_disconnects, METRICS_NDISC);
    labelled(out, "siolua_packets_received_total", "Socket.IO packets received, by type.", "type", sio_types, m->sio_in,
             METRICS_NSIO_TYPES);
    counter(out, "siolua_packets_sent_total", "Socket.IO packets queued to clients (a broadcast: one per recipient).",
            m->sio_out);
    counter(out, "siolua_broadcasts_total", "Sends to a selection of sockets (rooms, a namespace).", m->broadcasts);
    counter(out, "siolua_broadcast_recipients_total",
            "Sockets the broadcasts reached (divided by siolua_broadcasts_total: the mean fan-out).",
            m->broadcast_recipients);
    histogram(out, "siolua_handler_duration_seconds",
              "Run time of Lua handler calls (each slice of a preempted call apart).", &m->handler_seconds);
    histogram(out, "siolua_ack_duration_seconds",
              "Round trip of the acks the server asked for (emit with a callback), from the emit to the answer.",
              &m->ack_seconds);
    counter(out, "siolua_ack_timeouts_total", "Acks asked for by a socket's emit that timed out (socket.timeout(ms)).",
            m->ack_timeouts);
    counter(out, "siolua_handler_errors_total", "Lua handler calls that raised an error (aborts included).",
            m->handler_errors);
    counter(out, "siolua_handler_aborts_total", "Lua handler calls aborted by the watchdog (--handler-timeout).",
            m->handler_aborts);
    {
        static const char *const results[] = {"success", "failure"};
        uint64_t v[2] = {m->reloads_ok, m->reloads_failed};
        labelled(out, "siolua_reloads_total", "Hot reloads of the app, by result.", "result", results, v, 2);
    }
    metrics_single(out, "siolua_reload_swap_seconds", "gauge", "Time the last successful hot reload took.",
                   m->reload_last_swap);
    histogram(out, "siolua_event_loop_lag_seconds",
              "How late the event loop ran a timer due every 500 ms (time spent in handlers and I/O).", &m->loop_lag);
}
