/*
 * cli.h - the `keel` command's subcommands.
 *
 * main.c holds the table of subcommands; each lives in cmd_<name>.c and
 * returns the process exit status (0 ok, 1 failure, 2 usage error). No
 * logic that belongs in a layer below lives here: commands parse flags,
 * call the libraries and format output.
 */
#ifndef KEEL_CLI_CLI_H
#define KEEL_CLI_CLI_H

#define KEEL_EXIT_OK 0
#define KEEL_EXIT_FAIL 1
#define KEEL_EXIT_USAGE 2

#define KEEL_VERSION "0.1.0"

int keel_cmd_validate(int argc, char **argv);
int keel_cmd_proxy(int argc, char **argv);
int keel_cmd_sample_app(int argc, char **argv);
int keel_cmd_run(int argc, char **argv);

#endif
