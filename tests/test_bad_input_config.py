"""Bad config values, table-driven: each one stops the run at the boundary, before any work, with one
message naming the field and the fix, and leaves the work directory untouched (nothing written).

Every experiment's config goes through its typed dataclass (`from_config`), so the same checks hold for
the command line (`--config.FIELD=VALUE`) and for the API (`ddss.experiments.run(config, workdir)`).
"""
import math
import os

import ml_collections
import pytest

from ddss import experiments
from ddss.configs import (digits_classifier, digits_train, gmm_ddss_test, gmm_evolution_test,
                          ref_stats_digits)

DDSS, EVO, TRAIN, CLS, REF = gmm_ddss_test, gmm_evolution_test, digits_train, digits_classifier, ref_stats_digits

# (config module, {dotted field: bad value}, fragment of the one-line message)
CASES = {
    # DDSS training values
    "steps=0": (DDSS, {"train.steps": 0}, "config.train.steps must be an integer ≥ 1, got 0"),
    "steps<0": (DDSS, {"train.steps": -5}, "config.train.steps must be an integer ≥ 1, got -5"),
    "steps float": (DDSS, {"train.steps": 2.5}, "config.train.steps must be an integer"),
    "lr<0": (DDSS, {"train.learning_rate": -1.0}, "config.train.learning_rate must be a finite number > 0, got -1.0"),
    "lr=0": (DDSS, {"train.learning_rate": 0.0}, "config.train.learning_rate must be a finite number > 0"),
    "lr nan": (DDSS, {"train.learning_rate": math.nan}, "config.train.learning_rate must be a finite number > 0"),
    "lr inf": (DDSS, {"train.learning_rate": math.inf}, "config.train.learning_rate must be a finite number > 0"),
    "lr string": (DDSS, {"train.learning_rate": "1e-3"}, "config.train.learning_rate must be a finite number"),
    "train batch=1": (DDSS, {"train.batch_size": 1}, "config.train.batch_size must be an integer ≥ 2, got 1"),
    "train batch=0": (DDSS, {"train.batch_size": 0}, "config.train.batch_size must be an integer ≥ 2"),
    "eval_every=0": (DDSS, {"train.eval_every": 0}, "config.train.eval_every must be an integer ≥ 1, got 0"),
    "log_every=0": (DDSS, {"train.log_every": 0}, "config.train.log_every must be an integer ≥ 1, got 0"),
    "checkpoint_every=0": (DDSS, {"train.checkpoint_every": 0}, "config.train.checkpoint_every must be an integer ≥ 1"),
    "val_samples=1": (DDSS, {"train.val_samples": 1}, "config.train.val_samples must be an integer ≥ 2"),
    "grad_clip=0": (DDSS, {"train.grad_clip": 0.0}, "config.train.grad_clip must be a finite number > 0"),
    "grad_clip<0": (DDSS, {"train.grad_clip": -1.0}, "config.train.grad_clip must be a finite number > 0"),
    "warmup<0": (DDSS, {"train.warmup_steps": -1}, "config.train.warmup_steps must be an integer ≥ 0"),
    "warmup=steps": (DDSS, {"train.warmup_steps": 12}, "warmup_steps (12) must be below the step count"),
    "remat string": (DDSS, {"train.remat": "yes"}, "config.train.remat must be True or False"),
    "steps_by_k 0": (DDSS, {"train.steps_by_k": ((3, 0),)}, "every item of config.train.steps_by_k's steps"),
    "steps_by_k twice": (DDSS, {"train.steps_by_k": ((3, 5), (3, 6))}, "steps_by_k's K lists 3 more than once"),
    "steps_by_k not pair": (DDSS, {"train.steps_by_k": ((3,),)}, "steps_by_k entries are (K, steps) pairs"),
    "learning_rate_by_k 0": (DDSS, {"train.learning_rate_by_k": ((3, 0.0),)},
                             "every item of config.train.learning_rate_by_k's learning rate"),
    "teacher_stride": (DDSS, {"loss.teacher_stride": "cosine"}, "config.loss.teacher_stride must be one of"),
    "teacher_weight<0": (DDSS, {"loss.teacher_weight": -1.0}, "config.loss.teacher_weight must be a finite number ≥ 0"),
    "teacher_steps=0": (DDSS, {"loss.teacher_steps": 0}, "config.loss.teacher_steps must be an integer ≥ 1"),
    "teacher_pairs<0": (DDSS, {"loss.teacher_pairs": -1}, "config.loss.teacher_pairs must be an integer ≥ 0"),
    "kid+teacher weight 0": (DDSS, {"loss.kind": "kid+teacher", "loss.teacher_weight": 0.0,
                                    "learn": (("ggdm+pred+time", "kid+teacher"),)}, "teacher_weight = 0 turns"),
    "loss kind": (DDSS, {"loss.kind": "mse"}, "Unknown DDSS loss 'mse'"),
    "learn loss": (DDSS, {"learn": (("ggdm+pred+time", "mse"),)}, "Unknown DDSS loss 'mse'"),
    "learn empty": (DDSS, {"learn": ()}, "config.learn is empty"),
    "learn twice": (DDSS, {"learn": (("ggdm+pred+time", "kid"),) * 2}, "lists a (family, loss) pair twice"),
    "learn family": (DDSS, {"learn": (("ggdm+foo", "kid"),)}, "Unknown sampler family 'ggdm+foo'"),
    "learn not pair": (DDSS, {"learn": (("ggdm+pred+time",),)}, "config.learn entries are (family, loss) pairs"),
    "init base": (DDSS, {"init.base": "euler"}, "Unknown init.base 'euler'"),
    "init stride": (DDSS, {"init.stride": "cubic"}, "Unknown init.stride 'cubic'"),
    "init eta<0": (DDSS, {"init.eta": -0.5}, "config.init.eta must be a finite number ≥ 0"),
    # The evaluation fields every experiment shares
    "K twice": (DDSS, {"num_steps": (3, 3)}, "config.num_steps lists 3 more than once"),
    "K=0": (DDSS, {"num_steps": (0,)}, "every item of config.num_steps must be an integer ≥ 1"),
    "K float": (DDSS, {"num_steps": (2.5,)}, "every item of config.num_steps must be an integer"),
    "K>T": (DDSS, {"num_steps": (2000,)}, "K = 2000 exceeds the mixture's T = 1000"),
    "reference_steps<0": (DDSS, {"reference_steps": -1}, "config.reference_steps must be an integer ≥ 0"),
    "reference_steps>T": (DDSS, {"reference_steps": 5000}, "K = 5000 exceeds the mixture's T = 1000"),
    "num_samples=1": (DDSS, {"num_samples": 1}, "config.num_samples must be an integer ≥ 2"),
    "batch_size=0": (DDSS, {"batch_size": 0}, "config.batch_size must be an integer ≥ 1"),
    "seed<0": (DDSS, {"seed": -1}, "config.seed must be an integer ≥ 0"),
    "eval_seed too big": (DDSS, {"eval_seed": 2**20}, "config.eval_seed must lie in [0, 1048576)"),
    "T=1": (DDSS, {"num_timesteps": 1}, "config.num_timesteps must be an integer ≥ 2"),
    "schedule": (DDSS, {"schedule": "quadratic"}, "Unknown schedule 'quadratic'"),
    "method": (DDSS, {"methods": ("ddim-foo",)}, "Unknown method 'ddim-foo'"),
    "method twice": (DDSS, {"methods": ("ddim-linear", "ddim-linear")}, "config.methods lists ddim-linear more than once"),
    "model": (DDSS, {"model": "sd"}, "Unknown model 'sd'"),
    "event_shape ()": (DDSS, {"gmm.event_shape": ()}, "config.gmm.event_shape must name at least one dimension"),
    "event_shape 0": (DDSS, {"gmm.event_shape": (0,)}, "every item of config.gmm.event_shape must be an integer ≥ 1"),
    "components=0": (DDSS, {"gmm.num_components": 0}, "config.gmm.num_components must be an integer ≥ 1"),
    "clip string": (DDSS, {"clip_denoised": "no"}, "config.clip_denoised must be True or False"),
    # Evolution
    "mutation_prob=2": (EVO, {"search.mutation_prob": 2.0}, "config.search.mutation_prob must be a finite number ≥ 0 and ≤ 1"),
    "mutation_prob<0": (EVO, {"search.mutation_prob": -0.1}, "config.search.mutation_prob must be"),
    "skip_prob": (EVO, {"search.skip_prob": 1.5}, "config.search.skip_prob must be a finite number ≥ 0 and ≤ 1"),
    "length_prob": (EVO, {"search.length_prob": math.nan}, "config.search.length_prob must be"),
    "chunk_size<0": (EVO, {"chunk_size": -1}, "config.chunk_size must be None or an integer ≥ 1, got -1"),
    "chunk_images=0": (EVO, {"chunk_images": 0}, "config.chunk_images must be an integer ≥ 1"),
    "fitness_samples=1": (EVO, {"fitness_samples": 1}, "config.fitness_samples must be an integer ≥ 2"),
    "population<parents": (EVO, {"search.population": 2}, "The population (2) is smaller than the parent count (3)"),
    "generations=0": (EVO, {"search.generations": 0}, "generations and ramp_generations must be ≥ 1"),
    "parents=0": (EVO, {"search.parents": 0}, "parents must be ≥ 1"),
    "mutants<0": (EVO, {"search.mutants": -1}, "config.search.mutants must be an integer ≥ 0"),
    "searches twice": (EVO, {"searches": (("timesteps", 3), ("timesteps", 3))}, "config.searches lists a search twice"),
    "search kind": (EVO, {"searches": (("grid", 3),)}, "config.searches entries are (kind, steps)"),
    "search steps=0": (EVO, {"searches": (("timesteps", 0),)}, "config.searches entries are (kind, steps)"),
    "search steps>T": (EVO, {"searches": (("timesteps", 1200),)}, "asks for 1200 steps, more than the mixture's T"),
    "sampler": (EVO, {"sampler": "euler"}, "Unknown sampler 'euler' for the search"),
    "seed_stride": (EVO, {"seed_stride": "cubic"}, "Unknown seed_stride 'cubic'"),
    "max_skip_fraction": (EVO, {"joint.max_skip_fraction": 1.5}, "config.joint.max_skip_fraction must be a finite number > 0 and ≤ 1"),
    "extra_steps<0": (EVO, {"joint.extra_steps": -1}, "config.joint.extra_steps must be an integer ≥ 0"),
    "free_steps string": (EVO, {"joint.free_steps": "yes"}, "config.joint.free_steps must be True or False"),
    "evo K twice": (EVO, {"num_steps": (3, 3)}, "config.num_steps lists 3 more than once"),
    # UNet training
    "unet steps=0": (TRAIN, {"steps": 0}, "config.steps must be an integer ≥ 1, got 0"),
    "unet lr<0": (TRAIN, {"learning_rate": -1.0}, "config.learning_rate must be a finite number > 0"),
    "unet ema>1": (TRAIN, {"ema_decay": 1.5}, "config.ema_decay must be a finite number ≥ 0 and ≤ 1"),
    "unet eval_samples=1": (TRAIN, {"eval_samples": 1}, "config.eval_samples must be 0 (no scoring) or ≥ 2"),
    "unet batch=0": (TRAIN, {"batch_size": 0}, "config.batch_size must be an integer ≥ 1"),
    "unet log_every=0": (TRAIN, {"log_every": 0}, "config.log_every must be an integer ≥ 1"),
    "unet grad_clip=0": (TRAIN, {"grad_clip": 0.0}, "config.grad_clip must be a finite number > 0"),
    # Feature-network training
    "classifier epochs=0": (CLS, {"epochs": 0}, "config.epochs must be an integer ≥ 1"),
    "classifier lr=0": (CLS, {"learning_rate": 0.0}, "config.learning_rate must be a finite number > 0"),
    "classifier wd<0": (CLS, {"weight_decay": -1.0}, "config.weight_decay must be a finite number ≥ 0"),
    "classifier arch": (CLS, {"architecture": "vit"}, "Unknown classifier architecture 'vit'"),
    # Fields no experiment reads (an API user's typo): named, with the closest real field
    "typo top": (DDSS, {"num_step": (3,)}, "config.num_step is not a field this experiment reads. Did you mean num_steps?"),
    "typo train": (DDSS, {"train.stepz": 3}, "config.train.stepz is not a field this experiment reads. Did you mean steps?"),
    "typo loss": (DDSS, {"loss.teacher_weights": 1.0}, "config.loss.teacher_weights is not a field"),
    "typo init": (DDSS, {"init.strides": "linear"}, "config.init.strides is not a field"),
    "typo gmm": (DDSS, {"gmm.seeds": 1}, "config.gmm.seeds is not a field this experiment reads. Did you mean seed?"),
    "typo search": (EVO, {"search.mutation_probability": 0.3}, "Did you mean mutation_prob?"),
    "typo joint": (EVO, {"joint.free_step": True}, "config.joint.free_step is not a field"),
    "typo evolution": (EVO, {"fitness_sample": 64}, "Did you mean fitness_samples?"),
    "typo unet": (TRAIN, {"stepz": 3}, "config.stepz is not a field this experiment reads. Did you mean steps?"),
    "typo classifier": (CLS, {"epoch": 3}, "Did you mean epochs?"),
    "typo ref_stats": (REF, {"max_sample": 3}, "Did you mean max_samples?"),
    # Reference statistics
    "ref source": (REF, {"source": "web"}, "Unknown source 'web'"),
    "ref max_samples<0": (REF, {"max_samples": -1}, "config.max_samples must be None or an integer ≥ 1"),
    "ref checkpoint_every=0": (REF, {"checkpoint_every": 0}, "config.checkpoint_every must be an integer ≥ 1"),
    "ref batch=0": (REF, {"batch_size": 0}, "config.batch_size must be an integer ≥ 1"),
    "ref save_features": (REF, {"save_features": "yes"}, "config.save_features must be True or False"),
}


def _config(module, overrides: dict) -> ml_collections.ConfigDict:
    """The shipped config with `overrides` set as plain values (as an API user's dict would hold them)."""
    tree = module.get_config().to_dict()
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = tree
        for p in parents:
            node = node[p]
        node[leaf] = value
    return ml_collections.ConfigDict(tree)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_value_is_refused_before_any_work(case, tmp_path):
    module, overrides, message = CASES[case]
    workdir = tmp_path / "run"
    with pytest.raises(ValueError) as error:
        experiments.run(_config(module, overrides), str(workdir))
    assert message in str(error.value), str(error.value)
    assert "\n" not in str(error.value)
    assert not workdir.exists() or not os.listdir(workdir)  # nothing written, nothing claimed


def test_every_shipped_config_passes_its_own_checks():
    """The checks refuse nothing a shipped config holds (so a refusal above is the bad value's doing)."""
    from ddss import main
    import importlib.util

    for name, path in main.shipped_configs().items():
        spec = importlib.util.spec_from_file_location(f"cfg_{name}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        config = mod.get_config()
        module = experiments.module(config.experiment)
        checker = {"ddss": "DDSSConfig", "evolution": "EvolutionConfig", "baselines": "BaselinesConfig",
                   "evaluate": "EvaluateConfig", "train": "TrainConfig", "train_classifier": "ClassifierTrainConfig",
                   "ref_stats": "RefStatsConfig"}.get(config.experiment)
        if checker is not None:
            getattr(module, checker).from_config(config)
        else:  # search_then_learn
            module.configs(config)
