"""Exact Shapley contributions against a reference patient, computed in the same onnxruntime call as the prediction.

For k explained features the batch holds all 2^k mixes of the patient's values and the reference values (row 0 is
the patient), so the explanation costs one session.run and is exact for any model, additive or not. The
contributions sum to (patient's output − reference output).
"""

from __future__ import annotations

from functools import lru_cache
from math import factorial

import numpy as np


def coalition_matrix(patient: np.ndarray, baseline: np.ndarray, columns: list[int]) -> np.ndarray:
    """Rows for every subset of `columns`: bit j of the row index set → patient's value in columns[j].

    Row 2^k − 1 is the patient; row 0 is the patient with every explained column at the reference value.
    Columns not explained keep the patient's value in every row.
    """
    k = len(columns)
    rows = np.repeat(patient[np.newaxis, :], 1 << k, axis=0)
    masks = np.arange(1 << k)
    for j, col in enumerate(columns):
        off = ((masks >> j) & 1) == 0
        rows[off, col] = baseline[col]
    return rows


def shapley_values(values: np.ndarray, k: int) -> np.ndarray:
    """Shapley value of each of k players from the value of every coalition (indexed by bitmask).

    For each player j, the weighted sum over coalitions S without j of v(S ∪ {j}) − v(S): the textbook formula,
    with its index arrays and weights built once per k and all k sums taken in one vectorised step (bit for bit
    the same result as summing player by player).
    """
    with_j, without_j, weights = _shapley_plan(k)
    values = np.asarray(values, dtype=np.float64)
    return np.sum(weights * (values[with_j] - values[without_j]), axis=1)


@lru_cache(maxsize=32)
def _shapley_plan(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    size_weight = np.array([factorial(s) * factorial(k - s - 1) / factorial(k) for s in range(k)])
    masks = np.arange(1 << k)
    sizes = np.array([bin(m).count("1") for m in range(1 << k)])
    without = np.stack([masks[(masks >> j) & 1 == 0] for j in range(k)])  # k × 2^(k−1), ascending like the loop
    with_j = without | (1 << np.arange(k))[:, np.newaxis]
    weights = size_weight[sizes[without]]
    for arr in (with_j, without, weights):
        arr.setflags(write=False)
    return with_j, without, weights
