/* ops: what an operator's tools talk to. The probes /healthz (alive: the loop answers) and
 * /readyz (ready for traffic: not while draining on SIGTERM or shutting down, nor while the Redis
 * adapter is down unless told to ignore it), Prometheus /metrics (metrics.h's counters, and gauges
 * read from their owners at scrape time: connections by transport, sockets by namespace, the
 * Redis adapter, RSS, open fds, event-loop lag), the drain on SIGTERM, and the optional second
 * listener that serves the probes and /metrics on an address of their own. */
#ifndef SL_OPS_H
#define SL_OPS_H

#include "http.h"

struct sl_server;
struct ops;

/* Its options are sl_config_t.ops (options_ops_t, options.h). */


/* After the main listener is up: the second listener (cfg.metrics_listen) and the event-loop lag
 * timer (only with metrics on). Returns 0, or -1 with the reason logged. */
int ops_start(struct sl_server *srv);
/* Answers req if it is for a probe or /metrics on the main listener; returns 1 then, else 0. */
int ops_route(struct sl_server *srv, http_req_t *req);
/* SIGTERM: with cfg.drain_delay, /readyz answers 503 "draining" for that long while everything
 * else is served as before, then sl_server_close(); without, or when already draining (a second
 * SIGTERM), sl_server_close() at once. */
void ops_drain(struct sl_server *srv);
/* 1 while draining or shutting down. */
int ops_draining(const struct sl_server *srv);
/* Shutdown: stops the second listener and the timers. */
void ops_close(struct sl_server *srv);
/* Open connections of the second listener (the shutdown waits for them as for the main one's). */
size_t ops_nconns(const struct sl_server *srv);
/* After the loop: frees what ops_start allocated. */
void ops_free(struct sl_server *srv);

#endif
