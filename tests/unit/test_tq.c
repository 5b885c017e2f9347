/* tq: timeout queues on a real uv loop. The tests count callbacks and record their order; the
 * loop runs until it has nothing armed (UV_RUN_DEFAULT returns once every queue is empty), so
 * nothing here sleeps or measures time. Each case ends with tq_close() and uv_loop_close() == 0:
 * no handle is left behind. */
#include <stddef.h>
#include <stdlib.h>

#include "test.h"
#include "tq.h"

#define container_of(p, T, m) ((T *)((char *)(p)-offsetof(T, m)))
#define MAXLOG                4096

typedef struct ctx ctx_t;

/* What an item's callback does when it expires. */
enum { NOTHING = 0, READD, REMOVE_OTHER, ADD_OTHER, MOVE, FREE_SELF };

typedef struct {
    tq_entry_t e;
    int id;
    int action;
    int times;   /* READD: how many more times to re-add itself */
    void *other; /* REMOVE_OTHER / ADD_OTHER: the item; MOVE: the queue */
    int early;   /* fired before its deadline (never expected) */
} item_t;

struct ctx {
    uv_loop_t loop;
    tq_t q[3];
    int log[MAXLOG]; /* ids in firing order */
    int nlog;
    int early;
};

static void fired(tq_t *q, tq_entry_t *e)
{
    ctx_t *c = q->data;
    item_t *it = container_of(e, item_t, e);
    if (tq_queued(e))
        c->early = 1000; /* the contract: e is unlinked before the callback */
    if (uv_now(q->timer.loop) < e->deadline)
        c->early++;
    if (c->nlog < MAXLOG)
        c->log[c->nlog++] = it->id;
    switch (it->action) {
    case READD:
        if (it->times-- > 0)
            tq_add(q, e);
        break;
    case REMOVE_OTHER:
        tq_remove(&((item_t *)it->other)->e);
        break;
    case ADD_OTHER:
        tq_add(q, &((item_t *)it->other)->e);
        it->action = NOTHING;
        break;
    case MOVE:
        tq_add(it->other, e);
        it->action = NOTHING;
        break;
    case FREE_SELF:
        free(it);
        break;
    }
}

static void ctx_init(ctx_t *c, uint64_t t0, uint64_t t1, uint64_t t2)
{
    memset(c, 0, sizeof(*c));
    uv_loop_init(&c->loop);
    tq_init(&c->q[0], &c->loop, t0, fired, c);
    tq_init(&c->q[1], &c->loop, t1, fired, c);
    tq_init(&c->q[2], &c->loop, t2, fired, c);
}

static void ctx_close(ctx_t *c)
{
    for (int i = 0; i < 3; i++) {
        CHECK(c->q[i].head.next == &c->q[i].head); /* empty */
        tq_close(&c->q[i]);
    }
    uv_run(&c->loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&c->loop), 0);
    CHECK_EQ_INT(c->early, 0);
}

/* The log is exactly want[0..n). */
static int log_is(const ctx_t *c, const int *want, int n)
{
    if (c->nlog != n || memcmp(c->log, want, (size_t)n * sizeof(int)) != 0) {
        fprintf(stderr, "  fired:");
        for (int i = 0; i < c->nlog; i++)
            fprintf(stderr, " %d", c->log[i]);
        fprintf(stderr, "\n");
        return 0;
    }
    return 1;
}

#define LOG_IS(c, ...)                                                                                                 \
    do {                                                                                                               \
        static const int want_[] = {__VA_ARGS__};                                                                      \
        CHECK(log_is((c), want_, (int)(sizeof(want_) / sizeof(want_[0]))));                                            \
    } while (0)

/* Lets the loop's clock move on between two adds (it is cached between turns otherwise). */
static void tick(ctx_t *c)
{
    uv_update_time(&c->loop);
}

/* ---------------------------------------------------------------- cases */

TEST(fires_in_order_once)
{
    ctx_t c;
    item_t it[4] = {{.id = 1}, {.id = 2}, {.id = 3}, {.id = 4}};
    ctx_init(&c, 5, 5, 5);
    for (int i = 0; i < 4; i++) {
        CHECK(!tq_queued(&it[i].e));
        tq_add(&c.q[0], &it[i].e);
        CHECK(tq_queued(&it[i].e));
        CHECK(it[i].e.deadline == uv_now(&c.loop) + 5);
        tick(&c);
    }
    CHECK(uv_is_active((uv_handle_t *)&c.q[0].timer)); /* one timer for the whole queue */
    uv_run(&c.loop, UV_RUN_DEFAULT);
    LOG_IS(&c, 1, 2, 3, 4);
    for (int i = 0; i < 4; i++)
        CHECK(!tq_queued(&it[i].e));
    CHECK(!uv_is_active((uv_handle_t *)&c.q[0].timer)); /* empty: nothing armed */
    ctx_close(&c);
}

TEST(rearm_moves_to_the_tail)
{
    ctx_t c;
    item_t a = {.id = 1}, b = {.id = 2}, d = {.id = 3};
    ctx_init(&c, 10, 10, 10);
    tq_add(&c.q[0], &a.e);
    tq_add(&c.q[0], &b.e);
    tq_add(&c.q[0], &d.e);
    tick(&c);
    tq_add(&c.q[0], &a.e); /* a heartbeat reset: a goes last */
    tq_add(&c.q[0], &a.e); /* twice: still queued once */
    uv_run(&c.loop, UV_RUN_DEFAULT);
    LOG_IS(&c, 2, 3, 1);
    ctx_close(&c);
}

TEST(remove)
{
    ctx_t c;
    item_t a = {.id = 1}, b = {.id = 2}, d = {.id = 3};
    ctx_init(&c, 5, 5, 5);
    tq_remove(&a.e); /* never queued: a no-op */
    tq_add(&c.q[0], &a.e);
    tq_add(&c.q[0], &b.e);
    tq_add(&c.q[0], &d.e);
    tq_remove(&b.e); /* the middle */
    tq_remove(&b.e); /* twice: a no-op */
    tq_remove(&a.e); /* the head, for which the timer is armed */
    CHECK(!tq_queued(&a.e) && !tq_queued(&b.e) && tq_queued(&d.e));
    uv_run(&c.loop, UV_RUN_DEFAULT);
    LOG_IS(&c, 3);
    /* everything removed: the timer may still run once, and calls nobody */
    c.nlog = 0;
    tq_add(&c.q[0], &a.e);
    tq_remove(&a.e);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(c.nlog, 0);
    ctx_close(&c);
}

/* The callback removes an entry that expires in the same pass: it is not called. */
TEST(remove_inside_the_callback)
{
    ctx_t c;
    item_t b = {.id = 2}, d = {.id = 3};
    item_t a = {.id = 1, .action = REMOVE_OTHER, .other = &b};
    ctx_init(&c, 5, 5, 5);
    tq_add(&c.q[0], &a.e);
    tq_add(&c.q[0], &b.e);
    tick(&c);
    tq_add(&c.q[0], &d.e);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    LOG_IS(&c, 1, 3);
    ctx_close(&c);
}

/* The callback re-adds its own entry (a periodic ping): it fires again, once per re-add. */
TEST(readd_inside_the_callback)
{
    ctx_t c;
    item_t a = {.id = 1, .action = READD, .times = 4}, b = {.id = 2};
    ctx_init(&c, 3, 3, 3);
    tq_add(&c.q[0], &a.e);
    tq_add(&c.q[0], &b.e);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    LOG_IS(&c, 1, 2, 1, 1, 1, 1);
    ctx_close(&c);
}

/* The callback adds another entry to its own queue: it goes after those already waiting. */
TEST(add_other_inside_the_callback)
{
    ctx_t c;
    item_t b = {.id = 2}, d = {.id = 3};
    item_t a = {.id = 1, .action = ADD_OTHER, .other = &d};
    ctx_init(&c, 5, 5, 5);
    tq_add(&c.q[0], &a.e);
    tq_add(&c.q[0], &b.e);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    LOG_IS(&c, 1, 2, 3);
    ctx_close(&c);
}

/* Several queues on one loop, each with its own timeout: entries fire by deadline across them, and
 * an entry can move from one queue to another inside its callback (eio: ping due -> wait for pong). */
TEST(several_queues)
{
    ctx_t c;
    item_t s1 = {.id = 10}, s2 = {.id = 11}, l1 = {.id = 30}, m1 = {.id = 20};
    item_t mv = {.id = 1, .action = MOVE};
    ctx_init(&c, 5, 40, 100);
    mv.other = &c.q[2];
    tq_add(&c.q[2], &l1.e); /* due at 100 */
    tq_add(&c.q[1], &m1.e); /* 40 */
    tq_add(&c.q[0], &s1.e); /* 5 */
    tq_add(&c.q[0], &mv.e); /* 5, then moved to the 100 ms queue: due after l1 */
    tq_add(&c.q[0], &s2.e); /* 5 */
    uv_run(&c.loop, UV_RUN_DEFAULT);
    LOG_IS(&c, 10, 1, 11, 20, 30, 1);
    ctx_close(&c);
}

/* The contract allows freeing the entry inside its callback. */
TEST(free_inside_the_callback)
{
    ctx_t c;
    item_t last = {.id = 9};
    ctx_init(&c, 3, 3, 3);
    for (int i = 0; i < 5; i++) {
        item_t *it = calloc(1, sizeof(*it));
        it->id = i;
        it->action = FREE_SELF;
        tq_add(&c.q[0], &it->e);
    }
    tq_add(&c.q[0], &last.e);
    uv_run(&c.loop, UV_RUN_DEFAULT); /* ASan: no use after free, nothing leaked */
    LOG_IS(&c, 0, 1, 2, 3, 4, 9);
    ctx_close(&c);
}

/* One queue, many entries (heartbeats of many sessions): FIFO, one timer, every one fires once. */
TEST(many_entries)
{
    enum { N = 4000 };
    ctx_t c;
    item_t *it = calloc(N, sizeof(*it));
    ctx_init(&c, 2, 2, 2);
    for (int i = 0; i < N; i++) {
        it[i].id = i;
        tq_add(&c.q[0], &it[i].e);
    }
    for (int i = 0; i < N; i += 3) /* every third one removed, half of the rest re-armed */
        tq_remove(&it[i].e);
    for (int i = 1; i < N; i += 6)
        tq_add(&c.q[0], &it[i].e);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    int want[N], n = 0;
    for (int i = 0; i < N; i++)
        if (i % 3 != 0 && i % 6 != 1)
            want[n++] = i;
    for (int i = 1; i < N; i += 6)
        want[n++] = i;
    CHECK(log_is(&c, want, n));
    ctx_close(&c);
    free(it);
}

/* A queue closed while empty releases its timer; an unused queue too. */
TEST(close_releases_the_timer)
{
    uv_loop_t loop;
    tq_t q;
    item_t a = {.id = 1};
    uv_loop_init(&loop);
    tq_init(&q, &loop, 1000, fired, NULL);
    tq_add(&q, &a.e);
    tq_remove(&a.e);
    tq_close(&q); /* empty now, though its timer was armed */
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

int main(void)
{
    RUN(fires_in_order_once);
    RUN(rearm_moves_to_the_tail);
    RUN(remove);
    RUN(remove_inside_the_callback);
    RUN(readd_inside_the_callback);
    RUN(add_other_inside_the_callback);
    RUN(several_queues);
    RUN(free_inside_the_callback);
    RUN(many_entries);
    RUN(close_releases_the_timer);
    return test_summary();
}
