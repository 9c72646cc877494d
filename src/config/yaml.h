/*
 * yaml.h - read YAML and JSON streams into keel_node trees (libfyaml adapter).
 *
 * This is the only file that includes <libfyaml.h>. A stream may hold many
 * documents (`---`); each one becomes a keel_node tree handed to a callback.
 * Anchors and aliases are expanded, and `<<` merge keys are applied, under a
 * budget (KEEL_YAML_MAX_NODES per document, KEEL_YAML_MAX_DEPTH levels) so a
 * "billion laughs" document fails cleanly instead of exhausting memory.
 *
 * Errors: a syntax error becomes one diagnostic (file:line:col, libfyaml's
 * message) and stops the stream at that document; the callback is still
 * called for it with root == NULL so callers can count it. Trees live in
 * the caller's arena.
 */
#ifndef KEEL_CONFIG_YAML_H
#define KEEL_CONFIG_YAML_H

#include "config/node.h"

#include <stddef.h>

struct keel_arena;
struct keel_diags;

#define KEEL_YAML_MAX_NODES 2000000u
#define KEEL_YAML_MAX_DEPTH 200u
#define KEEL_YAML_MAX_FILE (256u * 1024u * 1024u)

/* Called once per document, in order. root is NULL for a document that could
 * not be read (its diagnostic is already recorded). loc is where the
 * document starts (doc index set). Return non-zero to stop the stream. */
typedef int (*keel_yaml_doc_cb)(void *ctx, struct keel_node *root, const struct keel_loc *loc);

/* Parses len bytes named `name` (used in locations; copied into the arena).
 * Returns the number of documents seen, or a negative KEEL_E* code when the
 * input could not be read at all (diagnostic recorded). */
int keel_yaml_load_buf(struct keel_arena *a, const char *name, const char *buf, size_t len, struct keel_diags *d,
                       keel_yaml_doc_cb cb, void *ctx);

/* Same, for text cut out of another file (a ConfigMap's embedded mesh
 * config): every position is shifted by base_line lines and base_col
 * columns (a block scalar's lines all share one indentation). */
int keel_yaml_load_buf_at(struct keel_arena *a, const char *name, const char *buf, size_t len, uint32_t base_line,
                          uint32_t base_col, struct keel_diags *d, keel_yaml_doc_cb cb, void *ctx);

/* Reads a whole file (or standard input when path is "-") and parses it. */
int keel_yaml_load_file(struct keel_arena *a, const char *path, struct keel_diags *d, keel_yaml_doc_cb cb, void *ctx);

#endif
