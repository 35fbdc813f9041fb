"""Experiments: the loops that jit, checkpoint, log and write results. One `run(config, workdir)` each.

`config.experiment` names the experiment; its module is imported only when it runs, so listing them
(`ddss --help`) costs nothing.
"""
import importlib

# name: (module, one line for `ddss --help`)
EXPERIMENTS = {
    "baselines": ("baselines", "score the training-free samplers (DDPM, DDIM, DPM-Solver++, UniPC, iPNDM) at several K"),
    "ddss": ("learn", "DDSS: learn GGDM sampler coefficients and timesteps by gradient descent, then score them"),
    "evaluate": ("evaluate", "score exported samplers (learned or searched) beside the baselines at their K"),
    "evolution": ("evolution", "AutoDiffusion: evolutionary search over timesteps and skipped blocks, then score"),
    "ref_stats": ("ref_stats", "reference feature statistics (μ, Σ) of a dataset, an image folder or the digits"),
    "search_then_learn": ("search_then_learn", "evolution, then DDSS from the searched timesteps"),
    "train": ("train", "train a DDPM UNet (L_simple, EMA), then score it"),
    "train_classifier": ("train_classifier", "train a digits feature network and report its held-out accuracy"),
}


def module(name: str):
    """The module of experiment `name` (imported on first use)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"Unknown experiment {name!r}: set config.experiment to one of {sorted(EXPERIMENTS)}.")
    return importlib.import_module(f"ddss.experiments.{EXPERIMENTS[name][0]}")


def run(config, workdir: str, *, mesh=None):
    """Runs the experiment named by `config.experiment` in `workdir` on `mesh` (default: `config.mesh`,
    else every device on the data axis; `ddss.parallel`); returns its results.

    The layout is not part of the experiment: `config.mesh` is taken out before the experiment sees
    the config, so a run resumes on another device count."""
    import jax

    from ddss import parallel

    if "mesh" in config:  # the layout: taken out, so it never enters the workdir's recorded config
        config = config.copy_and_resolve_references() if hasattr(config, "copy_and_resolve_references") else dict(config)
        layout = config["mesh"]
        del config["mesh"]
        if mesh is None:
            mesh = parallel.from_config(layout.to_dict() if hasattr(layout, "to_dict") else layout)
    with jax.set_mesh(mesh or parallel.make_mesh()):
        results = module(config["experiment"]).run(config, workdir)
        parallel.sync("experiment")  # no process returns before process 0 has written the results
    return results
