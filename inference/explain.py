"""Exact Shapley contributions against a reference patient, computed in the same onnxruntime call as the prediction.

For k explained features the batch holds all 2^k mixes of the patient's values and the reference values (row 0 is
the patient), so the explanation costs one session.run and is exact for any model, additive or not. The
contributions sum to (patient's output − reference output).
"""

from __future__ import annotations

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
    """Shapley value of each of k players from the value of every coalition (indexed by bitmask)."""
    weights = np.array([factorial(s) * factorial(k - s - 1) / factorial(k) for s in range(k)])
    sizes = np.array([bin(m).count("1") for m in range(1 << k)])
    phi = np.zeros(k)
    for j in range(k):
        bit = 1 << j
        without = np.array([m for m in range(1 << k) if not m & bit])
        phi[j] = float(np.sum(weights[sizes[without]] * (values[without | bit] - values[without])))
    return phi
