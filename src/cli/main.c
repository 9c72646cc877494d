/*
 * main.c - `keel`: one binary, many jobs (like git).
 *
 * The subcommand table below is the whole registry: name, one-line summary,
 * entry point. Global flags: --help, --version.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

static int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("keel %s\n", KEEL_VERSION);
    return KEEL_EXIT_OK;
}

static int cmd_help(int argc, char **argv);

static const struct {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} commands[] = {
    {"validate", "check Istio resources the way istiod does: keel validate [-o json] FILE|DIR|- ...",
     keel_cmd_validate},
    {"proxy", "run the data plane: keel proxy router|sidecar --config DIR ...; keel proxy wait", keel_cmd_proxy},
    {"sample-app", "a small HTTP/1.1 and h2c demo service: keel sample-app --listen ADDR:PORT --name NAME ...",
     keel_cmd_sample_app},
    {"run", "a whole local mesh from one folder of Istio YAML: keel run DIR [--base-port N] ...", keel_cmd_run},
    {"version", "print the version", cmd_version},
    {"help", "show this help", cmd_help},
};

static void usage(FILE *fp)
{
    fprintf(fp, "usage: keel <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(fp, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(fp, "\nRun 'keel <command> --help' for the options of one command.\n");
}

static int cmd_help(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    usage(stdout);
    return KEEL_EXIT_OK;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return KEEL_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
        name = "help";
    else if (strcmp(name, "--version") == 0)
        name = "version";
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "keel: unknown command \"%s\"\n\n", name);
    usage(stderr);
    return KEEL_EXIT_USAGE;
}
