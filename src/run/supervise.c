/*
 * supervise.c - `keel run`: the supervisor loop (see supervise.h).
 *
 * Design: one thread, one poll() over a signalfd and an inotify descriptor, with a 250 ms tick for
 * restarts, the reload debounce and the once-a-second status poll. Children are plain fork/exec: a
 * proxy is this binary (`keel proxy router|sidecar ...`), an app is `/bin/sh -c COMMAND` with `keel`
 * on PATH meaning this binary. Each child's stdout and stderr go to STATE/logs/<name>.<role>.log, so
 * the terminal holds only keel run's own output. The admin API is read with a small blocking HTTP/1.0
 * client with short timeouts (everything is on loopback and the mesh is small).
 */
#include "run/supervise.h"

#include "base/arena.h"
#include "base/buf.h"
#include "base/diag.h"
#include "base/str.h"
#include "config/load.h"
#include "config/store.h"
#include "run/plan.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEBOUNCE_S 0.3
#define BACKOFF_MIN_S 0.5
#define BACKOFF_MAX_S 30.0
#define HEALTHY_RUN_S 10.0
#define STOP_GRACE_S 10.0

struct child {
    struct keel_arena *a;
    struct keel_run_proc p; /* strings in a */
    char log[4200];
    pid_t pid; /* 0: not running */
    bool removed;
    bool ever_ready;
    unsigned restarts;
    double backoff, restart_at, started_at;
    int last_status;
    /* observed */
    bool ready;
    long long rq, x5, reloads, failures, version;
    double rps, polled_at;
    char shown[1024]; /* the last status line printed (one line per change mode) */
};

struct sup {
    const struct keel_run_options *o;
    char state[3900], cfg[4096], logs[4096];
    bool own_state;
    struct keel_run_ports ports;
    struct keel_run_plan *plan;
    struct keel_loadset ls;
    struct keel_store *store;
    bool have_ls;
    struct child **kids;
    size_t nkids, capkids;
    int sfd, ino;
    double reload_at; /* 0: none pending */
    double next_poll;
    unsigned table_lines;
    bool all_ready_said;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- output ---------------------------------------------------------------------------------------------------- */

static void erase_table(struct sup *s)
{
    if (s->o->table && s->table_lines) {
        printf("\033[%uA\033[J", s->table_lines);
        s->table_lines = 0;
    }
}

static void say(struct sup *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct sup *s, const char *fmt, ...)
{
    erase_table(s);
    va_list ap;
    va_start(ap, fmt);
    fputs("keel run: ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    fflush(stdout);
}

static void print_diags(const struct keel_diags *d, FILE *fp)
{
    for (size_t i = 0; i < keel_diags_count(d); i++) {
        struct keel_buf b;
        keel_buf_init(&b, 1 << 16);
        keel_diag_format(keel_diags_at(d, i), false, &b);
        fprintf(fp, "%s\n", keel_buf_cstr(&b));
        keel_buf_free(&b);
    }
    fflush(fp);
}

static const char *state_word(const struct child *c, char *buf, size_t n)
{
    if (c->removed)
        return "stopping";
    if (!c->pid) {
        int st = c->last_status;
        if (WIFSIGNALED(st))
            snprintf(buf, n, "exited (signal %d), restart in %.1fs", WTERMSIG(st), c->restart_at - now_s());
        else
            snprintf(buf, n, "exited (status %d), restart in %.1fs", WEXITSTATUS(st), c->restart_at - now_s());
        return buf;
    }
    return c->ready ? "ready" : "starting";
}

static void table_line(const struct child *c, char *out, size_t n, bool with_rate)
{
    char st[128], ver[64], rate[32], x5[32], pid[16];
    const char *w = state_word(c, st, sizeof(st));
    bool proxy = c->p.role != KEEL_RUN_APP;
    if (proxy && c->version)
        snprintf(ver, sizeof(ver), "v%lld%s", c->version, c->failures ? " (refused one)" : "");
    else
        snprintf(ver, sizeof(ver), "-");
    if (proxy && with_rate)
        snprintf(rate, sizeof(rate), "%.1f", c->rps);
    else
        snprintf(rate, sizeof(rate), "-");
    if (proxy)
        snprintf(x5, sizeof(x5), "%lld", c->x5);
    else
        snprintf(x5, sizeof(x5), "-");
    if (c->pid)
        snprintf(pid, sizeof(pid), "%d", (int)c->pid);
    else
        snprintf(pid, sizeof(pid), "-");
    snprintf(out, n, "%-18.18s %-7s %-7s %-9s %-8u %-7s %-5s %-8s %s", c->p.name, keel_run_role_name(c->p.role), pid,
             c->pid ? w : "exited", c->restarts, rate, x5, ver, c->pid ? c->p.ports : w);
}

static void show(struct sup *s)
{
    if (s->o->table) {
        erase_table(s);
        printf("%-18s %-7s %-7s %-9s %-8s %-7s %-5s %-8s %s\n", "NAME", "ROLE", "PID", "READY", "RESTARTS", "REQ/S",
               "5XX", "CONFIG", "PORTS");
        unsigned lines = 1;
        for (size_t i = 0; i < s->nkids; i++) {
            char line[1024];
            table_line(s->kids[i], line, sizeof(line), true);
            printf("%s\n", line);
            lines++;
        }
        s->table_lines = lines;
        fflush(stdout);
        return;
    }
    for (size_t i = 0; i < s->nkids; i++) {
        struct child *c = s->kids[i];
        char line[1024];
        table_line(c, line, sizeof(line), false);
        if (!c->pid) /* the countdown changes every tick: one line per exit is enough */
            snprintf(line, sizeof(line), "%s %s exited (restart #%u pending)", c->p.name, keel_run_role_name(c->p.role),
                     c->restarts + 1);
        if (strcmp(line, c->shown) != 0) {
            snprintf(c->shown, sizeof(c->shown), "%s", line);
            printf("status: %s\n", line);
        }
    }
    fflush(stdout);
}

/* ---- admin API client ------------------------------------------------------------------------------------------- */

/* GET http://127.0.0.1:port/path; returns the status (0 on failure) and the body in out. */
static int http_get(unsigned port, const char *path, struct keel_buf *out)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    if (rc != 0 && errno != EINPROGRESS) {
        close(fd);
        return 0;
    }
    struct pollfd pf = {.fd = fd, .events = POLLOUT};
    int err = 0;
    socklen_t el = sizeof(err);
    if (poll(&pf, 1, 300) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err) {
        close(fd);
        return 0;
    }
    if (!path) { /* a connect check */
        close(fd);
        return 200;
    }
    char req[512];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return 0;
    }
    double deadline = now_s() + 1.0;
    char buf[16384];
    for (;;) {
        double left = deadline - now_s();
        pf.events = POLLIN;
        if (left <= 0 || poll(&pf, 1, (int)(left * 1000) + 1) != 1)
            break;
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r <= 0)
            break;
        if (keel_buf_append(out, buf, (size_t)r) != 0)
            break;
    }
    close(fd);
    keel_buf_putc(out, '\0');
    const char *t = out->data;
    if (!t || strncmp(t, "HTTP/1.", 7) != 0)
        return 0;
    return atoi(t + 9);
}

static long long metric(const char *text, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, name, nl) == 0 && p[nl] == ' ')
            return atoll(p + nl + 1);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return 0;
}

static void poll_child(struct child *c, double t)
{
    if (!c->pid || c->removed)
        return;
    struct keel_buf b;
    if (c->p.role == KEEL_RUN_APP) {
        c->ready = c->p.n_app_ports == 0 || http_get(c->p.app_ports[0].assigned, NULL, NULL) == 200;
        return;
    }
    keel_buf_init(&b, 1 << 16);
    c->ready = http_get(c->p.admin, "/ready", &b) == 200;
    keel_buf_free(&b);
    keel_buf_init(&b, 8 << 20);
    if (http_get(c->p.admin, "/stats/prometheus", &b) == 200) {
        long long rq = metric(b.data, "envoy_http_downstream_rq_total");
        if (c->polled_at > 0 && t > c->polled_at && rq >= c->rq)
            c->rps = (double)(rq - c->rq) / (t - c->polled_at);
        c->rq = rq;
        c->polled_at = t;
        c->x5 = metric(b.data, "envoy_http_downstream_rq_5xx");
        long long reloads = metric(b.data, "keel_config_reloads_total");
        c->failures = metric(b.data, "keel_config_reload_failures_total");
        if (reloads != c->reloads || !c->version) {
            c->reloads = reloads;
            struct keel_buf d;
            keel_buf_init(&d, 64 << 20);
            if (http_get(c->p.admin, "/config_dump", &d) == 200) {
                const char *snap = strstr(d.data, "\"snapshot\": {");
                const char *v = snap ? strstr(snap, "\"version\":") : NULL;
                if (v)
                    c->version = atoll(v + 10); /* atoll skips the blanks */
            }
            keel_buf_free(&d);
        }
    }
    keel_buf_free(&b);
}

/* ---- children ---------------------------------------------------------------------------------------------------- */

static char *adup(struct keel_arena *a, const char *s)
{
    return s ? keel_arena_strdup(a, s) : NULL;
}

/* The proxy environment of p into c (c's arena): the one its next start gets. */
static void copy_env(struct child *c, const struct keel_run_proc *p)
{
    struct keel_run_env *env = keel_arena_xalloc(c->a, (p->n_env + 1) * sizeof(*env));
    for (size_t i = 0; i < p->n_env; i++)
        env[i] = (struct keel_run_env){adup(c->a, p->env[i].name), adup(c->a, p->env[i].value)};
    c->p.env = env;
    c->p.n_env = p->n_env;
}

static bool same_env(const struct keel_run_proc *x, const struct keel_run_proc *y)
{
    if (x->n_env != y->n_env)
        return false;
    for (size_t i = 0; i < x->n_env; i++)
        if (strcmp(x->env[i].name, y->env[i].name) != 0 || strcmp(x->env[i].value, y->env[i].value) != 0)
            return false;
    return true;
}

static struct child *add_child(struct sup *s, const struct keel_run_proc *p)
{
    struct child *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    c->a = keel_arena_new(4096);
    c->p = *p;
    c->p.name = adup(c->a, p->name);
    c->p.ns = adup(c->a, p->ns);
    c->p.labels = adup(c->a, p->labels);
    c->p.workload = adup(c->a, p->workload);
    c->p.command = adup(c->a, p->command);
    c->p.service_name = adup(c->a, p->service_name);
    c->p.version = adup(c->a, p->version);
    c->p.ports = adup(c->a, p->ports);
    c->p.key = adup(c->a, p->key);
    copy_env(c, p);
    for (size_t i = 0; i < p->n_app_ports; i++)
        c->p.app_ports[i].name = adup(c->a, p->app_ports[i].name);
    snprintf(c->log, sizeof(c->log), "%s/%s.%s.log", s->logs, p->name, keel_run_role_name(p->role));
    c->backoff = BACKOFF_MIN_S;
    if (s->nkids == s->capkids) {
        s->capkids = s->capkids ? 2 * s->capkids : 16;
        s->kids = realloc(s->kids, s->capkids * sizeof(*s->kids));
        if (!s->kids)
            abort();
    }
    s->kids[s->nkids++] = c;
    return c;
}

static void free_child(struct child *c)
{
    keel_arena_free(c->a);
    free(c);
}

static void env_port_name(char *out, size_t n, const char *name)
{
    size_t j = snprintf(out, n, "PORT_");
    for (const char *p = name; *p && j + 1 < n; p++)
        out[j++] = isalnum((unsigned char)*p) ? (char)toupper((unsigned char)*p) : '_';
    out[j] = '\0';
}

/* In the child, after fork: environment, descriptors, then exec. Never returns. */
static void exec_child(struct sup *s, const struct child *c, pid_t parent)
{
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1); /* keel run is already gone */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int fd = open(c->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || nul < 0)
        _exit(126);
    dup2(nul, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    const struct keel_run_proc *p = &c->p;
    char admin[64], out[64], conc[16];
    snprintf(admin, sizeof(admin), "127.0.0.1:%u", p->admin);
    snprintf(out, sizeof(out), "127.0.0.1:%u", p->outbound);
    snprintf(conc, sizeof(conc), "%u", s->o->concurrency);
    /* a proxy's ProxyConfig environmentVariables: its environment from exec on, as the istio-proxy container's */
    for (size_t i = 0; p->role != KEEL_RUN_APP && i < p->n_env; i++)
        setenv(p->env[i].name, p->env[i].value, 1);
    if (p->role == KEEL_RUN_ROUTER) {
        char *argv[] = {(char *)s->o->self,
                        "proxy",
                        "router",
                        "--config",
                        s->cfg,
                        "--labels",
                        (char *)p->labels,
                        "--namespace",
                        (char *)p->ns,
                        "--admin",
                        admin,
                        "--concurrency",
                        conc,
                        "--drain",
                        "1",
                        NULL};
        execv(s->o->self, argv);
    } else if (p->role == KEEL_RUN_SIDECAR) {
        char in[64];
        snprintf(in, sizeof(in), "%s:%u", p->inbound_ip[0] ? p->inbound_ip : "127.0.0.1", p->inbound);
        char *argv[] = {(char *)s->o->self,
                        "proxy",
                        "sidecar",
                        "--config",
                        s->cfg,
                        "--workload",
                        (char *)p->workload,
                        "--admin",
                        admin,
                        "--outbound",
                        out,
                        "--concurrency",
                        conc,
                        "--drain",
                        "1",
                        p->inbound ? "--inbound" : NULL, /* KEEL_RUN_INBOUND_VIA_SIDECAR (plan.h) */
                        in,
                        NULL};
        execv(s->o->self, argv);
    } else {
        char v[64], dir[4096];
        snprintf(dir, sizeof(dir), "%s", s->o->self);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        const char *path = getenv("PATH");
        char *np = malloc(strlen(dir) + (path ? strlen(path) : 0) + 2);
        sprintf(np, "%s%s%s", dir, path ? ":" : "", path ? path : "");
        setenv("PATH", np, 1);
        setenv("KEEL", s->o->self, 1);
        for (size_t i = 0; i < p->n_app_ports; i++) {
            char name[128];
            snprintf(v, sizeof(v), "%u", p->app_ports[i].assigned);
            env_port_name(name, sizeof(name), p->app_ports[i].name);
            setenv(name, v, 1);
            if (i == 0)
                setenv("PORT", v, 1);
        }
        setenv("SERVICE_NAME", p->service_name, 1);
        if (p->version)
            setenv("SERVICE_VERSION", p->version, 1);
        else
            unsetenv("SERVICE_VERSION");
        setenv("POD_NAMESPACE", p->ns, 1);
        if (p->has_sidecar) {
            snprintf(v, sizeof(v), "http://127.0.0.1:%u", p->outbound_of_sidecar);
            setenv("http_proxy", v, 1);
        } else {
            unsetenv("http_proxy");
        }
        unsetenv("HTTP_PROXY");
        /* a plain command is exec'd by the shell, so the app is the child keel run signals */
        bool plain = strpbrk(p->command, ";&|`\n") == NULL;
        char *cmd = malloc(strlen(p->command) + 8);
        sprintf(cmd, "%s%s", plain ? "exec " : "", p->command);
        char *argv[] = {"/bin/sh", "-c", cmd, NULL};
        execv("/bin/sh", argv);
    }
    _exit(127);
}

static void spawn(struct sup *s, struct child *c)
{
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        say(s, "%s %s: cannot start: %s (retrying)", c->p.name, keel_run_role_name(c->p.role), strerror(errno));
        c->restart_at = now_s() + c->backoff;
        return;
    }
    if (pid == 0)
        exec_child(s, c, parent);
    setpgid(pid, pid); /* also here: no window where a signal to the group misses it */
    c->pid = pid;
    c->ready = false;
    c->started_at = now_s();
    c->polled_at = 0;
    c->rps = 0;
    c->version = 0;
}

static void signal_group(struct child *c, int sig)
{
    if (c->pid > 0)
        kill(-c->pid, sig);
}

static struct child *child_by_pid(struct sup *s, pid_t pid)
{
    for (size_t i = 0; i < s->nkids; i++)
        if (s->kids[i]->pid == pid)
            return s->kids[i];
    return NULL;
}

static void drop_child(struct sup *s, struct child *c)
{
    for (size_t i = 0; i < s->nkids; i++)
        if (s->kids[i] == c) {
            memmove(&s->kids[i], &s->kids[i + 1], (s->nkids - i - 1) * sizeof(*s->kids));
            s->nkids--;
            break;
        }
    free_child(c);
}

static void reap(struct sup *s, bool stopping)
{
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        struct child *c = child_by_pid(s, pid);
        if (!c)
            continue;
        kill(-pid, SIGKILL); /* whatever the child left in its group goes with it */
        c->pid = 0;
        c->ready = false;
        c->last_status = st;
        if (stopping)
            continue;
        if (c->removed) {
            drop_child(s, c);
            continue;
        }
        double t = now_s();
        if (t - c->started_at >= HEALTHY_RUN_S)
            c->backoff = BACKOFF_MIN_S;
        c->restart_at = t + c->backoff;
        char how[64];
        if (WIFSIGNALED(st))
            snprintf(how, sizeof(how), "killed by signal %d", WTERMSIG(st));
        else
            snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(st));
        say(s, "%s %s %s after %.1fs; restart #%u in %.1fs (log: %s)", c->p.name, keel_run_role_name(c->p.role), how,
            t - c->started_at, c->restarts + 1, c->backoff, c->log);
        c->backoff = c->backoff * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : c->backoff * 2;
    }
}

/* ---- state folder, plan and reload ------------------------------------------------------------------------------ */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void write_ports_json(struct sup *s)
{
    struct keel_buf b;
    keel_buf_init(&b, 16 << 20);
    keel_buf_puts(&b, "{\"dir\": ");
    keel_buf_json_str(&b, s->o->dir);
    keel_buf_puts(&b, ", \"state_dir\": ");
    keel_buf_json_str(&b, s->state);
    keel_buf_puts(&b, ", \"config_dir\": ");
    keel_buf_json_str(&b, s->cfg);
    keel_buf_puts(&b, ", \"logs_dir\": ");
    keel_buf_json_str(&b, s->logs);
    keel_buf_puts(&b, ",\n \"processes\": [");
    const struct keel_run_plan *pl = s->plan;
    for (size_t i = 0; i < pl->n_procs; i++) {
        const struct keel_run_proc *p = &pl->procs[i];
        keel_buf_puts(&b, i ? ",\n  {\"name\": " : "\n  {\"name\": ");
        keel_buf_json_str(&b, p->name);
        keel_buf_printf(&b, ", \"role\": \"%s\", \"namespace\": ", keel_run_role_name(p->role));
        keel_buf_json_str(&b, p->ns);
        if (p->admin)
            keel_buf_printf(&b, ", \"admin\": %u", p->admin);
        if (p->outbound)
            keel_buf_printf(&b, ", \"outbound\": %u", p->outbound);
        if (p->inbound)
            keel_buf_printf(&b, ", \"inbound\": %u", p->inbound);
        keel_buf_puts(&b, ", \"app_ports\": {");
        for (size_t k = 0; k < p->n_app_ports; k++) {
            keel_buf_puts(&b, k ? ", " : "");
            keel_buf_json_str(&b, p->app_ports[k].name);
            keel_buf_printf(&b, ": {\"yaml\": %u, \"port\": %u}", p->app_ports[k].original, p->app_ports[k].assigned);
        }
        keel_buf_printf(&b, "}, \"log\": \"%s/%s.%s.log\"}", s->logs, p->name, keel_run_role_name(p->role));
    }
    keel_buf_puts(&b, "],\n \"ports\": [");
    for (size_t i = 0; i < pl->n_uses; i++) {
        keel_buf_printf(&b, "%s{\"port\": %u, \"from_base\": %s, \"who\": ", i ? ",\n  " : "\n  ", pl->uses[i].port,
                        pl->uses[i].from_base ? "true" : "false");
        keel_buf_json_str(&b, pl->uses[i].who);
        keel_buf_puts(&b, "}");
    }
    keel_buf_puts(&b, "]}\n");
    char path[4200], tmp[4300];
    snprintf(path, sizeof(path), "%s/ports.json", s->state);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f) {
        fwrite(b.data, 1, b.len, f);
        fclose(f);
        rename(tmp, path);
    }
    keel_buf_free(&b);
}

/* Loads and validates DIR. false (errors printed, as keel validate prints them) when it is not valid. */
static bool load_folder(struct sup *s, struct keel_loadset *ls, bool startup)
{
    keel_loadset_init(ls, "default");
    int rc = keel_load_path(ls, s->o->dir);
    bool ok = rc == 0 && !ls->invalid && !ls->diags.errors;
    if (!ok) {
        if (startup) {
            print_diags(&ls->diags, stderr);
            fprintf(stderr, "keel run: %s is not valid (%zu error%s): nothing started\n", s->o->dir, ls->diags.errors,
                    ls->diags.errors == 1 ? "" : "s");
        } else {
            erase_table(s);
            print_diags(&ls->diags, stdout);
            say(s, "%s is not valid (%zu error%s): the last good config keeps serving", s->o->dir, ls->diags.errors,
                ls->diags.errors == 1 ? "" : "s");
        }
        return false;
    }
    if (startup && ls->diags.warnings)
        print_diags(&ls->diags, stderr);
    return true;
}

static bool port_in_old_plan(const struct keel_run_plan *old, unsigned port)
{
    for (size_t i = 0; old && i < old->n_uses; i++)
        if (old->uses[i].port == port)
            return true;
    return false;
}

/* Ports of plan (not already used by old) that something else holds: printed; true when all are free. */
static bool check_ports(struct sup *s, const struct keel_run_plan *plan, const struct keel_run_plan *old, FILE *fp)
{
    bool ok = true;
    for (size_t i = 0; i < plan->n_uses; i++) {
        const struct keel_run_port_use *u = &plan->uses[i];
        if (port_in_old_plan(old, u->port) || keel_run_port_free(u->port))
            continue;
        erase_table(s);
        fprintf(fp, "keel run: port %u is in use; wanted by %s%s\n", u->port, u->who,
                u->from_base ? " (move keel run's ports with --base-port N)" : "");
        ok = false;
    }
    fflush(fp);
    return ok;
}

static void print_plan(struct sup *s)
{
    erase_table(s);
    printf("keel run: %s: %zu processes; ports:\n", s->o->dir, s->plan->n_procs);
    for (size_t i = 0; i < s->plan->n_procs; i++) {
        const struct keel_run_proc *p = &s->plan->procs[i];
        printf("  %-7s %-18s %s\n", keel_run_role_name(p->role), p->name, p->ports);
    }
    printf("keel run: state in %s (effective config: %s, logs: %s, ports.json)\n", s->state, s->cfg, s->logs);
    fflush(stdout);
}

static bool has_key(const struct keel_run_plan *plan, const char *key)
{
    for (size_t i = 0; i < plan->n_procs; i++)
        if (strcmp(plan->procs[i].key, key) == 0)
            return true;
    return false;
}

/* Starts what plan has and the children do not; stops what they have and plan does not. */
static void apply_plan(struct sup *s)
{
    size_t started = 0, stopped = 0;
    for (size_t i = 0; i < s->nkids; i++) {
        struct child *c = s->kids[i];
        if (!c->removed && !has_key(s->plan, c->p.key)) {
            c->removed = true;
            stopped++;
            if (c->pid)
                signal_group(c, SIGTERM);
        }
    }
    for (size_t i = 0; i < s->nkids;) {
        if (s->kids[i]->removed && !s->kids[i]->pid)
            drop_child(s, s->kids[i]);
        else
            i++;
    }
    for (size_t i = 0; i < s->plan->n_procs; i++) {
        const struct keel_run_proc *p = &s->plan->procs[i];
        bool have = false;
        for (size_t k = 0; k < s->nkids; k++) {
            struct child *c = s->kids[k];
            if (c->removed || strcmp(c->p.key, p->key) != 0)
                continue;
            have = true;
            if (!same_env(&c->p, p)) {
                /* as in Istio: the running proxy keeps its environment; its next start gets the new one */
                copy_env(c, p);
                say(s, "%s %s: ProxyConfig environmentVariables changed; they apply when it restarts", p->name,
                    keel_run_role_name(p->role));
            }
        }
        if (!have) {
            spawn(s, add_child(s, p));
            started++;
        }
    }
    if (started || stopped)
        s->all_ready_said = false;
    if (s->have_ls && (started || stopped))
        say(s, "%zu process%s started, %zu stopped", started, started == 1 ? "" : "es", stopped);
}

static void reload(struct sup *s)
{
    struct keel_loadset ls;
    if (!load_folder(s, &ls, false)) {
        keel_loadset_free(&ls);
        return;
    }
    struct keel_store *store = keel_store_build(&ls, NULL, s->store);
    struct keel_run_plan_options po = {.self = s->o->self, .gateway_ports_from_base = s->o->gateway_ports_from_base};
    struct keel_run_plan *plan = keel_run_plan_build(&ls, store, &s->ports, &po);
    char err[4600];
    bool ok = !plan->diags.errors;
    if (!ok) {
        erase_table(s);
        print_diags(&plan->diags, stdout);
        say(s, "%s cannot run as it is: the last good config keeps serving", s->o->dir);
    } else if (!check_ports(s, plan, s->plan, stdout)) {
        say(s, "the change needs ports that are in use: the last good config keeps serving");
        ok = false;
    } else if (keel_run_render(plan, s->o->dir, s->cfg, err, sizeof(err)) != 0) {
        say(s, "cannot write the effective config: %s", err);
        ok = false;
    }
    if (!ok) {
        keel_run_plan_free(plan);
        keel_store_free(store);
        keel_loadset_free(&ls);
        return;
    }
    keel_run_plan_free(s->plan);
    keel_store_free(s->store);
    keel_loadset_free(&s->ls);
    s->plan = plan;
    s->store = store;
    s->ls = ls;
    say(s, "%s changed and is valid: proxies reload it", s->o->dir);
    write_ports_json(s);
    apply_plan(s);
}

static void watch_dirs(struct sup *s, const char *dir, int depth)
{
    if (depth > 32)
        return;
    inotify_add_watch(s->ino, dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE);
    char path[4096];
    struct stat st;
    struct dirent **list = NULL;
    int n = scandir(dir, &list, NULL, alphasort);
    for (int i = 0; i < n; i++) {
        if (list[i]->d_name[0] != '.') {
            snprintf(path, sizeof(path), "%s/%s", dir, list[i]->d_name);
            if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
                watch_dirs(s, path, depth + 1);
        }
        free(list[i]);
    }
    free(list);
}

/* ---- shutdown ---------------------------------------------------------------------------------------------------- */

static size_t running(const struct sup *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->nkids; i++)
        n += s->kids[i]->pid != 0;
    return n;
}

static void stop_all(struct sup *s)
{
    size_t n = running(s);
    say(s, "stopping %zu process%s", n, n == 1 ? "" : "es");
    for (size_t i = 0; i < s->nkids; i++)
        signal_group(s->kids[i], SIGTERM);
    double deadline = now_s() + STOP_GRACE_S;
    bool hurry = false;
    while (running(s) && now_s() < deadline && !hurry) {
        struct pollfd pf = {.fd = s->sfd, .events = POLLIN};
        if (poll(&pf, 1, 50) == 1) {
            struct signalfd_siginfo si;
            while (read(s->sfd, &si, sizeof(si)) == sizeof(si))
                if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM)
                    hurry = true; /* asked twice: no more waiting */
        }
        reap(s, true);
    }
    for (size_t i = 0; i < s->nkids; i++)
        if (s->kids[i]->pid) {
            say(s, "%s %s did not stop in time: killed", s->kids[i]->p.name, keel_run_role_name(s->kids[i]->p.role));
            signal_group(s->kids[i], SIGKILL);
        }
    while (running(s)) {
        int st;
        pid_t pid = waitpid(-1, &st, 0);
        if (pid < 0)
            break;
        struct child *c = child_by_pid(s, pid);
        if (c)
            c->pid = 0;
    }
}

/* ---- main ----------------------------------------------------------------------------------------------------------
 */

static bool make_state(struct sup *s)
{
    if (s->o->state_dir) {
        snprintf(s->state, sizeof(s->state), "%s", s->o->state_dir);
        s->own_state = false;
    } else {
        const char *rt = getenv("XDG_RUNTIME_DIR");
        struct stat st;
        if (!rt || !*rt || stat(rt, &st) != 0 || !S_ISDIR(st.st_mode) || access(rt, W_OK) != 0)
            rt = "/tmp";
        snprintf(s->state, sizeof(s->state), "%s/keel-run-%d", rt, (int)getpid());
        s->own_state = true;
    }
    snprintf(s->cfg, sizeof(s->cfg), "%s/config", s->state);
    snprintf(s->logs, sizeof(s->logs), "%s/logs", s->state);
    if ((mkdir(s->state, 0700) != 0 && errno != EEXIST) || (mkdir(s->cfg, 0700) != 0 && errno != EEXIST) ||
        (mkdir(s->logs, 0700) != 0 && errno != EEXIST)) {
        fprintf(stderr, "keel run: cannot create the state folder %s: %s\n", s->state, strerror(errno));
        return false;
    }
    return true;
}

static void remove_state(struct sup *s)
{
    if (s->own_state) {
        nftw(s->state, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    } else {
        /* a folder the user chose: the config goes, the logs stay for reading */
        nftw(s->cfg, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
}

int keel_run_main(const struct keel_run_options *o)
{
    struct sup sv;
    memset(&sv, 0, sizeof(sv));
    struct sup *s = &sv;
    s->o = o;
    s->sfd = s->ino = -1;
    keel_run_ports_init(&s->ports, o->base_port);
    int rc = 1;
    if (!load_folder(s, &s->ls, true)) {
        keel_loadset_free(&s->ls);
        keel_run_ports_free(&s->ports);
        return 1;
    }
    s->have_ls = false;
    s->store = keel_store_build(&s->ls, NULL, NULL);
    struct keel_run_plan_options po = {.self = o->self, .gateway_ports_from_base = o->gateway_ports_from_base};
    s->plan = keel_run_plan_build(&s->ls, s->store, &s->ports, &po);
    char err[4600];
    sigset_t mask;
    if (s->plan->diags.errors) {
        print_diags(&s->plan->diags, stderr);
        fprintf(stderr, "keel run: %s cannot run as it is: nothing started\n", o->dir);
        goto out;
    }
    if (!s->plan->n_procs) {
        fprintf(stderr,
                "keel run: %s has nothing to run: no Gateway with a selector, no WorkloadEntry at 127.0.0.1 and "
                "no Deployment (see docs/run.md)\n",
                o->dir);
        goto out;
    }
    if (!check_ports(s, s->plan, NULL, stderr)) {
        fprintf(stderr, "keel run: nothing started\n");
        goto out;
    }
    if (!make_state(s))
        goto out;
    if (keel_run_render(s->plan, o->dir, s->cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "keel run: cannot write the effective config: %s\n", err);
        remove_state(s);
        goto out;
    }
    write_ports_json(s);
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    s->sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    s->ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (s->sfd < 0 || s->ino < 0) {
        fprintf(stderr, "keel run: %s\n", strerror(errno));
        remove_state(s);
        goto out;
    }
    watch_dirs(s, o->dir, 0);
    print_plan(s);
    apply_plan(s);
    s->have_ls = true;
    bool stop = false;
    while (!stop) {
        double t = now_s();
        double wake = t + 0.25;
        if (s->reload_at && s->reload_at < wake)
            wake = s->reload_at;
        struct pollfd pf[2] = {{.fd = s->sfd, .events = POLLIN}, {.fd = s->ino, .events = POLLIN}};
        int ms = (int)((wake - t) * 1000);
        poll(pf, 2, ms < 0 ? 0 : ms);
        if (pf[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(s->sfd, &si, sizeof(si)) == sizeof(si)) {
                if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM)
                    stop = true;
                else if (si.ssi_signo == SIGHUP)
                    s->reload_at = now_s();
            }
        }
        if (stop)
            break;
        reap(s, false);
        if (pf[1].revents & POLLIN) {
            char buf[8192];
            while (read(s->ino, buf, sizeof(buf)) > 0) {
            }
            s->reload_at = now_s() + DEBOUNCE_S;
        }
        t = now_s();
        if (s->reload_at && t >= s->reload_at) {
            s->reload_at = 0;
            watch_dirs(s, o->dir, 0); /* new sub-folders */
            reload(s);
        }
        for (size_t i = 0; i < s->nkids; i++) {
            struct child *c = s->kids[i];
            if (!c->pid && !c->removed && c->restart_at && t >= c->restart_at) {
                c->restarts++;
                c->restart_at = 0;
                spawn(s, c);
            }
        }
        if (t >= s->next_poll) {
            s->next_poll = t + 1.0;
            bool all = s->nkids > 0;
            for (size_t i = 0; i < s->nkids; i++) {
                poll_child(s->kids[i], t);
                all = all && s->kids[i]->ready;
                if (s->kids[i]->ready && !s->kids[i]->ever_ready)
                    s->kids[i]->ever_ready = true;
            }
            if (all && !s->all_ready_said) {
                s->all_ready_said = true;
                say(s, "all %zu processes ready", s->nkids);
            }
            show(s);
        }
    }
    stop_all(s);
    remove_state(s);
    say(s, "stopped; nothing left running");
    rc = 0;
out:
    for (size_t i = 0; i < s->nkids; i++)
        free_child(s->kids[i]);
    free(s->kids);
    if (s->sfd >= 0)
        close(s->sfd);
    if (s->ino >= 0)
        close(s->ino);
    keel_run_plan_free(s->plan);
    keel_store_free(s->store);
    keel_loadset_free(&s->ls);
    keel_run_ports_free(&s->ports);
    return rc;
}
