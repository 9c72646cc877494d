/* replay_main.c - run a libFuzzer target over files without libFuzzer.
 *
 *     <target>_replay FILE|DIR...
 *
 * Linked with one tests/fuzz/<target>_fuzz.c in the debug and ASan builds
 * (which use gcc and no -fsanitize=fuzzer) so every checked-in corpus input,
 * including old crash reproducers, runs through the same harness on every
 * `make test`. Directories are read one level deep, hidden files skipped.
 * Each input is copied into a buffer of exactly its size, so an overread is
 * an ASan report just as under libFuzzer. Exit 0 when every input ran (and
 * there was at least one); a crash or sanitizer report ends the process, and
 * the last "replay: FILE" line on stderr names the input. Ownership: all memory is freed per file.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static int replay_file(const char *path, size_t *count)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "replay: %s: out of memory\n", path);
        return -1;
    }
    /* Exact-size copy so reading one byte past the input is caught. */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, len);
    free(buf);
    fprintf(stderr, "replay: %s\n", path);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    (*count)++;
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int replay_path(const char *path, size_t *count)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return replay_file(path, count);
    struct dirent **list = NULL;
    int n = scandir(path, &list, NULL, NULL);
    if (n < 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char **names = calloc((size_t)n + 1, sizeof(*names));
    int m = 0, rc = 0;
    for (int i = 0; i < n; i++) {
        if (names && list[i]->d_name[0] != '.')
            names[m++] = strdup(list[i]->d_name);
        free(list[i]);
    }
    free(list);
    if (!names)
        return -1;
    qsort(names, (size_t)m, sizeof(*names), name_cmp); /* stable order: reproducible runs */
    for (int i = 0; i < m; i++) {
        char full[4096];
        if (!names[i] || (size_t)snprintf(full, sizeof(full), "%s/%s", path, names[i]) >= sizeof(full))
            rc = -1;
        else if (stat(full, &st) == 0 && S_ISREG(st.st_mode) && replay_file(full, count) != 0)
            rc = -1;
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
        return 2;
    }
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    size_t count = 0;
    int rc = 0;
    for (int i = 1; i < argc; i++)
        if (replay_path(argv[i], &count) != 0)
            rc = 1;
    printf("replayed %zu inputs\n", count);
    if (count == 0) {
        fprintf(stderr, "replay: no inputs found (wrong corpus path?)\n");
        rc = 1;
    }
    return rc;
}
