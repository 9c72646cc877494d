/*
 * loop.h - one event loop per thread: fd watchers, timers, deferred work,
 * cross-thread wakeups (epoll + eventfd).
 *
 * A loop belongs to one thread. Every function here must be called on the
 * loop's thread, except keel_loop_stop() and keel_async_send(), which any
 * thread may call. Nothing is locked.
 *
 * The caller owns every watcher's memory (libuv style): struct keel_io,
 * keel_timer, keel_defer and keel_async are embedded in the caller's own
 * objects; the loop only links them. Fields starting with '_' are private.
 * The loop allocates only its timer heap array (doubling), so
 * keel_timer_start() of a timer that is not already pending may fail with
 * KEEL_ENOMEM; re-arming a pending timer never allocates and never fails.
 *
 * Names: this module is the loop plus its four watcher kinds, so it exports
 * keel_loop_*, keel_io_*, keel_timer_*, keel_defer_* and keel_async_*. Those
 * prefixes are reserved to this file (rule zero: one header owns several
 * prefixes because the watchers cannot exist without the loop).
 *
 * One iteration (keel_loop_run_once(); keel_loop_run() repeats it):
 *   1. update the cached clock (keel_loop_now_ms);
 *   2. run expired timers, earliest deadline first, equal deadlines in the
 *      order they were started. A timer started or re-armed during this
 *      step waits for the next iteration, even with after_ms 0;
 *   3. poll: epoll_wait for at most KEEL_LOOP_MAX_EVENTS ready fds, sleeping
 *      until the earliest timer is due (no sleep when deferred work or a stop
 *      is pending). When it slept, the cached clock is refreshed once more,
 *      so io callbacks never arm timeouts from a time before the sleep;
 *   4. dispatch io: each ready watcher's callback once, in epoll's order.
 *      keel_async callbacks run here too (they ride on the loop's eventfd);
 *   5. run deferred callbacks queued before this step began, in FIFO order;
 *      one queued by a deferred callback runs in the next iteration.
 *
 * fd watchers are LEVEL-triggered. A callback that reads or writes until
 * KEEL_EAGAIN gets no extra wakeups; one that stops early (its buffer is at
 * its cap, or it limits how much it reads per wakeup to be fair to other
 * connections) is called again on the next iteration, so no readiness is
 * ever lost. Back-pressure is expressed by dropping KEEL_IO_READ with
 * keel_io_modify() and adding it back later; the loop skips epoll_ctl when
 * the interest set does not change.
 */
#ifndef KEEL_NET_LOOP_H
#define KEEL_NET_LOOP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct keel_loop;
struct keel_io;
struct keel_timer;
struct keel_defer;
struct keel_async;

/* Most ready fds taken from one epoll_wait; the rest wait for the next one. */
#define KEEL_LOOP_MAX_EVENTS 256

/* ---- loop ------------------------------------------------------------------------------------------------------- */

/* New loop with its epoll fd and eventfd (both CLOEXEC). NULL when out of memory or fds.
 * Any thread may create a loop; from then on only one thread at a time may use it. */
struct keel_loop *keel_loop_new(void);

/* Runs pending deferred callbacks (so objects queued for freeing are freed), then closes the loop's fds and frees
 * it. Stop every io and timer and close every async first: their memory is the caller's and is not touched. */
void keel_loop_free(struct keel_loop *loop);

/* Runs iterations until keel_loop_stop(). Returns 0 when stopped, or a negative KEEL_E* code if epoll fails.
 * A stop requested before the call makes it return after one iteration. Not re-entrant. */
int keel_loop_run(struct keel_loop *loop);

/* Runs one iteration, polling at most timeout_ms (-1: until something happens; 0: never sleep). Returns the number
 * of callbacks it ran (io, timer, async, deferred), or a negative KEEL_E* code if epoll fails. For tests and for
 * embedding. Not re-entrant: never call it from a loop callback. */
int keel_loop_run_once(struct keel_loop *loop, int timeout_ms);

/* Asks keel_loop_run() to return after the current iteration. Safe from any thread and from callbacks; wakes the
 * loop through its eventfd. Several stops before the loop notices count as one. */
void keel_loop_stop(struct keel_loop *loop);

/* The cached CLOCK_MONOTONIC time in milliseconds, refreshed at the start of every iteration and after a poll
 * that slept. Timer deadlines are computed from it. */
uint64_t keel_loop_now_ms(const struct keel_loop *loop);

/* Refreshes the cached clock now; for a callback that has just done long work and arms a timer. */
void keel_loop_update_now(struct keel_loop *loop);

/* CLOCK_MONOTONIC in milliseconds, read from the system (not cached). Any thread. */
uint64_t keel_now_ms(void);

/* ---- fd watchers ------------------------------------------------------------------------------------------------ */

/* Interest bits (keel_io_start/keel_io_modify) and reported bits (callback). */
#define KEEL_IO_READ 0x1u
#define KEEL_IO_WRITE 0x2u
/* Reported only: the fd has an error or was hung up. READ and/or WRITE are reported with it (whichever the watcher
 * asked for), so a callback that just tries its read or write gets the error from that call (keel_sock_read returns
 * KEEL_ECLOSED or KEEL_EIO). A callback that ignores it is called again on every iteration (level-triggered). */
#define KEEL_IO_ERROR 0x4u

typedef void (*keel_io_cb)(struct keel_loop *loop, struct keel_io *io, uint32_t revents);

struct keel_io {
    int fd;
    uint32_t events; /* current interest (KEEL_IO_READ|KEEL_IO_WRITE); read-only, 0 when stopped */
    keel_io_cb cb;
    void *data;              /* the caller's */
    struct keel_loop *_loop; /* loop it was last started on; NULL until then */
};

/* Prepares a watcher for fd. Does not touch the loop; never fails. */
void keel_io_init(struct keel_io *io, int fd, keel_io_cb cb, void *data);

/* Watches io->fd for events (non-zero) on loop. Starting an active watcher again changes its interest (as
 * keel_io_modify). Returns 0, KEEL_EINVAL (events 0, bad fd, fd that epoll cannot watch such as a regular file,
 * or io active on another loop), KEEL_EEXISTS (another watcher already has this fd on this loop) or KEEL_ENOMEM;
 * on failure io is left as it was and its callback is never called. */
int keel_io_start(struct keel_loop *loop, struct keel_io *io, uint32_t events);

/* Sets the interest of a watcher that was started once: 0 stops it (as keel_io_stop), non-zero (re)registers it on
 * the loop it was last started on. Returns 0, KEEL_EINVAL (never started) or an error as keel_io_start. */
int keel_io_modify(struct keel_io *io, uint32_t events);

/* Stops watching. Idempotent. The callback is not called again, even for readiness already polled in this
 * iteration, so io's memory may be freed as soon as this returns (unless its callback is still running: then free it
 * with keel_loop_defer). Stop the watcher before closing its fd. */
void keel_io_stop(struct keel_io *io);

bool keel_io_is_active(const struct keel_io *io);

/* ---- timers ----------------------------------------------------------------------------------------------------- */

/* Timers live in a binary min-heap (an array of pointers) keyed by (deadline, start sequence); each timer stores its
 * heap index, so start, re-arm and stop are O(log n) with no search, and re-arming a pending timer (request timeouts,
 * pushed back on every read) just moves it up or down in place: no allocation, no unlink/relink. */

typedef void (*keel_timer_cb)(struct keel_loop *loop, struct keel_timer *t);

struct keel_timer {
    keel_timer_cb cb;
    void *data;
    uint64_t _deadline; /* ms, loop clock */
    uint64_t _seq;      /* start order, breaks ties between equal deadlines */
    struct keel_loop *_loop;
    uint32_t _index; /* 1-based heap slot; 0 when not pending */
};

/* Prepares a timer (not pending). Never fails. */
void keel_timer_init(struct keel_timer *t);

/* Fires cb once, on the first iteration whose clock is at least keel_loop_now_ms(loop) + after_ms. A pending timer
 * is re-armed in place (its old deadline is forgotten) and this cannot fail; otherwise returns 0 or KEEL_ENOMEM
 * (heap growth), and on failure the timer stays stopped. The timer is not pending while its callback runs, so the
 * callback may start it again. */
int keel_timer_start(struct keel_loop *loop, struct keel_timer *t, uint64_t after_ms, keel_timer_cb cb, void *data);

/* Cancels a pending timer. Idempotent. Its memory may be freed as soon as this returns. */
void keel_timer_stop(struct keel_timer *t);

bool keel_timer_is_active(const struct keel_timer *t);

/* ---- deferred work ---------------------------------------------------------------------------------------------- */

typedef void (*keel_defer_cb)(struct keel_loop *loop, struct keel_defer *d);

struct keel_defer {
    keel_defer_cb cb;
    void *data;
    struct keel_defer *_next;
    bool _pending;
};

/* Runs cb(loop, d) at the end of the current iteration (step 5), after every callback that may still be on the
 * stack has returned: the place to free an object from inside its own callback (Envoy's deferred delete). Deferring
 * a d that is already pending only replaces its cb and data; it still runs once. d must stay valid until cb runs
 * (cb may free it). Never fails, never allocates. */
void keel_loop_defer(struct keel_loop *loop, struct keel_defer *d, keel_defer_cb cb, void *data);

/* ---- cross-thread wakeups --------------------------------------------------------------------------------------- */

typedef void (*keel_async_cb)(struct keel_loop *loop, struct keel_async *a);

struct keel_async {
    keel_async_cb cb;
    void *data;
    struct keel_loop *_loop;
    struct keel_async *_prev, *_next;
    atomic_uint _pending;
};

/* Registers a on loop (loop thread, or before the loop's thread starts). Never fails. */
void keel_async_init(struct keel_loop *loop, struct keel_async *a, keel_async_cb cb, void *data);

/* Makes a's callback run on its loop's thread, in step 4 of a coming iteration. Safe from any thread, including the
 * loop's own; never blocks. Sends are coalesced: several sends before the callback runs give one call. Everything
 * the sender wrote before sending is visible to the callback. */
void keel_async_send(struct keel_async *a);

/* Unregisters a (loop thread). After it returns the callback never runs and a's memory may be freed, provided no
 * other thread can still call keel_async_send(a). Idempotent. */
void keel_async_close(struct keel_async *a);

#endif
