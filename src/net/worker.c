/*
 * worker.c - worker threads with one loop each (see worker.h).
 *
 * Each worker has a mutex-protected FIFO of broadcast messages and one
 * keel_async that tells its loop to drain it. The mutex is held only to
 * link or unlink the list, never while a callback runs, and broadcasts are
 * control-plane events (config pushes, drain), so the request path takes no
 * lock. One malloc'd message per worker per broadcast: all of them are
 * allocated before any is queued, so a broadcast reaches every worker or
 * none.
 *
 * Start-up handshake: the starting thread waits on a condition variable
 * until every worker has reported its init result; failure of any init
 * stops and joins them all.
 */
#include "net/worker.h"

#include "base/err.h"
#include "base/log.h"
#include "net/loop.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct worker_msg {
    struct worker_msg *next;
    keel_worker_call_cb cb;
    void *data;
};

struct keel_worker {
    struct keel_workers *ws;
    unsigned index;
    struct keel_loop *loop;
    void *data;
    pthread_t thread;
    bool started;  /* thread created */
    bool mu_ready; /* mu initialised */
    int init_rc;
    struct keel_async wake;
    pthread_mutex_t mu; /* guards msgs */
    struct worker_msg *msgs;
    struct worker_msg **msgs_tail;
};

struct keel_workers {
    struct keel_workers_config cfg;
    unsigned count;
    pthread_mutex_t mu; /* guards reported */
    pthread_cond_t cond;
    unsigned reported;      /* workers whose init returned */
    struct keel_worker w[]; /* count of them */
};

/* ---- messages --------------------------------------------------------------------------------------------------- */

static void run_messages(struct keel_worker *w)
{
    pthread_mutex_lock(&w->mu);
    struct worker_msg *m = w->msgs;
    w->msgs = NULL;
    w->msgs_tail = &w->msgs;
    pthread_mutex_unlock(&w->mu);
    while (m) {
        struct worker_msg *next = m->next;
        m->cb(w, m->data);
        free(m);
        m = next;
    }
}

static void on_wake(struct keel_loop *loop, struct keel_async *a)
{
    (void)loop;
    run_messages(a->data);
}

int keel_workers_broadcast(struct keel_workers *ws, keel_worker_call_cb cb, void *data)
{
    struct worker_msg *list = NULL;
    for (unsigned i = 0; i < ws->count; i++) {
        struct worker_msg *m = malloc(sizeof(*m));
        if (!m) {
            while (list) {
                struct worker_msg *next = list->next;
                free(list);
                list = next;
            }
            return KEEL_ENOMEM;
        }
        m->cb = cb;
        m->data = data;
        m->next = list;
        list = m;
    }
    for (unsigned i = 0; i < ws->count; i++) {
        struct keel_worker *w = &ws->w[i];
        struct worker_msg *m = list;
        list = m->next;
        m->next = NULL;
        pthread_mutex_lock(&w->mu);
        *w->msgs_tail = m;
        w->msgs_tail = &m->next;
        pthread_mutex_unlock(&w->mu);
        keel_async_send(&w->wake);
    }
    return 0;
}

/* ---- threads ---------------------------------------------------------------------------------------------------- */

static void *worker_main(void *arg)
{
    struct keel_worker *w = arg;
    struct keel_workers *ws = w->ws;
    char name[16];
    snprintf(name, sizeof(name), "keel-wrk-%u", w->index);
    pthread_setname_np(pthread_self(), name);

    int rc = ws->cfg.init ? ws->cfg.init(w, ws->cfg.data) : 0;
    pthread_mutex_lock(&ws->mu);
    w->init_rc = rc;
    ws->reported++;
    pthread_cond_signal(&ws->cond);
    pthread_mutex_unlock(&ws->mu);
    if (rc != 0)
        return NULL;

    rc = keel_loop_run(w->loop);
    if (rc != 0)
        keel_log(KEEL_LOG_ERROR, "worker %u: event loop failed: %s", w->index, keel_strerror(rc));
    run_messages(w); /* broadcasts queued before the stop still run, so their data is accounted for */
    if (ws->cfg.fini)
        ws->cfg.fini(w, ws->cfg.data);
    return NULL;
}

/* Joins started threads and frees everything; the loops must have been told to stop. */
static void teardown(struct keel_workers *ws)
{
    for (unsigned i = 0; i < ws->count; i++) {
        if (ws->w[i].started)
            pthread_join(ws->w[i].thread, NULL);
    }
    for (unsigned i = 0; i < ws->count; i++) {
        struct keel_worker *w = &ws->w[i];
        if (w->mu_ready) {
            struct worker_msg *m = w->msgs; /* only if someone broadcast during stop_join: dropped */
            while (m) {
                struct worker_msg *next = m->next;
                free(m);
                m = next;
            }
            pthread_mutex_destroy(&w->mu);
        }
        if (w->loop) {
            keel_async_close(&w->wake);
            keel_loop_free(w->loop);
        }
    }
    pthread_cond_destroy(&ws->cond);
    pthread_mutex_destroy(&ws->mu);
    free(ws);
}

/* Blocks the asynchronous signals (the new threads inherit the mask); faults stay deliverable. */
static void block_signals(sigset_t *old)
{
    sigset_t set;
    sigfillset(&set);
    static const int keep[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS};
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
        sigdelset(&set, keep[i]);
    pthread_sigmask(SIG_SETMASK, &set, old);
}

int keel_workers_start(const struct keel_workers_config *cfg, struct keel_workers **out)
{
    unsigned count = cfg->count;
    if (count == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        count = n < 1 ? 1 : n > KEEL_WORKERS_MAX ? KEEL_WORKERS_MAX : (unsigned)n;
    }
    if (count > KEEL_WORKERS_MAX)
        return KEEL_EINVAL;

    struct keel_workers *ws = calloc(1, sizeof(*ws) + count * sizeof(ws->w[0]));
    if (!ws)
        return KEEL_ENOMEM;
    ws->cfg = *cfg;
    ws->count = count;
    pthread_mutex_init(&ws->mu, NULL);
    pthread_cond_init(&ws->cond, NULL);

    int rc = 0;
    for (unsigned i = 0; i < count && rc == 0; i++) {
        struct keel_worker *w = &ws->w[i];
        w->ws = ws;
        w->index = i;
        w->msgs_tail = &w->msgs;
        if (pthread_mutex_init(&w->mu, NULL) != 0) {
            rc = KEEL_ENOMEM;
            break;
        }
        w->mu_ready = true;
        w->loop = keel_loop_new();
        if (!w->loop) {
            rc = KEEL_ENOMEM;
            break;
        }
        keel_async_init(w->loop, &w->wake, on_wake, w);
    }

    unsigned started = 0;
    if (rc == 0) {
        sigset_t old;
        block_signals(&old);
        for (; started < count; started++) {
            struct keel_worker *w = &ws->w[started];
            if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
                rc = KEEL_ENOMEM;
                break;
            }
            w->started = true;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }

    pthread_mutex_lock(&ws->mu);
    while (ws->reported < started)
        pthread_cond_wait(&ws->cond, &ws->mu);
    pthread_mutex_unlock(&ws->mu);

    for (unsigned i = 0; i < started && rc == 0; i++)
        rc = ws->w[i].init_rc;
    if (rc != 0) {
        for (unsigned i = 0; i < started; i++)
            keel_loop_stop(ws->w[i].loop);
        teardown(ws);
        return rc;
    }
    *out = ws;
    return 0;
}

void keel_workers_stop_join(struct keel_workers *ws)
{
    if (!ws)
        return;
    for (unsigned i = 0; i < ws->count; i++)
        keel_loop_stop(ws->w[i].loop);
    teardown(ws);
}

/* ---- accessors -------------------------------------------------------------------------------------------------- */

unsigned keel_workers_count(const struct keel_workers *ws)
{
    return ws->count;
}

struct keel_worker *keel_workers_get(struct keel_workers *ws, unsigned i)
{
    return i < ws->count ? &ws->w[i] : NULL;
}

unsigned keel_worker_index(const struct keel_worker *w)
{
    return w->index;
}

struct keel_loop *keel_worker_loop(struct keel_worker *w)
{
    return w->loop;
}

void *keel_worker_data(const struct keel_worker *w)
{
    return w->data;
}

void keel_worker_set_data(struct keel_worker *w, void *data)
{
    w->data = data;
}
