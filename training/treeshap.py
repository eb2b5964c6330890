"""Exact path-dependent TreeSHAP for scikit-learn's HistGradientBoostingClassifier.

shap's TreeExplainer reads a HistGradientBoosting model as if every split were a numeric
threshold on the original column order. Models with declared categorical features are
neither: they split on category bitsets, over columns the model's own ordinal encoder has
reordered (categoricals first). On such a model shap 0.51 returns values whose sum misses
the model's output by orders of magnitude, so reason codes built on it would be noise.

This module computes the same quantity as shap's TreeExplainer (path-dependent TreeSHAP,
Lundberg et al. 2018, Algorithm 2) over the model's own trees, routing each row exactly as the
model's predictor does. It works path by path: a root-to-leaf path with its d distinct features
is a d-player game v(S) = leaf x prod_{j in S} o_j x prod_{j not in S} z_j, where z_j is the
share of training rows that follow the path's splits on feature j and o_j is 1 when the row
follows them all, else 0. Because every o_j is 0 or 1, feature i's Shapley value is

    leaf x (o_i - z_i) x prod_{j off, j != i} z_j x sum_s s!(d-s-1)!/d! x e_(m-s)(z of the "on"
    features other than i)

with e_r the elementary symmetric polynomials (m of them "on"). The paths and their z are
compiled once per model; a row only needs its split decisions. This is exact (the tests check
that contributions add up to `decision_function` and equal shap's on a model shap reads
correctly) and several times faster than the recursive form on these models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
import pandas as pd

# Split decisions of one tree are kept as the bits of one int64.
MAX_INTERNAL_NODES = 62


@dataclass(frozen=True)
class FlatForest:
    """All trees of one model as flat arrays (node indices are global)."""

    roots: npt.NDArray[np.int64]
    left: npt.NDArray[np.int64]
    right: npt.NDArray[np.int64]
    feature: npt.NDArray[np.int64]  # column of the model's encoded matrix
    threshold: npt.NDArray[np.float64]
    missing_left: npt.NDArray[np.bool_]
    is_categorical: npt.NDArray[np.bool_]
    bitset_row: npt.NDArray[np.int64]
    is_leaf: npt.NDArray[np.bool_]
    value: npt.NDArray[np.float64]
    cover: npt.NDArray[np.float64]
    left_cat_bitsets: npt.NDArray[np.uint32]
    known_cat_bitsets: npt.NDArray[np.uint32]
    known_cat_row: npt.NDArray[np.int64]  # encoded column -> row of known_cat_bitsets
    encoded_to_original: npt.NDArray[np.int64]
    max_depth: int
    baseline: float
    # Raw -> encoded columns, as the model's own ordinal encoder does it.
    categorical_columns: npt.NDArray[np.int64]
    categories: tuple[npt.NDArray[np.float64], ...]
    numeric_columns: npt.NDArray[np.int64]
    # Root-to-leaf paths: leaf value, then their distinct features ("elements") with the share
    # z of training rows following the path's splits on that feature, then those splits.
    path_value: npt.NDArray[np.float64]
    path_elements: npt.NDArray[np.int64]  # (n_paths, 2): first element, count
    element_feature: npt.NDArray[np.int64]
    element_z: npt.NDArray[np.float64]
    # A path's splits on a feature as bits over its tree's internal nodes: which nodes, and at
    # which of them the path goes left. A row follows them when its own decisions match.
    element_mask: npt.NDArray[np.int64]
    element_left: npt.NDArray[np.int64]
    path_tree: npt.NDArray[np.int64]
    internal_nodes: npt.NDArray[np.int64]
    node_tree: npt.NDArray[np.int64]
    node_bit: npt.NDArray[np.int64]


def flatten_hist_gradient_boosting(model: Any) -> FlatForest:
    """Read a fitted binary HistGradientBoostingClassifier's trees into a FlatForest."""
    if getattr(model, "n_trees_per_iteration_", 1) != 1:
        raise ValueError("only binary classifiers (one tree per iteration) are supported")
    predictors = [iteration[0] for iteration in model._predictors]
    n_features = int(model.n_features_in_)
    if model._preprocessor is None:
        encoded_to_original = np.arange(n_features)
    else:
        is_cat = np.asarray(model.is_categorical_, dtype=bool)
        # The model's ColumnTransformer emits the categorical columns first, then the rest.
        encoded_to_original = np.concatenate([np.flatnonzero(is_cat), np.flatnonzero(~is_cat)])
    known_cat_bitsets, f_idx_map = model._bin_mapper.make_known_categories_bitsets()

    parts: dict[str, list[npt.NDArray[Any]]] = {k: [] for k in ("left", "right", "bitset")}
    nodes_list, bitsets, roots = [], [], []
    node_offset = bitset_offset = 0
    max_depth = 0
    for predictor in predictors:
        nodes = predictor.nodes
        roots.append(node_offset)
        parts["left"].append(nodes["left"].astype(np.int64) + node_offset)
        parts["right"].append(nodes["right"].astype(np.int64) + node_offset)
        parts["bitset"].append(nodes["bitset_idx"].astype(np.int64) + bitset_offset)
        nodes_list.append(nodes)
        bitsets.append(np.asarray(predictor.raw_left_cat_bitsets, dtype=np.uint32).reshape(-1, 8))
        node_offset += len(nodes)
        bitset_offset += bitsets[-1].shape[0]
        max_depth = max(max_depth, int(nodes["depth"].max()))
    nodes_all = np.concatenate(nodes_list)
    left = np.concatenate(parts["left"])
    right = np.concatenate(parts["right"])
    is_leaf = nodes_all["is_leaf"].astype(bool)
    cover = nodes_all["count"].astype(np.float64)
    feature = nodes_all["feature_idx"].astype(np.int64)
    paths = _compile_paths(roots, left, right, is_leaf, feature, cover, nodes_all["value"])
    categorical_columns, categories, numeric_columns = _encoding(model, n_features)
    return FlatForest(
        roots=np.asarray(roots, dtype=np.int64),
        left=left,
        right=right,
        feature=feature,
        threshold=nodes_all["num_threshold"].astype(np.float64),
        missing_left=nodes_all["missing_go_to_left"].astype(bool),
        is_categorical=nodes_all["is_categorical"].astype(bool),
        bitset_row=np.concatenate(parts["bitset"]),
        is_leaf=is_leaf,
        value=nodes_all["value"].astype(np.float64),
        cover=cover,
        left_cat_bitsets=(
            np.concatenate(bitsets) if bitset_offset else np.zeros((1, 8), dtype=np.uint32)
        ),
        known_cat_bitsets=np.asarray(known_cat_bitsets, dtype=np.uint32).reshape(-1, 8)
        if len(known_cat_bitsets)
        else np.zeros((1, 8), dtype=np.uint32),
        known_cat_row=np.asarray(f_idx_map, dtype=np.int64),
        encoded_to_original=encoded_to_original.astype(np.int64),
        max_depth=max_depth,
        baseline=float(np.ravel(model._baseline_prediction)[0]),
        categorical_columns=categorical_columns,
        categories=categories,
        numeric_columns=numeric_columns,
        internal_nodes=np.flatnonzero(~is_leaf).astype(np.int64),
        **paths,
    )


def _encoding(
    model: Any, n_features: int
) -> tuple[npt.NDArray[np.int64], tuple[npt.NDArray[np.float64], ...], npt.NDArray[np.int64]]:
    if model._preprocessor is None:
        return np.zeros(0, dtype=np.int64), (), np.arange(n_features, dtype=np.int64)
    is_cat = np.asarray(model.is_categorical_, dtype=bool)
    encoder = model._preprocessor.named_transformers_["encoder"]
    categories = tuple(
        np.asarray([c for c in values if not np.isnan(c)], dtype=np.float64)
        for values in encoder.categories_
    )
    return (
        np.flatnonzero(is_cat).astype(np.int64),
        categories,
        np.flatnonzero(~is_cat).astype(np.int64),
    )


def _compile_paths(
    roots: list[int],
    left: npt.NDArray[np.int64],
    right: npt.NDArray[np.int64],
    is_leaf: npt.NDArray[np.bool_],
    feature: npt.NDArray[np.int64],
    cover: npt.NDArray[np.float64],
    value: npt.NDArray[Any],
) -> dict[str, Any]:
    """Every root-to-leaf path with its distinct features, their z and their split bits."""
    node_tree = np.full(len(left), -1, dtype=np.int64)
    node_bit = np.full(len(left), -1, dtype=np.int64)
    path_value: list[float] = []
    path_elements: list[tuple[int, int]] = []
    path_tree: list[int] = []
    element_feature: list[int] = []
    element_z: list[float] = []
    element_mask: list[int] = []
    element_left: list[int] = []
    for tree, root in enumerate(roots):
        stack: list[tuple[int, list[tuple[int, bool, float]]]] = [(int(root), [])]
        bits = 0
        while stack:
            node, steps = stack.pop()
            if is_leaf[node]:
                by_feature: dict[int, list[tuple[int, bool, float]]] = {}
                for step in steps:
                    by_feature.setdefault(int(feature[step[0]]), []).append(step)
                path_elements.append((len(element_feature), len(by_feature)))
                path_value.append(float(value[node]))
                path_tree.append(tree)
                for column, splits in by_feature.items():
                    element_feature.append(column)
                    element_z.append(float(np.prod([share for _, _, share in splits])))
                    element_mask.append(sum(1 << int(node_bit[n]) for n, _, _ in splits))
                    element_left.append(sum(1 << int(node_bit[n]) for n, goes, _ in splits if goes))
                continue
            if bits == MAX_INTERNAL_NODES:
                raise ValueError(
                    f"a tree has more than {MAX_INTERNAL_NODES} splits; reason codes support "
                    f"max_leaf_nodes <= {MAX_INTERNAL_NODES + 1}"
                )
            node_tree[node], node_bit[node] = tree, bits
            bits += 1
            for child, goes_left in ((left[node], True), (right[node], False)):
                share = cover[child] / cover[node]
                stack.append((int(child), [*steps, (node, goes_left, share)]))
    return {
        "path_value": np.asarray(path_value, dtype=np.float64),
        "path_elements": np.asarray(path_elements, dtype=np.int64).reshape(-1, 2),
        "path_tree": np.asarray(path_tree, dtype=np.int64),
        "element_feature": np.asarray(element_feature, dtype=np.int64),
        "element_z": np.asarray(element_z, dtype=np.float64),
        "element_mask": np.asarray(element_mask, dtype=np.int64),
        "element_left": np.asarray(element_left, dtype=np.int64),
        "node_tree": node_tree,
        "node_bit": node_bit,
    }


def encode_rows(forest: FlatForest, X: pd.DataFrame) -> npt.NDArray[np.float64]:
    """The matrix the trees see: categorical codes as the model's ordinal encoder numbers them
    (unknown codes -> NaN, i.e. missing), categorical columns first (float64, C order)."""
    raw = np.asarray(X, dtype=np.float64)
    encoded = np.empty_like(raw)
    for position, (column, known) in enumerate(
        zip(forest.categorical_columns, forest.categories, strict=True)
    ):
        values = raw[:, column]
        index = np.searchsorted(known, values)
        inside = index < len(known)
        found = np.zeros(len(values), dtype=bool)
        found[inside] = known[index[inside]] == values[inside]
        encoded[:, position] = np.where(found, index, np.nan)
    encoded[:, len(forest.categorical_columns) :] = raw[:, forest.numeric_columns]
    return np.ascontiguousarray(encoded)


@numba.njit(cache=True)
def _shapley_weights(size: int) -> Any:
    """weights[d, s] = s! (d - s - 1)! / d!: the Shapley weight of a coalition of s among d."""
    weights = np.zeros((size + 1, size + 1))
    for d in range(1, size + 1):
        for s in range(d):
            w = 1.0 / d
            # s! (d-s-1)! / d! = 1 / (d * C(d-1, s))
            for k in range(1, s + 1):
                w *= k / (d - s - 1 + k)
            weights[d, s] = w
    return weights


@numba.njit(cache=True)
def _shap_rows(
    X: Any,
    internal: Any,
    routing: Any,
    path_value: Any,
    path_elements: Any,
    path_tree: Any,
    element_feature: Any,
    element_z: Any,
    element_mask: Any,
    element_left: Any,
    node_tree: Any,
    node_bit: Any,
    n_trees: int,
    max_elements: int,
) -> Any:
    feature, threshold, missing_left, is_cat, bitset_row, left_bits, known_bits, known_row = routing
    n_rows, n_cols = X.shape
    out = np.zeros((n_rows, n_cols))
    weights = _shapley_weights(max_elements)
    decisions = np.zeros(n_trees, dtype=np.int64)
    on = np.zeros(max_elements, dtype=np.bool_)
    e_all = np.zeros(max_elements + 1)
    e_less = np.zeros(max_elements + 1)
    for r in range(n_rows):
        x = X[r]
        decisions[:] = 0
        # Route the row through every split once, exactly as the model's predictor does. (Kept
        # inline: a helper taking the ten arrays costs more per call than the comparison.)
        for node in internal:
            value = x[feature[node]]
            if np.isnan(value):
                goes = missing_left[node]
            elif is_cat[node]:
                code = int(value)
                if value < 0 or code > 255:
                    goes = missing_left[node]
                elif (left_bits[bitset_row[node], code >> 5] >> (code & 31)) & 1:
                    goes = True
                elif (known_bits[known_row[feature[node]], code >> 5] >> (code & 31)) & 1:
                    goes = False
                else:  # a category unseen in training counts as missing, as in the model
                    goes = missing_left[node]
            else:
                goes = value <= threshold[node]
            if goes:
                decisions[node_tree[node]] |= np.int64(1) << node_bit[node]
        for p in range(path_value.shape[0]):
            first, d = path_elements[p, 0], path_elements[p, 1]
            if d == 0:
                continue
            # Which of the path's features the row follows, and the product of z of the others.
            off_product = 1.0
            m = 0
            taken = decisions[path_tree[p]]
            for k in range(d):
                element = first + k
                follows = ((taken ^ element_left[element]) & element_mask[element]) == 0
                on[k] = follows
                if follows:
                    m += 1
                else:
                    off_product *= element_z[element]
            # Elementary symmetric polynomials of the z of the "on" features.
            e_all[0] = 1.0
            for j in range(1, m + 1):
                e_all[j] = 0.0
            filled = 0
            for k in range(d):
                if on[k]:
                    z = element_z[first + k]
                    filled += 1
                    for j in range(filled, 0, -1):
                        e_all[j] += e_all[j - 1] * z
            leaf = path_value[p] * off_product
            off_value = 0.0
            if m < d:  # a feature the row does not follow: all "on" features stay possible
                total = 0.0
                for s in range(m + 1):
                    total += weights[d, s] * e_all[m - s]
                off_value = -leaf * total
            for k in range(d):
                element = first + k
                column = element_feature[element]
                if not on[k]:
                    out[r, column] += off_value
                    continue
                # The polynomials without this feature: divide out (1 + z t).
                z = element_z[element]
                e_less[0] = 1.0
                for j in range(1, m):
                    e_less[j] = e_all[j] - z * e_less[j - 1]
                total = 0.0
                for s in range(m):
                    total += weights[d, s] * e_less[m - 1 - s]
                out[r, column] += leaf * (1.0 - z) * total
    return out


def expected_value(forest: FlatForest) -> float:
    """The model's log-odds output averaged over its training data (the SHAP base value)."""
    total = forest.baseline
    for p, (first, count) in enumerate(forest.path_elements):
        total += forest.path_value[p] * float(np.prod(forest.element_z[first : first + count]))
    return float(total)


def shap_values(forest: FlatForest, encoded: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Per-row contributions (log-odds), columns in the model's *original* feature order."""
    routing = (
        forest.feature,
        forest.threshold,
        forest.missing_left,
        forest.is_categorical,
        forest.bitset_row,
        forest.left_cat_bitsets,
        forest.known_cat_bitsets,
        forest.known_cat_row,
    )
    max_elements = int(forest.path_elements[:, 1].max()) if len(forest.path_elements) else 0
    in_encoded_order = _shap_rows(
        encoded,
        forest.internal_nodes,
        routing,
        forest.path_value,
        forest.path_elements,
        forest.path_tree,
        forest.element_feature,
        forest.element_z,
        forest.element_mask,
        forest.element_left,
        forest.node_tree,
        forest.node_bit,
        len(forest.roots),
        max_elements,
    )
    result = np.empty_like(in_encoded_order)
    result[:, forest.encoded_to_original] = in_encoded_order
    return result
