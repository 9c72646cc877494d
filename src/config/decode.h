/*
 * decode.h - schema-driven decoding of keel_node trees into typed structs.
 *
 * keel_decode_msg() walks a keel_msgdesc table (config/schema_gen.c) over a
 * MAP node and fills the matching generated struct. It enforces what the
 * CRD schema states: known field names only (an unknown one is an error that
 * names the nearest valid field), value types, enum values, required fields,
 * oneof groups, ranges, lengths, patterns and the simple CEL rules. It keeps
 * going after an error so that one run reports every problem.
 *
 * Output memory (structs, arrays, strings) comes from dc->arena and lives as
 * long as it; string values point at the node tree's text, which must live
 * in the same arena (or longer).
 */
#ifndef KEEL_CONFIG_DECODE_H
#define KEEL_CONFIG_DECODE_H

#include "base/diag.h"
#include "config/node.h"
#include "config/schema.h"

#include <stdint.h>

struct keel_arena;

struct keel_decode {
    struct keel_arena *arena;
    struct keel_diags *diags;
    struct keel_path path; /* path of the node being decoded */
    size_t errors;         /* errors reported by this decoder */
};

void keel_decode_init(struct keel_decode *dc, struct keel_arena *a, struct keel_diags *d, const char *root_path);

/* Decodes node (must be a MAP) into out, a zeroed struct of m->size bytes.
 * Returns 0, or KEEL_EINVALID_CONFIG when anything was reported. */
int keel_decode_msg(struct keel_decode *dc, const struct keel_msgdesc *m, const struct keel_node *node, void *out);

/* Reports an error at node with the decoder's current path. */
void keel_decode_error(struct keel_decode *dc, const struct keel_node *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Parses a Go/protobuf duration ("1.5s", "300ms", "1h2m", "-1s") into
 * nanoseconds. Returns 0, KEEL_EINVAL (syntax) or KEEL_ETOOBIG (overflow). */
int keel_duration_parse(const char *s, int64_t *ns);

/* Formats ns as a duration string ("1.5s") into buf. */
const char *keel_duration_format(int64_t ns, char *buf, size_t n);

/* Is s valid standard base64 (with padding)? */
bool keel_base64_valid(const char *s);

#endif
