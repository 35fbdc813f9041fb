"""Inception Score (Salimans et al. 2016): exp E_x KL(p(y|x) ‖ p(y)), mean and std over 10 splits.

Computed in float64 from logits [N, C]. As in the original code, the samples are split in order
(no shuffling) into `splits` consecutive parts [i·N/splits, (i+1)·N/splits), and p(y) is the
marginal of each part. torch-fidelity shuffles first; `seed` does the same (its permutation). Use the Inception's "logits_unbiased" output (the fc layer
without bias, what the original TF code and torch-fidelity feed to the softmax) for comparable
numbers.
"""
from __future__ import annotations

import numpy as np
from scipy.special import log_softmax


def inception_score(logits, splits: int = 10, *, seed: int | None = None) -> tuple[float, float]:
    logits = np.asarray(logits, np.float64)
    if logits.ndim != 2:
        raise ValueError(f"Inception Score needs logits [N, classes], got shape {logits.shape}.")
    if not np.all(np.isfinite(logits)):
        raise ValueError("Inception Score: logits contain NaN or inf; the samples that produced them are invalid.")
    if len(logits) < splits:
        raise ValueError(f"Inception Score with {splits} splits needs at least {splits} samples, got {len(logits)}.")
    n = len(logits)
    if seed is not None:
        logits = logits[np.random.RandomState(seed).permutation(n)]
    scores = []
    for i in range(splits):
        logp = log_softmax(logits[i * n // splits:(i + 1) * n // splits], axis=1)
        p = np.exp(logp)
        log_py = np.log(p.mean(axis=0))
        scores.append(np.exp((p * (logp - log_py)).sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))
