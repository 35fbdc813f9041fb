"""The evaluation protocol's pieces: quantisation, seeds, the two feature spaces of the digits target,
and the comparison with the best training-free row."""
import hashlib

import jax
import numpy as np
import pytest

from ddss.experiments import evaluation, targets
from ddss.metrics import features, fid
from ddss.models import digits as digits_model


def test_quantisation_rounds_then_clips_to_256_levels():
    x = np.array([-1.5, -1.0, -0.999, 0.0, 0.5 / 127.5 - 1.0, 0.9999, 1.0, 2.0, np.nan], np.float32)
    q = targets.quantize_uint8(x)
    levels = (q[:-1] + 1.0) * 127.5
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)  # on the uint8 grid
    assert q[0] == -1.0 and q[1] == -1.0 and q[-2] == 1.0 and q[-3] == 1.0  # clipped after rounding
    assert q[2] == -1.0  # -0.999 is 0.1275 of a level above 0: rounds to 0
    assert q[3] == pytest.approx(128 / 127.5 - 1.0, abs=1e-6)  # 0.0 is level 127.5: rounds (to even) to 128
    assert np.isnan(q[-1])  # NaN is not hidden: the feature extractor reports it


def test_evaluation_and_training_seeds_are_disjoint():
    evaluation.check_seeds(0, evaluation.SEED_SPAN - 1)
    for seed, eval_seed in ((-1, 0), (evaluation.SEED_SPAN, 0), (0, evaluation.SEED_SPAN)):
        with pytest.raises(ValueError, match="must lie in"):
            evaluation.check_seeds(seed, eval_seed)
    # The training root key of seed s is the key of seed SEED_SPAN + s: never an evaluation key.
    train = jax.random.key_data(evaluation.training_key(0))
    assert np.array_equal(train, jax.random.key_data(jax.random.key(evaluation.SEED_SPAN)))
    assert not np.array_equal(train, jax.random.key_data(jax.random.key(0)))


@pytest.fixture(scope="module")
def digits_target():
    return targets.digits_target()


def test_the_digits_target_scores_in_a_space_no_objective_uses(digits_target):
    t = digits_target
    assert t.train.identity["name"] == "digits" and t.eval.identity["name"] == "digits_eval"
    assert not t.spaces_coincide
    for space, path in ((t.train, digits_model.CLASSIFIER_FILE), (t.eval, digits_model.EVAL_FILE)):
        with open(path, "rb") as f:
            assert space.identity["sha256"] == hashlib.sha256(f.read()).hexdigest()
    # The objectives' feature network is the train space's, not the evaluation space's.
    apply, params = targets.feature_network("digits")
    images = np.asarray(jax.random.uniform(jax.random.key(0), (16, 8, 8, 1), minval=-1, maxval=1))
    np.testing.assert_allclose(np.asarray(apply(params, images)), t.train.features(images), rtol=1e-5, atol=1e-6)
    assert t.eval.features(images).shape[1] == features.get("digits_eval").dim


def test_a_row_reports_both_spaces_on_quantised_samples(digits_target):
    from ddss.data import digits as digits_data

    t = digits_target
    rng = np.random.default_rng(0)
    images = digits_data.load("all")[0][:400] + rng.normal(0, 0.05, (400, 8, 8, 1)).astype(np.float32)
    row = t.score(images)
    q = targets.quantize_uint8(images)
    assert row["fid"] == pytest.approx(fid.frechet_distance_of(t.eval.features(q), *t.eval.reference_stats))
    assert row["fid_train_space"] == pytest.approx(
        fid.frechet_distance_of(t.train.features(q), *t.train.reference_stats))
    assert row["fid"] != row["fid_train_space"]
    assert 0.0 <= row["precision"] <= 1.0 and 0.0 <= row["recall"] <= 1.0
    assert row["eval_features"]["name"] == "digits_eval" and row["train_features"]["name"] == "digits"
    assert row["quantized"] == "uint8" and row["spaces_coincide"] is False
    # Real digits lie on the data manifold: high precision; pure noise does not.
    noise = t.score(rng.uniform(-1, 1, (400, 8, 8, 1)).astype(np.float32))
    assert row["precision"] > 0.8 > 0.2 > noise["precision"]


def test_learned_rows_are_compared_with_the_best_training_free_row():
    rows = [{"method": "ddim-linear", "K": 4, "fid": 9.0, "precision": 0.7, "recall": 0.8},
            {"method": "unipc(bh2,3)-logsnr", "K": 4, "fid": 6.0, "precision": 0.8, "recall": 0.8},
            {"method": "ddim-linear", "K": 5, "fid": 5.0, "precision": 0.8, "recall": 0.9},
            {"method": "ggdm+pred+time-teacher", "K": 4, "fid": 2.0},
            {"method": "evolution-timesteps", "K": 5, "fid": 4.0},
            {"method": "ddpm-1000", "K": 1000, "fid": 1.0},
            {"method": "data", "K": 0, "fid": 3.0}]
    evaluation.compare_with_training_free(rows)
    learned, searched = rows[3], rows[4]
    assert learned["best_training_free"]["method"] == "unipc(bh2,3)-logsnr"
    assert learned["fid_over_best_training_free"] == pytest.approx(2.0 / 6.0)
    assert searched["best_training_free"]["method"] == "ddim-linear"
    assert all("best_training_free" not in r for r in rows[:3] + rows[5:])
