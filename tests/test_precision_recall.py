"""Improved precision/recall (k-NN manifolds): parity with torch-fidelity, a hand-computed case that
pins k, an independent brute-force check, batching, and clear errors."""
import os
import sys
import tracemalloc

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from conftest import require
from ddss.metrics import precision_recall as pr

sys.path.insert(0, os.path.dirname(__file__))
from torch_reference import torch_fidelity_metrics  # noqa: E402


def _torch_fidelity_prc():
    """torch-fidelity 0.4.0's `metric_prc` (imported by its package __init__ under the torchvision stubs)."""
    torch_fidelity_metrics()
    return sys.modules["torch_fidelity.metric_prc"]


def _sets(n_real, n_fake, d, seed, shift=0.3, scale=1.2):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(n_real, d))
    fake = rng.normal(size=(n_fake, d)) * scale + shift
    return real, fake


def _brute_force(real, fake, k):
    """Kynkäänniemi et al. straight from the definition with scipy's cdist (no code shared with ours)."""
    def radii(x):
        d = cdist(x, x)
        return np.array([np.sort(np.delete(row, i))[k - 1] for i, row in enumerate(d)])

    precision = np.mean((cdist(fake, real) <= radii(real)[None, :]).any(axis=1))
    recall = np.mean((cdist(real, fake) <= radii(fake)[None, :]).any(axis=1))
    return precision, recall


@pytest.mark.parametrize("n_real,n_fake,d,k,seed", [(400, 300, 16, 3, 0), (257, 311, 64, 3, 1),
                                                    (200, 150, 8, 5, 2), (120, 130, 4, 1, 3)])
def test_matches_torch_fidelity(n_real, n_fake, d, k, seed):
    torch = require("torch")
    prc = _torch_fidelity_prc()
    real, fake = _sets(n_real, n_fake, d, seed)
    # torch-fidelity's convention: features_1 = generated, features_2 = real.
    f1, f2 = torch.from_numpy(fake), torch.from_numpy(real)
    got = pr.precision_recall(real, fake, k=k, batch_size=97)
    assert isinstance(got[0], np.float64) and isinstance(got[1], np.float64)
    for fn in (prc.calculate_precision_recall_full, prc.calculate_precision_recall_part):
        want = fn(f1, f2, neighborhood=k, batch_size=64)
        # torch-fidelity returns float32 means of 0/1 flags: compare the counts, which must be equal.
        assert round(want[0] * n_fake) == round(got[0] * n_fake), (fn.__name__, want, got)
        assert round(want[1] * n_real) == round(got[1] * n_real), (fn.__name__, want, got)
        assert abs(want[0] - got[0]) < 1e-6 and abs(want[1] - got[1]) < 1e-6
    # The comparison is sensitive to k: torch-fidelity with another neighbourhood disagrees here.
    other = prc.calculate_precision_recall_full(f1, f2, neighborhood=k + 1, batch_size=64)
    assert other != pytest.approx(tuple(map(float, got)), abs=1e-6)


def test_matches_torch_fidelity_entry_point():
    torch = require("torch")
    prc = _torch_fidelity_prc()
    real, fake = _sets(500, 450, 32, 4)
    want = prc.prc_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real), prc_neighborhood=3,
                                      prc_batch_size=10000, save_cpu_ram=False, verbose=False)
    precision, recall = pr.precision_recall(real, fake)
    assert abs(precision - want["precision"]) < 1e-6 and abs(recall - want["recall"]) < 1e-6
    assert 0.05 < precision < 0.95 and 0.05 < recall < 0.95  # a regime where the metric discriminates


@pytest.mark.parametrize("k", [1, 3, 4])
def test_matches_brute_force_definition(k):
    real, fake = _sets(150, 170, 6, 5 + k)
    assert pr.precision_recall(real, fake, k=k, batch_size=16) == _brute_force(real, fake, k)


def test_hand_computed_case_pins_k():
    """1-D reals 0, 1, 3, 7. k=1 radii (nearest *other* real): 1, 1, 2, 4, so the balls are [-1, 1],
    [0, 2], [1, 5], [3, 11]. Fakes -1.5 (outside), 0.5 (inside), 5 (on [1, 5]'s boundary: inside),
    12 (outside): precision 2/4. Counting the point itself (radius 0) would give 0; k=2 would give 1.
    Recall, fakes' k=1 radii: -1.5→2, 0.5→2, 5→4.5, 12→7; reals 0 (in [-3.5, 2.5]), 1, 3, 7 (in
    [0.5, 9.5]) all covered: 1."""
    real = np.array([[0.0], [1.0], [3.0], [7.0]])
    fake = np.array([[-1.5], [0.5], [5.0], [12.0]])
    assert pr.precision_recall(real, fake, k=1) == (0.5, 1.0)
    np.testing.assert_array_equal(pr.knn_radii(real, k=1), [1.0, 1.0, 2.0, 4.0])
    np.testing.assert_array_equal(pr.knn_radii(real, k=2), [3.0, 2.0, 3.0, 6.0])
    assert pr.precision_recall(real, fake, k=2)[0] == 1.0


def test_knn_radii_match_sorted_distances():
    x = np.random.default_rng(9).normal(size=(90, 5))
    d = np.sort(cdist(x, x), axis=1)  # column 0 is each point itself
    for k in (1, 3, 10):
        np.testing.assert_allclose(pr.knn_radii(x, k=k, batch_size=7), d[:, k], rtol=1e-12)


def test_limits_and_symmetry():
    real, fake = _sets(300, 300, 8, 10)
    assert pr.precision_recall(real, real) == (1.0, 1.0)  # every sample is its own copy's neighbour
    p, r = pr.precision_recall(real, fake)
    assert pr.precision_recall(fake, real) == (r, p)  # swapping the roles swaps the metrics
    # Samples collapsed onto one real mode: precise but with almost no recall.
    collapsed = real[:1] + 1e-3 * np.random.default_rng(11).normal(size=(300, 8))
    p, r = pr.precision_recall(real, collapsed)
    assert p == 1.0 and r < 0.05
    # Samples far from the data: neither.
    assert pr.precision_recall(real, real + 100.0) == (0.0, 0.0)


def test_batch_size_does_not_change_the_result():
    real, fake = _sets(333, 222, 12, 12)
    results = {pr.precision_recall(real, fake, batch_size=b) for b in (1, 7, 100, 332, 333, 10_000)}
    assert len(results) == 1


def test_offset_features_keep_their_precision():
    """Features far from the origin (as Inception pool features are): the float64 expansion of the
    distances is centred first, so a 1e4 offset of both sets changes nothing."""
    real, fake = _sets(300, 280, 16, 13)
    assert pr.precision_recall(real + 1e4, fake + 1e4) == _brute_force(real, fake, 3)


def test_memory_is_bounded_by_the_batch():
    """3000 × 3000 distances would be 72 MB in float64; in batches of 200 rows one [200, 3000] array
    (4.8 MB) lives at a time (measured peak 6.3 MB with the inputs and flags)."""
    real, fake = _sets(3000, 3000, 16, 14)
    tracemalloc.start()
    try:
        pr.precision_recall(real, fake, batch_size=200)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12e6, peak


def test_bad_input_fails_clearly():
    real, fake = _sets(10, 10, 4, 15)
    with pytest.raises(ValueError, match="differ in dimension: 4 vs 3"):
        pr.precision_recall(real, fake[:, :3])
    with pytest.raises(ValueError, match="fake features contain NaN"):
        pr.precision_recall(real, np.where(np.arange(10)[:, None] == 3, np.nan, fake))
    with pytest.raises(ValueError, match="real features contain NaN or infinite"):
        pr.precision_recall(np.where(np.arange(10)[:, None] == 3, np.inf, real), fake)
    with pytest.raises(ValueError, match="at least k\\+1=4 real samples.*got 3"):
        pr.precision_recall(real[:3], fake)
    with pytest.raises(ValueError, match="at least k\\+1=6 fake samples.*got 5"):
        pr.precision_recall(real, fake[:5], k=5)
    pr.precision_recall(real[:4], fake[:4])  # exactly k+1 is enough
    with pytest.raises(ValueError, match="2-D array"):
        pr.precision_recall(real[:, 0], fake)
    for bad_k in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            pr.precision_recall(real, fake, k=bad_k)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        pr.precision_recall(real, fake, batch_size=0)
