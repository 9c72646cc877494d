/*
 * worker_test.c - tests for net/worker: start/stop, init and fini on each
 * worker's own thread, broadcast to every worker in order, init failure,
 * and the intended use: one SO_REUSEPORT listener per worker accepting
 * connections on its own loop.
 *
 * cmocka assertions cannot run on worker threads (they longjmp), so workers
 * record what they saw in atomics and the main thread asserts. Waits are
 * bounded by a generous hang guard, never asserted as durations.
 */
#include "net/worker.h"

#include "base/err.h"
#include "net/loop.h"
#include "net/sock.h"

#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define GENEROUS_MS 20000
#define MAXW 8

/* Spins (sleeping 1 ms per round) until *v reaches want or the hang guard expires; returns the last value. */
static int wait_for(atomic_int *v, int want)
{
    uint64_t give_up = keel_now_ms() + GENEROUS_MS;
    int cur;
    while ((cur = atomic_load(v)) < want && keel_now_ms() < give_up)
        poll(NULL, 0, 1);
    return cur;
}

struct per_worker {
    pthread_t thread; /* the thread init ran on */
    unsigned index;
    int next_seq; /* broadcasts seen, in order */
    bool out_of_order;
    bool wrong_thread;
    bool fini_wrong_thread;
    struct keel_timer tick;
    int ticks;
};

struct shared {
    struct per_worker pw[MAXW];
    atomic_int inits, finis, calls, bad_data;
    unsigned fail_index; /* init of this worker fails; UINT32_MAX for none */
};

static int init_cb(struct keel_worker *w, void *data)
{
    struct shared *sh = data;
    unsigned i = keel_worker_index(w);
    if (i == sh->fail_index)
        return KEEL_EADDRINUSE;
    struct per_worker *pw = &sh->pw[i];
    pw->thread = pthread_self();
    pw->index = i;
    keel_timer_init(&pw->tick);
    keel_worker_set_data(w, pw);
    atomic_fetch_add(&sh->inits, 1);
    return 0;
}

static void fini_cb(struct keel_worker *w, void *data)
{
    struct shared *sh = data;
    struct per_worker *pw = keel_worker_data(w);
    if (!pthread_equal(pw->thread, pthread_self()))
        pw->fini_wrong_thread = true;
    keel_timer_stop(&pw->tick);
    atomic_fetch_add(&sh->finis, 1);
}

struct bcast {
    struct shared *sh;
    int seq;
};

static void call_cb(struct keel_worker *w, void *data)
{
    struct bcast *b = data;
    struct per_worker *pw = keel_worker_data(w);
    if (!pw || pw->index != keel_worker_index(w)) {
        atomic_fetch_add(&b->sh->bad_data, 1);
        return;
    }
    if (!pthread_equal(pw->thread, pthread_self()))
        pw->wrong_thread = true;
    if (b->seq != pw->next_seq)
        pw->out_of_order = true;
    pw->next_seq++;
    atomic_fetch_add(&b->sh->calls, 1);
}

static struct shared *shared_new(void)
{
    struct shared *sh = calloc(1, sizeof(*sh));
    sh->fail_index = UINT32_MAX;
    return sh;
}

static void test_start_broadcast_stop(void **state)
{
    (void)state;
    struct shared *sh = shared_new();
    struct keel_workers_config cfg = {.count = 4, .init = init_cb, .fini = fini_cb, .data = sh};
    struct keel_workers *ws = NULL;
    assert_int_equal(keel_workers_start(&cfg, &ws), 0);
    assert_int_equal(keel_workers_count(ws), 4);
    assert_int_equal(atomic_load(&sh->inits), 4); /* every init has returned when start returns */
    for (unsigned i = 0; i < 4; i++) {
        struct keel_worker *w = keel_workers_get(ws, i);
        assert_non_null(w);
        assert_int_equal(keel_worker_index(w), i);
        assert_non_null(keel_worker_loop(w));
        assert_false(pthread_equal(sh->pw[i].thread, pthread_self())); /* init ran on the worker's own thread */
        for (unsigned j = 0; j < i; j++)
            assert_false(pthread_equal(sh->pw[i].thread, sh->pw[j].thread));
    }
    assert_null(keel_workers_get(ws, 4));

    enum { NB = 200 };
    struct bcast *b = calloc(NB, sizeof(*b));
    for (int k = 0; k < NB; k++) {
        b[k].sh = sh;
        b[k].seq = k;
        assert_int_equal(keel_workers_broadcast(ws, call_cb, &b[k]), 0);
    }
    assert_int_equal(wait_for(&sh->calls, 4 * NB), 4 * NB);
    keel_workers_stop_join(ws);
    assert_int_equal(atomic_load(&sh->finis), 4);
    assert_int_equal(atomic_load(&sh->calls), 4 * NB); /* exactly once each */
    assert_int_equal(atomic_load(&sh->bad_data), 0);
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(sh->pw[i].next_seq, NB);
        assert_false(sh->pw[i].out_of_order);
        assert_false(sh->pw[i].wrong_thread);
        assert_false(sh->pw[i].fini_wrong_thread);
    }
    free(b);
    free(sh);
}

static void test_broadcasts_queued_before_stop_still_run(void **state)
{
    (void)state;
    struct shared *sh = shared_new();
    struct keel_workers_config cfg = {.count = 2, .init = init_cb, .fini = fini_cb, .data = sh};
    struct keel_workers *ws = NULL;
    assert_int_equal(keel_workers_start(&cfg, &ws), 0);
    struct bcast b = {.sh = sh, .seq = 0};
    assert_int_equal(keel_workers_broadcast(ws, call_cb, &b), 0);
    keel_workers_stop_join(ws); /* no wait: stop may win the race with the wakeup */
    assert_int_equal(atomic_load(&sh->calls), 2);
    assert_int_equal(atomic_load(&sh->finis), 2);
    free(sh);
}

static void test_zero_means_cpu_count(void **state)
{
    (void)state;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    struct keel_workers_config cfg = {.count = 0};
    struct keel_workers *ws = NULL;
    assert_int_equal(keel_workers_start(&cfg, &ws), 0); /* no init, no fini: both optional */
    assert_int_equal(keel_workers_count(ws), cpus < 1 ? 1 : cpus > KEEL_WORKERS_MAX ? KEEL_WORKERS_MAX : cpus);
    assert_null(keel_worker_data(keel_workers_get(ws, 0)));
    keel_workers_stop_join(ws);

    cfg.count = KEEL_WORKERS_MAX + 1;
    ws = NULL;
    assert_int_equal(keel_workers_start(&cfg, &ws), KEEL_EINVAL);
    assert_null(ws);
}

static void test_init_failure_stops_everything(void **state)
{
    (void)state;
    struct shared *sh = shared_new();
    sh->fail_index = 2;
    struct keel_workers_config cfg = {.count = 4, .init = init_cb, .fini = fini_cb, .data = sh};
    struct keel_workers *ws = NULL;
    assert_int_equal(keel_workers_start(&cfg, &ws), KEEL_EADDRINUSE);
    assert_null(ws);
    assert_int_equal(atomic_load(&sh->inits), 3);
    assert_int_equal(atomic_load(&sh->finis), 3); /* fini only where init succeeded */
    free(sh);
}

/* A worker's own timers run on its loop between broadcasts. */
static void tick_cb(struct keel_loop *loop, struct keel_timer *t)
{
    struct per_worker *pw = t->data;
    if (++pw->ticks < 3)
        keel_timer_start(loop, t, 1, tick_cb, pw);
}

struct tick_req {
    atomic_int ok;  /* workers for which the condition held */
    atomic_int ran; /* workers that ran the call */
};

static void start_ticks(struct keel_worker *w, void *data)
{
    struct tick_req *r = data;
    struct per_worker *pw = keel_worker_data(w);
    if (keel_timer_start(keel_worker_loop(w), &pw->tick, 1, tick_cb, pw) == 0)
        atomic_fetch_add(&r->ok, 1);
    atomic_fetch_add(&r->ran, 1);
}

static void read_ticks(struct keel_worker *w, void *data)
{
    struct tick_req *r = data;
    struct per_worker *pw = keel_worker_data(w);
    if (pw->ticks == 3 && !keel_timer_is_active(&pw->tick))
        atomic_fetch_add(&r->ok, 1);
    atomic_fetch_add(&r->ran, 1);
}

static void test_worker_timers_run_on_its_loop(void **state)
{
    (void)state;
    struct shared *sh = shared_new();
    struct keel_workers_config cfg = {.count = 3, .init = init_cb, .fini = fini_cb, .data = sh};
    struct keel_workers *ws = NULL;
    assert_int_equal(keel_workers_start(&cfg, &ws), 0);
    struct tick_req start = {0};
    assert_int_equal(keel_workers_broadcast(ws, start_ticks, &start), 0);
    assert_int_equal(wait_for(&start.ran, 3), 3);
    assert_int_equal(atomic_load(&start.ok), 3);
    /* ask every worker, round after round, until all report their timer fired three times */
    uint64_t give_up = keel_now_ms() + GENEROUS_MS;
    int ok = 0;
    while (ok < 3 && keel_now_ms() < give_up) {
        struct tick_req probe = {0};
        assert_int_equal(keel_workers_broadcast(ws, read_ticks, &probe), 0);
        assert_int_equal(wait_for(&probe.ran, 3), 3); /* probe must outlive the calls */
        ok = atomic_load(&probe.ok);
        if (ok < 3)
            poll(NULL, 0, 2);
    }
    assert_int_equal(ok, 3);
    keel_workers_stop_join(ws);
    free(sh);
}

/* ---- SO_REUSEPORT: one listener per worker, connections accepted on the workers' loops ----------------------- */

struct lsn_shared {
    struct keel_addr addr;
    atomic_int accepted;
    atomic_int per_worker[MAXW];
    atomic_int errors;
};

struct lsn_worker {
    struct keel_io io;
    struct lsn_shared *sh;
    unsigned index;
};

static void accept_cb(struct keel_loop *loop, struct keel_io *io, uint32_t revents)
{
    (void)loop;
    (void)revents;
    struct lsn_worker *lw = io->data;
    for (;;) {
        int fd;
        int rc = keel_sock_accept(io->fd, &fd, NULL);
        if (rc == KEEL_EAGAIN)
            break;
        if (rc != 0) {
            atomic_fetch_add(&lw->sh->errors, 1);
            break;
        }
        close(fd);
        atomic_fetch_add(&lw->sh->per_worker[lw->index], 1);
        atomic_fetch_add(&lw->sh->accepted, 1);
    }
}

static int lsn_init(struct keel_worker *w, void *data)
{
    struct lsn_shared *sh = data;
    struct lsn_worker *lw = calloc(1, sizeof(*lw));
    if (!lw)
        return KEEL_ENOMEM;
    lw->sh = sh;
    lw->index = keel_worker_index(w);
    int fd;
    int rc = keel_sock_listen(&sh->addr, true, 128, &fd);
    if (rc != 0) {
        free(lw);
        return rc;
    }
    keel_io_init(&lw->io, fd, accept_cb, lw);
    rc = keel_io_start(keel_worker_loop(w), &lw->io, KEEL_IO_READ);
    if (rc != 0) {
        close(fd);
        free(lw);
        return rc;
    }
    keel_worker_set_data(w, lw);
    return 0;
}

static void lsn_fini(struct keel_worker *w, void *data)
{
    (void)data;
    struct lsn_worker *lw = keel_worker_data(w);
    keel_io_stop(&lw->io);
    close(lw->io.fd);
    free(lw);
}

static void test_reuseport_listener_per_worker(void **state)
{
    (void)state;
    struct lsn_shared *sh = calloc(1, sizeof(*sh));
    /* reserve an ephemeral port with a SO_REUSEPORT probe, let the workers join it, then drop the probe */
    struct keel_addr any;
    int probe;
    assert_int_equal(keel_addr_parse("127.0.0.1:0", &any), 0);
    assert_int_equal(keel_sock_listen(&any, true, 1, &probe), 0);
    assert_int_equal(keel_sock_local_addr(probe, &sh->addr), 0);

    struct keel_workers_config cfg = {.count = 3, .init = lsn_init, .fini = lsn_fini, .data = sh};
    struct keel_workers *ws = NULL;
    assert_int_equal(keel_workers_start(&cfg, &ws), 0);
    close(probe);

    enum { N = 60 };
    int clients[N];
    for (int i = 0; i < N; i++) {
        int rc = keel_sock_connect(&sh->addr, &clients[i]);
        assert_true(rc == 0 || rc == KEEL_EAGAIN);
    }
    assert_int_equal(wait_for(&sh->accepted, N), N);
    keel_workers_stop_join(ws);
    assert_int_equal(atomic_load(&sh->errors), 0);
    int sum = 0;
    for (int i = 0; i < 3; i++)
        sum += atomic_load(&sh->per_worker[i]);
    assert_int_equal(sum, N);
    for (int i = 0; i < N; i++)
        close(clients[i]);
    free(sh);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_broadcast_stop),
        cmocka_unit_test(test_broadcasts_queued_before_stop_still_run),
        cmocka_unit_test(test_zero_means_cpu_count),
        cmocka_unit_test(test_init_failure_stops_everything),
        cmocka_unit_test(test_worker_timers_run_on_its_loop),
        cmocka_unit_test(test_reuseport_listener_per_worker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
