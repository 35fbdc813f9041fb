"""AutoDiffusion (Li et al. 2023): evolutionary search over timesteps and per-step block skipping.

A genome is K distinct integer timesteps in [0, T−1], stored in sampler order (τ_K > ... > τ_1),
and a boolean skip mask [K, L] over the network's L skippable blocks; row k belongs to timestep k
and travels with it through every operator. The compute budget counts block executions,
Σ_k (L − |S_k|) ≤ N_max, so with a free number of steps pruning buys extra steps.

Every operator is a pure function of its inputs and an explicit JAX key, and returns a genome
that passes `check` (distinct sorted timesteps, the budget, the generation's allowed pruning
fraction). The defects of the reference code are avoided by construction: crossover never
duplicates a timestep, skip sets are mutated, a skip set stays with its timestep, the budget is
repaired after every operator, and every candidate is scored on the same noise (the evaluator).

The search itself (`propose` / `record`) is host-side bookkeeping around an evaluator that scores
a list of genomes: elitist parents (the best genomes ever evaluated), a memo so that no genome is
evaluated twice, and the two-stage schedule (timesteps only with the full network, then a linearly
ramped pruning allowance). `SearchState.to_arrays` / `from_arrays` turn the whole state into arrays
for a checkpoint, so a killed search resumes exactly.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ddss import fields
from ddss.metrics import fid as fid_lib
from ddss.samplers import conditioning, ggdm, skipping
from ddss.samplers.skipping import check_sampler, masked_eps, sample_at


# ---------------------------------------------------------------------------------------------
# Genomes and the search space
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class Genome:
    timesteps: np.ndarray  # int32 [K], strictly decreasing
    skip: np.ndarray  # bool [K, L]; skip[k] is the skip set of timesteps[k]

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    @property
    def block_executions(self) -> int:
        return int(self.skip.size - self.skip.sum())

    @property
    def fingerprint(self) -> bytes:
        """Identity for the memo: equal genomes have equal fingerprints (bytes, not a PRNG key)."""
        return self.timesteps.astype(np.int32).tobytes() + b"|" + np.packbits(self.skip, axis=-1).tobytes()

    def skip_lists(self) -> tuple[tuple[int, ...], ...]:
        """Per step (sampler order), the indices of the skipped blocks."""
        return skipping.skip_lists(self.skip)

    def __repr__(self) -> str:
        return f"Genome(timesteps={self.timesteps.tolist()}, skipped={self.skip.sum(axis=1).tolist()})"


def make_genome(timesteps, skip=None, *, num_blocks: int | None = None, num_timesteps: int | None = None) -> Genome:
    """A genome from timesteps (any order; sorted here, skip rows following their timesteps). The times
    must be distinct integers ≥ 0, and ≤ T − 1 when `num_timesteps` (T) is given."""
    t = np.asarray(timesteps)
    if t.ndim != 1 or len(t) < 1:
        raise ValueError(f"timesteps must be a non-empty 1-D list, got shape {t.shape}.")
    if not np.all(np.isfinite(t)) or np.any(t != np.round(t)):
        raise ValueError(f"genome timesteps must be integers, got {t.tolist()}.")
    if t.min() < 0 or (num_timesteps is not None and t.max() > num_timesteps - 1):
        upper = "T − 1" if num_timesteps is None else str(num_timesteps - 1)
        raise ValueError(f"genome timesteps {t.tolist()} fall outside [0, {upper}].")
    if len(np.unique(t)) != len(t):
        raise ValueError(f"genome timesteps {t.tolist()} repeat a time: a step from t to itself does nothing; "
                         "give distinct times.")
    t = t.astype(np.int32)
    if skip is None:
        if num_blocks is None:
            raise ValueError("make_genome needs a skip mask or num_blocks.")
        skip = np.zeros((len(t), num_blocks), bool)
    skip = np.asarray(skip, bool)
    if skip.shape[0] != len(t) or skip.ndim != 2:
        raise ValueError(f"skip mask must have shape [K, L] with K = {len(t)}, got {skip.shape}.")
    order = np.argsort(-t, kind="stable")
    return Genome(t[order], skip[order])


@dataclasses.dataclass(frozen=True)
class Space:
    """What a genome may be: T timesteps, L blocks, a budget of N_max block executions, K's range."""

    num_timesteps: int
    num_blocks: int
    budget: int
    min_steps: int
    max_steps: int

    def __post_init__(self):
        T, L = self.num_timesteps, self.num_blocks
        if L < 0:
            raise ValueError(f"num_blocks must be ≥ 0 (0: a model without skippable blocks), got {L}.")
        if self.min_steps < 1 or self.min_steps > self.max_steps:
            raise ValueError(f"Need 1 ≤ min_steps ≤ max_steps, got {self.min_steps}..{self.max_steps}.")
        if self.max_steps > T:
            raise ValueError(f"K = {self.max_steps} is more than the model's T = {T} timesteps; use K ≤ {T}.")
        if self.budget < L:
            raise ValueError(
                f"The budget of {self.budget} block executions is below one full step ({L} blocks): "
                f"raise it to at least {L}, or to K·L = {self.min_steps * L} for {self.min_steps} unpruned steps.")

    @classmethod
    def fixed(cls, num_timesteps: int, num_blocks: int, num_steps: int, budget: int | None = None) -> "Space":
        """K steps exactly; the budget defaults to K full steps (pruning is then optional)."""
        return cls(num_timesteps, num_blocks, num_blocks * num_steps if budget is None else budget,
                   num_steps, num_steps)

    def skip_range(self, num_steps: int, max_skip_fraction: float) -> tuple[int, int]:
        """(fewest, most) skipped blocks a K-step genome may have: the budget and the pruning allowance."""
        cells = num_steps * self.num_blocks
        return max(0, cells - self.budget), int(math.floor(max_skip_fraction * cells + 1e-9))

    def feasible_steps(self, max_skip_fraction: float) -> list[int]:
        return [k for k in range(self.min_steps, self.max_steps + 1)
                if self.skip_range(k, max_skip_fraction)[0] <= self.skip_range(k, max_skip_fraction)[1]]


def check(genome: Genome, space: Space, max_skip_fraction: float = 1.0) -> None:
    """Raises ValueError naming the first broken invariant of `genome` in `space`."""
    t, s = genome.timesteps, genome.skip
    k = len(t)
    if not space.min_steps <= k <= space.max_steps:
        raise ValueError(f"{genome}: K = {k} is outside [{space.min_steps}, {space.max_steps}].")
    if s.shape != (k, space.num_blocks) or s.dtype != bool:
        raise ValueError(f"{genome}: skip mask has shape {s.shape} ({s.dtype}); expected ({k}, {space.num_blocks}) bool.")
    try:
        skipping.check_timesteps(t, s, space.num_timesteps)  # integers, in range, distinct, noisiest first
    except ValueError as e:
        raise ValueError(f"{genome}: {e}") from None
    lo, hi = space.skip_range(k, max_skip_fraction)
    skipped = int(s.sum())
    if skipped < lo:
        raise ValueError(f"{genome}: {genome.block_executions} block executions exceed the budget of {space.budget}.")
    if skipped > hi:
        raise ValueError(f"{genome}: {skipped} skipped blocks exceed the allowed {max_skip_fraction:.0%} ({hi}).")


def _rng(key) -> np.random.Generator:
    """A numpy generator that is a pure function of the JAX key."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())


def _unused(rng: np.random.Generator, used, num_timesteps: int) -> int | None:
    """A uniformly drawn timestep in [0, T−1] not in `used`; None when every timestep is used."""
    used = set(int(u) for u in np.asarray(used).reshape(-1))
    if len(used) * 2 < num_timesteps:  # rejection is fast while most values are free
        while True:
            t = int(rng.integers(num_timesteps))
            if t not in used:
                return t
    free = np.setdiff1d(np.arange(num_timesteps), np.fromiter(used, int, len(used)))
    return int(rng.choice(free)) if len(free) else None


def _feasible_steps(space: Space, max_skip_fraction: float) -> list[int]:
    feasible = space.feasible_steps(max_skip_fraction)
    if not feasible:
        raise ValueError(
            f"No K in [{space.min_steps}, {space.max_steps}] fits the budget of {space.budget} block executions "
            f"with at most {max_skip_fraction:.0%} of blocks skipped: raise the budget or the pruning fraction.")
    return feasible


def repair(key, genome: Genome, space: Space, max_skip_fraction: float) -> Genome:
    """The nearest genome within the budget and the pruning allowance: removes steps (free-steps
    mode) while no skip count can satisfy both, then skips or restores random blocks."""
    rng = _rng(key)
    t, s = genome.timesteps.copy(), genome.skip.copy()
    feasible = _feasible_steps(space, max_skip_fraction)
    while len(t) > max(feasible):  # drop random steps
        drop = int(rng.integers(len(t)))
        t, s = np.delete(t, drop), np.delete(s, drop, axis=0)
    while len(t) < min(feasible):
        t = np.append(t, _unused(rng, t, space.num_timesteps))
        s = np.concatenate([s, np.zeros((1, space.num_blocks), bool)])
    lo, hi = space.skip_range(len(t), max_skip_fraction)
    flat = s.reshape(-1)
    if flat.sum() < lo:
        on = rng.choice(np.flatnonzero(~flat), size=lo - int(flat.sum()), replace=False)
        flat[on] = True
    elif flat.sum() > hi:
        off = rng.choice(np.flatnonzero(flat), size=int(flat.sum()) - hi, replace=False)
        flat[off] = False
    return make_genome(t, flat.reshape(s.shape))


def random_genome(key, space: Space, max_skip_fraction: float) -> Genome:
    """Uniform K among the feasible ones, uniform distinct timesteps, a uniform number of skipped blocks."""
    k_steps, k_t, k_s = jax.random.split(key, 3)
    feasible = _feasible_steps(space, max_skip_fraction)
    k = feasible[int(_rng(k_steps).integers(len(feasible)))]
    t = _rng(k_t).choice(space.num_timesteps, size=k, replace=False)
    lo, hi = space.skip_range(k, max_skip_fraction)
    rng = _rng(k_s)
    n_skip = int(rng.integers(lo, hi + 1))
    flat = np.zeros(k * space.num_blocks, bool)
    flat[rng.choice(flat.size, size=n_skip, replace=False)] = True
    return make_genome(t, flat.reshape(k, space.num_blocks))


def mutate(key, genome: Genome, space: Space, max_skip_fraction: float, *, prob: float = 0.25,
           skip_prob: float = 0.05, length_prob: float = 0.2) -> Genome:
    """Each timestep replaced by an unused one with probability `prob` (its skip set stays with the
    step); each skip bit flipped with probability `skip_prob` when pruning is allowed; in free-steps
    mode a step added or removed with probability `length_prob`; then the budget is repaired."""
    k_t, k_s, k_len, k_rep = jax.random.split(key, 4)
    rng = _rng(k_t)
    t, s = genome.timesteps.copy(), genome.skip.copy()
    used = t.tolist()  # new values avoid every parent timestep and each other
    for i in np.flatnonzero(rng.random(len(t)) < prob):
        new = _unused(rng, used, space.num_timesteps)
        if new is None:  # T is small: fall back to any value the child does not hold
            new = _unused(rng, t, space.num_timesteps)
        if new is not None:
            t[i] = new
            used.append(new)
    if max_skip_fraction > 0:
        s ^= _rng(k_s).random(s.shape) < skip_prob
    if space.min_steps < space.max_steps:
        rng = _rng(k_len)
        if rng.random() < length_prob:
            new = _unused(rng, t, space.num_timesteps)
            if new is not None and ((rng.random() < 0.5 and len(t) < space.max_steps) or len(t) == space.min_steps):
                t = np.append(t, new)
                row = rng.random(space.num_blocks) < (s.mean() if max_skip_fraction > 0 else 0.0)
                s = np.concatenate([s, row[None]])
            elif len(t) > space.min_steps:
                drop = int(rng.integers(len(t)))
                t, s = np.delete(t, drop), np.delete(s, drop, axis=0)
    return repair(k_rep, make_genome(t, s), space, max_skip_fraction)


def crossover(key, a: Genome, b: Genome, space: Space, max_skip_fraction: float) -> Genome:
    """Uniform crossover of aligned steps (rank i of a with rank i of b): each child step is one
    parent's (timestep, skip set) pair. A timestep the child already has is replaced by the other
    parent's step, then by any unused parent step, then by a fresh timestep; the budget is repaired."""
    k_len, k_pick, k_fill, k_rep = jax.random.split(key, 4)
    k = (a.num_steps, b.num_steps)[int(_rng(k_len).integers(2))]
    rng = _rng(k_pick)
    pool = [(int(p.timesteps[i]), p.skip[i]) for p in (a, b) for i in range(p.num_steps)]
    child_t, child_s = [], []
    for i in range(k):
        options = [p for p in (a, b) if i < p.num_steps]
        if len(options) == 2 and rng.random() < 0.5:
            options.reverse()
        genes = [(int(p.timesteps[i]), p.skip[i]) for p in options]
        genes += [g for g in pool if g[0] not in child_t]
        t_new, s_new = next(((t_, s_) for t_, s_ in genes if t_ not in child_t), (None, None))
        if t_new is None:
            t_new, s_new = _unused(_rng(jax.random.fold_in(k_fill, i)), np.asarray(child_t), space.num_timesteps), \
                np.zeros(space.num_blocks, bool)
        child_t.append(t_new)
        child_s.append(np.asarray(s_new, bool))
    return repair(k_rep, make_genome(child_t, np.stack(child_s)), space, max_skip_fraction)


# ---------------------------------------------------------------------------------------------
# The search: configuration, state, one generation at a time
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """AutoDiffusion's defaults; `max_skip_fraction = 0` searches timesteps only."""

    population: int = 50
    parents: int = 10
    mutants: int = 25
    crossovers: int = 15
    generations: int = 10
    mutation_prob: float = 0.25
    skip_prob: float = 0.05
    length_prob: float = 0.2
    seed_mutants: int = 10  # generation 0: the seed, this many of its mutants, random genomes
    stage1_generations: int = 5  # timesteps only, with the full network ...
    stall_generations: int = 2  # ... or until the best has not improved for this many generations
    ramp_generations: int = 3  # then the pruning allowance ramps up linearly to its maximum
    max_skip_fraction: float = 0.0

    def __post_init__(self):
        if self.parents < 1:
            raise ValueError("parents must be ≥ 1.")
        if self.population < self.parents:
            raise ValueError(f"The population ({self.population}) is smaller than the parent count ({self.parents}): "
                             f"use population ≥ {self.parents}, or fewer parents.")
        if self.mutants + self.crossovers > self.population:
            raise ValueError(f"mutants + crossovers = {self.mutants + self.crossovers} exceed the population "
                             f"({self.population}).")
        if self.seed_mutants >= self.population:
            raise ValueError(f"seed_mutants ({self.seed_mutants}) must be below the population ({self.population}).")
        if not 0.0 <= self.max_skip_fraction <= 1.0:
            raise ValueError(f"max_skip_fraction must lie in [0, 1], got {self.max_skip_fraction}.")
        if self.generations < 1 or self.ramp_generations < 1:
            raise ValueError("generations and ramp_generations must be ≥ 1.")
        fields.check("search", self, population=fields.INT_POS, parents=fields.INT_POS, mutants=fields.INT_NONNEG,
                     crossovers=fields.INT_NONNEG, generations=fields.INT_POS, mutation_prob=fields.PROBABILITY,
                     skip_prob=fields.PROBABILITY, length_prob=fields.PROBABILITY, seed_mutants=fields.INT_NONNEG,
                     stage1_generations=fields.INT_NONNEG, stall_generations=fields.INT_POS,
                     ramp_generations=fields.INT_POS, max_skip_fraction=fields.PROBABILITY)


@dataclasses.dataclass
class SearchState:
    """Everything a search needs to continue: the memo (every genome evaluated, in order, with its
    fitness and generation), the generation count, when stage 1 ended, and the key."""

    key: jax.Array
    generation: int = 0
    genomes: list = dataclasses.field(default_factory=list)
    fitness: list = dataclasses.field(default_factory=list)
    born: list = dataclasses.field(default_factory=list)  # generation each genome was evaluated in
    stage1_end: int = -1  # first generation of stage 2 (-1: still in stage 1)
    wall_times: list = dataclasses.field(default_factory=list)  # seconds spent on each generation

    @property
    def memo(self) -> dict[bytes, float]:
        return {g.fingerprint: f for g, f in zip(self.genomes, self.fitness)}

    def best(self, n: int = 1) -> list[tuple[Genome, float]]:
        order = np.argsort(np.asarray(self.fitness, np.float64), kind="stable")[:n]
        return [(self.genomes[i], self.fitness[i]) for i in order]

    def branch(self, generation: int, key) -> "SearchState":
        """This search as it stood after `generation` generations, continuing as a new search with its own
        key and stage 2 starting now (a joint search branching off a finished timestep search)."""
        keep = [i for i, b in enumerate(self.born) if b < generation]
        return SearchState(key=key, generation=generation, genomes=[self.genomes[i] for i in keep],
                           fitness=[self.fitness[i] for i in keep], born=[self.born[i] for i in keep],
                           stage1_end=generation, wall_times=list(self.wall_times[:generation]))

    def best_by_generation(self) -> list[float]:
        """Best fitness ever, after each finished generation."""
        out, best = [], np.inf
        born = np.asarray(self.born)
        f = np.asarray(self.fitness, np.float64)
        for g in range(self.generation):
            here = f[born == g]
            best = min(best, here.min()) if len(here) else best
            out.append(float(best))
        return out

    def to_arrays(self, max_steps: int, num_blocks: int) -> dict:
        """The state as fixed-dtype arrays (steps padded with −1) for an array checkpoint."""
        m = len(self.genomes)
        t = np.full((m, max_steps), -1, np.int32)
        s = np.zeros((m, max_steps, max(num_blocks, 1)), bool)  # one padding column: no zero-size arrays
        for i, g in enumerate(self.genomes):
            t[i, :g.num_steps], s[i, :g.num_steps, :num_blocks] = g.timesteps, g.skip
        return {"num_blocks": np.int64(num_blocks), "key": np.asarray(jax.random.key_data(self.key)), "generation": np.int64(self.generation),
                "stage1_end": np.int64(self.stage1_end), "timesteps": t, "skip": s.astype(np.uint8),
                "fitness": np.asarray(self.fitness, np.float64).reshape(m), "born": np.asarray(self.born, np.int64),
                "wall_times": np.asarray(self.wall_times, np.float64).reshape(self.generation)}

    @classmethod
    def from_arrays(cls, arrays: dict) -> "SearchState":
        t = np.asarray(arrays["timesteps"])
        s = np.asarray(arrays["skip"]).astype(bool)[..., :int(arrays["num_blocks"])]
        genomes = [Genome(t[i][t[i] >= 0], s[i][t[i] >= 0]) for i in range(len(t))]
        return cls(key=jax.random.wrap_key_data(np.asarray(arrays["key"], np.uint32)),
                   generation=int(arrays["generation"]), genomes=genomes,
                   fitness=[float(f) for f in np.asarray(arrays["fitness"])],
                   born=[int(b) for b in np.asarray(arrays["born"])], stage1_end=int(arrays["stage1_end"]),
                   wall_times=[float(w) for w in np.asarray(arrays["wall_times"])])


def skip_fraction(cfg: SearchConfig, state: SearchState) -> float:
    """The pruning allowance of the generation `state` is about to propose (the two-stage schedule)."""
    if cfg.max_skip_fraction == 0 or state.stage1_end < 0:
        return 0.0
    ramp = (state.generation - state.stage1_end + 1) / cfg.ramp_generations
    return cfg.max_skip_fraction * min(1.0, ramp)


def propose(state: SearchState, cfg: SearchConfig, space: Space, seed: Genome) -> tuple[list[Genome], float]:
    """The next generation's new candidates (none already evaluated) and its pruning allowance.

    Generation 0: the seed, `seed_mutants` of its mutants and random genomes. Later: mutants of and
    crossovers between the best `parents` genomes ever evaluated, then random genomes to fill."""
    frac = skip_fraction(cfg, state)
    key = jax.random.fold_in(state.key, state.generation)
    seen = set(state.memo)
    out: list[Genome] = []

    def add(g: Genome) -> bool:
        check(g, space, frac)
        if g.fingerprint in seen:
            return False
        seen.add(g.fingerprint)
        out.append(g)
        return True

    def fill(n: int, make, stream: int) -> None:
        target, attempt = len(out) + n, 0
        while len(out) < target and attempt < 20 * n + 20:  # a small space may run out of new genomes
            add(make(jax.random.fold_in(jax.random.fold_in(key, stream), attempt)))
            attempt += 1

    if state.generation == 0:
        seed = repair(jax.random.fold_in(key, 99), seed, space, frac)
        add(seed)
        fill(cfg.seed_mutants, lambda k: mutate(k, seed, space, frac, prob=cfg.mutation_prob,
                                                skip_prob=cfg.skip_prob, length_prob=cfg.length_prob), 1)
    else:
        parents = [g for g, _ in state.best(cfg.parents)]

        def mutant(k):
            k_p, k_m = jax.random.split(k)
            p = parents[int(_rng(k_p).integers(len(parents)))]
            return mutate(k_m, p, space, frac, prob=cfg.mutation_prob, skip_prob=cfg.skip_prob,
                          length_prob=cfg.length_prob)

        def child(k):
            k_p, k_c = jax.random.split(k)
            i, j = _rng(k_p).choice(len(parents), size=2, replace=len(parents) < 2)
            return crossover(k_c, parents[i], parents[j], space, frac)

        fill(cfg.mutants, mutant, 1)
        fill(cfg.crossovers, child, 2)
    fill(cfg.population - len(out), lambda k: random_genome(k, space, frac), 3)
    return out, frac


def record(state: SearchState, cfg: SearchConfig, candidates: Sequence[Genome], fitness,
           wall_time: float = 0.0) -> SearchState:
    """The state after a generation's candidates were scored (NaN fitness counts as +inf) in
    `wall_time` seconds; decides whether stage 1 ends (its generation count reached, or the best stalled)."""
    f = np.asarray(fitness, np.float64).reshape(-1)
    if len(f) != len(candidates):
        raise ValueError(f"{len(candidates)} candidates but {len(f)} fitness values.")
    f = np.where(np.isfinite(f), f, np.inf)
    new = dataclasses.replace(state, generation=state.generation + 1,
                              genomes=state.genomes + list(candidates), fitness=state.fitness + f.tolist(),
                              born=state.born + [state.generation] * len(candidates),
                              wall_times=state.wall_times + [float(wall_time)])
    if new.stage1_end < 0 and cfg.max_skip_fraction > 0:
        best = new.best_by_generation()
        stalled = len(best) > cfg.stall_generations and best[-1] >= best[-1 - cfg.stall_generations]
        if new.generation >= cfg.stage1_generations or stalled:
            new.stage1_end = new.generation
    return new


def fitness_fn(kind: str, schedule, apply_skip, features_apply, reference: fid_lib.Reference, *,
               clip_denoised: bool, template: ggdm.GGDMParams | None = None, quantize: bool = False):
    """Pure `fitness(timesteps [C, K], masks [C, K, L], noise [N, ...], key, model_params,
    feature_params) -> (FID [C], nonfinite step [C])`: a chunk of C candidates sampled with `vmap`
    from the same noise (common random numbers), scored by the float32 FID against `reference`.

    `apply_skip(model_params, x, t, skip_mask, skip)` is the traced-mask network (with `y` last when
    `noise` is a `conditioning.Labelled` batch: class labels); `features_apply
    (feature_params, images)` the feature extractor, fed samples clipped to [-1, 1], and with
    `quantize` rounded to the 256 levels of a uint8 image first, as the final scores are."""
    check_sampler(kind, template)

    def one(timesteps, masks, noise, key, model_params, feature_params):
        noise, y = conditioning.split(noise)  # labels, if any, travel with the noise (then apply_skip takes y last)
        eps = masked_eps(apply_skip if y is None else (lambda *args: apply_skip(*args, y)), model_params,
                         timesteps, masks)
        x, info = sample_at(kind, schedule, timesteps, eps, noise, key, clip_denoised=clip_denoised,
                            template=template, return_info=True)
        x = jnp.clip(x, -1.0, 1.0)
        if quantize:
            x = jnp.round((x + 1.0) * 127.5) / 127.5 - 1.0
        feats = features_apply(feature_params, x)
        return fid_lib.jax_distance_of_features(feats, reference), info.nonfinite_step

    return jax.vmap(one, in_axes=(0, 0, None, None, None, None))


def stack(genomes: Sequence[Genome]) -> tuple[np.ndarray, np.ndarray]:
    """(timesteps [C, K], masks [C, K, L]) of genomes that share K."""
    if len({g.num_steps for g in genomes}) != 1:
        raise ValueError("stack needs genomes with the same K; group them by K first.")
    return np.stack([g.timesteps for g in genomes]), np.stack([g.skip for g in genomes])
