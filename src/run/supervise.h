/*
 * supervise.h - `keel run DIR`: start, watch, reload and stop a whole local mesh.
 *
 * keel_run_main() validates DIR (nothing starts on any error; the messages are keel validate's), plans
 * the processes and ports (run/plan.h), checks that every port is free (a port in use is named with who
 * wanted it), writes the effective config into the state folder, and starts the routers, sidecars and
 * apps as child processes of this one (its own binary, /proc/self/exe). Then one loop:
 *   - signals (signalfd): SIGCHLD reaps; a child that exits unexpectedly is restarted with exponential
 *     back-off (0.5 s doubling to 30 s; reset after 10 s of running) and reported; SIGINT/SIGTERM stop
 *     everything (SIGTERM to each child's process group, up to 10 s, then SIGKILL), remove the state
 *     folder and return 0. Children run in process groups of their own with PR_SET_PDEATHSIG(SIGKILL),
 *     so they die with keel run even when it is killed hard.
 *   - inotify on DIR: after 300 ms of quiet the folder is validated again; when valid the effective
 *     config is rewritten (the proxies watch it and reload themselves), added or changed workloads and
 *     gateways are started and removed ones stopped; when invalid the errors are printed and the last good
 *     config keeps serving.
 *   - every second, each proxy's admin API (/ready, /stats/prometheus, /config_dump when it reloaded)
 *     feeds the status table: redrawn in place on a terminal, one line per change otherwise.
 */
#ifndef KEEL_RUN_SUPERVISE_H
#define KEEL_RUN_SUPERVISE_H

#include <stdbool.h>

struct keel_run_options {
    const char *dir;       /* the user's folder */
    unsigned base_port;    /* first port keel run hands out */
    const char *state_dir; /* NULL: $XDG_RUNTIME_DIR/keel-run-<pid>, else /tmp/keel-run-<pid> (removed at exit) */
    unsigned concurrency;  /* worker threads per proxy */
    bool gateway_ports_from_base;
    bool table;       /* status table redrawn in place (stdout is a terminal) */
    const char *self; /* this keel binary */
};

/* Runs the mesh until SIGINT/SIGTERM. Returns the process exit status: 0 after a clean stop, 1 when
 * the folder is invalid, a port is in use or the state folder cannot be written (nothing started). */
int keel_run_main(const struct keel_run_options *o);

#endif
