/*
 * selector.c - label selector matching (see selector.h).
 *
 * Label sets are small (Kubernetes caps them, and real pods carry a handful),
 * so matching is a nested scan: O(|selector| x |labels|) without hashing or
 * allocation.
 */
#include "config/selector.h"

#include "config/node.h"

#include <string.h>

static bool str_eq(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

const char *keel_labels_get(const struct keel_kv_str *labels, size_t n_labels, const char *key)
{
    for (size_t i = 0; i < n_labels; i++)
        if (str_eq(labels[i].key, key))
            return labels[i].value ? labels[i].value : "";
    return NULL;
}

bool keel_labels_match(const struct keel_kv_str *sel, size_t n_sel, const struct keel_kv_str *labels, size_t n_labels)
{
    for (size_t i = 0; i < n_sel; i++) {
        const char *v = keel_labels_get(labels, n_labels, sel[i].key);
        if (!v || !str_eq(v, sel[i].value))
            return false;
    }
    return true;
}

bool keel_labels_equal(const struct keel_kv_str *a, size_t na, const struct keel_kv_str *b, size_t nb)
{
    /* duplicate keys are impossible in decoded maps, so mutual inclusion is equality */
    return keel_labels_match(a, na, b, nb) && keel_labels_match(b, nb, a, na);
}

enum op {
    OP_IN,
    OP_NOT_IN,
    OP_EXISTS,
    OP_DOES_NOT_EXIST,
    OP_BAD,
};

static enum op parse_op(const char *s)
{
    if (!s)
        return OP_BAD;
    if (strcmp(s, "In") == 0)
        return OP_IN;
    if (strcmp(s, "NotIn") == 0)
        return OP_NOT_IN;
    if (strcmp(s, "Exists") == 0)
        return OP_EXISTS;
    if (strcmp(s, "DoesNotExist") == 0)
        return OP_DOES_NOT_EXIST;
    return OP_BAD;
}

static bool is_scalar(const struct keel_node *n)
{
    return n && n->type != KEEL_NODE_SEQ && n->type != KEEL_NODE_MAP && n->type != KEEL_NODE_NULL;
}

static const char *expr_error(const struct keel_node *e)
{
    if (!e || e->type != KEEL_NODE_MAP)
        return "matchExpressions items must be objects";
    const struct keel_node *key = keel_node_get(e, "key");
    if (!is_scalar(key) || key->len == 0)
        return "matchExpressions item needs a non-empty key";
    enum op op = parse_op(keel_node_get_str(e, "operator"));
    if (op == OP_BAD)
        return "matchExpressions operator must be In, NotIn, Exists or DoesNotExist";
    const struct keel_node *vals = keel_node_get(e, "values");
    if (vals && vals->type != KEEL_NODE_NULL && vals->type != KEEL_NODE_SEQ)
        return "matchExpressions values must be a list";
    size_t nv = vals && vals->type == KEEL_NODE_SEQ ? vals->n : 0;
    for (size_t i = 0; i < nv; i++)
        if (!is_scalar(vals->c.items[i]))
            return "matchExpressions values must be strings";
    if ((op == OP_IN || op == OP_NOT_IN) && nv == 0)
        return "matchExpressions with operator In or NotIn need values";
    if ((op == OP_EXISTS || op == OP_DOES_NOT_EXIST) && nv != 0)
        return "matchExpressions with operator Exists or DoesNotExist must not have values";
    return NULL;
}

const char *keel_label_selector_error(const struct keel_label_selector *sel)
{
    if (!sel)
        return NULL;
    const struct keel_node *ex = sel->match_expressions;
    if (!ex || ex->type == KEEL_NODE_NULL)
        return NULL;
    if (ex->type != KEEL_NODE_SEQ)
        return "matchExpressions must be a list";
    for (size_t i = 0; i < ex->n; i++) {
        const char *err = expr_error(ex->c.items[i]);
        if (err)
            return err;
    }
    return NULL;
}

static bool in_values(const struct keel_node *vals, const char *v)
{
    for (size_t i = 0; i < vals->n; i++)
        if (strcmp(vals->c.items[i]->str, v) == 0)
            return true;
    return false;
}

/* e is well formed (checked by the caller) */
static bool expr_matches(const struct keel_node *e, const struct keel_kv_str *labels, size_t n_labels)
{
    const char *v = keel_labels_get(labels, n_labels, keel_node_get(e, "key")->str);
    const struct keel_node *vals = keel_node_get(e, "values");
    switch (parse_op(keel_node_get_str(e, "operator"))) {
    case OP_IN:
        return v && in_values(vals, v);
    case OP_NOT_IN:
        return !v || !in_values(vals, v);
    case OP_EXISTS:
        return v != NULL;
    case OP_DOES_NOT_EXIST:
        return v == NULL;
    case OP_BAD:
        break;
    }
    return false;
}

bool keel_label_selector_matches(const struct keel_label_selector *sel, const struct keel_kv_str *labels,
                                 size_t n_labels)
{
    if (!sel || keel_label_selector_error(sel))
        return false;
    if (!keel_labels_match(sel->match_labels, sel->n_match_labels, labels, n_labels))
        return false;
    const struct keel_node *ex = sel->match_expressions;
    if (!ex || ex->type != KEEL_NODE_SEQ)
        return true;
    for (size_t i = 0; i < ex->n; i++)
        if (!expr_matches(ex->c.items[i], labels, n_labels))
            return false;
    return true;
}
