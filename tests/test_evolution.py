"""AutoDiffusion's genome operators (property tests of every invariant), the search loop, and the
vectorised evaluator against a per-candidate loop with statically skipped blocks."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddss import diagnostics, schedules
from ddss.experiments import targets
from ddss.metrics import fid
from ddss.models import unet
from ddss.samplers import skipping
from ddss.search import evolution as evo

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def spaces(draw, free=None):
    """A search space, a pruning allowance that admits at least one K, and a key."""
    T = draw(st.integers(8, 1000))
    L = draw(st.integers(0, 6))
    lo = draw(st.integers(1, 5))
    hi = lo + (draw(st.integers(0, 3)) if free in (None, True) else 0)
    frac = draw(st.sampled_from([0.0, 0.25, 0.5, 1.0])) if L else 0.0
    budget = L * lo + draw(st.integers(0, L * 2)) if L else draw(st.integers(0, 10))
    space = evo.Space(T, L, budget, lo, hi)
    if not space.feasible_steps(frac):
        frac = 1.0
    if not space.feasible_steps(frac):  # budget smaller than min_steps·L·0: impossible with frac = 1
        space = dataclasses.replace(space, budget=max(L * lo, L))
    return space, frac, jax.random.key(draw(st.integers(0, 2**31 - 1)))


def genes(g: evo.Genome) -> set:
    return {(int(t), row.tobytes()) for t, row in zip(g.timesteps, g.skip)}


@PROPERTY
@given(spaces())
def test_random_genomes_satisfy_every_invariant(args):
    space, frac, key = args
    g = evo.random_genome(key, space, frac)
    evo.check(g, space, frac)  # distinct, decreasing, in range, budget, allowance
    assert g.timesteps.dtype == np.int32 and g.skip.dtype == bool
    assert g.num_steps in space.feasible_steps(frac)
    again = evo.random_genome(key, space, frac)
    assert genes(again) == genes(g) and np.array_equal(again.timesteps, g.timesteps)  # a pure function of the key


@PROPERTY
@given(spaces(), st.floats(0.0, 1.0), st.floats(0.0, 0.5))
def test_mutation_keeps_every_invariant(args, prob, skip_prob):
    space, frac, key = args
    k1, k2 = jax.random.split(key)
    parent = evo.random_genome(k1, space, frac)
    child = evo.mutate(k2, parent, space, frac, prob=prob, skip_prob=skip_prob)
    evo.check(child, space, frac)
    assert genes(evo.mutate(k2, parent, space, frac, prob=prob, skip_prob=skip_prob)) == genes(child)


@PROPERTY
@given(spaces(free=False))
def test_timestep_mutation_keeps_each_skip_set_with_its_step(args):
    space, frac, key = args
    k1, k2 = jax.random.split(key)
    parent = evo.random_genome(k1, space, frac)
    # skip_prob = 0 and a fixed K: repair has nothing to do, so every skip row must be a parent's row
    # at the same position in the parent (the step it belonged to), moved with its new timestep.
    child = evo.mutate(k2, parent, space, frac, prob=1.0, skip_prob=0.0)
    parent_rows = sorted(r.tobytes() for r in parent.skip)
    assert sorted(r.tobytes() for r in child.skip) == parent_rows
    assert not set(child.timesteps.tolist()) & set(parent.timesteps.tolist()) or space.num_timesteps < 2 * space.max_steps


def test_skip_mutation_is_not_a_no_op():
    """The reference's skip-set mutation returned its input; ours flips bits (timesteps untouched)."""
    space = evo.Space.fixed(1000, 10, 4)
    parent = evo.random_genome(jax.random.key(0), space, 0.5)
    children = [evo.mutate(jax.random.key(i), parent, space, 0.5, prob=0.0, skip_prob=0.2) for i in range(10)]
    assert all(np.array_equal(c.timesteps, parent.timesteps) for c in children)
    assert sum(not np.array_equal(c.skip, parent.skip) for c in children) >= 8
    for c in children:
        evo.check(c, space, 0.5)
    # With no pruning allowed, skip bits never change.
    full = evo.random_genome(jax.random.key(1), space, 0.0)
    assert not evo.mutate(jax.random.key(2), full, space, 0.0, prob=0.0, skip_prob=0.9).skip.any()


@PROPERTY
@given(spaces())
def test_crossover_keeps_timesteps_distinct_and_each_skip_set_with_its_timestep(args):
    space, frac, key = args
    k1, k2, k3 = jax.random.split(key, 3)
    a, b = evo.random_genome(k1, space, frac), evo.random_genome(k2, space, frac)
    child = evo.crossover(k3, a, b, space, frac)
    evo.check(child, space, frac)
    assert child.num_steps in (a.num_steps, b.num_steps) or child.num_steps in space.feasible_steps(frac)
    # Without budget pressure (lo = 0, hi = K·L) repair leaves the child alone: every gene is a
    # (timestep, skip set) pair of a parent, unless the parents jointly lack K distinct timesteps.
    loose = dataclasses.replace(space, budget=space.max_steps * space.num_blocks + 1)
    a, b = evo.random_genome(k1, loose, 1.0), evo.random_genome(k2, loose, 1.0)
    child = evo.crossover(k3, a, b, loose, 1.0)
    evo.check(child, loose, 1.0)
    parent_genes = genes(a) | genes(b)
    if len({t for t, _ in parent_genes}) >= child.num_steps:
        assert genes(child) <= parent_genes


def test_crossover_of_parents_sharing_timesteps_never_duplicates():
    """The reference's uniform crossover could take timestep t from both parents."""
    space = evo.Space.fixed(1000, 3, 4)
    a = evo.make_genome([900, 600, 300, 100], num_blocks=3)
    b = evo.make_genome([600, 300, 100, 50], num_blocks=3)  # shifted: rank i of a is rank i−1 of b
    for i in range(30):
        child = evo.crossover(jax.random.key(i), a, b, space, 0.0)
        evo.check(child, space, 0.0)
        assert set(child.timesteps.tolist()) <= {900, 600, 300, 100, 50}


@PROPERTY
@given(spaces(), st.integers(0, 5))
def test_repair_restores_the_budget_after_any_change(args, extra):
    space, frac, key = args
    k1, k2, k3 = jax.random.split(key, 3)
    g = evo.random_genome(k1, space, frac)
    # Break it: drop every skip (over budget when pruning is required) or skip everything (over the allowance).
    broken = evo.Genome(g.timesteps, np.ones_like(g.skip) if extra % 2 else np.zeros_like(g.skip))
    fixed = evo.repair(k2, broken, space, frac)
    evo.check(fixed, space, frac)
    assert np.array_equal(fixed.timesteps, g.timesteps)  # the steps themselves are untouched


def test_pruning_buys_steps_in_free_steps_mode():
    space = evo.Space(1000, 10, budget=40, min_steps=4, max_steps=6)
    assert space.feasible_steps(0.0) == [4]
    assert space.feasible_steps(1 / 3) == [4, 5, 6]
    ks = {evo.random_genome(jax.random.key(i), space, 1 / 3).num_steps for i in range(40)}
    assert ks == {4, 5, 6}
    for i in range(40):
        g = evo.random_genome(jax.random.key(i), space, 1 / 3)
        assert g.block_executions <= 40
        assert evo.mutate(jax.random.key(100 + i), g, space, 0.0).num_steps == 4  # allowance gone: drop steps


def test_bad_inputs_get_one_clear_error_each():
    with pytest.raises(ValueError, match="below one full step.*raise it to at least 18"):
        evo.Space(1000, 18, budget=10, min_steps=1, max_steps=1)
    with pytest.raises(ValueError, match="K = 12 is more than the model's T = 10"):
        evo.Space.fixed(10, 4, 12)
    with pytest.raises(ValueError, match="population \\(4\\) is smaller than the parent count \\(10\\)"):
        evo.SearchConfig(population=4, parents=10, mutants=2, crossovers=1, seed_mutants=1)
    with pytest.raises(ValueError, match="not distinct"):
        evo.check(evo.Genome(np.array([5, 5], np.int32), np.zeros((2, 1), bool)), evo.Space.fixed(10, 1, 2))
    with pytest.raises(ValueError, match="exceed the budget"):
        evo.check(evo.make_genome([5, 3], num_blocks=4), evo.Space(10, 4, budget=6, min_steps=2, max_steps=2), 1.0)
    with pytest.raises(ValueError, match="No K in \\[4, 4\\] fits the budget"):
        evo.random_genome(jax.random.key(0), evo.Space(100, 4, budget=8, min_steps=4, max_steps=4), 0.25)


def _toy_fitness(target):
    """How far each hidden target time is from the genome's nearest timestep, plus a cost per executed block."""
    return lambda gs: np.asarray([np.abs(g.timesteps[None, :] - target[:, None]).min(1).sum() + 0.5 * g.block_executions
                                  for g in gs], np.float64)


def _search(cfg, space, seed, key, fitness, stop_after=None, state=None):
    state = state or evo.SearchState(key=key)
    while state.generation < (stop_after or cfg.generations):
        cands, frac = evo.propose(state, cfg, space, seed)
        memo = state.memo
        assert all(c.fingerprint not in memo for c in cands) and len({c.fingerprint for c in cands}) == len(cands)
        for c in cands:
            evo.check(c, space, frac)
        state = evo.record(state, cfg, cands, fitness(cands))
    return state


def test_search_is_elitist_staged_and_resumes_exactly_from_its_arrays():
    space = evo.Space(200, 4, budget=16, min_steps=4, max_steps=5)
    cfg = evo.SearchConfig(population=12, parents=4, mutants=5, crossovers=4, generations=8, seed_mutants=3,
                           stage1_generations=3, stall_generations=5, ramp_generations=2, max_skip_fraction=0.5)
    seed = evo.make_genome([199, 149, 99, 49], num_blocks=4)
    fitness = _toy_fitness(np.array([3, 20, 60, 150]))
    state = _search(cfg, space, seed, jax.random.key(0), fitness)
    best = state.best_by_generation()
    assert all(b2 <= b1 for b1, b2 in zip(best, best[1:])) and best[-1] < best[0]  # elitist, and it improves
    assert state.born[0] == 0 and state.genomes[0].fingerprint == seed.fingerprint  # generation 0 starts from the seed
    assert len(state.genomes) == len(set(g.fingerprint for g in state.genomes))  # the memo: nothing evaluated twice
    # Stage 1 (generations 0-2) keeps the full network; then the allowance ramps 0.25, 0.5, 0.5, ...
    assert state.stage1_end == 3
    assert all(not g.skip.any() for g, b in zip(state.genomes, state.born) if b < 3)
    assert any(g.skip.any() for g, b in zip(state.genomes, state.born) if b >= 3)
    fracs = [evo.skip_fraction(cfg, dataclasses.replace(state, generation=g)) for g in range(3, 8)]
    assert fracs == [0.25, 0.5, 0.5, 0.5, 0.5]
    # Killed after generation 4, checkpointed as arrays, resumed: the same search.
    half = _search(cfg, space, seed, jax.random.key(0), fitness, stop_after=5)
    restored = evo.SearchState.from_arrays(half.to_arrays(space.max_steps, space.num_blocks))
    resumed = _search(cfg, space, seed, jax.random.key(0), fitness, state=restored)
    assert [g.fingerprint for g in resumed.genomes] == [g.fingerprint for g in state.genomes]
    assert resumed.fitness == state.fitness and resumed.stage1_end == state.stage1_end


def test_a_joint_search_branching_off_a_timestep_search_shares_its_stage_one():
    space = evo.Space(200, 4, budget=12, min_steps=3, max_steps=4)
    fixed = evo.Space.fixed(200, 4, 3)
    seed = evo.make_genome([199, 99, 9], num_blocks=4)
    fitness = _toy_fitness(np.array([5, 40, 90, 170]))
    cfg = evo.SearchConfig(population=8, parents=3, mutants=3, crossovers=2, generations=6, seed_mutants=2,
                           stage1_generations=2, ramp_generations=1)
    timesteps = _search(cfg, fixed, seed, jax.random.key(0), fitness)
    joint_cfg = dataclasses.replace(cfg, max_skip_fraction=0.5)
    start = timesteps.branch(2, jax.random.key(1))
    assert start.generation == 2 and start.stage1_end == 2 and len(start.wall_times) == 2
    assert [g.fingerprint for g in start.genomes] == [g.fingerprint for g, b in zip(timesteps.genomes, timesteps.born) if b < 2]
    joint = _search(joint_cfg, space, seed, None, fitness, state=start)
    assert joint.best_by_generation()[:2] == timesteps.best_by_generation()[:2]
    assert any(g.num_steps == 4 for g in joint.genomes)  # pruning bought a step
    assert len(joint.genomes) == len(timesteps.genomes)  # the same number of candidates


def test_stage_one_ends_early_when_the_best_stalls():
    space = evo.Space.fixed(50, 2, 3)
    cfg = evo.SearchConfig(population=4, parents=2, mutants=1, crossovers=1, generations=6, seed_mutants=1,
                           stage1_generations=5, stall_generations=2, ramp_generations=1, max_skip_fraction=0.5)
    state = _search(cfg, space, evo.make_genome([40, 20, 5], num_blocks=2), jax.random.key(3),
                    lambda gs: np.ones(len(gs)))  # flat fitness: the best never improves
    assert state.stage1_end == 3


# ---------------------------------------------------------------------------------------------
# The evaluator: vmapped traced masks == a loop over candidates with static skips
# ---------------------------------------------------------------------------------------------

TINY = unet.UNetConfig(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                       layers_per_block=1, norm_num_groups=4)


@pytest.fixture(scope="module")
def tiny():
    params = unet.init_params(TINY, jax.random.key(0))
    apply_skip = lambda p, x, t, mask, skip: unet.eps_fn(TINY, p, skip_mask=mask, skip=skip)(x, t)
    return params, apply_skip, unet.num_blocks(TINY)


@pytest.mark.parametrize("kind", ["ddim", "dpm_solver++", "unipc", "unipc3", "ggdm"])
def test_vmapped_fitness_equals_a_loop_of_statically_pruned_samplers(tiny, kind):
    params, apply_skip, L = tiny
    schedule = schedules.linear_beta(1000)
    rng = np.random.default_rng(0)
    feats = lambda p, x: jnp.tanh(x.reshape(x.shape[0], -1)[:, :6] * p)
    ref_feats = rng.normal(size=(200, 6)) * 0.3
    reference = fid.Reference.from_stats(ref_feats.mean(0), np.cov(ref_feats, rowvar=False))
    template = None
    if kind == "ggdm":
        from ddss.samplers import ggdm
        template = ggdm.init(schedule, np.array([900.0, 500.0, 100.0]), family="ggdm+pred", base="dpm_solver++")
        template = template.replace(learned={k: v + 0.01 * rng.normal(size=v.shape).astype(np.float32)
                                             for k, v in template.learned.items()})
    fn = jax.jit(evo.fitness_fn(kind, schedule, apply_skip, feats, reference, clip_denoised=True, template=template))
    space = evo.Space.fixed(1000, L, 3)
    genomes = [evo.random_genome(jax.random.key(i), space, 0.5) for i in range(3)]
    genomes[0] = evo.make_genome([999, 500, 1], num_blocks=L)  # no skips
    noise = jax.random.normal(jax.random.key(9), (16, 8, 8, 1))
    t, masks = evo.stack(genomes)
    got, bad = fn(jnp.asarray(t), jnp.asarray(masks), noise, jax.random.key(1), params, jnp.float32(2.0))
    assert not np.asarray(bad).any()
    for g, value in zip(genomes, np.asarray(got)):
        eps = skipping.static_eps(lambda x, t_, skip: apply_skip(params, x, t_, None, skip), g.timesteps, g.skip_lists())
        x = skipping.sample_at(kind, schedule, g.timesteps, eps, noise, jax.random.key(1), clip_denoised=True,
                          template=template)
        want = fid.frechet_distance_of(np.asarray(feats(2.0, jnp.clip(x, -1, 1)), np.float64),
                                       ref_feats.mean(0), np.cov(ref_feats, rowvar=False))
        assert value == pytest.approx(want, rel=2e-4, abs=1e-5)
    assert len({float(v) for v in np.asarray(got)}) == 3  # the masks and times matter
    if kind == "ddim":  # quantised to uint8 levels as the held-out scores are: the same as quantising outside
        fn_q = jax.jit(evo.fitness_fn(kind, schedule, apply_skip, feats, reference, clip_denoised=True, quantize=True))
        got_q = np.asarray(fn_q(jnp.asarray(t), jnp.asarray(masks), noise, jax.random.key(1), params,
                                jnp.float32(2.0))[0])
        assert not np.allclose(got_q, np.asarray(got), rtol=1e-4)
        for g, value in zip(genomes, got_q):
            eps = skipping.static_eps(lambda x, t_, skip: apply_skip(params, x, t_, None, skip), g.timesteps,
                                      g.skip_lists())
            x = skipping.sample_at(kind, schedule, g.timesteps, eps, noise, jax.random.key(1), clip_denoised=True)
            want = fid.frechet_distance_of(np.asarray(feats(2.0, targets.quantize_uint8(x)), np.float64),
                                           ref_feats.mean(0), np.cov(ref_feats, rowvar=False))
            assert value == pytest.approx(want, rel=2e-4, abs=1e-5)


def test_new_timesteps_and_masks_do_not_recompile(tiny):
    params, apply_skip, L = tiny
    schedule = schedules.linear_beta(1000)
    feats = lambda p, x: x.reshape(x.shape[0], -1)[:, :4]
    reference = fid.Reference.from_stats(np.zeros(4), np.eye(4))
    fn = jax.jit(evo.fitness_fn("ddim", schedule, apply_skip, feats, reference, clip_denoised=False))
    noise = jax.random.normal(jax.random.key(0), (8, 8, 8, 1))
    space = evo.Space.fixed(1000, L, 2)

    def chunk(seed):
        t, m = evo.stack([evo.random_genome(jax.random.key(seed * 10 + i), space, 0.5) for i in range(3)])
        return fn(jnp.asarray(t), jnp.asarray(m), noise, jax.random.key(0), params, {})[0].block_until_ready()

    chunk(0)
    with diagnostics.count_compilations() as count:
        for seed in range(1, 4):
            chunk(seed)
    assert count.total == 0


def test_deployed_static_skips_remove_the_blocks_compute(tiny):
    """The compiled program of a statically pruned step does fewer flops than the unpruned one, and
    gives the same ε as the traced mask."""
    params, apply_skip, L = tiny
    x, t = jax.random.normal(jax.random.key(0), (4, 8, 8, 1)), jnp.full((4,), 500.0)
    skip = (0, 2, L - 1)
    cost = lambda s: jax.jit(lambda x_: apply_skip(params, x_, t, None, s)).lower(x).compile().cost_analysis()
    flops = lambda c: (c[0] if isinstance(c, list) else c)["flops"]
    assert flops(cost(skip)) < 0.8 * flops(cost(()))
    mask = np.zeros(L, bool)
    mask[list(skip)] = True
    np.testing.assert_allclose(apply_skip(params, x, t, None, skip), apply_skip(params, x, t, jnp.asarray(mask), ()),
                               rtol=1e-5, atol=1e-5)
