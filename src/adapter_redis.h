/* adapter_redis: the Redis adapter's connections - two hiredis connections on the libuv loop, as the Node
 * adapter's pubClient/subClient: one publishes and sends the occasional command (PUBSUB NUMSUB for
 * the server count), the other is in subscribe mode and receives. Lost connections come back with
 * a backoff (100 ms doubling to 5 s) and get every subscription again; the subscriptions are kept
 * here, so reconnections and hot reloads (new VMs) keep them. What arrives goes to the owner's
 * handler (ladapter_redis.c, which hands it to the current VM); nothing here knows Lua. */
#ifndef SL_ADAPTER_REDIS_H
#define SL_ADAPTER_REDIS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct redisReply;

typedef struct {
    char *url;                 /* redis://[:password@]host[:port][/db]; NULL = in-memory adapter */
    char *key;                 /* channel prefix, the Node adapter's `key`; NULL = "socket.io" */
    uint64_t requests_timeout; /* ms to wait for the other nodes' answers (`requestsTimeout`); 0 = 5000 */
    int specific_response;     /* answer on key-response#nsp#uid# (`publishOnSpecificResponseChannel`) */
} adapter_redis_config_t;

typedef struct adapter_redis adapter_redis_t;

typedef struct {
    /* A message of a subscribed channel (pattern: the PSUBSCRIBE pattern that matched, or NULL).
     * The bytes are valid during the call only. */
    void (*on_message)(const char *channel, size_t clen, const char *payload, size_t plen, const char *pattern,
                       size_t patlen, void *ud);
    /* The reply of adapter_redis_command id: reply (not an error reply), or NULL with err. */
    void (*on_reply)(int64_t id, const struct redisReply *reply, const char *err, void *ud);
} adapter_redis_handler_t;

/* Starts connecting (in the background) to cfg->url. NULL after logging a bad URL. Never calls
 * back synchronously. */
adapter_redis_t *adapter_redis_start(uv_loop_t *loop, const adapter_redis_config_t *cfg, const adapter_redis_handler_t *h, void *ud);
/* Shutdown (inside the loop): disconnects (queued publishes are flushed), stops the timers; no
 * callback after it. NULL is a no-op. */
void adapter_redis_close(adapter_redis_t *r);
/* After the loop ended: frees what is left. NULL is a no-op. */
void adapter_redis_free(adapter_redis_t *r);

/* 1 while both connections are up. */
int adapter_redis_connected(const adapter_redis_t *r);
/* This node's uid (6 characters, fixed for the process). */
const char *adapter_redis_uid(const adapter_redis_t *r);
/* A new random id of n characters ([A-Za-z0-9], as the Node adapter's uid2) into out[n + 1]. */
void adapter_redis_random_id(char *out, size_t n);
/* PUBLISH channel payload: 1 if queued, 0 if dropped (not connected, over the output limit). */
int adapter_redis_publish(adapter_redis_t *r, const char *channel, size_t clen, const char *payload, size_t plen);
/* SUBSCRIBE (or PSUBSCRIBE with pattern) once, now and after every reconnection. 0, or -1 over
 * the limit of subscriptions (logged). */
int adapter_redis_subscribe(adapter_redis_t *r, const char *name, size_t len, int pattern);
/* Sends a command on the publishing connection: its id (the reply comes to on_reply), or -1 with
 * *err set (not connected, cannot send). */
int64_t adapter_redis_command(adapter_redis_t *r, int argc, const char **argv, const size_t *lens, const char **err);
/* The adapter's state for the probes and /metrics: up (both connections up, every subscription
 * confirmed), publishes dropped since start, bytes queued to Redis not yet written (the backlog a
 * slow Redis builds), ms since the link went down (0 while up). */
typedef struct {
    int up;
    uint64_t dropped;
    size_t pending_out;
    uint64_t down_ms;
} adapter_redis_status_t;
void adapter_redis_status(const adapter_redis_t *r, adapter_redis_status_t *st);

#endif
