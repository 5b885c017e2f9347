/* tq: timeout queues. Every entry of one queue has the same timeout, so the queue is a FIFO
 * sorted by deadline: add, re-arm and remove are O(1), and the whole queue uses one uv_timer_t
 * (instead of one timer per session: heartbeats of 100k sessions cost 24 bytes each).
 * A queue that judges input (a pong, a request head) may watch the loop's poll clock: then no
 * entry expires until the loop has polled for I/O after its deadline (see tq_clock_t). */
#ifndef SL_TQ_H
#define SL_TQ_H

#include <stdint.h>
#include <uv.h>

typedef struct tq_entry {
    struct tq_entry *prev, *next; /* NULL when not queued */
    uint64_t deadline;            /* loop time (ms) at which it expires */
} tq_entry_t;

/* The loop's poll clock: the loop time at which the loop last came back from polling for I/O
 * (recorded by a check handle, which runs right after the poll). libuv runs due timers before it
 * polls, so after a stall (a long Lua call, a GC pause) a deadline would be judged while the input
 * that met it (a pong that arrived during the stall) still waits unread in the kernel. A queue
 * watching the clock does not expire an entry whose deadline is more than TQ_STALL_SLACK ms after
 * the last poll: it looks again 1 ms later, after the next poll has read that input. */
#define TQ_STALL_SLACK 10 /* ms: input that arrives this close to its deadline may be judged late */
typedef struct tq_clock {
    uv_check_t check; /* unref'd: never keeps the loop alive */
    uint64_t polled;  /* loop time when the last poll returned */
} tq_clock_t;
void tq_clock_init(tq_clock_t *c, uv_loop_t *loop);
void tq_clock_close(tq_clock_t *c); /* queues watching it then judge at once, as without it */

typedef struct tq tq_t;
/* Called when e expires; e is already unlinked and may be re-added or freed inside. */
typedef void (*tq_cb)(tq_t *q, tq_entry_t *e);

struct tq {
    tq_entry_t head;  /* sentinel of the circular list */
    uint64_t timeout; /* ms */
    uv_timer_t timer; /* armed for the head's deadline while the queue is not empty */
    tq_cb cb;
    void *data;       /* owner's context */
    const tq_clock_t *clock; /* NULL: entries expire at their deadline, polled or not */
};

/* A queue without a clock; set one with tq_watch() (before or after entries are added). */
void tq_init(tq_t *q, uv_loop_t *loop, uint64_t timeout_ms, tq_cb cb, void *data);
static inline void tq_watch(tq_t *q, const tq_clock_t *clock) { q->clock = clock; }
void tq_add(tq_t *q, tq_entry_t *e);   /* (re)arms e: deadline = now + timeout, moved to the tail */
void tq_remove(tq_entry_t *e);         /* no-op if e is not queued */
static inline int tq_queued(const tq_entry_t *e) { return e->next != NULL; }
void tq_close(tq_t *q);                /* closes the timer handle; the queue must be empty */

#endif
