"""Run by tests/test_parallel.py in a process with 8 CPU devices (`--xla_force_host_platform_device_count=8`):
each experiment's unit of work gives the same result on a 1-device mesh and on 8 devices, to float32
rounding, and its arrays are really split (the shardings are checked, not only the values).

Not collected on its own (its name does not start with test_): the device count is fixed when JAX
starts, so these need their own process.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from ddss import parallel, schedules
from ddss.data import digits as digits_data
from ddss.experiments import evaluation, evolution as evolution_experiment, targets, train
from ddss.metrics import features, kid
from ddss.models import digits, unet
from ddss.samplers import ddim, ggdm
from ddss.search import differentiable, evolution

assert jax.device_count() == 8, "run through tests/test_parallel.py (8 host devices)"
ONE = parallel.make_mesh(devices=jax.devices()[:1])
EIGHT = parallel.make_mesh()  # every device on the data axis
SPLIT = parallel.make_mesh(2, 4)  # data 2 × population 4


def _devices(x) -> int:
    return len(x.sharding.device_set)


def test_batches_are_placed_split_over_the_data_axis():
    with jax.set_mesh(EIGHT):
        batch, n = parallel.put_batch(np.zeros((13, 8, 8, 1), np.float32))
    assert n == 13 and batch.shape == (16, 8, 8, 1)  # padded to a multiple of 8
    assert batch.sharding.spec == PartitionSpec("data") and _devices(batch) == 8
    assert {s.data.shape[0] for s in batch.addressable_shards} == {2}


def test_sampling_is_batch_parallel():
    model = digits.load()
    params = ddim.init(model.schedule, schedules.timesteps(model.schedule, "quadratic", 4))
    fn = jax.jit(lambda p, x, key: ddim.sample(p, unet.eps_fn(model.config, model.params), x, key, return_info=True))
    bank = np.asarray(jax.random.normal(jax.random.key(0), (24, 8, 8, 1)))
    out = {}
    for name, mesh in (("one", ONE), ("eight", EIGHT)):
        with jax.set_mesh(mesh):
            out[name] = evaluation.sample_in_batches(fn, params, bank, jax.random.key(1), 16)
            placed, _ = parallel.put_batch(bank[:16])
            x0, _ = fn(params, placed, jax.random.key(1))
            assert _devices(x0) == len(mesh.devices.flat)  # the output stays split
    np.testing.assert_allclose(out["eight"], out["one"], atol=5e-5)  # per-device convolutions round differently


def test_feature_statistics_pass_is_batch_parallel():
    extractor = features.get("digits")
    images = digits_data.load("all")[0][:100]
    with jax.set_mesh(ONE):
        one = extractor.features(images, batch_size=40)
    with jax.set_mesh(EIGHT):
        eight = extractor.features(images, batch_size=40)
    np.testing.assert_allclose(eight, one, rtol=1e-5, atol=1e-5)
    from ddss.metrics import stats

    a, b = stats.RunningStats().update(one), stats.RunningStats().update(eight)
    np.testing.assert_allclose(b.mu, a.mu, atol=1e-6)
    np.testing.assert_allclose(b.sigma, a.sigma, atol=1e-5)


def test_one_ddss_step_is_data_parallel():
    """KID over the global batch of 16: the same loss, gradients and update on 1 and 8 devices; the
    compiled step splits its batch 8 ways."""
    model = digits.load()
    extractor = features.get("digits")
    reals = jnp.asarray(extractor.features(digits_data.load("all")[0][:64]), jnp.float32)
    init = ggdm.init(model.schedule, schedules.timesteps(model.schedule, "logsnr", 4), family="ggdm+pred",
                     base="dpm_solver++")

    def sample(learned, mp, x, key):
        return ggdm.sample(init.replace(learned=learned), unet.eps_fn(model.config, mp), x, key, remat=True)

    loss = differentiable.make_loss(sample, lambda x: extractor.apply(extractor.params, x),
                                    differentiable.LossConfig(kind="kid"))
    optimizer = differentiable.make_optimizer(1e-2, 1.0, 10)
    results = {}
    for name, mesh in (("one", ONE), ("eight", EIGHT)):
        with jax.set_mesh(mesh):
            step = jax.jit(differentiable.make_step(loss, optimizer, (16, 8, 8, 1), len(reals), 32))
            state = differentiable.init_state(init.learned, optimizer, jax.random.key(3))
            if name == "eight":  # the partitioned program runs 2 of the 16 images per device
                hlo = step.lower(state, model.params, reals).compile().as_text()
                assert "f32[2,8,8,1]" in hlo and "f32[16,8,8,1]" not in hlo
            new, metrics = step(state, model.params, reals)
            results[name] = (jax.device_get(new.learned), {k: float(v) for k, v in metrics.items()})
    # KID² is a difference of kernel means of size ~30 (float32 sums in another order): 1e-3 absolute
    assert results["eight"][1]["kid"] == pytest.approx(results["one"][1]["kid"], abs=1e-3)
    for k, v in results["one"][0].items():
        np.testing.assert_allclose(results["eight"][0][k], v, rtol=1e-4, atol=1e-6)
    assert kid  # the loss is KID's unbiased MMD² over the whole batch (ddss.metrics.kid)


def test_one_population_evaluation_splits_candidates():
    from ddss.configs import gmm_evolution_test

    cfg = evolution_experiment.EvolutionConfig.from_config(gmm_evolution_test.get_config())
    target = evaluation.make_target(cfg.base, jax.random.key(0))
    genomes = [evolution.make_genome(t, num_timesteps=target.schedule.num_timesteps, num_blocks=0)
               for t in ([900, 500, 100], [800, 400, 50], [999, 300, 10], [700, 600, 20])]
    out = {}
    for name, mesh in (("one", ONE), ("eight", EIGHT), ("split", SPLIT)):
        with jax.set_mesh(mesh):
            evaluate = evolution_experiment.Evaluator(cfg, target, targets.feature_network("gmm"), None,
                                                      jax.random.key(1))
            out[name] = evaluate(genomes)
            if name == "split":  # a chunk is padded to a multiple of the 8 devices
                assert evaluate.chunk == 8
                t, masks = evolution.stack(genomes + genomes)
                fids, _ = evaluate.fn(np.asarray(t), np.asarray(masks), evaluate.noise, evaluate.key,
                                      evaluate.model_params, evaluate.feature_params)
                assert fids.sharding.spec == PartitionSpec(("population", "data")) and _devices(fids) == 8
    assert np.all(np.isfinite(out["one"]))
    np.testing.assert_allclose(out["eight"], out["one"], rtol=1e-4)
    np.testing.assert_allclose(out["split"], out["one"], rtol=1e-4)


def test_unet_training_is_data_parallel_and_resumes_into_the_mesh(tmp_path):
    """One UNet training step on 8 devices equals it on 1. Each step's batch arrives split over the data
    axis; a checkpoint restores straight into the mesh (replicated over all 8 devices, not onto one)
    and the next step is the one the uninterrupted run takes."""
    import orbax.checkpoint as ocp

    from ddss.configs import digits_train

    config = digits_train.get_config()
    config.update(batch_size=16, checkpoint_every=1)
    config.model.update(block_out_channels=(16, 32), norm_num_groups=4, layers_per_block=1)
    cfg = train.TrainConfig.from_config(config)
    optimizer, data = train.make_optimizer(cfg), train.DigitsData("all", 16, seed=0)
    step = train.make_train_step(cfg, schedules.linear_beta(1000), optimizer, jax.random.key(1))
    flat = lambda p: np.concatenate([np.ravel(x) for x in jax.tree.leaves(p)])
    start = jax.device_get(train.init_state(cfg, optimizer, jax.random.key(0)))
    with jax.set_mesh(ONE):
        one, one_metrics = step(start, data.batch(0))
        one = flat(jax.device_get(one.params))
    with jax.set_mesh(EIGHT):
        batch = data.global_batch(1)
        assert batch.sharding.spec == PartitionSpec("data") and _devices(batch) == 8
        np.testing.assert_array_equal(parallel.to_host(batch), data.batch(1))
        state, metrics = step(jax.device_put(start, parallel.replicated()), data.global_batch(0))
        assert float(metrics["loss"]) == pytest.approx(float(one_metrics["loss"]), rel=1e-5)
        np.testing.assert_allclose(flat(parallel.to_host(state.params)), one, rtol=1e-4, atol=1e-6)
        mngr = train.checkpoint_manager(str(tmp_path), cfg)
        mngr.save(1, args=ocp.args.StandardSave(state), force=True)
        mngr.wait_until_finished()
        expected = parallel.to_host(step(state, batch)[0].params)
        restored = train.restore_or_init(train.checkpoint_manager(str(tmp_path), cfg), cfg, optimizer,
                                         jax.random.key(5))
        assert int(restored.step) == 1
        assert all(x.sharding.is_fully_replicated and _devices(x) == 8 for x in jax.tree.leaves(restored))
        got = parallel.to_host(step(restored, batch)[0].params)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(a, b)


def test_a_batch_that_does_not_split_is_named():
    with jax.set_mesh(EIGHT):
        with pytest.raises(ValueError, match="batch of 12 does not split over the 8 devices.*multiple of 8"):
            jax.jit(lambda x: parallel.constrain_batch(x))(jnp.zeros((12, 2)))
        with pytest.raises(ValueError, match="training batch \\(config.batch_size\\) of 12 does not split over the 8"):
            train.DigitsData("all", 12, seed=0).global_batch(0)
    with pytest.raises(ValueError, match="data × population = 3 × 2 = 6 devices; there are 8"):
        parallel.make_mesh(3, 2)
