"""AutoDiffusion: evolutionary search over timesteps (and per-step block skipping), scored by FID.

  ddss --config=digits_evolution --workdir=DIR

Each entry (kind, S) of `config.searches` is one search under a budget of S full steps, S·L block
executions: ("timesteps", S) searches S timesteps with the full network; ("joint", S) searches
timesteps and per-step skip sets, where pruning may buy up to `joint.extra_steps` more steps. Each
runs under DIR/runs/evolution-<kind>_B<S>/:
  checkpoints/           orbax: the whole search state (every genome evaluated with its fitness and
                         generation, the stage, the key), saved after every generation
  metrics.jsonl, tensorboard/  best and generation-best FID, candidates evaluated, pruning allowance
  sampler.safetensors    the winner, for `ddss.load_sampler` (skip lists compiled statically)
  search.json            the search cost: wall time, candidates, network evaluations, device
then scores each winner (its deployed, statically pruned sampler) and the baselines at the K of
`config.num_steps` by the shared evaluation protocol (`ddss.experiments.evaluation`: held-out noise,
the evaluation feature space that the fitness never sees), and writes results.json, samples/,
grids/, search_progress.png (best fitness per generation) and timesteps.png.

Fitness: the float32 jitted FID of `fitness_samples` samples from one fixed noise bank (common
random numbers: every candidate sees the same noise; the bank is not the held-out one) against the
reference statistics, in the target's *train* feature space. A chunk of candidates with the same K is
sampled in one `vmap`ped call with the traced-mask network: one compilation per K for the whole
search; chunks are padded to a fixed size and, on several devices, sharded over a 1-D mesh.

Kill it at any time: rerunning the same command resumes each search from its last finished
generation and reaches the same result; a finished search is not rerun.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
import zlib

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from tqdm import tqdm

from ddss import export, fields, parallel, schedules
from ddss.experiments import baselines, checkpoints, evaluation, plots, targets, writers
from ddss.metrics import fid
from ddss.samplers import conditioning, ggdm, skipping
from ddss.search import evolution

EVOLUTION_KEYS = ("sampler", "ggdm_sampler", "fitness_samples", "chunk_size", "chunk_images", "seed_stride",
                  "searches", "search", "joint")
SEARCHES = ("timesteps", "joint")


@dataclasses.dataclass(frozen=True)
class JointConfig:
    max_skip_fraction: float = 0.5  # the most blocks (over all steps) the joint search may skip
    free_steps: bool = True  # pruning may buy steps: K ranges over [S, S + extra_steps] under the budget
    extra_steps: int = 2
    # Stage 1 of a joint search is a timestep search: share it with the ("timesteps", S) search of the same
    # budget when the run has one (the joint search branches off it after stage1_generations).
    branch: bool = True

    def __post_init__(self):
        fields.check("joint", self, max_skip_fraction=fields.Rule(float, 0, 1, open_low=True), free_steps=fields.BOOL,
                     extra_steps=fields.INT_NONNEG, branch=fields.BOOL)


@dataclasses.dataclass(frozen=True)
class EvolutionConfig:
    base: baselines.BaselinesConfig
    search: evolution.SearchConfig
    joint: JointConfig
    sampler: str = "ddim"
    ggdm_sampler: str | None = None  # an exported DDSS sampler (no +time) whose coefficients move with searched times
    fitness_samples: int = 256
    chunk_size: int | None = None  # candidates per vmapped call; None: chunk_images // fitness_samples
    chunk_images: int = 4096
    seed_stride: str = "linear"  # generation 0's seed: DDIM-uniform
    searches: tuple[tuple[str, int], ...] = (("timesteps", 4), ("joint", 4))  # (kind, budget in full steps)

    @classmethod
    def from_config(cls, config) -> "EvolutionConfig":
        c = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        fields.check_known("", c, baselines.BaselinesConfig.known(*EVOLUTION_KEYS))
        base = baselines.BaselinesConfig.from_config(ml_collections.ConfigDict(
            {k: v for k, v in c.items() if k not in EVOLUTION_KEYS}))
        search = fields.construct(evolution.SearchConfig, "search", dict(c.get("search", {})))
        joint = fields.construct(JointConfig, "joint", dict(c.get("joint", {})))
        rest = {k: c[k] for k in ("sampler", "ggdm_sampler", "fitness_samples", "chunk_size", "chunk_images",
                                  "seed_stride") if k in c}
        fields.unset_empty(rest, "ggdm_sampler")
        searches = tuple(tuple(s) for s in c.get("searches", cls.searches))
        for s in searches:
            if len(s) != 2 or s[0] not in SEARCHES or not fields.INT_POS.accepts(s[1]):
                raise ValueError(f"config.searches entries are (kind, steps) with kind in {SEARCHES} and steps an "
                                 f"integer ≥ 1; got {s!r}.")
        searches = tuple((kind, int(steps)) for kind, steps in searches)
        if len(set(searches)) != len(searches):
            raise ValueError(f"config.searches lists a search twice: {searches}.")
        cfg = cls(base=base, search=search, joint=joint, searches=searches, **rest)
        if base.model == "gmm":
            too_many = [steps for _, steps in searches if steps > base.num_timesteps]
            if too_many:
                raise ValueError(f"config.searches asks for {too_many[0]} steps, more than the mixture's T = "
                                 f"{base.num_timesteps}: use at most {base.num_timesteps}.")
        skipping.check_sampler(cfg.sampler)
        if cfg.seed_stride not in schedules.STRIDES:
            raise ValueError(f"Unknown seed_stride {cfg.seed_stride!r}; choose one of {schedules.STRIDES}.")
        fields.check("", cfg, sampler=fields.STR, ggdm_sampler=fields.OPT_STR, fitness_samples=fields.Rule(int, 2),
                     chunk_size=fields.OPT_INT_POS, chunk_images=fields.INT_POS, seed_stride=fields.STR)
        return cfg


def search_space(cfg: EvolutionConfig, name: str, k: int, num_timesteps: int, num_blocks: int) -> tuple:
    """(Space, SearchConfig) of one search with the budget of k full steps."""
    budget = k * num_blocks
    if name == "timesteps":
        return evolution.Space.fixed(num_timesteps, num_blocks, k), dataclasses.replace(cfg.search,
                                                                                        max_skip_fraction=0.0)
    if num_blocks == 0:
        raise ValueError("The joint search prunes network blocks; this model has no skippable blocks. "
                         "Use searches=('timesteps',).")
    if cfg.sampler == "ggdm" and cfg.joint.free_steps:
        raise ValueError("A GGDM sampler has a fixed K: set joint.free_steps=False for sampler='ggdm'.")
    max_steps = k + cfg.joint.extra_steps if cfg.joint.free_steps else k
    space = evolution.Space(num_timesteps, num_blocks, budget, k, min(max_steps, num_timesteps))
    return space, dataclasses.replace(cfg.search, max_skip_fraction=cfg.joint.max_skip_fraction)


def seed_genome(cfg: EvolutionConfig, schedule, num_blocks: int, k: int) -> evolution.Genome:
    """Generation 0's seed: the `seed_stride` timesteps at K, rounded to integers, full network."""
    t = np.round(schedules.timesteps(schedule, cfg.seed_stride, k)).astype(np.int64)
    if np.any(np.diff(t) >= 0):  # rounding merged two times: fall back to the uniform stride
        t = np.round(schedules.timesteps(schedule, "linear", k)).astype(np.int64)
    return evolution.make_genome(t, num_blocks=num_blocks)


def load_template(cfg: EvolutionConfig, target: targets.Target, k: int):
    """The K-step GGDM whose times are searched (sampler='ggdm'): an exported sampler, or DPM-Solver++
    as a GGDM."""
    if cfg.sampler != "ggdm":
        return None
    if cfg.ggdm_sampler:
        loaded = export.load_sampler(os.path.expanduser(cfg.ggdm_sampler), expect="learned")
        template = loaded.params
        if template.num_steps != k:
            raise ValueError(f"{cfg.ggdm_sampler} is a K = {template.num_steps} GGDM; a search of {k} steps needs a "
                             f"K = {k} one (config.searches).")
    else:
        template = ggdm.init(target.schedule, schedules.timesteps(target.schedule, "linear", k),
                             family="ggdm", base="dpm_solver++")
    skipping.check_sampler("ggdm", template)
    return template


def chunk_size(cfg: EvolutionConfig, num_devices: int = 1) -> int:
    """Candidates per vmapped call: at most `chunk_size` (or `chunk_images // fitness_samples`, what fits
    in memory), split evenly so a generation needs little padding, rounded to the device count."""
    most = cfg.chunk_size or max(1, cfg.chunk_images // cfg.fitness_samples)
    calls = -(-cfg.search.population // most)
    chunk = -(-cfg.search.population // calls)
    return -(-chunk // num_devices) * num_devices


class Evaluator:
    """Scores genomes: chunks of same-K candidates, one jitted vmapped call each, fixed noise bank."""

    def __init__(self, cfg: EvolutionConfig, target: targets.Target, features, template, key):
        features_apply, self.feature_params = features
        reference = fid.Reference.from_stats(*target.train.reference_stats)  # the train space, never the eval one
        fn = evolution.fitness_fn(cfg.sampler, target.schedule, target.apply_skip, features_apply, reference,
                                  clip_denoised=cfg.base.clip_denoised, template=template,
                                  quantize=target.quantize)  # as the held-out scores are
        # Candidates split over every device of the mesh (`ddss.parallel.candidate_sharding`); the fitness
        # noise and the parameters replicated.
        mesh = parallel.current()
        self.chunk = chunk_size(cfg, mesh.size)
        pop, whole = parallel.candidate_sharding(mesh), parallel.replicated(mesh)
        self.fn = jax.jit(fn, in_shardings=(pop, pop, whole, whole, whole, whole), out_shardings=(pop, pop))
        k_noise, self.key = jax.random.split(key)
        noise = evaluation.labelled(target, jax.random.normal(k_noise, (cfg.fitness_samples,) +
                                                          tuple(target.image_shape)), k_noise)
        self.noise = jax.device_put(noise, whole)
        self.model_params, self.feature_params = jax.device_put((target.params, self.feature_params), whole)

    def __call__(self, genomes, *, desc: str = "candidates") -> np.ndarray:
        """FID of each genome (+inf where the sampler produced NaN or inf)."""
        out = np.full(len(genomes), np.inf)
        by_k: dict[int, list[int]] = {}
        for i, g in enumerate(genomes):
            by_k.setdefault(g.num_steps, []).append(i)
        pending = []
        for k, idx in sorted(by_k.items()):
            for start in range(0, len(idx), self.chunk):
                part = idx[start:start + self.chunk]
                members = [genomes[i] for i in part]
                members += [members[-1]] * (self.chunk - len(members))  # one compiled shape per K
                (t, masks), _ = parallel.put_batch(evolution.stack(members), axis=(parallel.POPULATION, parallel.DATA))
                pending.append((part, self.fn(t, masks, self.noise, self.key,
                                              self.model_params, self.feature_params)))
        for part, result in tqdm(pending, desc=desc, unit="chunk", leave=False):
            fids, bad = parallel.to_host(result)
            fids, bad = np.asarray(fids, np.float64)[:len(part)], bad[:len(part)]
            out[part] = np.where((bad == 0) & np.isfinite(fids), fids, np.inf)
        return out


def run_search(name: str, cfg: EvolutionConfig, space: evolution.Space, search: evolution.SearchConfig,
               seed: evolution.Genome, evaluate: Evaluator, key, rundir: str, *,
               start: evolution.SearchState | None = None, branched_from: str = "") -> tuple[evolution.SearchState, dict]:
    """Runs (or resumes) one search to its last generation, from `start` when given (a branch of another
    search); returns the final state and its cost record."""
    os.makedirs(rundir, exist_ok=True)
    writers.check_run_description(rundir, {
        "search": name, "space": dataclasses.asdict(space), "config": dataclasses.asdict(search),
        "sampler": cfg.sampler, "ggdm_sampler": cfg.ggdm_sampler, "fitness_samples": cfg.fitness_samples,
        "seed": cfg.base.seed, "seed_stride": cfg.seed_stride, "model": cfg.base.model,
        "checkpoint": cfg.base.checkpoint, "clip_denoised": cfg.base.clip_denoised,
        "branched_from": branched_from, "branched_at": start.generation if start is not None else 0,
        **({"adm": cfg.base.adm} if cfg.base.model == "adm" else {})},
        what="search", redo="search again")
    record_path = os.path.join(rundir, "search.json")
    mngr = ocp.CheckpointManager(os.path.abspath(os.path.join(rundir, "checkpoints")),
                                 options=ocp.CheckpointManagerOptions(max_to_keep=2))
    state = start if start is not None else evolution.SearchState(key=key)
    step, restored = checkpoints.restore_latest(mngr)
    if step is not None:
        state = evolution.SearchState.from_arrays(restored)
    writer = writers.MetricWriter(rundir, keep_through=state.generation - 1)  # row g: generation g's result
    try:
        with tqdm(total=search.generations, initial=state.generation, desc=f"evolution-{name}",
                  unit="gen") as bar:
            while state.generation < search.generations:
                g, started = state.generation, time.time()
                candidates, frac = evolution.propose(state, search, space, seed)
                fitness = evaluate(candidates, desc=f"generation {g}")
                state = evolution.record(state, search, candidates, fitness, time.time() - started)
                best_genome, best = state.best(1)[0]
                finite = fitness[np.isfinite(fitness)]
                writer.write_scalars(g, {
                    "best_fid": best, "generation_best_fid": finite.min() if len(finite) else np.inf,
                    "candidates": len(candidates), "evaluated": len(state.genomes), "skip_fraction": frac,
                    "best_steps": best_genome.num_steps, "best_block_executions": best_genome.block_executions})
                mngr.save(state.generation, args=ocp.args.StandardSave(
                    state.to_arrays(space.max_steps, space.num_blocks)), force=True)
                mngr.wait_until_finished()
                bar.set_postfix({"best_fid": f"{best:.4g}", "K": best_genome.num_steps,
                                 "blocks": best_genome.block_executions})
                bar.update(1)
    finally:
        mngr.wait_until_finished()
        mngr.close()
        writer.close()
    if os.path.exists(record_path):  # a finished search: its cost was recorded when it finished
        with open(record_path) as f:
            return state, json.load(f)
    n = cfg.fitness_samples
    record = {
        # Search time, summed over generations (and over the shared generations of a branch).
        "wall_time_s": float(sum(state.wall_times)),
        "generations": state.generation,
        "branched_from": branched_from or None,
        "branched_at": start.generation if start is not None else None,
        "candidates_evaluated": len(state.genomes),
        # Network calls, counted per image: each candidate samples `fitness_samples` images in K steps. The
        # evaluator computes every block and discards the skipped ones (traced masks), so all L run.
        "network_evaluations": int(sum(g.num_steps for g in state.genomes) * n),
        "block_executions_counted": int(sum(g.block_executions for g in state.genomes) * n),
        "fitness_samples": n,
        "chunk_size": evaluate.chunk,
        "device": jax.devices()[0].device_kind,
        "num_devices": jax.device_count(),
        "mesh": parallel.describe(),
        "best_fitness_by_generation": state.best_by_generation(),
        "stage1_end": state.stage1_end,
    }
    writers.write_json(record_path, record)
    return state, record


def deployed_sample_fn(sampler: export.EvolvedSampler, target: targets.Target):
    """(model params, x_K, key) -> (x_0, info), the skip lists static: the baselines' sampling signature."""
    def sample(p, batch, key):
        x, y = conditioning.split(batch)
        return sampler.sample(lambda x_, t_, skip: target.apply_skip(p, x_, t_, None, skip, y), x, key,
                              return_info=True)

    return jax.jit(sample)


def score_sampler(sampler, target, noise_bank, key, batch_size) -> tuple[np.ndarray, float]:
    return evaluation.timed_samples(deployed_sample_fn(sampler, target), target.params, noise_bank, key, batch_size)


def run(config, workdir: str) -> dict:
    cfg = EvolutionConfig.from_config(config)
    writers.claim_workdir(workdir, config)
    target, noise_bank, key_sampler = evaluation.setup(cfg.base, workdir)
    rows, costs = searched_rows(cfg, target, noise_bank, key_sampler, workdir)
    rows += evaluation.baseline_rows(cfg.base, target, noise_bank, key_sampler, workdir)
    results = evaluation.finish(cfg.base, target, rows, workdir, sampler=cfg.sampler,
                                fitness_samples=cfg.fitness_samples)
    plots.search_progress(costs, os.path.join(workdir, "search_progress.png"))
    plots.timesteps(rows, target.schedule, cfg.base.methods, os.path.join(workdir, "timesteps.png"))
    return results


def searched_rows(cfg: EvolutionConfig, target: targets.Target, noise_bank, key_sampler,
                  workdir: str) -> tuple[list[dict], dict]:
    """Runs (or resumes) every search of the config under DIR/runs/evolution-<kind>_B<S>/, exports and
    scores each winner on the held-out bank; returns the rows and each search's cost record."""
    T, L = target.schedule.num_timesteps, target.num_blocks
    for k in cfg.base.num_steps + tuple(k for _, k in cfg.searches):
        schedules.timesteps(target.schedule, "linear", k)  # K out of range fails before any search
    if target.train is None:
        raise ValueError("The search scores candidates by FID: set config.features (the feature network) and "
                         "config.reference_stats.")
    if target.apply_skip is None:
        raise ValueError(f"The {target.name} model cannot skip blocks or be searched.")
    # Bad settings fail before any work.
    spaces = {(name, k): search_space(cfg, name, k, T, L) for name, k in cfg.searches}
    templates = {k: load_template(cfg, target, k) for _, k in cfg.searches}
    key = jax.random.fold_in(evaluation.training_key(cfg.base.seed), 11)  # disjoint from the held-out bank's keys
    evaluators = {}  # one per GGDM template; the other samplers share one (compiled once per K)
    rows, costs, finished = [], {}, {}
    for name, k in sorted(cfg.searches, key=lambda s: SEARCHES.index(s[0])):  # timestep searches first
        space, search = spaces[(name, k)]
        template = templates[k]
        which = k if template is not None else None
        if which not in evaluators:
            features = targets.feature_network(cfg.base.model, cfg.base.features)  # the train space
            evaluators[which] = Evaluator(cfg, target, features, template, jax.random.fold_in(key, 0))
        method = f"evolution-{name}"
        rundir = os.path.join(workdir, "runs", f"{method}_B{k}")
        search_key = jax.random.fold_in(key, zlib.crc32(f"{method}_B{k}".encode()))
        start, parent = None, ""
        shared = finished.get(("timesteps", k))
        if name == "joint" and cfg.joint.branch and shared is not None and search.stage1_generations < shared.generation:
            start, parent = shared.branch(search.stage1_generations, search_key), f"evolution-timesteps_B{k}"
        state, cost = run_search(name, cfg, space, search, seed_genome(cfg, target.schedule, L, k),
                                 evaluators[which], search_key, rundir, start=start, branched_from=parent)
        finished[(name, k)] = state
        winner, fitness = state.best(1)[0]
        export_path = os.path.join(rundir, "sampler.safetensors")
        info = {"search": name, "fitness": fitness, "fitness_samples": cfg.fitness_samples, "budget": space.budget,
                **{k_: cost[k_] for k_ in ("candidates_evaluated", "network_evaluations", "device")}}  # no wall time:
        # two runs of one configuration write byte-identical exports (search.json keeps the time)
        export.save_evolved_sampler(export_path, winner.timesteps, winner.skip, kind=cfg.sampler,
                                    schedule=target.schedule, clip_denoised=cfg.base.clip_denoised,
                                    ggdm_params=template, info=info, model=evaluation.model_record(target))
        parallel.sync("export")  # every process reads the export next
        sampler = export.load_sampler(export_path, num_blocks=L)
        samples, wall = score_sampler(sampler, target, noise_bank, key_sampler, cfg.base.batch_size)
        row = evaluation.score_row(
            target, cfg.base, method, winner.num_steps, samples, wall, workdir, sampler=cfg.sampler,
            search_fitness=fitness, timesteps=winner.timesteps.tolist(), skip=[list(s) for s in winner.skip_lists()],
            block_executions=winner.block_executions, budget=space.budget, budget_steps=k, search=cost,
            export=os.path.relpath(export_path, workdir))
        if winner.skip.any():  # the same timesteps without pruning: what skipping the blocks saves
            unpruned = dataclasses.replace(sampler, skip=((),) * winner.num_steps)
            _, row["wall_time_unpruned_s"] = score_sampler(unpruned, target, noise_bank, key_sampler,
                                                          cfg.base.batch_size)
        rows.append(row)
        costs[f"{method} (budget {k} steps)"] = cost
    return rows, costs
