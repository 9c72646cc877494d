/*
 * regex.h - the PCRE2 adapter of the mesh layer: regexes compiled once at
 * snapshot build time, matched on the request path without allocating.
 *
 * Istio's regexes are RE2 and Envoy matches them whole (RE2::FullMatch).
 * keel_regex_compile(full=true) anchors the pattern at both ends to get the
 * same semantics; full=false compiles a searching pattern (for
 * uriRegexRewrite, which replaces every match as RE2::GlobalReplace does).
 * Patterns are compiled for UTF-8 and accept invalid UTF-8 subjects, and
 * are JIT-compiled when PCRE2 supports it.
 *
 * Matching never touches the heap: the match data comes from a buffer on the
 * caller's stack (KEEL_REGEX_SCRATCH bytes) through a PCRE2 general context.
 * With JIT a match needs a few hundred bytes; the interpreter needs 20 KiB of
 * frames, and a match that would need more than the scratch buffer fails
 * (fails closed) instead of allocating.
 *
 * Memory: the keel_regex records live in the arena given to
 * keel_regex_compile() and are chained on a list; the compiled codes are
 * PCRE2's (heap, JIT memory) and are freed by keel_regex_release(list).
 * Thread-safety: a compiled regex is immutable; any number of threads may
 * match it concurrently.
 */
#ifndef KEEL_MESH_REGEX_H
#define KEEL_MESH_REGEX_H

#include <stdbool.h>
#include <stddef.h>

struct keel_arena;
struct keel_regex;

/* Stack bytes one match may use. */
#define KEEL_REGEX_SCRATCH 40960

/* Compiles pattern (full = whole-value match) and pushes it on *list.
 * Returns NULL when PCRE2 refuses it; err (errlen bytes) says why. Aborts on
 * arena OOM (config phase). */
struct keel_regex *keel_regex_compile(struct keel_arena *a, struct keel_regex **list, const char *pattern, bool full,
                                      char *err, size_t errlen);

/* Does s[0..n) match (whole value for full patterns)? NULL re: false. */
bool keel_regex_matches(const struct keel_regex *re, const char *s, size_t n);

/* Replaces every match of re in s[0..n) by repl (PCRE2 syntax: $1, $$),
 * into out (cap bytes, NUL added). Returns the length, KEEL_ETOOBIG or
 * KEEL_EINVAL. */
int keel_regex_substitute(const struct keel_regex *re, const char *s, size_t n, const char *repl, char *out,
                          size_t cap);

/* An RE2 substitution string (\1, \\) in PCRE2 syntax ($1, \, $$ for $),
 * allocated in a. */
const char *keel_regex_from_re2_substitution(struct keel_arena *a, const char *s);

/* Frees every compiled code on the list (the records stay in their arena). */
void keel_regex_release(struct keel_regex *list);

#endif
