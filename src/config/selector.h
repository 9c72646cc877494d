/*
 * selector.h - label selectors: Istio workload selectors and Kubernetes
 * LabelSelector (matchLabels + matchExpressions).
 *
 * Istio's selectors (`selector.matchLabels`, `workloadSelector.labels`) are
 * plain maps: a workload is selected when every selector label is present
 * among its labels with an equal value (labels.Instance.SubsetOf in
 * istio/istio pkg/config/labels). Kubernetes' LabelSelector adds
 * matchExpressions with the operators In, NotIn, Exists and DoesNotExist
 * (k8s.io/apimachinery metav1.LabelSelectorAsSelector). Label keys and values
 * are compared exactly (case-sensitive), as Kubernetes does.
 *
 * Nothing here allocates or keeps pointers; all functions are pure and safe
 * to call from any thread on shared, immutable inputs.
 */
#ifndef KEEL_CONFIG_SELECTOR_H
#define KEEL_CONFIG_SELECTOR_H

#include "config/schema.h"

#include <stdbool.h>
#include <stddef.h>

/* Every selector label is present in labels with an equal value. An empty
 * selector (n_sel == 0) matches everything: callers decide what "empty"
 * means for their kind (Istio: selector-less policy = namespace-wide). */
bool keel_labels_match(const struct keel_kv_str *sel, size_t n_sel, const struct keel_kv_str *labels, size_t n_labels);

/* Value of label key, or NULL when absent. */
const char *keel_labels_get(const struct keel_kv_str *labels, size_t n_labels, const char *key);

/* The two label sets are equal as sets (same keys, same values, any order). */
bool keel_labels_equal(const struct keel_kv_str *a, size_t na, const struct keel_kv_str *b, size_t nb);

/* Kubernetes metav1.LabelSelector. All pointers borrowed. match_expressions
 * is the decoded YAML list (a SEQ of MAPs {key, operator, values}), or NULL. */
struct keel_label_selector {
    const struct keel_kv_str *match_labels;
    size_t n_match_labels;
    const struct keel_node *match_expressions;
};

/* NULL when sel is well formed, else a static message naming the first
 * problem: expressions not a list, item not an object, missing key, unknown
 * operator, In/NotIn without values, Exists/DoesNotExist with values. */
const char *keel_label_selector_error(const struct keel_label_selector *sel);

/* Kubernetes semantics: matchLabels AND every matchExpression. An empty
 * selector (no labels, no expressions) matches everything; a NULL selector
 * matches nothing (metav1's nil selector); a malformed selector matches
 * nothing (fail closed, see keel_label_selector_error()). */
bool keel_label_selector_matches(const struct keel_label_selector *sel, const struct keel_kv_str *labels,
                                 size_t n_labels);

#endif
