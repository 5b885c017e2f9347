/* tq: timeout queues. Every entry of one queue has the same timeout, so the queue is a FIFO
 * sorted by deadline: add, re-arm and remove are O(1), and the whole queue uses one uv_timer_t
 * (instead of one timer per session: heartbeats of 100k sessions cost 24 bytes each). */
#ifndef SL_TQ_H
#define SL_TQ_H

#include <stdint.h>
#include <uv.h>

typedef struct tq_entry {
    struct tq_entry *prev, *next; /* NULL when not queued */
    uint64_t deadline;            /* loop time (ms) at which it expires */
} tq_entry_t;

typedef struct tq tq_t;
/* Called when e expires; e is already unlinked and may be re-added or freed inside. */
typedef void (*tq_cb)(tq_t *q, tq_entry_t *e);

struct tq {
    tq_entry_t head;  /* sentinel of the circular list */
    uint64_t timeout; /* ms */
    uv_timer_t timer; /* armed for the head's deadline while the queue is not empty */
    tq_cb cb;
    void *data;       /* owner's context */
};

void tq_init(tq_t *q, uv_loop_t *loop, uint64_t timeout_ms, tq_cb cb, void *data);
void tq_add(tq_t *q, tq_entry_t *e);   /* (re)arms e: deadline = now + timeout, moved to the tail */
void tq_remove(tq_entry_t *e);         /* no-op if e is not queued */
static inline int tq_queued(const tq_entry_t *e) { return e->next != NULL; }
void tq_close(tq_t *q);                /* closes the timer handle; the queue must be empty */

#endif
