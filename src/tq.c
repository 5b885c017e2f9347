/* tq: see tq.h. */
#include "tq.h"

#include <assert.h>
#include <stddef.h>

/* ---------------------------------------------------------------- the poll clock */

static void on_check(uv_check_t *h)
{
    tq_clock_t *c = h->data;
    c->polled = uv_now(h->loop); /* updated by libuv when the poll returned */
}

void tq_clock_init(tq_clock_t *c, uv_loop_t *loop)
{
    c->polled = uv_now(loop);
    uv_check_init(loop, &c->check);
    c->check.data = c;
    uv_check_start(&c->check, on_check);
    uv_unref((uv_handle_t *)&c->check);
}

void tq_clock_close(tq_clock_t *c)
{
    uv_check_stop(&c->check);
    uv_close((uv_handle_t *)&c->check, NULL);
}

/* e's deadline came after the loop last polled for I/O (beyond the slack): what could have met it
 * may not have been read yet. */
static int unpolled(const tq_t *q, const tq_entry_t *e)
{
    const tq_clock_t *c = q->clock;
    return c != NULL && uv_is_active((const uv_handle_t *)&c->check) && c->polled + TQ_STALL_SLACK < e->deadline;
}

/* ---------------------------------------------------------------- queues */

static void on_timer(uv_timer_t *t)
{
    tq_t *q = t->data;
    uint64_t now;
    /* An earlier timer of this pass may have run long: deadlines armed from here (a ping sent
     * now, and the pong deadline after it) count from the real time. */
    uv_update_time(t->loop);
    now = uv_now(t->loop);
    /* Pop expired entries one at a time: the callback may add, remove or free any entry. */
    while (q->head.next != &q->head && q->head.next->deadline <= now) {
        tq_entry_t *e = q->head.next;
        if (unpolled(q, e)) {
            /* judged after the next poll (1 ms: a 0 ms timer would run again in this pass) */
            uv_timer_start(&q->timer, on_timer, 1, 0);
            return;
        }
        tq_remove(e);
        q->cb(q, e);
    }
    if (q->head.next != &q->head) {
        uint64_t d = q->head.next->deadline;
        uv_timer_start(&q->timer, on_timer, d > now ? d - now : 0, 0);
    }
}

void tq_init(tq_t *q, uv_loop_t *loop, uint64_t timeout_ms, tq_cb cb, void *data)
{
    q->head.prev = q->head.next = &q->head;
    q->head.deadline = 0;
    q->timeout = timeout_ms;
    q->cb = cb;
    q->data = data;
    q->clock = NULL;
    uv_timer_init(loop, &q->timer);
    q->timer.data = q;
}

void tq_add(tq_t *q, tq_entry_t *e)
{
    int was_empty;
    tq_remove(e);
    was_empty = q->head.next == &q->head;
    e->deadline = uv_now(q->timer.loop) + q->timeout;
    e->prev = q->head.prev;
    e->next = &q->head;
    q->head.prev->next = e;
    q->head.prev = e;
    /* Deadlines only grow, so the timer needs arming only when the queue was empty. If it still
     * runs for an earlier (removed) head, on_timer re-arms for the new head. */
    if (was_empty && !uv_is_active((uv_handle_t *)&q->timer))
        uv_timer_start(&q->timer, on_timer, q->timeout, 0);
}

void tq_remove(tq_entry_t *e)
{
    if (e->next == NULL)
        return;
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->prev = e->next = NULL;
}

void tq_close(tq_t *q)
{
    assert(q->head.next == &q->head);
    uv_close((uv_handle_t *)&q->timer, NULL);
}
