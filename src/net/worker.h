/*
 * worker.h - N worker threads, each running its own event loop.
 *
 * The proxy's data plane: every worker owns one keel_loop and everything
 * registered on it (its SO_REUSEPORT listeners, connections, timers, pools);
 * a connection never leaves the worker that accepted it. Workers share
 * nothing mutable. The main thread talks to them only through
 * keel_workers_broadcast() (run a function on every worker's thread: "a new
 * snapshot is published", "drain"), which rides on one keel_async per worker.
 *
 * Lifecycle: keel_workers_start() creates the loops, starts the threads and
 * waits until every worker's init callback has returned on its own thread
 * (so listeners are open when it returns). keel_workers_stop_join() stops
 * every loop, runs each worker's fini callback on its own thread, joins and
 * frees everything. No globals: all state hangs off struct keel_workers.
 *
 * Signals: worker threads start with every asynchronous signal blocked, so
 * SIGTERM/SIGINT/SIGHUP go to the main thread; fault signals (SIGSEGV, ...)
 * stay deliverable.
 */
#ifndef KEEL_NET_WORKER_H
#define KEEL_NET_WORKER_H

struct keel_loop;
struct keel_worker;
struct keel_workers;

/* Upper bound on the worker count (count 0 picks the number of online CPUs, capped here). */
#define KEEL_WORKERS_MAX 512

/* On the worker's thread before its loop runs: open listeners, set per-worker state (keel_worker_set_data). A
 * non-zero (negative KEEL_E*) return makes keel_workers_start fail with it; that worker's fini is not called. */
typedef int (*keel_worker_init_cb)(struct keel_worker *w, void *data);
/* On the worker's thread after its loop stopped and pending broadcasts ran: close and free what init made. */
typedef void (*keel_worker_fini_cb)(struct keel_worker *w, void *data);
/* A broadcast function, on the worker's thread (step 4 of a loop iteration). */
typedef void (*keel_worker_call_cb)(struct keel_worker *w, void *data);

struct keel_workers_config {
    unsigned count;           /* 0: sysconf(_SC_NPROCESSORS_ONLN), at most KEEL_WORKERS_MAX */
    keel_worker_init_cb init; /* may be NULL */
    keel_worker_fini_cb fini; /* may be NULL */
    void *data;               /* the caller's, passed to init and fini */
};

/* Starts the workers and waits for every init to return. Returns 0 with *out set, KEEL_EINVAL (count above
 * KEEL_WORKERS_MAX), KEEL_ENOMEM (memory, fds or threads), or the first error an init returned; on failure every
 * thread that started has been stopped and joined (fini run where init succeeded) and nothing is left allocated. */
int keel_workers_start(const struct keel_workers_config *cfg, struct keel_workers **out);

/* Runs cb(w, data) once on every worker's thread, asynchronously: returns once it is queued. Calls reach each worker
 * in the order they were broadcast. data must stay valid until every worker has run cb (count completions in cb if
 * you need to know). Any thread, including a worker's; not concurrently with or after keel_workers_stop_join.
 * Returns 0 or KEEL_ENOMEM (nothing queued). */
int keel_workers_broadcast(struct keel_workers *ws, keel_worker_call_cb cb, void *data);

/* Stops every loop, lets each worker run its queued broadcasts and fini on its thread, joins the threads and frees
 * everything, ws included. From the thread that started the workers, never from a worker. */
void keel_workers_stop_join(struct keel_workers *ws);

unsigned keel_workers_count(const struct keel_workers *ws);

/* Worker i (0-based), or NULL. From another thread, use it only to read its index, or to keel_loop_stop /
 * keel_async_send on its loop. */
struct keel_worker *keel_workers_get(struct keel_workers *ws, unsigned i);

/* 0..count-1; stable for the worker's life. */
unsigned keel_worker_index(const struct keel_worker *w);

/* The worker's loop; register watchers on it only from the worker's thread. */
struct keel_loop *keel_worker_loop(struct keel_worker *w);

/* Per-worker slot for the caller's state (NULL until set); read and set on the worker's thread. */
void *keel_worker_data(const struct keel_worker *w);
void keel_worker_set_data(struct keel_worker *w, void *data);

#endif
