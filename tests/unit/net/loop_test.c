/*
 * loop_test.c - tests for net/loop: timer order, stop and re-arm (thousands
 * of timers), io callbacks over socketpairs (level-triggered), stale events,
 * deferred work, stop and async from another thread.
 *
 * No test asserts a duration: waits are loops of keel_loop_run_once() with a
 * generous iteration or wall-clock cap that only a hang would reach.
 */
#include "net/loop.h"

#include "base/err.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

/* A hang guard, not a timing assertion: no test here needs more than a fraction of this. */
#define GENEROUS_MS 20000

static void nonblocking_pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- clock ------------------------------------------------------------------------------------------------------ */

static void test_clock_cached_and_monotonic(void **state)
{
    (void)state;
    struct keel_loop *loop = keel_loop_new();
    assert_non_null(loop);
    uint64_t prev = keel_loop_now_ms(loop);
    for (int i = 0; i < 100; i++) {
        assert_true(keel_loop_run_once(loop, 0) >= 0);
        uint64_t now = keel_loop_now_ms(loop);
        assert_true(now >= prev);
        assert_true(now <= keel_now_ms());
        prev = now;
    }
    keel_loop_update_now(loop);
    assert_true(keel_loop_now_ms(loop) >= prev);
    keel_loop_free(loop);
}

static void test_run_once_idle_returns_zero(void **state)
{
    (void)state;
    struct keel_loop *loop = keel_loop_new();
    assert_int_equal(keel_loop_run_once(loop, 0), 0);
    assert_int_equal(keel_loop_run_once(loop, 1), 0);
    keel_loop_free(loop);
}

/* ---- timers ----------------------------------------------------------------------------------------------------- */

#define NTIMERS 3000

struct timer_rec {
    struct keel_timer t;
    uint64_t deadline; /* expected, loop clock */
    unsigned start_order;
    int fired;
    bool early; /* fired before its deadline */
};

struct timer_log {
    unsigned order[NTIMERS * 2];
    unsigned n;
    struct timer_rec *recs;
};

static struct timer_log g_log; /* test-only state shared with the callbacks */

static void record_cb(struct keel_loop *loop, struct keel_timer *t)
{
    struct timer_rec *r = t->data;
    r->fired++;
    if (keel_loop_now_ms(loop) < r->deadline)
        r->early = true;
    g_log.order[g_log.n++] = (unsigned)(r - g_log.recs);
}

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return (*s >> 16) & 0x7fff;
}

static void run_until_fired(struct keel_loop *loop, unsigned want)
{
    uint64_t give_up = keel_now_ms() + GENEROUS_MS;
    while (g_log.n < want && keel_now_ms() < give_up)
        assert_true(keel_loop_run_once(loop, 50) >= 0);
    assert_int_equal(g_log.n, want);
}

static void assert_fired_in_order(void)
{
    for (unsigned i = 1; i < g_log.n; i++) {
        struct timer_rec *a = &g_log.recs[g_log.order[i - 1]];
        struct timer_rec *b = &g_log.recs[g_log.order[i]];
        assert_true(a->deadline <= b->deadline);
        if (a->deadline == b->deadline)
            assert_true(a->start_order < b->start_order); /* ties fire in start order */
    }
}

static void test_timers_fire_in_deadline_order(void **state)
{
    (void)state;
    struct keel_loop *loop = keel_loop_new();
    struct timer_rec *recs = calloc(NTIMERS, sizeof(*recs));
    memset(&g_log, 0, sizeof(g_log));
    g_log.recs = recs;
    uint32_t seed = 42;
    uint64_t now = keel_loop_now_ms(loop);
    for (unsigned i = 0; i < NTIMERS; i++) {
        uint64_t after = lcg(&seed) % 40; /* many equal deadlines */
        keel_timer_init(&recs[i].t);
        recs[i].deadline = now + after;
        recs[i].start_order = i;
        assert_int_equal(keel_timer_start(loop, &recs[i].t, after, record_cb, &recs[i]), 0);
        assert_true(keel_timer_is_active(&recs[i].t));
    }
    run_until_fired(loop, NTIMERS);
    assert_fired_in_order();
    for (unsigned i = 0; i < NTIMERS; i++) {
        assert_int_equal(recs[i].fired, 1);
        assert_false(recs[i].early);
        assert_false(keel_timer_is_active(&recs[i].t));
    }
    free(recs);
    keel_loop_free(loop);
}

static void test_timers_stop_and_rearm(void **state)
{
    (void)state;
    struct keel_loop *loop = keel_loop_new();
    struct timer_rec *recs = calloc(NTIMERS, sizeof(*recs));
    memset(&g_log, 0, sizeof(g_log));
    g_log.recs = recs;
    uint32_t seed = 7;
    uint64_t now = keel_loop_now_ms(loop);
    for (unsigned i = 0; i < NTIMERS; i++) {
        uint64_t after = 5 + lcg(&seed) % 30;
        keel_timer_init(&recs[i].t);
        recs[i].deadline = now + after;
        assert_int_equal(keel_timer_start(loop, &recs[i].t, after, record_cb, &recs[i]), 0);
    }
    /* stop every third; re-arm every third (some earlier, some later, several times); leave the rest */
    unsigned expect = 0, order = NTIMERS;
    for (unsigned i = 0; i < NTIMERS; i++) {
        switch (i % 3) {
        case 0:
            keel_timer_stop(&recs[i].t);
            keel_timer_stop(&recs[i].t); /* idempotent */
            assert_false(keel_timer_is_active(&recs[i].t));
            break;
        case 1:
            for (int k = 0; k < 4; k++) {
                uint64_t after = lcg(&seed) % 60;
                recs[i].deadline = now + after;
                recs[i].start_order = order++;
                assert_int_equal(keel_timer_start(loop, &recs[i].t, after, record_cb, &recs[i]), 0);
            }
            expect++;
            break;
        default:
            recs[i].start_order = i; /* sorts before every re-armed timer with the same deadline */
            expect++;
            break;
        }
    }
    run_until_fired(loop, expect);
    for (unsigned i = 0; i < NTIMERS; i++) {
        assert_int_equal(recs[i].fired, i % 3 == 0 ? 0 : 1);
        assert_false(recs[i].early);
    }
    assert_fired_in_order();
    /* nothing else is pending */
    assert_int_equal(keel_loop_run_once(loop, 0), 0);
    free(recs);
    keel_loop_free(loop);
}

struct rearm_state {
    struct keel_timer t;
    int fired;
};

static void rearm_zero_cb(struct keel_loop *loop, struct keel_timer *t)
{
    struct rearm_state *s = t->data;
    s->fired++;
    if (s->fired < 5)
        assert_int_equal(keel_timer_start(loop, t, 0, rearm_zero_cb, s), 0);
}

static void test_timer_rearmed_from_callback_waits_for_next_iteration(void **state)
{
    (void)state;
    struct keel_loop *loop = keel_loop_new();
    struct rearm_state s = {.fired = 0};
    keel_timer_init(&s.t);
    assert_int_equal(keel_timer_start(loop, &s.t, 0, rearm_zero_cb, &s), 0);
    for (int i = 1; i <= 5; i++) {
        assert_int_equal(keel_loop_run_once(loop, 0), 1); /* one firing per iteration, never a loop */
        assert_int_equal(s.fired, i);
    }
    assert_false(keel_timer_is_active(&s.t));
    assert_int_equal(keel_loop_run_once(loop, 0), 0);
    keel_loop_free(loop);
}

struct pair_timers {
    struct keel_timer a, b;
    int a_fired, b_fired;
};

static void stops_b_cb(struct keel_loop *loop, struct keel_timer *t)
{
    (void)loop;
    struct pair_timers *p = t->data;
    p->a_fired++;
    keel_timer_stop(&p->b);
}

static void b_cb(struct keel_loop *loop, struct keel_timer *t)
{
    (void)loop;
    struct pair_timers *p = t->data;
    p->b_fired++;
}

static void test_timer_stopped_by_earlier_timer_in_same_pass(void **state)
{
    (void)state;
    struct keel_loop *loop = keel_loop_new();
    struct pair_timers p = {.a_fired = 0};
    keel_timer_init(&p.a);
    keel_timer_init(&p.b);
    assert_int_equal(keel_timer_start(loop, &p.a, 0, stops_b_cb, &p), 0);
    assert_int_equal(keel_timer_start(loop, &p.b, 0, b_cb, &p), 0); /* same deadline, started later */
    assert_int_equal(keel_loop_run_once(loop, 0), 1);
    assert_int_equal(p.a_fired, 1);
    assert_int_equal(p.b_fired, 0);
    assert_int_equal(keel_loop_run_once(loop, 0), 0);
    keel_loop_free(loop);
}

static void test_timer_far_future_does_not_wrap(void **state)
{
    (void)state;
    struct keel_loop *loop = keel_loop_new();
    struct pair_timers p = {.a_fired = 0};
    keel_timer_init(&p.b);
    assert_int_equal(keel_timer_start(loop, &p.b, UINT64_MAX, b_cb, &p), 0);
    assert_int_equal(keel_loop_run_once(loop, 0), 0);
    assert_true(keel_timer_is_active(&p.b));
    keel_timer_stop(&p.b);
    keel_loop_free(loop);
}

/* ---- fd watchers ------------------------------------------------------------------------------------------------ */

struct io_state {
    struct keel_io io;
    int sv[2];
    int reads, writes, errors;
    size_t got;
    char buf[256];
    bool read_one_byte; /* stop before EAGAIN */
};

static void io_cb(struct keel_loop *loop, struct keel_io *io, uint32_t revents)
{
    (void)loop;
    struct io_state *s = io->data;
    if (revents & KEEL_IO_ERROR)
        s->errors++;
    if (revents & KEEL_IO_WRITE)
        s->writes++;
    if (revents & KEEL_IO_READ) {
        s->reads++;
        for (;;) {
            ssize_t n = read(io->fd, s->buf + s->got, s->read_one_byte ? 1 : sizeof(s->buf) - s->got);
            if (n <= 0)
                break;
            s->got += (size_t)n;
            if (s->read_one_byte)
                break;
        }
    }
}

static void io_state_init(struct io_state *s)
{
    memset(s, 0, sizeof(*s));
    nonblocking_pair(s->sv);
    keel_io_init(&s->io, s->sv[0], io_cb, s);
}

static void test_io_read_write_modify_stop(void **state)
{
    (void)state;
    struct keel_loop *loop = keel_loop_new();
    struct io_state s;
    io_state_init(&s);
    assert_false(keel_io_is_active(&s.io));
    assert_int_equal(keel_io_modify(&s.io, KEEL_IO_READ), KEEL_EINVAL); /* never started */

    assert_int_equal(keel_io_start(loop, &s.io, KEEL_IO_READ), 0);
    assert_true(keel_io_is_active(&s.io));
    assert_int_equal(keel_loop_run_once(loop, 0), 0); /* nothing to read */

    assert_int_equal(write(s.sv[1], "hello", 5), 5);
    assert_int_equal(keel_loop_run_once(loop, 1000), 1);
    assert_int_equal(s.reads, 1);
    assert_int_equal(s.got, 5);
    assert_memory_equal(s.buf, "hello", 5);
    assert_int_equal(keel_loop_run_once(loop, 0), 0); /* read to EAGAIN: no extra wakeup */

    /* an empty send buffer is writable at once */
    assert_int_equal(keel_io_modify(&s.io, KEEL_IO_READ | KEEL_IO_WRITE), 0);
    assert_int_equal(s.io.events, KEEL_IO_READ | KEEL_IO_WRITE);
    assert_int_equal(keel_loop_run_once(loop, 1000), 1);
    assert_int_equal(s.writes, 1);
    assert_int_equal(keel_io_modify(&s.io, KEEL_IO_READ), 0);
    assert_int_equal(keel_loop_run_once(loop, 0), 0);

    /* interest 0 stops; modify brings it back on the same loop */
    assert_int_equal(keel_io_modify(&s.io, 0), 0);
    assert_false(keel_io_is_active(&s.io));
    assert_int_equal(write(s.sv[1], "x", 1), 1);
    assert_int_equal(keel_loop_run_once(loop, 0), 0);
    assert_int_equal(keel_io_modify(&s.io, KEEL_IO_READ), 0);
    assert_int_equal(keel_loop_run_once(loop, 1000), 1);
    assert_int_equal(s.got, 6);

    keel_io_stop(&s.io);
    keel_io_stop(&s.io); /* idempotent */
    assert_int_equal(write(s.sv[1], "y", 1), 1);
    assert_int_equal(keel_loop_run_once(loop, 0), 0);
    assert_int_equal(s.reads, 2);

    close(s.sv[0]);
    close(s.sv[1]);
    keel_loop_free(loop);
}

static void test_io_level_triggered_partial_reads(void **state)
{
    (void)state;
    struct keel_loop *loop = keel_loop_new();
    struct io_state s;
    io_state_init(&s);
    s.read_one_byte = true; /* a callback that stops before EAGAIN is called again: no lost readiness */
    assert_int_equal(keel_io_start(loop, &s.io, KEEL_IO_READ), 0);
    assert_int_equal(write(s.sv[1], "abcd", 4), 4);
    for (int i = 1; i <= 4; i++) {
        assert_int_equal(keel_loop_run_once(loop, 1000), 1);
        assert_int_equal(s.got, (size_t)i);
    }
    assert_memory_equal(s.buf, "abcd", 4);
    assert_int_equal(keel_loop_run_once(loop, 0), 0);
    keel_io_stop(&s.io);
    close(s.sv[0]);
    close(s.sv[1]);
    keel_loop_free(loop);
}

static void test_io_peer_close_reported(void **state)
{
    (void)state;
    struct keel_loop *loop = keel_loop_new();
    struct io_state s;
    io_state_init(&s);
    assert_int_equal(keel_io_start(loop, &s.io, KEEL_IO_READ), 0);
    close(s.sv[1]);
    assert_int_equal(keel_loop_run_once(loop, 1000), 1);
    assert_int_equal(s.reads, 1); /* READ is reported with the hang-up, so the read sees EOF */
    keel_io_stop(&s.io);
    close(s.sv[0]);
    keel_loop_free(loop);
}

static void test_io_start_errors(void **state)
{
    (void)state;
    struct keel_loop *loop = keel_loop_new();
    struct io_state s, twin;
    io_state_init(&s);
    assert_int_equal(keel_io_start(loop, &s.io, 0), KEEL_EINVAL);
    assert_int_equal(keel_io_start(loop, &s.io, KEEL_IO_READ), 0);

    memset(&twin, 0, sizeof(twin));
    keel_io_init(&twin.io, s.sv[0], io_cb, &twin);
    assert_int_equal(keel_io_start(loop, &twin.io, KEEL_IO_READ), KEEL_EEXISTS);
    assert_false(keel_io_is_active(&twin.io));

    struct keel_loop *other = keel_loop_new();
    assert_int_equal(keel_io_start(other, &s.io, KEEL_IO_READ), KEEL_EINVAL); /* active elsewhere */
    keel_loop_free(other);

    struct keel_io bad;
    keel_io_init(&bad, -1, io_cb, NULL);
    assert_int_equal(keel_io_start(loop, &bad, KEEL_IO_READ), KEEL_EINVAL);
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    keel_io_init(&bad, fd, io_cb, NULL);
    assert_int_equal(keel_io_start(loop, &bad, KEEL_IO_READ), KEEL_EINVAL); /* epoll cannot watch files */
    close(fd);

    keel_io_stop(&s.io);
    close(s.sv[0]);
    close(s.sv[1]);
    keel_loop_free(loop);
}

/* Two ready watchers in one batch; whichever runs first stops and frees the other. The other's callback must not
 * run (ASan would catch the use after free). */
struct victim {
    struct keel_io io;
    struct victim *other;
    int *calls;
    struct victim **survivor;
};

static void stop_other_cb(struct keel_loop *loop, struct keel_io *io, uint32_t revents)
{
    (void)loop;
    (void)revents;
    struct victim *v = io->data;
    (*v->calls)++;
    if (v->other) {
        keel_io_stop(&v->other->io);
        free(v->other);
        v->other = NULL;
    }
    *v->survivor = v;
    char c;
    while (read(io->fd, &c, 1) == 1) {
    }
}

static void test_io_stopped_during_batch_is_not_called(void **state)
{
    (void)state;
    struct keel_loop *loop = keel_loop_new();
    int a[2], b[2];
    nonblocking_pair(a);
    nonblocking_pair(b);
    int calls = 0;
    struct victim *survivor = NULL;
    struct victim *va = calloc(1, sizeof(*va)), *vb = calloc(1, sizeof(*vb));
    va->other = vb;
    vb->other = va;
    va->calls = vb->calls = &calls;
    va->survivor = vb->survivor = &survivor;
    keel_io_init(&va->io, a[0], stop_other_cb, va);
    keel_io_init(&vb->io, b[0], stop_other_cb, vb);
    assert_int_equal(keel_io_start(loop, &va->io, KEEL_IO_READ), 0);
    assert_int_equal(keel_io_start(loop, &vb->io, KEEL_IO_READ), 0);
    /* both readable before the poll, so both are in its one batch */
    assert_int_equal(write(a[1], "1", 1), 1);
    assert_int_equal(write(b[1], "1", 1), 1);
    assert_int_equal(keel_loop_run_once(loop, 1000), 1);
    assert_int_equal(calls, 1);
    assert_non_null(survivor);
    assert_int_equal(keel_loop_run_once(loop, 0), 0);
    keel_io_stop(&survivor->io);
    free(survivor);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    keel_loop_free(loop);
}

/* ---- deferred --------------------------------------------------------------------------------------------------- */

struct seq_state {
    char trace[32];
    int n;
    struct keel_defer d1, d2, d3;
    struct keel_timer t;
    struct keel_io io;
    int sv[2];
};

static void trace(struct seq_state *s, char c)
{
    s->trace[s->n++] = c;
    s->trace[s->n] = '\0';
}

static void defer_again_cb(struct keel_loop *loop, struct keel_defer *d)
{
    (void)loop;
    trace(d->data, 'Z');
}

static void defer_cb(struct keel_loop *loop, struct keel_defer *d)
{
    struct seq_state *s = d->data;
    trace(s, d == &s->d1 ? 'D' : 'E');
    if (d == &s->d2)
        keel_loop_defer(loop, &s->d3, defer_again_cb, s); /* runs in the next iteration */
}

static void seq_timer_cb(struct keel_loop *loop, struct keel_timer *t)
{
    struct seq_state *s = t->data;
    trace(s, 'T');
    keel_loop_defer(loop, &s->d1, defer_cb, s);
    keel_loop_defer(loop, &s->d1, defer_cb, s); /* already pending: still runs once */
}

static void seq_io_cb(struct keel_loop *loop, struct keel_io *io, uint32_t revents)
{
    (void)revents;
    struct seq_state *s = io->data;
    trace(s, 'I');
    keel_loop_defer(loop, &s->d2, defer_cb, s);
    assert_int_equal(s->trace[s->n - 1], 'I'); /* not run while the callback is on the stack */
    char c;
    while (read(io->fd, &c, 1) == 1) {
    }
}

static void test_deferred_runs_after_callbacks(void **state)
{
    (void)state;
    struct keel_loop *loop = keel_loop_new();
    struct seq_state s;
    memset(&s, 0, sizeof(s));
    nonblocking_pair(s.sv);
    keel_timer_init(&s.t);
    assert_int_equal(keel_timer_start(loop, &s.t, 0, seq_timer_cb, &s), 0);
    keel_io_init(&s.io, s.sv[0], seq_io_cb, &s);
    assert_int_equal(keel_io_start(loop, &s.io, KEEL_IO_READ), 0);
    assert_int_equal(write(s.sv[1], "x", 1), 1);
    assert_int_equal(keel_loop_run_once(loop, 1000), 4); /* T, I, D, E */
    assert_string_equal(s.trace, "TIDE");
    assert_int_equal(keel_loop_run_once(loop, 1000), 1); /* deferred from a deferred: next iteration */
    assert_string_equal(s.trace, "TIDEZ");
    assert_int_equal(keel_loop_run_once(loop, 0), 0);
    keel_io_stop(&s.io);
    close(s.sv[0]);
    close(s.sv[1]);
    keel_loop_free(loop);
}

/* The pattern deferred work exists for: a connection freed from inside its own io callback. */
struct conn {
    struct keel_io io;
    struct keel_defer free_later;
    int *freed;
};

static void conn_free_cb(struct keel_loop *loop, struct keel_defer *d)
{
    (void)loop;
    struct conn *c = d->data;
    (*c->freed)++;
    free(c);
}

static void conn_io_cb(struct keel_loop *loop, struct keel_io *io, uint32_t revents)
{
    (void)revents;
    struct conn *c = io->data;
    char buf[16];
    if (read(io->fd, buf, sizeof(buf)) == 0) {
        keel_io_stop(io);
        close(io->fd);
        keel_loop_defer(loop, &c->free_later, conn_free_cb, c);
        io->fd = -1; /* still ours until the deferred free */
    }
}

static void test_deferred_free_from_own_callback(void **state)
{
    (void)state;
    struct keel_loop *loop = keel_loop_new();
    int sv[2];
    nonblocking_pair(sv);
    int freed = 0;
    struct conn *c = calloc(1, sizeof(*c));
    c->freed = &freed;
    keel_io_init(&c->io, sv[0], conn_io_cb, c);
    assert_int_equal(keel_io_start(loop, &c->io, KEEL_IO_READ), 0);
    close(sv[1]);
    assert_int_equal(keel_loop_run_once(loop, 1000), 2);
    assert_int_equal(freed, 1);
    keel_loop_free(loop);
}

static void test_loop_free_runs_pending_deferred(void **state)
{
    (void)state;
    struct keel_loop *loop = keel_loop_new();
    int freed = 0;
    struct conn *c = calloc(1, sizeof(*c));
    c->freed = &freed;
    keel_loop_defer(loop, &c->free_later, conn_free_cb, c);
    keel_loop_free(loop); /* leak-checked under ASan */
    assert_int_equal(freed, 1);
}

/* ---- stop and async --------------------------------------------------------------------------------------------- */

struct guard {
    struct keel_timer t;
    bool fired;
};

static void guard_cb(struct keel_loop *loop, struct keel_timer *t)
{
    struct guard *g = t->data;
    g->fired = true;
    keel_loop_stop(loop);
}

static void *stop_thread(void *arg)
{
    sleep_ms(20);
    keel_loop_stop(arg);
    return NULL;
}

static void test_stop_from_another_thread(void **state)
{
    (void)state;
    struct keel_loop *loop = keel_loop_new();
    struct guard g = {.fired = false};
    keel_timer_init(&g.t);
    assert_int_equal(keel_timer_start(loop, &g.t, GENEROUS_MS, guard_cb, &g), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stop_thread, loop), 0);
    assert_int_equal(keel_loop_run(loop), 0); /* blocks in epoll until the other thread's stop wakes it */
    pthread_join(th, NULL);
    assert_false(g.fired);
    keel_timer_stop(&g.t);
    keel_loop_free(loop);
}

static void test_stop_before_run(void **state)
{
    (void)state;
    struct keel_loop *loop = keel_loop_new();
    keel_loop_stop(loop);
    keel_loop_stop(loop); /* coalesced */
    assert_int_equal(keel_loop_run(loop), 0);
    /* the stop was consumed: the loop can run again (stopped here by a timer) */
    struct guard g = {.fired = false};
    keel_timer_init(&g.t);
    assert_int_equal(keel_timer_start(loop, &g.t, 1, guard_cb, &g), 0);
    assert_int_equal(keel_loop_run(loop), 0);
    assert_true(g.fired);
    keel_loop_free(loop);
}

#define ASYNC_SENDS 10000

struct async_state {
    struct keel_async a, quit;
    _Atomic int value; /* written by the sender before each send */
    int calls;
    int last_seen;
    bool went_backwards;
    bool quit_seen;
};

static void async_cb(struct keel_loop *loop, struct keel_async *a)
{
    (void)loop;
    struct async_state *s = a->data;
    int v = atomic_load_explicit(&s->value, memory_order_relaxed);
    if (v < s->last_seen)
        s->went_backwards = true;
    s->last_seen = v;
    s->calls++;
}

static void quit_cb(struct keel_loop *loop, struct keel_async *a)
{
    struct async_state *s = a->data;
    s->quit_seen = true;
    keel_loop_stop(loop);
}

static void *sender_thread(void *arg)
{
    struct async_state *s = arg;
    for (int i = 1; i <= ASYNC_SENDS; i++) {
        atomic_store_explicit(&s->value, i, memory_order_relaxed);
        keel_async_send(&s->a); /* publishes the store above */
    }
    keel_async_send(&s->quit);
    return NULL;
}

static void test_async_from_another_thread(void **state)
{
    (void)state;
    struct keel_loop *loop = keel_loop_new();
    struct async_state *s = calloc(1, sizeof(*s));
    keel_async_init(loop, &s->a, async_cb, s);
    keel_async_init(loop, &s->quit, quit_cb, s);
    struct guard g = {.fired = false};
    keel_timer_init(&g.t);
    assert_int_equal(keel_timer_start(loop, &g.t, GENEROUS_MS, guard_cb, &g), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, sender_thread, s), 0);
    assert_int_equal(keel_loop_run(loop), 0);
    pthread_join(th, NULL);
    assert_false(g.fired);
    assert_true(s->quit_seen);
    /* the quit may have been seen in the same pass as an earlier send: drain what is left */
    for (int i = 0; i < 1000 && s->last_seen != ASYNC_SENDS; i++)
        assert_true(keel_loop_run_once(loop, 10) >= 0);
    assert_true(s->calls >= 1);
    assert_true(s->calls <= ASYNC_SENDS); /* coalesced */
    assert_false(s->went_backwards);
    assert_int_equal(s->last_seen, ASYNC_SENDS);
    keel_timer_stop(&g.t);
    keel_async_close(&s->a);
    keel_async_close(&s->quit);
    keel_async_close(&s->quit); /* idempotent */
    free(s);
    keel_loop_free(loop);
}

static void close_other_cb(struct keel_loop *loop, struct keel_async *a)
{
    (void)loop;
    struct async_state *s = a->data;
    s->calls++;
    keel_async_close(a == &s->a ? &s->quit : &s->a);
}

static void test_async_same_thread_and_close_during_dispatch(void **state)
{
    (void)state;
    struct keel_loop *loop = keel_loop_new();
    struct async_state s;
    memset(&s, 0, sizeof(s));
    keel_async_init(loop, &s.a, close_other_cb, &s);
    keel_async_init(loop, &s.quit, close_other_cb, &s);
    keel_async_send(&s.a);
    keel_async_send(&s.a);
    keel_async_send(&s.quit);
    assert_int_equal(keel_loop_run_once(loop, 1000), 1); /* the first one run closed the other */
    assert_int_equal(s.calls, 1);
    assert_int_equal(keel_loop_run_once(loop, 0), 0);
    keel_async_close(&s.a);
    keel_async_close(&s.quit);
    keel_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clock_cached_and_monotonic),
        cmocka_unit_test(test_run_once_idle_returns_zero),
        cmocka_unit_test(test_timers_fire_in_deadline_order),
        cmocka_unit_test(test_timers_stop_and_rearm),
        cmocka_unit_test(test_timer_rearmed_from_callback_waits_for_next_iteration),
        cmocka_unit_test(test_timer_stopped_by_earlier_timer_in_same_pass),
        cmocka_unit_test(test_timer_far_future_does_not_wrap),
        cmocka_unit_test(test_io_read_write_modify_stop),
        cmocka_unit_test(test_io_level_triggered_partial_reads),
        cmocka_unit_test(test_io_peer_close_reported),
        cmocka_unit_test(test_io_start_errors),
        cmocka_unit_test(test_io_stopped_during_batch_is_not_called),
        cmocka_unit_test(test_deferred_runs_after_callbacks),
        cmocka_unit_test(test_deferred_free_from_own_callback),
        cmocka_unit_test(test_loop_free_runs_pending_deferred),
        cmocka_unit_test(test_stop_from_another_thread),
        cmocka_unit_test(test_stop_before_run),
        cmocka_unit_test(test_async_from_another_thread),
        cmocka_unit_test(test_async_same_thread_and_close_during_dispatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
