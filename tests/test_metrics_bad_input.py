"""Bad input to the metrics gets one clear error (type + message naming the problem and the fix),
never a silently wrong number; valid input keeps its value.

`CASES` is the table: (case id, callable taking pytest's tmp_path, exception type, regex fragment of
the message). The positive tests below it pin valid input to independent computations.
"""
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import linalg
from scipy.special import softmax

from conftest import random_inception_params
from ddss.metrics import features, fid, inception_score, kid, precision_recall, stats

# ------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------

def _rng(seed=0):
    return np.random.default_rng(seed)


def _feats(n=50, d=4, seed=0):
    return _rng(seed).normal(size=(n, d))


def _stats_of(f):
    return f.mean(0), np.cov(f, rowvar=False)


MU, SIGMA = _stats_of(_feats(200, 4, seed=1))
NON_SYMMETRIC = SIGMA + np.triu(np.full((4, 4), 0.5), 1)  # upper triangle shifted: Σ ≠ Σᵀ
INDEFINITE = np.diag([1.0, 2.0, 3.0, -1.0])  # symmetric, a negative variance
INDEFINITE_OFFDIAG = np.array([[1.0, 2.0], [2.0, 1.0]])  # symmetric, diagonal > 0, eigenvalues 3 and −1
# A float32 covariance slightly off symmetric, beyond SYMMETRY_RTOL (1e-4 of max|Σ|): a real error
SLIGHTLY_ASYMMETRIC = SIGMA.copy()
SLIGHTLY_ASYMMETRIC[0, 1] += 1e-2 * np.abs(SIGMA).max()


def _unit_images(n=16, seed=0, shape=(8, 8, 1)):
    """Images in [0, 1] (the users' bug: scored as if in [-1, 1])."""
    return _rng(seed).uniform(0.0, 1.0, (n,) + shape).astype(np.float32)


def _digit_like(n=16, seed=0):
    """[-1, 1] images as the digits model produces them: mostly −1 background, a bright stroke."""
    x = np.full((n, 8, 8, 1), -1.0, np.float32)
    x[:, 2:6, 3:5, 0] = _rng(seed).uniform(0.2, 1.0, (n, 4, 2))
    return x


@functools.cache
def _digits():
    return features.get("digits")


@functools.cache
def _inception():
    return features.inception_extractor(params=random_inception_params(0))


@functools.cache
def _ref():
    return fid.Reference.from_stats(MU, SIGMA)


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


_probs = softmax(_rng(3).normal(size=(40, 5)) * 2, axis=1)


# ------------------------------------------------------------------------------------------------
# The table
# ------------------------------------------------------------------------------------------------

CASES = [
    # --- images entering the feature extractors -------------------------------------------------
    ("img_unit_range_features", lambda t: _digits().features(_unit_images()), ValueError,
     r"look like \[0, 1\]: map them with x \* 2 - 1"),
    ("img_unit_range_logits_numpy", lambda t: _digits().logits_numpy(_unit_images()), ValueError,
     r"look like \[0, 1\]"),
    ("img_unit_range_call", lambda t: _digits()(_unit_images()), ValueError, r"look like \[0, 1\]"),
    ("img_unit_range_logits_call", lambda t: _digits().logits(_unit_images()), ValueError, r"look like \[0, 1\]"),
    ("img_unit_range_inception", lambda t: _inception().features(_unit_images(8, shape=(16, 16, 3))), ValueError,
     r"all 8 images have values in \[.*\], none below 0: they look like \[0, 1\]"),
    ("img_unit_range_black_pixels", lambda t: _digits().features(np.clip(_unit_images() - 0.5, 0, 1)), ValueError,
     r"look like \[0, 1\]"),
    ("img_0_255_float", lambda t: _digits().features(_unit_images() * 255), ValueError,
     r"look like \[0, 255\]: use images / 127.5 - 1"),
    ("img_uint8", lambda t: _digits().features((_unit_images() * 255).astype(np.uint8)), ValueError,
     r"dtype uint8: these look like \[0, 255\].*astype\(np.float32\) / 127.5 - 1"),
    ("img_int64", lambda t: _digits().features(np.zeros((16, 8, 8, 1), np.int64)), ValueError,
     r"dtype int64: these look like \[0, 255\]"),
    ("img_above_one", lambda t: _digits().features(_digit_like() * 1.5), ValueError,
     r"expects images in \[-1, 1\], got values in \[-1.5, .*\]"),
    ("img_nan", lambda t: _digits().features(np.where(_digit_like() > 0, np.nan, _digit_like())), ValueError,
     r"NaN or inf"),
    ("img_inf", lambda t: _digits().features(np.where(_digit_like() > 0, np.inf, _digit_like())), ValueError,
     r"NaN or inf"),
    ("img_empty", lambda t: _digits().features(np.zeros((0, 8, 8, 1), np.float32)), ValueError,
     r"empty batch \(0 images"),
    ("img_wrong_size", lambda t: _digits().features(-np.ones((2, 16, 16, 1), np.float32)), ValueError,
     r"takes 8×8 images, got 16×16"),
    ("img_channels_first", lambda t: _inception().features(np.zeros((2, 3, 16, 16), np.float32)), ValueError,
     r"3 channels \(NHWC, channels last\)"),
    ("img_bad_batch_size", lambda t: _digits().features(_digit_like(), batch_size=0), ValueError,
     r"batch_size must be a positive integer"),

    # --- images (or other non-[N, D] arrays) where features are expected --------------------------
    ("fid_of_images", lambda t: fid.frechet_distance_of(_digit_like(), np.zeros(64), np.eye(64)), ValueError,
     r"2-D array of features \[N, D\], got shape \(16, 8, 8, 1\).*feature extractor first"),
    ("fid_statistics_of_images", lambda t: fid.statistics(_digit_like()), ValueError,
     r"look like images.*feature extractor first"),
    ("fid_statistics_1d", lambda t: fid.statistics(np.arange(10.0)), ValueError,
     r"2-D array of features.*x\[None\]"),
    ("jax_fid_of_images", lambda t: fid.jax_distance_of_features(jnp.zeros((5, 2, 2, 1)), _ref()), ValueError,
     r"features must be \[N, D\].*feature extractor first"),
    ("jax_fid_of_images_under_jit", lambda t: jax.jit(fid.jax_distance_of_features)(jnp.zeros((5, 2, 2)), _ref()),
     ValueError, r"features must be \[N, D\]"),
    ("kid_of_images", lambda t: kid.kid(_digit_like(), _digit_like(), subset_size=4), ValueError,
     r"first feature set \(x\) must be a 2-D array.*feature extractor first"),
    ("mmd2_of_images", lambda t: kid.mmd2(jnp.zeros((4, 2, 2)), jnp.zeros((4, 4))), ValueError,
     r"feature matrices \[m, d\] and \[n, d\].*feature extractor first"),
    ("unbiased_mmd2_of_images", lambda t: kid.unbiased_mmd2(_feats(), _digit_like()), ValueError,
     r"second feature set \(y\) must be a 2-D array"),
    ("pr_of_images", lambda t: precision_recall.precision_recall(_digit_like(), _digit_like()), ValueError,
     r"real features must be a 2-D array.*feature extractor first"),
    ("running_stats_of_images", lambda t: stats.RunningStats().update(_digit_like()), ValueError,
     r"2-D array of features.*feature extractor first"),
    ("is_of_images", lambda t: inception_score.inception_score(np.zeros((20, 8, 8, 1))), ValueError,
     r"logits \[N, classes\].*logits_numpy"),

    # --- covariances and statistics ------------------------------------------------------------------
    ("fid_sigma_not_symmetric", lambda t: fid.frechet_distance(MU, NON_SYMMETRIC, MU, SIGMA), ValueError,
     r"first statistics.*sigma is not symmetric"),
    ("fid_sigma_slightly_asymmetric", lambda t: fid.frechet_distance(MU, SIGMA, MU, SLIGHTLY_ASYMMETRIC), ValueError,
     r"second statistics.*not symmetric"),
    ("fid_sigma_negative_variance", lambda t: fid.frechet_distance(MU, SIGMA, MU, INDEFINITE), ValueError,
     r"not positive semi-definite: variance Σ\[3,3\] = -1 < 0"),
    ("fid_sigma_indefinite", lambda t: fid.frechet_distance(np.zeros(2), INDEFINITE_OFFDIAG, np.zeros(2), np.eye(2)),
     ValueError, r"not positive semi-definite: smallest eigenvalue -1 vs largest 3"),
    ("fid_sigma_indefinite_sqrtm", lambda t: fid.frechet_distance(np.zeros(2), np.eye(2), np.zeros(2),
                                                                    INDEFINITE_OFFDIAG, method="sqrtm"),
     ValueError, r"second statistics.*not positive semi-definite"),
    ("fid_sigma_shape_vs_mu", lambda t: fid.frechet_distance(MU, SIGMA[:3, :3], MU, SIGMA), ValueError,
     r"sigma must be a covariance \[D, D\] = \[4, 4\] to match mu \[4\], got shape \(3, 3\)"),
    ("fid_mu_is_a_matrix", lambda t: fid.frechet_distance(_feats(), SIGMA, MU, SIGMA), ValueError,
     r"mu must be a mean vector \[D\].*fid.statistics\(features\)"),
    ("fid_dimension_mismatch", lambda t: fid.frechet_distance(MU, SIGMA, np.zeros(5), np.eye(5)), ValueError,
     r"differ in shape.*4-d vs 5-d features come from different feature spaces"),
    ("fid_of_dimension_mismatch", lambda t: fid.frechet_distance_of(_feats(50, 3), MU, SIGMA), ValueError,
     r"features are 3-d but the reference statistics are 4-d"),
    ("fid_sigma_nan", lambda t: fid.frechet_distance(MU, SIGMA * np.nan, MU, SIGMA), ValueError,
     r"sigma contains NaN or inf"),
    ("fid_complex_sigma", lambda t: fid.frechet_distance(MU, SIGMA + 0j, MU, SIGMA), TypeError,
     r"sigma must be a real-valued float array, got dtype complex"),
    ("fid_unknown_method", lambda t: fid.frechet_distance(MU, SIGMA, MU, SIGMA, method="svd"), ValueError,
     r"Unknown FID method 'svd'"),
    ("fid_negative_eps", lambda t: fid.frechet_distance(MU, SIGMA, MU, SIGMA, eps=-1.0, method="sqrtm"), ValueError,
     r"eps must be a finite number >= 0"),
    ("fid_reference_not_psd", lambda t: fid.Reference.from_stats(np.zeros(2), INDEFINITE_OFFDIAG), ValueError,
     r"FID reference statistics: sigma is not positive semi-definite"),
    ("jax_fid_stats_not_symmetric", lambda t: fid.jax_distance(MU, NON_SYMMETRIC, _ref()), ValueError,
     r"jax_distance: \(mu, sigma\): sigma is not symmetric"),
    ("jax_fid_stats_wrong_dim", lambda t: fid.jax_distance(np.zeros(3), np.eye(3), _ref()), ValueError,
     r"needs mu \[D\] and sigma \[D, D\] with the reference's D = 4"),
    ("jax_fid_features_wrong_dim", lambda t: fid.jax_distance_of_features(jnp.zeros((6, 3)), _ref()), ValueError,
     r"features are 3-d but the reference is 4-d"),
    ("jax_fid_not_a_reference", lambda t: fid.jax_distance_of_features(jnp.zeros((6, 4)), (MU, SIGMA)), TypeError,
     r"must be a fid.Reference"),
    ("stats_save_not_psd", lambda t: stats.save(str(t / "s.npz"), np.zeros(2), INDEFINITE_OFFDIAG, num_samples=9),
     ValueError, r"not positive semi-definite"),
    ("stats_load_not_symmetric", lambda t: stats.load(_write_npz(t / "a.npz", mu=MU, sigma=NON_SYMMETRIC)),
     stats.StatsFileError, r"a.npz: sigma is not symmetric.*Recompute the file"),

    # --- too few samples, empty sets, dtypes ----------------------------------------------------------
    ("fid_statistics_one_sample", lambda t: fid.statistics(_feats(1)), ValueError,
     r"a covariance needs at least 2 samples, got 1"),
    ("fid_statistics_empty", lambda t: fid.statistics(np.zeros((0, 4))), ValueError,
     r"at least 2 samples, got 0"),
    ("fid_statistics_complex", lambda t: fid.statistics(_feats() + 1j), TypeError, r"got dtype complex"),
    ("fid_statistics_bool", lambda t: fid.statistics(_feats() > 0), TypeError, r"got dtype bool"),
    ("fid_statistics_strings", lambda t: fid.statistics(np.array([["a", "b"], ["c", "d"]])), TypeError,
     r"real-valued float array, got dtype <U1"),
    ("fid_statistics_nan", lambda t: fid.statistics(np.where(np.arange(50)[:, None] == 7, np.nan, _feats())),
     ValueError, r"contain NaN or inf \(1 of 50 rows\)"),
    ("jax_fid_one_sample", lambda t: fid.jax_distance_of_features(jnp.zeros((1, 4)), _ref()), ValueError,
     r"at least 2 samples, got 1"),
    ("running_stats_sigma_one_sample", lambda t: stats.RunningStats().update(_feats(1)).sigma, ValueError,
     r"at least 2 samples for a covariance, got 1"),
    ("running_stats_mu_empty", lambda t: stats.RunningStats().mu, ValueError, r"No features yet"),
    ("running_stats_dim_changed", lambda t: stats.RunningStats().update(_feats(5, 4)).update(_feats(5, 3)),
     ValueError, r"dimension changed from 4 to 3"),

    # --- KID -------------------------------------------------------------------------------------------
    ("kid_set_smaller_than_subset", lambda t: kid.kid(_feats(50), _feats(300, seed=2), subset_size=100), ValueError,
     r"cannot subsample: subset_size=100 but x has 50 samples.*Lower subset_size.*bring more samples"),
    ("kid_both_sets_smaller", lambda t: kid.kid(_feats(50), _feats(60, seed=2)), ValueError,
     r"subset_size=1000 but x has 50 and y has 60 samples"),
    ("kid_subset_size_one", lambda t: kid.kid(_feats(), _feats(seed=2), subset_size=1), ValueError,
     r"subset_size must be an integer >= 2"),
    ("kid_num_subsets_zero", lambda t: kid.kid(_feats(), _feats(seed=2), num_subsets=0, subset_size=10), ValueError,
     r"num_subsets must be an integer >= 1"),
    ("kid_dim_mismatch", lambda t: kid.kid(_feats(50, 4), _feats(50, 3), subset_size=10), ValueError,
     r"of the same d, got \(50, 4\) and \(50, 3\).*different feature spaces"),
    ("kid_one_sample", lambda t: kid.unbiased_mmd2(_feats(1), _feats()), ValueError,
     r"unbiased estimator needs at least 2 samples, got 1"),
    ("kid_nan", lambda t: kid.kid(_feats() * np.nan, _feats(), subset_size=10), ValueError, r"NaN or inf"),
    ("kid_complex", lambda t: kid.kid(_feats() + 1j, _feats(), subset_size=10), TypeError, r"dtype complex"),
    ("mmd2_dim_mismatch", lambda t: kid.mmd2(jnp.zeros((4, 3)), jnp.zeros((4, 4))), ValueError,
     r"same feature dimension d"),
    ("mmd2_one_sample", lambda t: kid.mmd2(jnp.zeros((1, 4)), jnp.zeros((4, 4))), ValueError,
     r"at least 2 samples in each set, got 1 and 4"),

    # --- Inception Score -------------------------------------------------------------------------------
    ("is_probs_as_logits", lambda t: inception_score.inception_score(_probs, splits=4), ValueError,
     r"logits look like probabilities.*inception_score\(probs=\.\.\.\)"),
    ("is_probs_as_logits_keyword", lambda t: inception_score.inception_score(logits=_probs, splits=4), ValueError,
     r"look like probabilities"),
    ("is_both", lambda t: inception_score.inception_score(logits=_probs, probs=_probs), TypeError,
     r"exactly one of logits=.*or probs=.*got both"),
    ("is_neither", lambda t: inception_score.inception_score(), TypeError, r"exactly one.*got neither"),
    ("is_probs_not_normalised", lambda t: inception_score.inception_score(probs=_probs * 0.9, splits=4), ValueError,
     r"every row of probs must sum to 1.*sums to 0.9"),
    ("is_logits_as_probs", lambda t: inception_score.inception_score(probs=np.log(_probs), splits=4), ValueError,
     r"probs must lie in \[0, 1\].*look like logits: pass inception_score\(logits=\.\.\.\)"),
    ("is_too_few_samples", lambda t: inception_score.inception_score(np.zeros((5, 10))), ValueError,
     r"10 splits needs at least 10 samples, got 5.*Lower splits"),
    ("is_one_class", lambda t: inception_score.inception_score(np.zeros((20, 1)), splits=2), ValueError,
     r"at least 2 classes"),
    ("is_nan", lambda t: inception_score.inception_score(np.full((20, 4), np.nan), splits=2), ValueError,
     r"logits contain NaN or inf"),
    ("is_splits_zero", lambda t: inception_score.inception_score(np.zeros((20, 4)), splits=0), ValueError,
     r"splits must be a positive integer"),

    # --- precision / recall ------------------------------------------------------------------------------
    ("pr_k_not_below_n", lambda t: precision_recall.precision_recall(_feats(5), _feats(20), k=5), ValueError,
     r"k=5 needs at least k\+1=6 real samples.*got 5.*Lower k or bring more samples"),
    ("knn_radii_k_not_below_n", lambda t: precision_recall.knn_radii(_feats(3), k=3), ValueError,
     r"k\+1=4 input samples.*got 3"),
    ("pr_empty", lambda t: precision_recall.precision_recall(np.zeros((0, 4)), _feats()), ValueError,
     r"at least k\+1=4 real samples.*got 0"),
    ("pr_dim_mismatch", lambda t: precision_recall.precision_recall(_feats(20, 4), _feats(20, 3)), ValueError,
     r"differ in dimension: 4 vs 3; they come from different feature spaces"),
    ("pr_k_nan", lambda t: precision_recall.precision_recall(_feats(), _feats(), k=float("nan")), ValueError,
     r"k must be a positive integer"),
    ("pr_k_string", lambda t: precision_recall.precision_recall(_feats(), _feats(), k="3"), ValueError,
     r"k must be a positive integer"),
    ("pr_bool_features", lambda t: precision_recall.precision_recall(_feats() > 0, _feats()), TypeError,
     r"real features must be a real-valued float array, got dtype bool"),
]


@pytest.mark.parametrize("case_id,call,error,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clear_error(case_id, call, error, fragment, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one clear error, not a warning followed by a number
        with pytest.raises(error, match=fragment):
            call(tmp_path)


def test_table_is_large_and_ids_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) >= 40 and len(set(ids)) == len(ids)


# ------------------------------------------------------------------------------------------------
# Valid input: still accepted, same numbers
# ------------------------------------------------------------------------------------------------

def test_frechet_distance_matches_scipy_sqrtm_on_the_same_features():
    rng = _rng(11)
    a = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6)) + 0.3
    m1, s1 = a.mean(0), np.cov(a, rowvar=False)
    m2, s2 = b.mean(0), np.cov(b, rowvar=False)
    want = float(np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(linalg.sqrtm(s1 @ s2).real))
    assert fid.frechet_distance_of(a, m2, s2) == pytest.approx(want, rel=1e-9)
    assert fid.frechet_distance(m1, s1, m2, s2, method="sqrtm") == pytest.approx(want, rel=1e-9)
    ref = fid.Reference.from_stats(m2, s2)
    got32 = float(jax.jit(fid.jax_distance_of_features)(jnp.asarray(a, jnp.float32), ref))
    assert got32 == pytest.approx(want, rel=1e-4)


def test_float32_rank_deficient_covariance_passes_the_psd_check():
    """N ≤ D float32 covariances have ±round-off null eigenvalues: accepted (the distance to itself is
    ~0, clamped), while an eigenvalue below −1e-4·λ_max (`stats.PSD_RTOL`) is refused."""
    f = np.maximum(_rng(12).normal(size=(30, 64)), 0).astype(np.float32)
    sigma = np.asarray(jnp.cov(jnp.asarray(f), rowvar=False), np.float64)
    mu = f.mean(0).astype(np.float64)
    w, v = np.linalg.eigh(sigma)
    null = np.outer(v[:, 0], v[:, 0])  # a null direction of the rank-29 covariance
    round_off = sigma - 5e-6 * w[-1] * null  # λ_min ≈ −5e-6·λ_max: float32-sized round-off
    assert np.linalg.eigvalsh(round_off)[0] < -4e-6 * w[-1]
    assert abs(fid.frechet_distance(mu, round_off, mu, round_off)) < 1e-3 * np.trace(sigma)
    assert abs(fid.frechet_distance(mu, sigma, mu, sigma)) < 1e-3 * np.trace(sigma)
    with pytest.raises(ValueError, match="not positive semi-definite"):
        fid.frechet_distance(mu, sigma - 3e-4 * w[-1] * null, mu, sigma)


def test_digits_samples_with_minus_one_background_pass_the_range_check():
    ext = _digits()
    x = _digit_like(64)
    got = ext.features(x)
    assert got.shape == (64, ext.dim) and np.isfinite(got).all()
    np.testing.assert_array_equal(got, ext.features(x, check_range=False))  # the check changes no number


def test_unit_range_images_mapped_to_minus_one_one_are_accepted():
    ext = _digits()
    x = _unit_images(32)
    np.testing.assert_allclose(ext.features(x * 2 - 1), np.asarray(ext(jnp.asarray(x * 2 - 1))), rtol=1e-5, atol=1e-5)


def test_bright_images_pass_when_few_constant_or_asked():
    """The [0, 1] guess needs ≥ 8 non-constant images with no value below 0."""
    ext = _digits()
    bright = _rng(13).uniform(0.1, 1.0, (7, 8, 8, 1)).astype(np.float32)
    ext.features(bright)  # 7 images: too few to call it [0, 1]
    ext.features(np.zeros((16, 8, 8, 1), np.float32))  # constant: no evidence either way
    many = _rng(13).uniform(0.1, 1.0, (16, 8, 8, 1)).astype(np.float32)
    with pytest.raises(ValueError, match=r"look like \[0, 1\]"):
        ext.features(many)
    assert ext.features(many, check_range=False).shape == (16, ext.dim)
    many[0, 0, 0, 0] = -0.01  # one value below 0: plausible [-1, 1] batch
    ext.features(many)


def test_inception_score_from_probs_equals_from_logits():
    logits = _rng(14).normal(size=(200, 12)) * 3
    from_logits = inception_score.inception_score(logits, 5)
    from_probs = inception_score.inception_score(probs=softmax(logits, axis=1), splits=5)
    assert from_probs == pytest.approx(from_logits, rel=1e-10)
    assert inception_score.inception_score(logits=logits, splits=5) == from_logits  # keyword = positional
    # one-hot probabilities (zeros included) over 4 uniformly used classes: IS = 4
    one_hot = np.eye(4)[np.arange(40) % 4]
    assert inception_score.inception_score(probs=one_hot, splits=1)[0] == pytest.approx(4.0, rel=1e-12)


def test_kid_subsets_explicit_shrink_and_whole_sets():
    x, y = _feats(60, 5, seed=15), _feats(80, 5, seed=16) + 0.2
    with pytest.warns(UserWarning, match="shrunk to 60"):
        shrunk = kid.kid(x, y, num_subsets=10, subset_size=100, shrink_subsets=True)
    assert shrunk == kid.kid(x, y, num_subsets=10, subset_size=60)
    assert shrunk[1] > 0  # y is still subsampled: a real spread
    with pytest.warns(UserWarning, match="std is 0 by construction"):
        mean, std = kid.kid(x, y[:60], num_subsets=10, subset_size=60)
    assert std == 0.0 and mean == pytest.approx(kid.unbiased_mmd2(x, y[:60]), rel=1e-12)


def test_precision_recall_boundary_k_equals_n_minus_one_works():
    real, fake = _feats(4, 3, seed=17), _feats(4, 3, seed=18)
    p, r = precision_recall.precision_recall(real, fake, k=3)
    assert 0.0 <= p <= 1.0 and 0.0 <= r <= 1.0
