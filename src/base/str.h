/*
 * str.h - length-delimited string slices and small string helpers.
 *
 * A keel_str borrows its bytes: it never owns them and is never
 * NUL-terminated by contract. Functions here do not allocate.
 */
#ifndef KEEL_BASE_STR_H
#define KEEL_BASE_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct keel_str {
    const char *p;
    size_t n;
};

/* Slice of a NUL-terminated string (NULL gives the empty slice). */
struct keel_str keel_str_c(const char *s);
/* Slice of a string literal, its length counted by the compiler (no strlen at run time). */
#define KEEL_STR_LIT(lit) ((struct keel_str){"" lit, sizeof(lit) - 1})

bool keel_str_eq(struct keel_str a, struct keel_str b);
bool keel_str_eq_c(struct keel_str a, const char *b);
/* ASCII case-insensitive equality. */
bool keel_str_caseeq(struct keel_str a, struct keel_str b);
bool keel_str_has_prefix(struct keel_str s, struct keel_str prefix);
bool keel_str_has_suffix(struct keel_str s, struct keel_str suffix);

/* C-string helpers (NULL-safe: NULL is treated as ""). */
bool keel_cstr_has_prefix(const char *s, const char *prefix);
bool keel_cstr_has_suffix(const char *s, const char *suffix);
bool keel_cstr_caseeq(const char *a, const char *b);
bool keel_cstr_empty(const char *s);

/* Parses a whole slice as a decimal unsigned integer no larger than max.
 * Returns 0 and sets *out, or KEEL_EINVAL / KEEL_ETOOBIG. */
int keel_str_to_u64(struct keel_str s, uint64_t max, uint64_t *out);

/* The value of one hex digit (0-9, a-f, A-F), or -1 for any other character. */
int keel_hex_value(int c);

/* Writes v in decimal and a NUL into out (KEEL_U64_STRLEN bytes always suffice); returns the digit
 * count. For hot paths where snprintf's format parsing is the cost (headers written per request). */
#define KEEL_U64_STRLEN 21
size_t keel_u64_to_str(uint64_t v, char *out);

/* Writes the 16 bytes b as lowercase hex in RFC 9562's 8-4-4-4-12 layout and a NUL (37 bytes). */
void keel_uuid_to_str(const unsigned char b[16], char out[37]);

/* s itself when it has at most max bytes; otherwise its longest prefix of at
 * most max bytes that ends on a UTF-8 character boundary, plus "...", copied
 * into buf (n bytes). For quoting user input in messages. */
const char *keel_str_clip(const char *s, size_t max, char *buf, size_t n);

/* Levenshtein edit distance, capped at cap+1 (for "did you mean"). */
unsigned keel_str_edit_distance(const char *a, const char *b, unsigned cap);

#endif
