/*
 * yaml_test.c - tests for config/yaml: multi-document streams, YAML 1.2 core
 * schema scalar resolution, anchors/aliases and merge keys, duplicate keys,
 * syntax errors, the alias-expansion and depth budgets, JSON input, tags.
 */
#include "config/yaml.h"

#include "base/arena.h"
#include "base/diag.h"
#include "base/err.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define MAX_DOCS 32

static struct {
    struct keel_arena *a;
    struct keel_diags d;
    int ndocs;
    struct keel_node *root[MAX_DOCS];
    struct keel_loc loc[MAX_DOCS];
    int stop_after; /* callback asks to stop after this many docs (0 = never) */
    int rc;
} F;

static int collect(void *ctx, struct keel_node *root, const struct keel_loc *loc)
{
    (void)ctx;
    if (F.ndocs < MAX_DOCS) {
        F.root[F.ndocs] = root;
        F.loc[F.ndocs] = *loc;
    }
    F.ndocs++;
    return F.stop_after && F.ndocs >= F.stop_after;
}

static int setup(void **state)
{
    (void)state;
    memset(&F, 0, sizeof(F));
    F.a = keel_arena_new(0);
    keel_diags_init(&F.d);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    keel_diags_free(&F.d);
    keel_arena_free(F.a);
    return 0;
}

static int load_n(const char *buf, size_t len)
{
    F.rc = keel_yaml_load_buf(F.a, "t.yaml", buf, len, &F.d, collect, NULL);
    return F.rc;
}

static int load(const char *yaml)
{
    return load_n(yaml, strlen(yaml));
}

/* Loads a one-document stream that must parse cleanly; returns its root. */
static struct keel_node *load1(const char *yaml)
{
    load(yaml);
    if (keel_diags_count(&F.d))
        print_error("unexpected diagnostic: %s\n", keel_diags_at(&F.d, 0)->msg);
    assert_int_equal(keel_diags_count(&F.d), 0);
    assert_int_equal(F.rc, 1);
    assert_int_equal(F.ndocs, 1);
    assert_non_null(F.root[0]);
    return F.root[0];
}

static struct keel_node *get(const struct keel_node *map, const char *key)
{
    struct keel_node *n = keel_node_get(map, key);
    if (!n)
        print_error("no key \"%s\"\n", key);
    assert_non_null(n);
    return n;
}

/* The only diagnostic; its message must contain `part`. */
static const struct keel_diag *one_diag(const char *part)
{
    if (keel_diags_count(&F.d) != 1)
        for (size_t i = 0; i < keel_diags_count(&F.d); i++)
            print_error("diag %zu: %s\n", i, keel_diags_at(&F.d, i)->msg);
    assert_int_equal(keel_diags_count(&F.d), 1);
    const struct keel_diag *g = keel_diags_at(&F.d, 0);
    if (!strstr(g->msg, part))
        print_error("message \"%s\" lacks \"%s\"\n", g->msg, part);
    assert_non_null(strstr(g->msg, part));
    assert_int_equal(g->sev, KEEL_SEV_ERROR);
    return g;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- streams ------------------------------------------------------------- */

static void test_multi_document_stream(void **state)
{
    (void)state;
    assert_int_equal(load("a: 1\n---\nb: 2\n---\n- x\n- y\n"), 3);
    assert_int_equal(keel_diags_count(&F.d), 0);
    assert_int_equal(F.ndocs, 3);
    assert_int_equal(F.root[0]->type, KEEL_NODE_MAP);
    assert_int_equal(get(F.root[0], "a")->v.i, 1);
    assert_int_equal(get(F.root[1], "b")->v.i, 2);
    assert_int_equal(F.root[2]->type, KEEL_NODE_SEQ);
    assert_int_equal(F.root[2]->n, 2);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(F.loc[i].doc, (uint32_t)i);
        assert_int_equal(F.root[i]->loc.doc, (uint32_t)i);
        assert_string_equal(F.loc[i].file, "t.yaml");
    }
    assert_int_equal(F.loc[0].line, 1);
    assert_int_equal(F.loc[1].line, 3);
    assert_int_equal(F.loc[2].line, 5);
}

static void test_empty_documents_are_skipped(void **state)
{
    (void)state;
    assert_int_equal(load(""), 0);
    assert_int_equal(load("# just a comment\n"), 0);
    assert_int_equal(load("---\n---\n# c\n---\n...\n"), 0);
    assert_int_equal(load("~\n---\nnull\n"), 0); /* a null document is not a resource */
    assert_int_equal(F.ndocs, 0);
    assert_int_equal(keel_diags_count(&F.d), 0);
    assert_int_equal(load("---\n---\na: 1\n---\n"), 1);
    assert_int_equal(F.ndocs, 1);
    assert_int_equal(get(F.root[0], "a")->v.i, 1);
    assert_int_equal(F.loc[0].line, 3);
}

static void test_scalar_documents(void **state)
{
    (void)state;
    assert_int_equal(load("42\n---\n\"text\"\n---\n[]\n---\n{}\n"), 4);
    assert_int_equal(F.root[0]->type, KEEL_NODE_INT);
    assert_int_equal(F.root[1]->type, KEEL_NODE_STRING);
    assert_int_equal(F.root[2]->type, KEEL_NODE_SEQ);
    assert_int_equal(F.root[2]->n, 0);
    assert_int_equal(F.root[3]->type, KEEL_NODE_MAP);
    assert_int_equal(F.root[3]->n, 0);
}

static void test_callback_can_stop_the_stream(void **state)
{
    (void)state;
    F.stop_after = 2;
    load("a: 1\n---\nb: 2\n---\nc: 3\n");
    assert_int_equal(F.ndocs, 2);
    assert_int_equal(F.rc, 2);
}

static void test_buffer_is_length_delimited(void **state)
{
    (void)state;
    /* only the first len bytes count, even without a NUL after them */
    const char buf[] = "a: 1\nb: 2\nc: 3\n";
    load_n(buf, 5);
    assert_int_equal(F.ndocs, 1);
    assert_int_equal(F.root[0]->n, 1);
    assert_non_null(keel_node_get(F.root[0], "a"));
    assert_null(keel_node_get(F.root[0], "b"));
}

/* ---- scalars --------------------------------------------------------------- */

static void test_core_schema_ints(void **state)
{
    (void)state;
    struct keel_node *r = load1("dec: 80\nneg: -12\npos: +12\nzero: 0\nlead: 012\nhex: 0x1F\nHEX: 0xff\n"
                                "oct: 0o17\nmax: 9223372036854775807\nmin: -9223372036854775808\n");
    static const struct {
        const char *key;
        int64_t v;
    } want[] = {{"dec", 80}, {"neg", -12}, {"pos", 12}, {"zero", 0}, {"lead", 12}, {"hex", 31}, {"HEX", 255},
                {"oct", 15}, {"max", INT64_MAX}, {"min", INT64_MIN}};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        struct keel_node *n = get(r, want[i].key);
        assert_int_equal(n->type, KEEL_NODE_INT);
        assert_true(n->v.i == want[i].v);
        assert_false(n->quoted);
    }
    assert_string_equal(get(r, "hex")->str, "0x1F"); /* the text is kept as written */
}

static void test_core_schema_floats(void **state)
{
    (void)state;
    struct keel_node *r = load1("e: 1e3\nf: 1.5\ng: .5\nh: 1.\ni: -2.5e-3\ninf: .inf\nninf: -.Inf\npinf: +.INF\n"
                                "nan: .nan\nbig: 9223372036854775808\nE: 2E2\n");
    assert_int_equal(get(r, "e")->type, KEEL_NODE_FLOAT);
    assert_true(get(r, "e")->v.d == 1000.0);
    assert_true(get(r, "f")->v.d == 1.5);
    assert_true(get(r, "g")->v.d == 0.5);
    assert_true(get(r, "h")->v.d == 1.0);
    assert_true(fabs(get(r, "i")->v.d + 0.0025) < 1e-12);
    assert_true(isinf(get(r, "inf")->v.d) && get(r, "inf")->v.d > 0);
    assert_true(isinf(get(r, "ninf")->v.d) && get(r, "ninf")->v.d < 0);
    assert_true(isinf(get(r, "pinf")->v.d) && get(r, "pinf")->v.d > 0);
    assert_true(isnan(get(r, "nan")->v.d));
    assert_int_equal(get(r, "big")->type, KEEL_NODE_FLOAT); /* beyond int64: still a number */
    assert_true(get(r, "E")->v.d == 200.0);
}

static void test_core_schema_null_bool(void **state)
{
    (void)state;
    struct keel_node *r = load1("t1: ~\nt2: null\nt3: Null\nt4: NULL\nt5:\n"
                                "b1: true\nb2: True\nb3: TRUE\nb4: false\nb5: False\nb6: FALSE\n");
    for (int i = 1; i <= 5; i++) {
        char k[4];
        snprintf(k, sizeof(k), "t%d", i);
        assert_int_equal(get(r, k)->type, KEEL_NODE_NULL);
    }
    assert_int_equal(get(r, "t5")->len, 0);
    for (int i = 1; i <= 6; i++) {
        char k[4];
        snprintf(k, sizeof(k), "b%d", i);
        assert_int_equal(get(r, k)->type, KEEL_NODE_BOOL);
        assert_int_equal(get(r, k)->v.b, i <= 3);
    }
}

static void test_yaml11_words_are_strings(void **state)
{
    (void)state;
    /* YAML 1.2: yes/no/on/off/y/n are plain strings, and so are the other
     * 1.1-only number forms */
    static const char *const words[] = {"yes", "no", "on", "off", "y", "n", "Yes", "tRue", "nULL", "1_000",
                                        "0b101", "0x", "0o", "0o8", "0xG", "1e", "e3", ".", "+", "1.2.3",
                                        ".NaN_", "inf", "0x1F.5", "12:30", "1 2"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        char doc[64];
        snprintf(doc, sizeof(doc), "v: %s\n", words[i]);
        memset(F.root, 0, sizeof(F.root));
        F.ndocs = 0;
        struct keel_node *v = get(load1(doc), "v");
        if (v->type != KEEL_NODE_STRING)
            print_error("\"%s\" resolved to %s\n", words[i], keel_node_type_name(v->type));
        assert_int_equal(v->type, KEEL_NODE_STRING);
        assert_string_equal(v->str, words[i]);
        assert_false(v->quoted);
    }
}

static void test_quoted_vs_plain(void **state)
{
    (void)state;
    struct keel_node *r = load1("plain: 80\ndq: \"80\"\nsq: '80'\ntrue_q: \"true\"\nnull_q: 'null'\n"
                                "empty_q: \"\"\nlit: |\n  80\nfold: >-\n  a\n  b\nesc: \"a\\tb\\u00e9\"\n");
    assert_int_equal(get(r, "plain")->type, KEEL_NODE_INT);
    static const char *const quoted[] = {"dq", "sq", "true_q", "null_q", "empty_q", "lit", "fold", "esc"};
    for (size_t i = 0; i < sizeof(quoted) / sizeof(quoted[0]); i++) {
        assert_int_equal(get(r, quoted[i])->type, KEEL_NODE_STRING);
        assert_true(get(r, quoted[i])->quoted);
    }
    assert_string_equal(get(r, "dq")->str, "80");
    assert_string_equal(get(r, "empty_q")->str, "");
    assert_string_equal(get(r, "lit")->str, "80\n");
    assert_int_equal(get(r, "lit")->len, 3);
    assert_string_equal(get(r, "fold")->str, "a b");
    assert_string_equal(get(r, "esc")->str, "a\tb\xc3\xa9");
}

static void test_keys_are_text(void **state)
{
    (void)state;
    struct keel_node *r = load1("80: a\ntrue: b\n~: c\n\"q\": d\n1.5: e\n");
    assert_int_equal(r->n, 5);
    static const char *const keys[] = {"80", "true", "~", "q", "1.5"};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(r->c.pairs[i].key->type, KEEL_NODE_STRING);
        assert_string_equal(r->c.pairs[i].key->str, keys[i]);
    }
    assert_string_equal(keel_node_get_str(r, "80"), "a");
}

static void test_collection_keys_rejected(void **state)
{
    (void)state;
    load("? [a, b]\n: 1\n");
    const struct keel_diag *g = one_diag("mapping keys must be plain strings");
    assert_int_equal(g->loc.line, 1);
    assert_int_equal(F.ndocs, 1);
    assert_null(F.root[0]);
}

static void test_locations(void **state)
{
    (void)state;
    struct keel_node *r = load1("a:\n  b: 1\n  list:\n    - x\n    -   y\n");
    struct keel_node *a = get(r, "a");
    assert_int_equal(r->loc.line, 1);
    assert_int_equal(r->loc.col, 1);
    assert_int_equal(a->loc.line, 2);
    assert_int_equal(a->loc.col, 3);
    assert_int_equal(get(a, "b")->loc.line, 2);
    assert_int_equal(get(a, "b")->loc.col, 6);
    assert_int_equal(a->c.pairs[0].key->loc.col, 3);
    struct keel_node *l = get(a, "list");
    assert_int_equal(l->c.items[0]->loc.line, 4);
    assert_int_equal(l->c.items[0]->loc.col, 7);
    assert_int_equal(l->c.items[1]->loc.line, 5);
    assert_int_equal(l->c.items[1]->loc.col, 9);
    assert_string_equal(l->c.items[1]->loc.file, "t.yaml");
}

static void test_weight_counts_nodes(void **state)
{
    (void)state;
    struct keel_node *r = load1("a: [1, 2, 3]\nb: {c: d}\n");
    /* root + key a + (list + 3 items) + key b + (map + key c + d) */
    assert_int_equal(r->weight, 1 + 1 + 4 + 1 + 3);
}

/* ---- anchors, aliases, merges ---------------------------------------------- */

static void test_alias_shares_the_anchored_node(void **state)
{
    (void)state;
    struct keel_node *r = load1("base: &b {host: a, port: 80}\nx: *b\nlist: [*b, *b]\ns: &s text\nt: *s\n");
    struct keel_node *base = get(r, "base");
    assert_ptr_equal(get(r, "x"), base);
    assert_ptr_equal(get(r, "list")->c.items[0], base);
    assert_ptr_equal(get(r, "list")->c.items[1], base);
    assert_ptr_equal(get(r, "t"), get(r, "s"));
    assert_string_equal(get(r, "t")->str, "text");
    /* shared subtrees count every time they are used */
    assert_int_equal(get(r, "list")->weight, 1 + 2 * base->weight);
}

static void test_anchor_redefinition_shadows(void **state)
{
    (void)state;
    struct keel_node *r = load1("a: &x 1\nb: *x\nc: &x 2\nd: *x\n");
    assert_int_equal(get(r, "b")->v.i, 1);
    assert_int_equal(get(r, "d")->v.i, 2);
}

static void test_unknown_alias(void **state)
{
    (void)state;
    load("a: *nope\n");
    const struct keel_diag *g = one_diag("nope");
    assert_true(g->loc.line == 1);
    assert_int_equal(F.ndocs, 1);
    assert_null(F.root[0]);
}

static void test_alias_to_enclosing_collection(void **state)
{
    (void)state;
    /* the anchor is registered when its collection ends: no cycles */
    load("a: &a [1, *a]\n");
    assert_true(keel_diags_count(&F.d) >= 1);
    assert_int_equal(F.ndocs, 1);
    assert_null(F.root[0]);
}

static void test_merge_key(void **state)
{
    (void)state;
    struct keel_node *r = load1("base: &b {host: a, subset: v1, port: 80}\n"
                                "m:\n  <<: *b\n  subset: v2\n"
                                "n:\n  subset: v3\n  <<: *b\n");
    struct keel_node *m = get(r, "m"), *n = get(r, "n");
    assert_true(m->merged);
    assert_int_equal(m->n, 3);
    assert_string_equal(keel_node_get_str(m, "host"), "a");
    assert_string_equal(keel_node_get_str(m, "subset"), "v2"); /* explicit key after the merge wins */
    assert_string_equal(keel_node_get_str(n, "subset"), "v3"); /* and before it */
    assert_int_equal(n->n, 3);
    assert_int_equal(get(m, "port")->v.i, 80);
    assert_null(keel_node_get(m, "<<")); /* the merge key itself is not a key */
    assert_false(get(r, "base")->merged);
    assert_string_equal(keel_node_get_str(get(r, "base"), "subset"), "v1"); /* source untouched */
}

static void test_merge_list_first_wins(void **state)
{
    (void)state;
    struct keel_node *r = load1("a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nm:\n  <<: [*a, *b]\n  z: 3\n");
    struct keel_node *m = get(r, "m");
    assert_int_equal(get(m, "x")->v.i, 1);
    assert_int_equal(get(m, "y")->v.i, 1); /* earlier maps in the list take precedence */
    assert_int_equal(get(m, "z")->v.i, 3);
    assert_int_equal(m->n, 3);
}

static void test_merge_of_inline_map_and_quoted_key(void **state)
{
    (void)state;
    struct keel_node *r = load1("m:\n  <<: {a: 1}\n  b: 2\nq:\n  \"<<\": 5\n");
    assert_int_equal(get(get(r, "m"), "a")->v.i, 1);
    /* a quoted "<<" is an ordinary key */
    assert_int_equal(get(get(r, "q"), "<<")->v.i, 5);
    assert_false(get(r, "q")->merged);
}

static void test_merge_needs_a_mapping(void **state)
{
    (void)state;
    load("m:\n  <<: 5\n");
    const struct keel_diag *g = one_diag("merge key '<<' needs a mapping");
    assert_int_equal(g->loc.line, 2);
    assert_null(F.root[0]);
    keel_diags_free(&F.d);
    keel_diags_init(&F.d);
    F.ndocs = 0;
    load("m:\n  <<: [{a: 1}, x]\n");
    one_diag("merge key");
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    load("apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  labels: {}\n  name: b\n");
    /* both lines: the diagnostic sits on the second, its message names the first */
    const struct keel_diag *g = one_diag("duplicate key \"name\" (first defined at line 4)");
    assert_int_equal(g->loc.line, 6);
    assert_int_equal(g->loc.col, 3);
    assert_string_equal(g->loc.file, "t.yaml");
    assert_string_equal(g->path, "metadata.name");
    /* the document is still delivered, with the first value, so the rest of
     * it can be checked in the same run */
    assert_int_equal(F.ndocs, 1);
    assert_non_null(F.root[0]);
    assert_string_equal(keel_node_get_str(get(F.root[0], "metadata"), "name"), "a");
    assert_int_equal(get(F.root[0], "metadata")->n, 2);
}

static void test_duplicate_keys_in_flow_and_json(void **state)
{
    (void)state;
    load("{\"a\": 1, \"b\": 2, \"a\": 3}");
    const struct keel_diag *g = one_diag("duplicate key \"a\" (first defined at line 1)");
    assert_int_equal(g->loc.line, 1);
    assert_int_equal(get(F.root[0], "a")->v.i, 1);
}

static void test_duplicate_keys_path_through_lists(void **state)
{
    (void)state;
    load("spec:\n  http:\n  - route: []\n  - name: x\n    name: y\n");
    const struct keel_diag *g = one_diag("duplicate key \"name\"");
    assert_string_equal(g->path, "spec.http[1].name");
    assert_int_equal(g->loc.line, 5);
}

static void test_duplicate_keys_in_several_documents(void **state)
{
    (void)state;
    load("a: 1\na: 2\n---\nb: 1\n---\nc: 1\nc: 2\nc: 3\n");
    assert_int_equal(keel_diags_count(&F.d), 3);
    assert_int_equal(F.ndocs, 3);
    assert_int_equal(keel_diags_at(&F.d, 0)->loc.doc, 0);
    assert_int_equal(keel_diags_at(&F.d, 1)->loc.doc, 2);
    assert_non_null(strstr(keel_diags_at(&F.d, 2)->msg, "(first defined at line 6)"));
    assert_int_equal(get(F.root[2], "c")->v.i, 1);
    assert_int_equal(F.loc[1].doc, 1);
}

static void test_duplicate_explicit_keys_in_merged_map(void **state)
{
    (void)state;
    /* yaml.c attach(): once a mapping has merged keys, duplicate *explicit*
     * keys are no longer reported (the later one silently replaces) */
    load("b: &b {x: 1}\nm:\n  <<: *b\n  y: 1\n  y: 2\n");
    one_diag("duplicate key \"y\"");
}

static void test_alias_used_as_key_does_not_change_the_anchor(void **state)
{
    (void)state;
    /* yaml.c attach() retypes a key node to STRING in place; when the key is
     * an alias, that changes the shared anchored node everywhere */
    struct keel_node *r = load1("port: &p 80\nm: {*p : x}\n");
    assert_int_equal(get(r, "port")->type, KEEL_NODE_INT);
    assert_int_equal(get(r, "port")->v.i, 80);
}

/* ---- errors and budgets ---------------------------------------------------- */

static void test_syntax_error(void **state)
{
    (void)state;
    int rc = load("a: 1\nb: [1, 2\nc: 3\n");
    const struct keel_diag *g = one_diag("YAML syntax error");
    assert_true(g->loc.line >= 2);
    assert_true(g->loc.col >= 1);
    assert_string_equal(g->loc.file, "t.yaml");
    assert_int_equal(F.ndocs, 1); /* callback still called, with root NULL */
    assert_null(F.root[0]);
    assert_int_equal(rc, 1);
}

static void test_syntax_error_position(void **state)
{
    (void)state;
    /* libfyaml's collected errors (struct fy_diag_error) already count lines
     * and columns from 1; report_parse_errors() adds 1 again */
    load("a:\n\t- tab\n");
    const struct keel_diag *g = one_diag("tab");
    assert_int_equal(g->loc.line, 2);
    assert_int_equal(g->loc.col, 1);
    keel_diags_free(&F.d);
    keel_diags_init(&F.d);
    load("]\n");
    g = one_diag("YAML syntax error");
    assert_int_equal(g->loc.line, 1);
    assert_int_equal(g->loc.col, 1);
}

static void test_syntax_error_after_good_documents(void **state)
{
    (void)state;
    load("a: 1\n---\nb: 2\n---\nc: {d\n---\ne: 5\n");
    one_diag("YAML syntax error");
    assert_true(F.ndocs >= 3);
    assert_non_null(F.root[0]);
    assert_non_null(F.root[1]);
    assert_null(F.root[2]);
    assert_int_equal(F.loc[2].doc, 2);
    assert_int_equal(keel_diags_at(&F.d, 0)->loc.doc, 2);
}

static void test_syntax_errors_of_many_kinds(void **state)
{
    (void)state;
    static const char *const bad[] = {"a: [1, 2\n", "a: {b: 1\n", "]\n", "a: b: c\n", "a:\n\t- tab\n",
                                      "\"unterminated\n", "- a\nb: 1\n", "a: 'x\n", "&a\n*a: 1\n",
                                      "a:\n  - b\n c: d\n", "a: @x\n", "{a: 1}}\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        keel_diags_free(&F.d);
        keel_diags_init(&F.d);
        F.ndocs = 0;
        memset(F.root, 0, sizeof(F.root));
        load(bad[i]);
        if (keel_diags_count(&F.d) != 1)
            print_error("input %zu: %zu diagnostics\n", i, keel_diags_count(&F.d));
        assert_int_equal(keel_diags_count(&F.d), 1); /* the first error only: later ones cascade */
        assert_int_equal(keel_diags_at(&F.d, 0)->sev, KEEL_SEV_ERROR);
        assert_null(F.root[F.ndocs - 1]);
    }
}

static void test_billion_laughs(void **state)
{
    (void)state;
    char doc[2048];
    size_t n = (size_t)snprintf(doc, sizeof(doc), "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\","
                                                 "\"lol\",\"lol\"]\n");
    for (char c = 'b'; c <= 'i'; c++)
        n += (size_t)snprintf(doc + n, sizeof(doc) - n, "%c: &%c [*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c]\n", c, c,
                              c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1);
    double t0 = now();
    size_t arena_before = keel_arena_used(F.a);
    load(doc);
    double dt = now() - t0;
    one_diag("document too large");
    assert_null(F.root[0]);
    assert_true(dt < 2.0);                                      /* no expansion blow-up */
    assert_true(keel_arena_used(F.a) - arena_before < 1 << 20); /* nor memory */
}

static void test_merge_bomb(void **state)
{
    (void)state;
    /* merges of merges of aliases: each level doubles the expanded size */
    char doc[8192];
    size_t n = (size_t)snprintf(doc, sizeof(doc), "m0: &m0 {k: [1, 2, 3, 4, 5, 6, 7, 8]}\n");
    for (int i = 1; i < 40; i++)
        n += (size_t)snprintf(doc + n, sizeof(doc) - n, "m%d: &m%d\n  <<: *m%d\n  x%d: [*m%d, *m%d]\n", i, i,
                              i - 1, i, i - 1, i - 1);
    double t0 = now();
    load(doc);
    assert_true(now() - t0 < 2.0);
    one_diag("document too large");
}

static void test_large_but_legal_document(void **state)
{
    (void)state;
    /* 100k sequence items are fine (the budget is 2M nodes) */
    size_t cap = 100000 * 4 + 16;
    char *doc = malloc(cap);
    size_t n = 0;
    n += (size_t)snprintf(doc + n, cap - n, "[");
    for (int i = 0; i < 100000; i++)
        n += (size_t)snprintf(doc + n, cap - n, "%s1", i ? "," : "");
    n += (size_t)snprintf(doc + n, cap - n, "]");
    struct keel_node *r = load1(doc);
    assert_int_equal(r->n, 100000);
    assert_int_equal(r->weight, 100001);
    free(doc);
}

static void test_wide_mapping_is_not_quadratic(void **state)
{
    (void)state;
    /* duplicate-key detection scans the mapping for every key (attach() ->
     * map_find()), so one mapping of N keys costs O(N^2): 40k keys take
     * seconds, a few MB of keys take minutes */
    enum { N = 100000 };
    size_t cap = (size_t)N * 16 + 16;
    char *doc = malloc(cap);
    size_t n = 0;
    for (int i = 0; i < N; i++)
        n += (size_t)snprintf(doc + n, cap - n, "key%d: %d\n", i, i);
    double t0 = now();
    struct keel_node *r = load1(doc);
    double dt = now() - t0;
    assert_int_equal(r->n, N);
    assert_true(dt < 2.0);
    free(doc);
}

static void test_deep_nesting(void **state)
{
    (void)state;
    char doc[1024];
    /* 200 levels are allowed */
    memset(doc, '[', 200);
    memset(doc + 200, ']', 200);
    doc[400] = '\0';
    struct keel_node *r = load1(doc);
    assert_int_equal(r->type, KEEL_NODE_SEQ);
    /* 201 are not */
    keel_diags_free(&F.d);
    keel_diags_init(&F.d);
    F.ndocs = 0;
    memset(doc, '[', 201);
    memset(doc + 201, ']', 201);
    doc[402] = '\0';
    load(doc);
    const struct keel_diag *g = one_diag("nested too deeply");
    assert_int_equal(g->loc.line, 1);
    assert_int_equal(g->loc.col, 201);
    assert_null(F.root[0]);
}

static void test_deep_block_nesting(void **state)
{
    (void)state;
    size_t cap = 300 * 300;
    char *doc = malloc(cap);
    size_t n = 0;
    for (int i = 0; i < 250; i++)
        n += (size_t)snprintf(doc + n, cap - n, "%*sk:\n", i, "");
    snprintf(doc + n, cap - n, "%*sv\n", 250, "");
    double t0 = now();
    load(doc);
    assert_true(now() - t0 < 2.0);
    one_diag("nested too deeply");
    free(doc);
}

/* ---- JSON and tags ----------------------------------------------------------- */

static void test_json_input(void **state)
{
    (void)state;
    struct keel_node *r = load1("{\"apiVersion\": \"v1\", \"items\": [1, 2.5, \"x\", true, null, {\"p\": \"80\"}],"
                                " \"e\": {}, \"n\": -7}");
    assert_string_equal(keel_node_get_str(r, "apiVersion"), "v1");
    struct keel_node *items = get(r, "items");
    assert_int_equal(items->n, 6);
    assert_int_equal(items->c.items[0]->type, KEEL_NODE_INT);
    assert_int_equal(items->c.items[1]->type, KEEL_NODE_FLOAT);
    assert_int_equal(items->c.items[2]->type, KEEL_NODE_STRING);
    assert_true(items->c.items[2]->quoted);
    assert_int_equal(items->c.items[3]->type, KEEL_NODE_BOOL);
    assert_int_equal(items->c.items[4]->type, KEEL_NODE_NULL);
    assert_int_equal(get(items->c.items[5], "p")->type, KEEL_NODE_STRING);
    assert_int_equal(get(r, "n")->v.i, -7);
    assert_int_equal(get(r, "e")->n, 0);
}

static void test_json_multiline_locations(void **state)
{
    (void)state;
    struct keel_node *r = load1("{\n  \"a\": {\n    \"b\": 1\n  }\n}\n");
    assert_int_equal(get(get(r, "a"), "b")->loc.line, 3);
    assert_int_equal(get(get(r, "a"), "b")->loc.col, 10);
}

static void test_core_tags(void **state)
{
    (void)state;
    struct keel_node *r = load1("s: !!str 80\nb: !!str true\ni: !!int \"7\"\nn: !!null ''\nplain: !!int 9\n");
    assert_int_equal(get(r, "s")->type, KEEL_NODE_STRING);
    assert_string_equal(get(r, "s")->str, "80");
    assert_true(get(r, "s")->quoted);
    assert_int_equal(get(r, "b")->type, KEEL_NODE_STRING);
    assert_int_equal(get(r, "i")->type, KEEL_NODE_INT);
    assert_int_equal(get(r, "i")->v.i, 7);
    assert_int_equal(get(r, "n")->type, KEEL_NODE_NULL);
    assert_int_equal(get(r, "plain")->v.i, 9);
}

static void test_unsupported_tag(void **state)
{
    (void)state;
    load("a: !custom x\n");
    one_diag("unsupported YAML tag");
}

/* ---- files ------------------------------------------------------------------- */

static void test_load_file(void **state)
{
    (void)state;
    char path[] = "/tmp/keel-yaml-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char body[] = "a: 1\n---\nb: [x]\n";
    assert_int_equal(write(fd, body, sizeof(body) - 1), (ssize_t)(sizeof(body) - 1));
    close(fd);
    int rc = keel_yaml_load_file(F.a, path, &F.d, collect, NULL);
    unlink(path);
    assert_int_equal(rc, 2);
    assert_int_equal(F.ndocs, 2);
    assert_string_equal(F.root[1]->loc.file, path);
    assert_int_equal(keel_diags_count(&F.d), 0);
}

static void test_load_missing_file(void **state)
{
    (void)state;
    int rc = keel_yaml_load_file(F.a, "/nonexistent/keel/x.yaml", &F.d, collect, NULL);
    assert_int_equal(rc, KEEL_ENOENT);
    const struct keel_diag *g = one_diag("cannot open");
    assert_string_equal(g->loc.file, "/nonexistent/keel/x.yaml");
    assert_int_equal(F.ndocs, 0);
}

/* libfyaml 0.7.12 mis-decodes runs of '' and leaks on them; Keel decodes
 * single-quoted scalars itself */
static void test_single_quoted_escapes_and_folding(void **state)
{
    (void)state;
    struct keel_node *r = load1("a: '''''''x'''''''\nb: 'it''s'\nc: 'one\n  two\n\n  three  '\nd: ''\n");
    assert_string_equal(get(r, "a")->str, "'''x'''");
    assert_string_equal(get(r, "b")->str, "it's");
    assert_string_equal(get(r, "c")->str, "one two\nthree  ");
    assert_string_equal(get(r, "d")->str, "");
    assert_int_equal(get(r, "d")->len, 0);
}

/* invalid UTF-8 is refused with its position, before libfyaml sees it (it
 * loops forever on some, e.g. a directive line with byte 0xfa) */
static void test_invalid_utf8_rejected(void **state)
{
    (void)state;
    load("%\xfa");
    const struct keel_diag *g = one_diag("not valid UTF-8");
    assert_int_equal(g->loc.line, 1);
    assert_int_equal(g->loc.col, 2);
    assert_int_equal(F.ndocs, 1);
    assert_null(F.root[0]);
    keel_diags_free(&F.d);
    keel_diags_init(&F.d);
    F.ndocs = 0;
    load("a: b\nc: \xc3\x28\n"); /* a lead byte without its continuation */
    g = one_diag("byte 0xc3");
    assert_int_equal(g->loc.line, 2);
    assert_int_equal(g->loc.col, 4);
    keel_diags_free(&F.d);
    keel_diags_init(&F.d);
    F.ndocs = 0;
    load1("name: \xe3\x83\xaa\xf0\x9f\x98\x80\n"); /* multi-byte characters are fine */
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_multi_document_stream),
        T(test_empty_documents_are_skipped),
        T(test_scalar_documents),
        T(test_callback_can_stop_the_stream),
        T(test_buffer_is_length_delimited),
        T(test_core_schema_ints),
        T(test_core_schema_floats),
        T(test_core_schema_null_bool),
        T(test_yaml11_words_are_strings),
        T(test_quoted_vs_plain),
        T(test_keys_are_text),
        T(test_collection_keys_rejected),
        T(test_locations),
        T(test_weight_counts_nodes),
        T(test_alias_shares_the_anchored_node),
        T(test_anchor_redefinition_shadows),
        T(test_unknown_alias),
        T(test_alias_to_enclosing_collection),
        T(test_merge_key),
        T(test_merge_list_first_wins),
        T(test_merge_of_inline_map_and_quoted_key),
        T(test_merge_needs_a_mapping),
        T(test_duplicate_keys),
        T(test_duplicate_keys_in_flow_and_json),
        T(test_duplicate_keys_path_through_lists),
        T(test_duplicate_keys_in_several_documents),
        T(test_duplicate_explicit_keys_in_merged_map),
        T(test_alias_used_as_key_does_not_change_the_anchor),
        T(test_syntax_error),
        T(test_syntax_error_position),
        T(test_syntax_error_after_good_documents),
        T(test_syntax_errors_of_many_kinds),
        T(test_billion_laughs),
        T(test_merge_bomb),
        T(test_large_but_legal_document),
        T(test_wide_mapping_is_not_quadratic),
        T(test_deep_nesting),
        T(test_deep_block_nesting),
        T(test_json_input),
        T(test_json_multiline_locations),
        T(test_core_tags),
        T(test_unsupported_tag),
        T(test_load_file),
        T(test_load_missing_file),
        T(test_single_quoted_escapes_and_folding),
        T(test_invalid_utf8_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
