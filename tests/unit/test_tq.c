/* tq: timeout queues on a real uv loop. The tests count callbacks and record their order; the
 * loop runs until it has nothing armed (UV_RUN_DEFAULT returns once every queue is empty), so
 * nothing here measures time. Each case ends with tq_close() and uv_loop_close() == 0: no handle
 * is left behind. The poll clock's cases stall the loop on purpose (a check callback that sleeps):
 * a "pong" written into a socketpair during the stall must be read before its deadline is judged
 * when the queue watches the clock; without the clock the entry expires although its pong had
 * arrived (the control, which shows the first case can fail). */
#include <stddef.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

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

/* ---------------------------------------------------------------- the poll clock */

typedef struct {
    uv_loop_t loop;
    tq_clock_t clock;
    tq_t q;
    tq_entry_t e;
    uv_poll_t poll;
    uv_check_t stall;
    uv_idle_t nowait; /* makes the first poll return at once, so that the stall comes right after */
    int fds[2];
    int expired;      /* entries expired */
    int pongs;        /* pongs read */
    int pongs_at_exp; /* pongs read when the entry expired */
} stall_t;

static void on_expire(tq_t *q, tq_entry_t *e)
{
    stall_t *t = q->data;
    (void)e;
    t->expired++;
    t->pongs_at_exp = t->pongs;
    uv_poll_stop(&t->poll); /* done: the loop ends once the handles are closed */
    uv_close((uv_handle_t *)&t->poll, NULL);
    tq_close(&t->q);
    if (uv_is_active((uv_handle_t *)&t->clock.check))
        tq_clock_close(&t->clock);
}

static void on_readable(uv_poll_t *p, int status, int events)
{
    stall_t *t = p->data;
    char buf[16];
    (void)status;
    (void)events;
    if (read(t->fds[0], buf, sizeof(buf)) > 0) {
        t->pongs++;
        tq_add(&t->q, &t->e); /* a sign of life: the deadline moves on */
    }
}

static void on_nowait(uv_idle_t *h)
{
    uv_idle_stop(h);
    uv_close((uv_handle_t *)h, NULL);
}

/* Once, after the first poll: the loop is stuck for 400 ms; the pong arrives 30 ms into it, well
 * before the entry's deadline (300 ms after it was armed). */
static void on_stall(uv_check_t *h)
{
    stall_t *t = h->data;
    usleep(30000);
    if (write(t->fds[1], "3", 1) != 1)
        perror("write");
    usleep(370000);
    uv_check_stop(h);
    uv_close((uv_handle_t *)h, NULL);
}

static void run_stalled(stall_t *t, int watch)
{
    memset(t, 0, sizeof(*t));
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, t->fds), 0);
    uv_loop_init(&t->loop);
    tq_clock_init(&t->clock, &t->loop);
    tq_init(&t->q, &t->loop, 300, on_expire, t);
    if (watch)
        tq_watch(&t->q, &t->clock);
    uv_poll_init(&t->loop, &t->poll, t->fds[0]);
    t->poll.data = t;
    uv_poll_start(&t->poll, UV_READABLE, on_readable);
    uv_check_init(&t->loop, &t->stall);
    t->stall.data = t;
    uv_check_start(&t->stall, on_stall);
    uv_idle_init(&t->loop, &t->nowait);
    uv_idle_start(&t->nowait, on_nowait);
    uv_update_time(&t->loop);
    tq_add(&t->q, &t->e);
    uv_run(&t->loop, UV_RUN_DEFAULT);
    if (uv_is_active((uv_handle_t *)&t->clock.check)) {
        tq_clock_close(&t->clock);
        uv_run(&t->loop, UV_RUN_DEFAULT);
    }
    CHECK_EQ_INT(uv_loop_close(&t->loop), 0);
    close(t->fds[0]);
    close(t->fds[1]);
}

TEST(stall_with_clock)
{
    stall_t t;
    run_stalled(&t, 1);
    CHECK_EQ_INT(t.expired, 1);      /* later, once no more pongs came: the clock delays, never forgives */
    CHECK_EQ_INT(t.pongs_at_exp, 1); /* the pong of the stall was read before any judgment */
}

TEST(stall_without_clock)
{
    stall_t t;
    run_stalled(&t, 0);
    CHECK_EQ_INT(t.expired, 1);
    CHECK_EQ_INT(t.pongs_at_exp, 0); /* judged while its pong waited unread */
}

/* A queue that watches the clock still expires on time when the loop is idle (no stall): the
 * poll that waited for the deadline is the poll after it. */
static void on_idle_expire(tq_t *q, tq_entry_t *e)
{
    (void)e;
    (*(int *)q->data)++;
    tq_close(q);
}

TEST(idle_loop_expires)
{
    uv_loop_t loop;
    tq_clock_t clock;
    tq_t q;
    tq_entry_t e = {0};
    int n = 0;
    uv_loop_init(&loop);
    tq_clock_init(&clock, &loop);
    tq_init(&q, &loop, 20, on_idle_expire, &n);
    tq_watch(&q, &clock);
    tq_add(&q, &e);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(n, 1);
    tq_clock_close(&clock);
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
    RUN(stall_with_clock);
    RUN(stall_without_clock);
    RUN(idle_loop_expires);
    return test_summary();
}
