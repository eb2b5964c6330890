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
correctly).

Per row, most of that arithmetic is the same every time: the z are fixed per model, so a path's
contributions depend only on the row's on/off pattern over its d features. Summing the Shapley
formula over the coalitions S of "on" features gives, with

    table(U) = leaf x sum_{S subset of U} s!(d-s-1)!/d! x prod_{j not in S} z_j

(2^d numbers per path, one per subset U of its features): an "off" feature gets -table(on),
an "on" feature i gets (1 - z_i) / z_i x table(on without i). So, as in Fast TreeSHAP v2
(Yang 2021), the tables are built once per model, when it is flattened (subset products, then
a sum over subsets: O(d 2^d) per path), and a row costs its split decisions, its pattern on
each path, and one table read per path and per "on" feature.

Measured on the production model (400 trees of 31 leaves, 12,400 paths with d up to 15, mean
5.9): the tables take 23.1 MiB and build in about 30 ms (flattening the model, mostly reading
its paths in Python, takes 0.3-0.4 s in all); a row costs about 0.4-0.7 ms instead of 1.8-2 ms,
0.2-0.35 ms in batches of 10 or more. Storing the d contributions of each pattern instead
(d x 2^d numbers, one contiguous read per path) would take 245 MB, 74 MB for the paths with
d <= 9; kept within 64 MB that way (d <= 8, the longer paths as here) it measured no faster,
as a row's reads then spread over three times the memory. Deeper trees could need far more (a 31-leaf
chain has a path with d = 30: 8 GiB), so tables are kept within `TABLE_BYTES` (64 MiB, a
little under three times what this model needs): paths are tabulated up to the largest d
whose tables all fit, and the others (and any path with a zero z, where the ratio above is
undefined) are computed per row with the formula above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
import pandas as pd

# Split decisions of one tree are kept as the bits of one int64.
MAX_INTERNAL_NODES = 62
# Memory allowed for the per-path contribution tables of one model (see the module docstring).
TABLE_BYTES = 64 * 2**20
# Rows explained together: each path's data is read once for all of them.
ROW_CHUNK = 16
# split_flags bits
_MISSING_LEFT = 1
_CATEGORICAL = 2


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
    # The internal nodes again, tree by tree in the order of their bits in a tree's decisions,
    # compactly (what a row streams through to find its decisions).
    tree_splits: npt.NDArray[np.int64]  # tree t's splits are tree_splits[t]:tree_splits[t + 1]
    split_feature: npt.NDArray[np.int32]
    split_threshold: npt.NDArray[np.float64]
    split_flags: npt.NDArray[np.uint8]  # _MISSING_LEFT | _CATEGORICAL
    split_bitset_row: npt.NDArray[np.int32]
    # Contribution tables: where each path's 2^d values start in `tables` (-1: computed per
    # row), and (1 - z) / z per element, the factor an "on" feature takes from them.
    path_table: npt.NDArray[np.int64]
    tables: npt.NDArray[np.float64]
    element_on_ratio: npt.NDArray[np.float64]
    table_max_elements: int  # paths with more distinct features are computed per row


def flatten_hist_gradient_boosting(model: Any, table_bytes: int = TABLE_BYTES) -> FlatForest:
    """Read a fitted binary HistGradientBoostingClassifier's trees into a FlatForest, with
    contribution tables for its paths within `table_bytes` (0: every path computed per row)."""
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
    node_tree, node_bit = paths.pop("node_tree"), paths.pop("node_bit")
    # Internal nodes sorted by (tree, bit): a node's position in its tree is then its bit.
    splits = np.flatnonzero(~is_leaf)
    splits = splits[np.lexsort((node_bit[splits], node_tree[splits]))]
    missing_left = nodes_all["missing_go_to_left"].astype(bool)
    is_categorical = nodes_all["is_categorical"].astype(bool)
    threshold = nodes_all["num_threshold"].astype(np.float64)
    bitset_row = np.concatenate(parts["bitset"])
    categorical_columns, categories, numeric_columns = _encoding(model, n_features)
    tables = _tables(paths, table_bytes)
    return FlatForest(
        roots=np.asarray(roots, dtype=np.int64),
        left=left,
        right=right,
        feature=feature,
        threshold=threshold,
        missing_left=missing_left,
        is_categorical=is_categorical,
        bitset_row=bitset_row,
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
        tree_splits=np.searchsorted(node_tree[splits], np.arange(len(roots) + 1)).astype(np.int64),
        split_feature=feature[splits].astype(np.int32),
        split_threshold=threshold[splits],
        split_flags=(
            np.where(missing_left[splits], _MISSING_LEFT, 0)
            | np.where(is_categorical[splits], _CATEGORICAL, 0)
        ).astype(np.uint8),
        split_bitset_row=bitset_row[splits].astype(np.int32),
        **paths,
        **tables,
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
    """Every root-to-leaf path with its distinct features, their z and their split bits.

    Paths come in order of their number of features: the per-row loops over a path's features
    then run the same number of times path after path, which the CPU predicts (about a tenth
    faster per row), and the paths left without a table (the longest) come last."""
    node_tree = np.full(len(left), -1, dtype=np.int64)
    node_bit = np.full(len(left), -1, dtype=np.int64)
    # (leaf value, tree, [(feature, z, split mask, left mask) per distinct feature])
    paths: list[tuple[float, int, list[tuple[int, float, int, int]]]] = []
    for tree, root in enumerate(roots):
        stack: list[tuple[int, list[tuple[int, bool, float]]]] = [(int(root), [])]
        bits = 0
        while stack:
            node, steps = stack.pop()
            if is_leaf[node]:
                by_feature: dict[int, list[tuple[int, bool, float]]] = {}
                for step in steps:
                    by_feature.setdefault(int(feature[step[0]]), []).append(step)
                elements = [
                    (
                        column,
                        math.prod(share for _, _, share in splits),
                        sum(1 << int(node_bit[n]) for n, _, _ in splits),
                        sum(1 << int(node_bit[n]) for n, goes, _ in splits if goes),
                    )
                    for column, splits in by_feature.items()
                ]
                paths.append((float(value[node]), tree, elements))
                continue
            if bits == MAX_INTERNAL_NODES:
                raise ValueError(
                    f"a tree has more than {MAX_INTERNAL_NODES} splits; reason codes support "
                    f"max_leaf_nodes <= {MAX_INTERNAL_NODES + 1}"
                )
            node_tree[node], node_bit[node] = tree, bits
            bits += 1
            for child, goes_left in ((left[node], True), (right[node], False)):
                share = float(cover[child] / cover[node])
                stack.append((int(child), [*steps, (node, goes_left, share)]))
    paths.sort(key=lambda path: len(path[2]))
    counts = np.asarray([len(elements) for _, _, elements in paths], dtype=np.int64)
    flat = [element for _, _, elements in paths for element in elements]
    columns = list(zip(*flat, strict=True)) if flat else [(), (), (), ()]
    return {
        "path_value": np.asarray([leaf for leaf, _, _ in paths], dtype=np.float64),
        "path_elements": np.stack([np.cumsum(counts) - counts, counts], axis=1),
        "path_tree": np.asarray([tree for _, tree, _ in paths], dtype=np.int64),
        "element_feature": np.asarray(columns[0], dtype=np.int64),
        "element_z": np.asarray(columns[1], dtype=np.float64),
        "element_mask": np.asarray(columns[2], dtype=np.int64),
        "element_left": np.asarray(columns[3], dtype=np.int64),
        "node_tree": node_tree,
        "node_bit": node_bit,
    }


def _tables(paths: dict[str, Any], table_bytes: int) -> dict[str, Any]:
    """Contribution tables for the paths with the fewest features that fit in `table_bytes`."""
    if table_bytes < 0:
        raise ValueError(f"table_bytes must be 0 or more, not {table_bytes}")
    path_value, path_elements = paths["path_value"], paths["path_elements"]
    element_z = paths["element_z"]
    counts = path_elements[:, 1]
    element_path = np.repeat(np.arange(len(counts)), counts)
    has_zero_z = np.bincount(element_path, weights=element_z <= 0.0, minlength=len(counts)) > 0
    # A path with no feature (a tree that is a single leaf) contributes nothing to any feature.
    eligible = (counts > 0) & ~has_zero_z
    bytes_by_count = np.bincount(
        counts[eligible], weights=8.0 * 2.0 ** counts[eligible], minlength=MAX_INTERNAL_NODES + 1
    )
    fits = np.flatnonzero(np.cumsum(bytes_by_count) <= table_bytes)
    # cumsum is non-decreasing, so the counts that fit are 0..limit.
    limit = min(int(fits[-1]), int(counts.max(initial=0)))
    tabulated = eligible & (counts <= limit)
    sizes = np.where(tabulated, np.int64(1) << counts, 0)
    offsets = np.cumsum(sizes) - sizes
    path_table = np.where(tabulated, offsets, -1).astype(np.int64)
    with np.errstate(divide="ignore"):  # zero z: such paths are never tabulated
        on_ratio = (1.0 - element_z) / element_z
    # Allocated by numpy, which asks Linux for huge pages for large arrays: reads anywhere in
    # the tables then miss the TLB less (about a tenth faster per row than numba's allocation).
    tables = np.empty(int(sizes.sum()))
    _build_tables(tables, path_value, path_elements, element_z, path_table, limit)
    return {
        "path_table": path_table,
        "tables": tables,
        "element_on_ratio": on_ratio,
        "table_max_elements": limit,
    }


@numba.njit(cache=True, nogil=True)
def _build_tables(
    tables: Any,
    path_value: Any,
    path_elements: Any,
    element_z: Any,
    path_table: Any,
    max_elements: int,
) -> None:
    """table(U) = leaf x sum over S in U of weight(|S|) x prod of z outside S, per path."""
    weights = _shapley_weights(max_elements)
    for p in range(path_value.shape[0]):
        offset = path_table[p]
        if offset < 0:
            continue
        first, d = path_elements[p, 0], path_elements[p, 1]
        n = np.int64(1) << d
        table = tables[offset : offset + n]
        table[:] = path_value[p]
        for k in range(d):  # x z of every feature outside S
            z = element_z[first + k]
            bit = np.int64(1) << k
            for s in range(n):
                if not s & bit:
                    table[s] *= z
        for s in range(n):  # x the Shapley weight of a coalition of |S|
            size_s = 0
            rest = s
            while rest:
                rest &= rest - 1
                size_s += 1
            table[s] *= weights[d, size_s]
        for k in range(d):  # sum over the subsets of each U, one feature at a time
            bit = np.int64(1) << k
            for s in range(n):
                if s & bit:
                    table[s] += table[s ^ bit]


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


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
def _shap_rows(
    X: Any,
    splits: Any,
    categories: Any,
    paths: Any,
    elements: Any,
    tabulated: Any,
    max_elements: int,
    chunk: int,
) -> Any:
    # Hot indices are cast to np.uint64: numba then skips the negative-index wraparound it
    # adds to every signed index (rows took a quarter less time). Never mix uint64 and int64
    # in arithmetic: numba gives a float.
    tree_splits, split_feature, split_threshold, split_flags, split_bitset = splits
    left_bits, known_bits, known_row = categories
    path_value, path_elements, path_tree = paths
    element_feature, element_z, element_mask, element_left = elements
    path_table, tables, on_ratio = tabulated
    n_rows, n_cols = X.shape
    n_trees, n_paths = tree_splits.shape[0] - 1, path_value.shape[0]
    out = np.zeros(n_rows * n_cols)
    weights = _shapley_weights(max_elements)
    e_all = np.zeros(max_elements + 1)
    e_less = np.zeros(max_elements + 1)
    for chunk_start in range(0, n_rows, chunk):
        rows = min(chunk, n_rows - chunk_start)
        # One entry per tree (per path) and row of the chunk, a row's entries side by side.
        decisions = np.empty(n_trees * rows, dtype=np.int64)
        patterns = np.empty(n_paths * rows, dtype=np.int64)
        for c in range(rows):
            x = X[chunk_start + c]
            # Route the row through every split once, exactly as the model's predictor does.
            # (Kept inline: a helper taking the arrays costs more per call than the comparison.)
            for tree in range(n_trees):
                taken = np.int64(0)
                first_split = tree_splits[tree]
                for position in range(tree_splits[tree + 1] - first_split):
                    i = np.uint64(first_split + position)
                    value = x[np.uint64(split_feature[i])]
                    missing_left = (split_flags[i] & _MISSING_LEFT) != 0
                    if np.isnan(value):
                        goes = missing_left
                    elif split_flags[i] & _CATEGORICAL:
                        code = int(value)
                        if value < 0 or code > 255:
                            goes = missing_left
                        elif (left_bits[split_bitset[i], code >> 5] >> (code & 31)) & 1:
                            goes = True
                        elif (
                            known_bits[known_row[split_feature[i]], code >> 5] >> (code & 31)
                        ) & 1:
                            goes = False
                        else:  # a category unseen in training counts as missing, as in the model
                            goes = missing_left
                    else:
                        goes = value <= split_threshold[i]
                    taken |= np.int64(goes) << position
                decisions[np.uint64(tree * rows + c)] = taken
        # Which of each path's features each row follows, as the bits of a pattern.
        for p in range(n_paths):
            first, d = path_elements[p, 0], path_elements[p, 1]
            tree = path_tree[p]
            for c in range(rows):
                taken = decisions[np.uint64(tree * rows + c)]
                pattern = np.int64(0)
                for k in range(d):
                    element = np.uint64(first + k)
                    follows = ((taken ^ element_left[element]) & element_mask[element]) == 0
                    pattern |= np.int64(follows) << k
                patterns[np.uint64(p * rows + c)] = pattern
        for p in range(n_paths):
            first, d = path_elements[p, 0], path_elements[p, 1]
            if d == 0:
                continue
            offset = path_table[p]
            if offset >= 0:
                for c in range(rows):
                    pattern = patterns[np.uint64(p * rows + c)]
                    off_value = -tables[np.uint64(offset + pattern)]
                    row = np.uint64((chunk_start + c) * n_cols)
                    for k in range(d):
                        element = np.uint64(first + k)
                        bit = np.int64(1) << k
                        on_value = on_ratio[element] * tables[np.uint64(offset + (pattern ^ bit))]
                        column = row + np.uint64(element_feature[element])
                        out[column] += on_value if pattern & bit else off_value
                continue
            for c in range(rows):
                # No table: the formula of the module docstring. The product of z of the "off"
                # features, and the elementary symmetric polynomials of the z of the "on" ones.
                pattern = patterns[np.uint64(p * rows + c)]
                row = (chunk_start + c) * n_cols
                off_product = 1.0
                m = 0
                e_all[0] = 1.0
                for k in range(d):
                    z = element_z[first + k]
                    if (pattern >> k) & 1:
                        m += 1
                        e_all[m] = 0.0
                        for j in range(m, 0, -1):
                            e_all[j] += e_all[j - 1] * z
                    else:
                        off_product *= z
                leaf = path_value[p] * off_product
                off_value = 0.0
                if m < d:  # a feature the row does not follow: all "on" features stay possible
                    total = 0.0
                    for s in range(m + 1):
                        total += weights[d, s] * e_all[m - s]
                    off_value = -leaf * total
                for k in range(d):
                    element = first + k
                    column = row + element_feature[element]
                    if not (pattern >> k) & 1:
                        out[column] += off_value
                        continue
                    # The polynomials without this feature: divide out (1 + z t).
                    z = element_z[element]
                    e_less[0] = 1.0
                    for j in range(1, m):
                        e_less[j] = e_all[j] - z * e_less[j - 1]
                    total = 0.0
                    for s in range(m):
                        total += weights[d, s] * e_less[m - 1 - s]
                    out[column] += leaf * (1.0 - z) * total
    return out.reshape(n_rows, n_cols)


def expected_value(forest: FlatForest) -> float:
    """The model's log-odds output averaged over its training data (the SHAP base value)."""
    counts = forest.path_elements[:, 1]
    share = np.ones(len(counts))
    # Paths with features own consecutive runs of elements, in path order.
    with_features = counts > 0
    if with_features.any():
        share[with_features] = np.multiply.reduceat(
            forest.element_z, forest.path_elements[with_features, 0]
        )
    return float(forest.baseline + np.sum(forest.path_value * share))


def shap_values(forest: FlatForest, encoded: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Per-row contributions (log-odds), columns in the model's *original* feature order."""
    max_elements = int(forest.path_elements[:, 1].max()) if len(forest.path_elements) else 0
    in_encoded_order = _shap_rows(
        np.ascontiguousarray(encoded, dtype=np.float64),
        (
            forest.tree_splits,
            forest.split_feature,
            forest.split_threshold,
            forest.split_flags,
            forest.split_bitset_row,
        ),
        (forest.left_cat_bitsets, forest.known_cat_bitsets, forest.known_cat_row),
        (forest.path_value, forest.path_elements, forest.path_tree),
        (forest.element_feature, forest.element_z, forest.element_mask, forest.element_left),
        (forest.path_table, forest.tables, forest.element_on_ratio),
        max_elements,
        ROW_CHUNK,
    )
    result = np.empty_like(in_encoded_order)
    result[:, forest.encoded_to_original] = in_encoded_order
    return result
