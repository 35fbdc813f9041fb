"""Inception Score (Salimans et al. 2016): exp E_x KL(p(y|x) ‖ p(y)), mean and std over 10 splits.

Computed in float64 from logits [N, C] or from class probabilities [N, C], named explicitly:
`inception_score(logits=...)` (also the first positional argument, as before) or
`inception_score(probs=...)`, exactly one of them. Logits are defined up to a per-row constant, so
log-probabilities are valid logits too; probabilities are not (softmax(p) of a probability row is
nearly uniform, which scores close to 1): logits whose every row lies in [0, 1] and sums to 1 are
refused as probabilities. Probabilities must lie in [0, 1] and sum to 1 per row (within
`PROBS_ATOL`).

As in the original code, the samples are split in order (no shuffling) into `splits` consecutive
parts [i·N/splits, (i+1)·N/splits), and p(y) is the marginal of each part. torch-fidelity shuffles
first; `seed` does the same (its permutation). Use the Inception's "logits_unbiased" output (the fc
layer without bias, what the original TF code and torch-fidelity feed to the softmax) for comparable
numbers.
"""
from __future__ import annotations

import numbers

import numpy as np
from scipy.special import log_softmax, rel_entr

from ddss.metrics import stats

# Rows of probabilities must sum to 1 within this and lie in [−PROBS_ATOL, 1 + PROBS_ATOL]: a float32
# softmax over C = 1008 classes sums to 1 within C·ε₃₂ ≈ 6e-5 in the worst case (≈1e-6 typically).
PROBS_ATOL = 1e-4


def _looks_like_probs(a: np.ndarray) -> bool:
    return bool(np.all(a >= -PROBS_ATOL) and np.all(a <= 1 + PROBS_ATOL)
                and np.all(np.abs(a.sum(axis=1) - 1.0) <= PROBS_ATOL))


def _as_scores(a, name: str, splits) -> np.ndarray:
    what = f"Inception Score: {name}"
    try:
        a = stats.as_features(a, what, min_samples=0)
    except ValueError as e:
        if np.ndim(a) != 2:
            raise ValueError(f"Inception Score needs {name} [N, classes], got shape {np.shape(a)}. Images go through "
                             "the feature extractor's classifier first: extractor.logits_numpy(images).") from e
        raise
    if a.shape[1] < 2:
        raise ValueError(f"Inception Score needs at least 2 classes, got {name} of shape {a.shape} (with one class "
                         "the score is 1 by construction). Pass the classifier's logits over all classes.")
    if len(a) < splits:
        raise ValueError(f"Inception Score with {splits} splits needs at least {splits} samples, got {len(a)}. "
                         "Lower splits or bring more samples.")
    return a


def inception_score(logits=None, splits: int = 10, *, probs=None,
                    seed: int | None = None) -> tuple[float, float]:
    """(mean, std) of the Inception Score over `splits` parts, from `logits` [N, C] or `probs` [N, C]
    (exactly one). `logits` is also the first positional argument."""
    if (logits is None) == (probs is None):
        raise TypeError("inception_score takes exactly one of logits=... (classifier outputs before the softmax) "
                        "or probs=... (rows in [0, 1] summing to 1), got "
                        + ("both." if logits is not None else "neither."))
    if isinstance(splits, bool) or not isinstance(splits, numbers.Integral) or splits < 1:
        raise ValueError(f"Inception Score: splits must be a positive integer, got {splits!r}.")
    splits = int(splits)
    if logits is not None:
        scores_in = _as_scores(logits, "logits", splits)
        if _looks_like_probs(scores_in):
            raise ValueError("Inception Score: these logits look like probabilities (every row is in [0, 1] and sums "
                             "to 1); the softmax of probabilities is nearly uniform and would score ~1. Pass them as "
                             "inception_score(probs=...), or pass the classifier's logits.")
    else:
        scores_in = _as_scores(probs, "probs", splits)
        lo, hi = float(scores_in.min()), float(scores_in.max())
        if lo < -PROBS_ATOL or hi > 1 + PROBS_ATOL:
            raise ValueError(f"Inception Score: probs must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]. These "
                             "look like logits: pass inception_score(logits=...) instead.")
        sums = scores_in.sum(axis=1)
        worst = int(np.argmax(np.abs(sums - 1.0)))
        if abs(sums[worst] - 1.0) > PROBS_ATOL:
            raise ValueError(f"Inception Score: every row of probs must sum to 1 (within {PROBS_ATOL:g}), row {worst} "
                             f"sums to {sums[worst]:.6g}. Pass softmax outputs over all classes, or logits=....")
        scores_in = np.clip(scores_in, 0.0, None)
        scores_in = scores_in / scores_in.sum(axis=1, keepdims=True)
    n = len(scores_in)
    if seed is not None:
        scores_in = scores_in[np.random.RandomState(seed).permutation(n)]
    scores = []
    for i in range(splits):
        part = scores_in[i * n // splits:(i + 1) * n // splits]
        if logits is not None:
            logp = log_softmax(part, axis=1)
            p = np.exp(logp)
            log_py = np.log(p.mean(axis=0))
            scores.append(np.exp((p * (logp - log_py)).sum(axis=1).mean()))
        else:  # rel_entr(p, q) = p log(p / q), 0 where p = 0
            scores.append(np.exp(rel_entr(part, part.mean(axis=0)).sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))
