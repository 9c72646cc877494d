/*
 * loop.c - the per-thread event loop on epoll (see loop.h for the API and the
 * iteration order).
 *
 * Design: one epoll fd, level-triggered, with each watcher's address in
 * epoll_event.data.ptr. One eventfd carries every cross-thread signal (stop
 * and keel_async); it is watched by an internal keel_io like any other fd.
 * Timers are a binary min-heap of pointers ordered by (deadline, sequence);
 * the sequence number makes equal deadlines fire in start order and lets the
 * timer step skip timers (re)started during that same step. Deferred work is
 * an intrusive FIFO that the last step of the iteration swaps out and runs.
 *
 * Stale events: one epoll_wait returns a batch; a callback early in the batch
 * may stop (and free) a watcher that appears later in it. keel_io_stop()
 * therefore clears that watcher's remaining entries in the batch (a scan of
 * at most KEEL_LOOP_MAX_EVENTS entries, only while dispatching), so the loop
 * never touches a stopped watcher.
 */
#include "net/loop.h"

#include "base/err.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define HEAP_MIN_CAP 64

struct keel_loop {
    int epfd;
    int wakefd; /* eventfd: keel_loop_stop and keel_async_send */
    struct keel_io wake_io;
    atomic_bool stop;
    uint64_t now_ms;

    struct keel_timer **heap; /* heap[0] is the earliest */
    uint32_t heap_len;
    uint32_t heap_cap;
    uint64_t timer_seq;

    struct keel_defer *defer_head;
    struct keel_defer **defer_tail;

    struct keel_async *asyncs;
    struct keel_async *async_next; /* iteration cursor, kept valid by keel_async_close */

    int ncallbacks; /* callbacks run in the current iteration */
    bool dispatching;
    int ev_pos; /* entry being dispatched */
    int ev_count;
    struct epoll_event events[KEEL_LOOP_MAX_EVENTS];
};

/* ---- clock ------------------------------------------------------------------------------------------------------ */

uint64_t keel_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t keel_loop_now_ms(const struct keel_loop *loop)
{
    return loop->now_ms;
}

void keel_loop_update_now(struct keel_loop *loop)
{
    loop->now_ms = keel_now_ms();
}

/* ---- errors ----------------------------------------------------------------------------------------------------- */

static int map_ctl_errno(int e)
{
    switch (e) {
    case EEXIST:
        return KEEL_EEXISTS;
    case ENOMEM:
    case ENOSPC: /* max_user_watches reached */
        return KEEL_ENOMEM;
    case EBADF:
    case EPERM: /* regular files and directories cannot be polled */
    case EINVAL:
    case ENOENT:
        return KEEL_EINVAL;
    default:
        return KEEL_EIO;
    }
}

/* ---- wakeups ---------------------------------------------------------------------------------------------------- */

static void wake_signal(struct keel_loop *loop)
{
    uint64_t one = 1;
    ssize_t n;
    do {
        n = write(loop->wakefd, &one, sizeof(one));
    } while (n < 0 && errno == EINTR);
    /* EAGAIN means the counter is already non-zero: a wakeup is pending anyway. */
}

static void run_asyncs(struct keel_loop *loop)
{
    struct keel_async *a = loop->asyncs;
    while (a) {
        loop->async_next = a->_next;
        if (atomic_exchange_explicit(&a->_pending, 0, memory_order_acq_rel)) {
            loop->ncallbacks++;
            a->cb(loop, a);
        }
        a = loop->async_next;
    }
    loop->async_next = NULL;
}

static void wake_cb(struct keel_loop *loop, struct keel_io *io, uint32_t revents)
{
    (void)revents;
    uint64_t v;
    ssize_t n;
    /* Reset the counter before looking at the pending flags: a send racing with the scan writes again, so its
     * callback runs at the latest in the next iteration. */
    do {
        n = read(io->fd, &v, sizeof(v));
    } while (n < 0 && errno == EINTR);
    run_asyncs(loop);
}

void keel_loop_stop(struct keel_loop *loop)
{
    atomic_store_explicit(&loop->stop, true, memory_order_release);
    wake_signal(loop);
}

void keel_async_init(struct keel_loop *loop, struct keel_async *a, keel_async_cb cb, void *data)
{
    a->cb = cb;
    a->data = data;
    a->_loop = loop;
    atomic_init(&a->_pending, 0);
    a->_prev = NULL;
    a->_next = loop->asyncs;
    if (loop->asyncs)
        loop->asyncs->_prev = a;
    loop->asyncs = a;
}

void keel_async_send(struct keel_async *a)
{
    if (atomic_exchange_explicit(&a->_pending, 1, memory_order_acq_rel) == 0)
        wake_signal(a->_loop);
}

void keel_async_close(struct keel_async *a)
{
    struct keel_loop *loop = a->_loop;
    if (!loop)
        return;
    if (loop->async_next == a)
        loop->async_next = a->_next;
    if (a->_prev)
        a->_prev->_next = a->_next;
    else
        loop->asyncs = a->_next;
    if (a->_next)
        a->_next->_prev = a->_prev;
    a->_prev = a->_next = NULL;
    a->_loop = NULL;
}

/* ---- loop ------------------------------------------------------------------------------------------------------- */

struct keel_loop *keel_loop_new(void)
{
    struct keel_loop *loop = calloc(1, sizeof(*loop));
    if (!loop)
        return NULL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    loop->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    atomic_init(&loop->stop, false);
    loop->defer_tail = &loop->defer_head;
    loop->now_ms = keel_now_ms();
    if (loop->epfd < 0 || loop->wakefd < 0)
        goto fail;
    keel_io_init(&loop->wake_io, loop->wakefd, wake_cb, NULL);
    if (keel_io_start(loop, &loop->wake_io, KEEL_IO_READ) != 0)
        goto fail;
    return loop;
fail:
    if (loop->epfd >= 0)
        close(loop->epfd);
    if (loop->wakefd >= 0)
        close(loop->wakefd);
    free(loop);
    return NULL;
}

static int run_deferred(struct keel_loop *loop);

void keel_loop_free(struct keel_loop *loop)
{
    if (!loop)
        return;
    /* A deferred callback may defer more; bounded so a callback that re-defers itself forever cannot hang us. */
    for (int i = 0; i < 64 && loop->defer_head; i++)
        run_deferred(loop);
    keel_io_stop(&loop->wake_io);
    close(loop->wakefd);
    close(loop->epfd);
    free(loop->heap);
    free(loop);
}

/* ---- fd watchers ------------------------------------------------------------------------------------------------ */

void keel_io_init(struct keel_io *io, int fd, keel_io_cb cb, void *data)
{
    io->fd = fd;
    io->events = 0;
    io->cb = cb;
    io->data = data;
    io->_loop = NULL;
}

bool keel_io_is_active(const struct keel_io *io)
{
    return io->events != 0;
}

static uint32_t to_epoll(uint32_t events)
{
    uint32_t e = 0;
    if (events & KEEL_IO_READ)
        e |= EPOLLIN;
    if (events & KEEL_IO_WRITE)
        e |= EPOLLOUT;
    return e;
}

/* Forget io's entries in the batch being dispatched (see the stale-event note at the top). */
static void invalidate_pending(struct keel_loop *loop, const struct keel_io *io)
{
    if (!loop->dispatching)
        return;
    for (int i = loop->ev_pos + 1; i < loop->ev_count; i++) {
        if (loop->events[i].data.ptr == io)
            loop->events[i].data.ptr = NULL;
    }
}

static int io_set(struct keel_loop *loop, struct keel_io *io, uint32_t events)
{
    events &= KEEL_IO_READ | KEEL_IO_WRITE;
    if (events == io->events)
        return 0; /* level-triggered: nothing to tell the kernel */
    if (events == 0) {
        keel_io_stop(io);
        return 0;
    }
    struct epoll_event ev = {.events = to_epoll(events), .data.ptr = io};
    int op = io->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(loop->epfd, op, io->fd, &ev) != 0)
        return map_ctl_errno(errno);
    io->events = events;
    io->_loop = loop;
    return 0;
}

int keel_io_start(struct keel_loop *loop, struct keel_io *io, uint32_t events)
{
    if ((events & (KEEL_IO_READ | KEEL_IO_WRITE)) == 0 || io->fd < 0)
        return KEEL_EINVAL;
    if (io->events && io->_loop != loop)
        return KEEL_EINVAL;
    return io_set(loop, io, events);
}

int keel_io_modify(struct keel_io *io, uint32_t events)
{
    if (!io->_loop)
        return KEEL_EINVAL;
    return io_set(io->_loop, io, events);
}

void keel_io_stop(struct keel_io *io)
{
    if (!io->events)
        return;
    struct keel_loop *loop = io->_loop;
    /* Failure means the fd was already closed (and so left the epoll set) or never there: either way it is gone. */
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    io->events = 0;
    invalidate_pending(loop, io);
}

static void dispatch_io(struct keel_loop *loop)
{
    loop->dispatching = true;
    for (loop->ev_pos = 0; loop->ev_pos < loop->ev_count; loop->ev_pos++) {
        struct epoll_event *ev = &loop->events[loop->ev_pos];
        struct keel_io *io = ev->data.ptr;
        if (!io)
            continue; /* stopped by an earlier callback of this batch */
        uint32_t r = 0;
        if (ev->events & EPOLLIN)
            r |= KEEL_IO_READ;
        if (ev->events & EPOLLOUT)
            r |= KEEL_IO_WRITE;
        if (ev->events & (EPOLLERR | EPOLLHUP))
            r |= KEEL_IO_ERROR | io->events;
        r &= io->events | KEEL_IO_ERROR; /* interest may have shrunk earlier in this batch */
        if (!(r & (KEEL_IO_READ | KEEL_IO_WRITE)))
            continue;
        if (io != &loop->wake_io)
            loop->ncallbacks++;
        io->cb(loop, io, r);
    }
    loop->dispatching = false;
    loop->ev_count = 0;
}

/* ---- timers ----------------------------------------------------------------------------------------------------- */

void keel_timer_init(struct keel_timer *t)
{
    memset(t, 0, sizeof(*t));
}

bool keel_timer_is_active(const struct keel_timer *t)
{
    return t->_index != 0;
}

static bool timer_before(const struct keel_timer *a, const struct keel_timer *b)
{
    if (a->_deadline != b->_deadline)
        return a->_deadline < b->_deadline;
    return a->_seq < b->_seq;
}

static void heap_place(struct keel_loop *loop, uint32_t i, struct keel_timer *t)
{
    loop->heap[i] = t;
    t->_index = i + 1;
}

static void sift_up(struct keel_loop *loop, uint32_t i)
{
    struct keel_timer *t = loop->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!timer_before(t, loop->heap[parent]))
            break;
        heap_place(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_place(loop, i, t);
}

static void sift_down(struct keel_loop *loop, uint32_t i)
{
    struct keel_timer *t = loop->heap[i];
    uint32_t n = loop->heap_len;
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= n)
            break;
        if (child + 1 < n && timer_before(loop->heap[child + 1], loop->heap[child]))
            child++;
        if (!timer_before(loop->heap[child], t))
            break;
        heap_place(loop, i, loop->heap[child]);
        i = child;
    }
    heap_place(loop, i, t);
}

/* Restores the heap order around slot i after its key changed in either direction. */
static void heap_fix(struct keel_loop *loop, uint32_t i)
{
    if (i > 0 && timer_before(loop->heap[i], loop->heap[(i - 1) / 2]))
        sift_up(loop, i);
    else
        sift_down(loop, i);
}

static void heap_remove(struct keel_loop *loop, struct keel_timer *t)
{
    uint32_t i = t->_index - 1;
    uint32_t last = --loop->heap_len;
    t->_index = 0;
    if (i == last)
        return;
    heap_place(loop, i, loop->heap[last]);
    heap_fix(loop, i);
}

int keel_timer_start(struct keel_loop *loop, struct keel_timer *t, uint64_t after_ms, keel_timer_cb cb, void *data)
{
    if (t->_index && t->_loop != loop)
        keel_timer_stop(t);
    uint64_t deadline = loop->now_ms + after_ms;
    if (deadline < loop->now_ms)
        deadline = UINT64_MAX; /* "never", without wrapping into the past */
    if (!t->_index) {
        if (loop->heap_len == loop->heap_cap) {
            if (loop->heap_cap > UINT32_MAX / 2 - 1)
                return KEEL_ENOMEM;
            uint32_t cap = loop->heap_cap ? loop->heap_cap * 2 : HEAP_MIN_CAP;
            struct keel_timer **heap = realloc(loop->heap, (size_t)cap * sizeof(*heap));
            if (!heap)
                return KEEL_ENOMEM;
            loop->heap = heap;
            loop->heap_cap = cap;
        }
    }
    t->cb = cb;
    t->data = data;
    t->_loop = loop;
    t->_deadline = deadline;
    t->_seq = loop->timer_seq++;
    if (t->_index) {
        heap_fix(loop, t->_index - 1);
    } else {
        loop->heap[loop->heap_len] = t;
        t->_index = ++loop->heap_len;
        sift_up(loop, loop->heap_len - 1);
    }
    return 0;
}

void keel_timer_stop(struct keel_timer *t)
{
    if (t->_index)
        heap_remove(t->_loop, t);
}

static void run_timers(struct keel_loop *loop)
{
    uint64_t seq_limit = loop->timer_seq; /* timers (re)started from here on wait for the next iteration */
    while (loop->heap_len) {
        struct keel_timer *t = loop->heap[0];
        if (t->_deadline > loop->now_ms || t->_seq >= seq_limit)
            break; /* see loop.c header: a new timer at the top means every remaining due timer is new too */
        heap_remove(loop, t);
        loop->ncallbacks++;
        t->cb(loop, t);
    }
}

/* Milliseconds until the earliest timer: -1 when there is none. */
static int timers_timeout(const struct keel_loop *loop)
{
    if (!loop->heap_len)
        return -1;
    uint64_t deadline = loop->heap[0]->_deadline;
    if (deadline <= loop->now_ms)
        return 0;
    uint64_t wait = deadline - loop->now_ms;
    return wait > INT_MAX ? INT_MAX : (int)wait;
}

/* ---- deferred work ---------------------------------------------------------------------------------------------- */

void keel_loop_defer(struct keel_loop *loop, struct keel_defer *d, keel_defer_cb cb, void *data)
{
    d->cb = cb;
    d->data = data;
    if (d->_pending)
        return;
    d->_pending = true;
    d->_next = NULL;
    *loop->defer_tail = d;
    loop->defer_tail = &d->_next;
}

static int run_deferred(struct keel_loop *loop)
{
    struct keel_defer *d = loop->defer_head;
    loop->defer_head = NULL;
    loop->defer_tail = &loop->defer_head;
    int n = 0;
    while (d) {
        struct keel_defer *next = d->_next; /* cb may free d */
        d->_pending = false;
        n++;
        d->cb(loop, d);
        d = next;
    }
    return n;
}

/* ---- iteration -------------------------------------------------------------------------------------------------- */

static int poll_io(struct keel_loop *loop, int timeout_ms)
{
    int n;
    do {
        n = epoll_wait(loop->epfd, loop->events, KEEL_LOOP_MAX_EVENTS, timeout_ms);
    } while (n < 0 && errno == EINTR && timeout_ms == 0);
    if (n < 0) {
        if (errno == EINTR)
            n = 0; /* a signal cut the sleep short: a normal, empty iteration */
        else
            return KEEL_EIO;
    }
    loop->ev_count = n;
    if (timeout_ms != 0)
        loop->now_ms = keel_now_ms();
    return 0;
}

int keel_loop_run_once(struct keel_loop *loop, int timeout_ms)
{
    loop->ncallbacks = 0;
    loop->now_ms = keel_now_ms();
    run_timers(loop);

    int timeout = timers_timeout(loop);
    if (timeout_ms >= 0 && (timeout < 0 || timeout_ms < timeout))
        timeout = timeout_ms;
    if (loop->defer_head || atomic_load_explicit(&loop->stop, memory_order_acquire))
        timeout = 0;
    int rc = poll_io(loop, timeout);
    if (rc != 0)
        return rc;
    dispatch_io(loop);
    loop->ncallbacks += run_deferred(loop);
    return loop->ncallbacks;
}

int keel_loop_run(struct keel_loop *loop)
{
    for (;;) {
        int rc = keel_loop_run_once(loop, -1);
        if (rc < 0)
            return rc;
        if (atomic_exchange_explicit(&loop->stop, false, memory_order_acq_rel))
            return 0;
    }
}
