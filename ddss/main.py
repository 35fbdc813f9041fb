"""The `ddss` command line (also `python -m ddss` and `python -m ddss.main`), from any directory:

  ddss --config=NAME|PATH --workdir=DIR [--config.FIELD=VALUE ...] [--debug]
  ddss --config=NAME --show_config       print a config's fields, then exit
  ddss --help                            the experiments and shipped configs, one line each

A config is a shipped one by name (`digits_ddss`, listed by `--help`, kept in `ddss/configs/`) or a
path to any `.py` file with a `get_config()`. `~` and `$VARS` expand in `--workdir` and in every string
of the config. Errors come out as one line naming the problem (and the fix where there is one), with
exit status 1; `--debug` shows the Python traceback instead.

The only module that reads flags; everything else takes a config and a work directory.

The command line owns its process, so it also picks XLA's fastest CPU path before JAX starts its
backend: `--xla_cpu_experimental_ynn_fusion_type=dot` hands dots and convolutions to YNNPACK
(measured on 2 CPU cores: the FID Inception 2.7× faster, the digits UNet 1.4-1.8×; see
benchmarks/inception_throughput.py). GPU and TPU ignore it. Your own XLA_FLAGS that set the option
win; DDSS_XLA_DEFAULTS=0 leaves XLA_FLAGS untouched. Library code never touches flags.
"""
import ast
import os
import sys

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
HELP_FLAGS = ("-h", "--help", "-help", "--h", "-?")
_EXIT_USAGE = 2


class UsageError(ValueError):
    """A command-line mistake: reported as one line, with exit status 2."""


# ---------------------------------------------------------------------------------------------
# Configs by name or path
# ---------------------------------------------------------------------------------------------

def shipped_configs() -> dict[str, str]:
    """{name: path} of the configs that ship in the package."""
    return {f[:-3]: os.path.join(CONFIG_DIR, f) for f in sorted(os.listdir(CONFIG_DIR))
            if f.endswith(".py") and not f.startswith("_")}


def summary(path: str, width: int = 86) -> str:
    """The first clause of a config file's docstring (read, not imported), at most `width` characters."""
    with open(path, encoding="utf-8") as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    text = " ".join(doc.split())
    for stop in (". ", ": "):
        if stop in text:
            text = text[:text.index(stop)]
    if text.count("(") > text.count(")"):  # cut inside a parenthesis: drop it
        text = text[:text.rindex("(")]
    text = text.strip().rstrip(".:,")
    return text if len(text) <= width else text[:width - 1].rstrip() + "…"


def expand(value: str) -> str:
    return os.path.expandvars(os.path.expanduser(value))


def resolve_config(value: str) -> str:
    """`--config`'s value as a file path: a shipped name (`digits_ddss`, `digits_ddss.py`) or a path,
    each with ml_collections' optional `:ARG` suffix."""
    spec, sep, arg = value.partition(":")
    path = expand(spec)
    if os.path.isfile(path):
        return os.path.abspath(path) + sep + arg
    name = os.path.basename(spec)[:-3] if spec.endswith(".py") else spec
    shipped = shipped_configs()
    folder = os.path.dirname(spec.replace(os.sep, "/"))
    if name in shipped and (not folder or folder.endswith("configs")):  # also the older configs/NAME.py form
        return shipped[name] + sep + arg
    close = [n for n in shipped if name and (name in n or n in name)]
    hint = f" Did you mean {', '.join(close[:3])}?" if close else ""
    raise UsageError(f"--config={value}: no such file, and no shipped config named {name!r}.{hint} "
                     "`ddss --help` lists the shipped configs; or give a path to a .py file with get_config().")


def rewrite_argv(argv: list[str]) -> list[str]:
    """argv with `--config NAME` / `--config=NAME` replaced by the config's file path."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a in ("--config", "-config") and i + 1 < len(argv):
            out += [a, resolve_config(argv[i + 1])]
            i += 2
            continue
        for prefix in ("--config=", "-config="):
            if a.startswith(prefix):
                a = prefix + resolve_config(a[len(prefix):])
                break
        out.append(a)
        i += 1
    return out


def expand_paths(config) -> None:
    """Expands `~` and `$VARS` in every string (and tuple of strings) of a ConfigDict, in place."""
    import ml_collections

    for name, value in list(config.items()):
        if isinstance(value, ml_collections.ConfigDict):
            expand_paths(value)
        elif isinstance(value, str) and ("~" in value or "$" in value):
            config[name] = expand(value)
        elif isinstance(value, (tuple, list)) and any(isinstance(v, str) and ("~" in v or "$" in v) for v in value):
            config[name] = type(value)(expand(v) if isinstance(v, str) else v for v in value)


# ---------------------------------------------------------------------------------------------
# Help and errors
# ---------------------------------------------------------------------------------------------

def help_text() -> str:
    from ddss.experiments import EXPERIMENTS

    configs = shipped_configs()
    width = max(map(len, [*configs, *EXPERIMENTS])) + 2
    lines = [
        "ddss: learned (DDSS) and searched (AutoDiffusion) few-step samplers for pretrained diffusion models.",
        "",
        "usage:",
        "  ddss --config=NAME|PATH --workdir=DIR [--config.FIELD=VALUE ...] [--debug]",
        "  ddss --config=NAME --show_config      print the config's fields and values, then exit",
        "  ddss --help                           this text (--helpfull: every low-level flag)",
        "",
        "experiments (a config's `experiment` field):",
        *(f"  {name:<{width}}{line}" for name, (_, line) in EXPERIMENTS.items()),
        "",
        "shipped configs (--config=NAME, or --config=path/to/config.py with a get_config()):",
        *(f"  {name:<{width}}{summary(path)}" for name, path in configs.items() if not name.endswith("_test")),
        f"  {'*_test':<{width}}tiny versions for tests: " + ", ".join(n for n in configs if n.endswith("_test")),
        "",
        "options:",
        "  --workdir=DIR        results.json, samples, plots, exports and checkpoints; a rerun resumes there",
        "  --config.FIELD=VAL   override a config field, e.g. --config.num_samples=500 (see --show_config)",
        "  --show_config        print the resolved config and exit",
        "  --debug              Python tracebacks instead of one-line errors",
        "  --mesh_data=N --mesh_population=M   the device layout (default: every device on data; ddss.parallel)",
        "  --distributed        jax.distributed.initialize() first (default: when the environment is multi-host)",
        "  --compilation_cache=DIR   keep compiled XLA programs there and reuse them (reruns, resumes, pod hosts)",
        "  ~ and $VARS expand in --workdir and in the config's strings.",
        "",
        "examples:",
        "  ddss --config=digits_ddss --workdir=~/ddss/digits_ddss",
        "  ddss --config=digits_ddss --show_config",
        "  ddss --config=digits_evaluate --workdir=~/ddss/eval \\",
        "       --config.samplers='(\"~/ddss/digits_ddss/runs/ggdm+pred+time-teacher_K5/sampler.safetensors\",)'",
    ]
    return "\n".join(lines)


def one_line(error: BaseException) -> str:
    """An exception as one line: its message (the last line of an embedded traceback), prefixed by its
    type unless it is a value, file or flag error, or one of ddss's own."""
    text = str(error).strip()
    if "Traceback (most recent call last)" in text:
        text = text.splitlines()[-1]
    message = " ".join(text.split()) or type(error).__name__
    module = type(error).__module__
    if isinstance(error, (ValueError, OSError, FloatingPointError)) or module.startswith(("ddss", "absl.flags")):
        return message
    return f"{type(error).__name__}: {message}"


def fail(message: str, status: int = 1, *, hint: str = " (--debug shows the traceback)") -> None:
    sys.stderr.write(f"ddss: error: {message}{hint}\n")
    sys.exit(status)


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------

def _define_flags():
    from absl import flags
    from ml_collections import config_flags

    config = config_flags.DEFINE_config_file("config", None, "A shipped config name or a config file path.")
    workdir = flags.DEFINE_string("workdir", None, "Directory for results, samples, plots and checkpoints.")
    show = flags.DEFINE_bool("show_config", False, "Print the resolved config and exit.")
    debug = flags.DEFINE_bool("debug", False, "Show Python tracebacks instead of one-line errors.")
    mesh_data = flags.DEFINE_integer("mesh_data", None, "Devices on the mesh's data axis (default: all the "
                                     "population axis leaves).")
    mesh_population = flags.DEFINE_integer("mesh_population", None, "Devices on the mesh's population axis "
                                           "(the search's candidates; default 1).")
    distributed = flags.DEFINE_bool("distributed", None, "Call jax.distributed.initialize() first (default: when "
                                    "the environment describes a multi-host job).")
    cache = flags.DEFINE_string("compilation_cache", None, "Keep compiled XLA programs in this directory and reuse "
                                "them (a rerun, a resume, every host of a pod).")
    return config, workdir, show, debug, (mesh_data, mesh_population, distributed, cache)


def main(argv, flags_):
    from absl import logging

    config_flag, workdir_flag, show_flag, debug_flag, (mesh_data, mesh_population, distributed, cache) = flags_
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; options take the form --name=value (see ddss --help).",
             _EXIT_USAGE, hint="")
    config = config_flag.value
    if config is None:
        fail("--config is required: a shipped config name (ddss --help lists them) or a path.", _EXIT_USAGE, hint="")
    expand_paths(config)
    if show_flag.value:
        print(config)
        return
    if not workdir_flag.value:
        fail("--workdir is required: the directory for results and checkpoints (a rerun resumes there).",
             _EXIT_USAGE, hint="")
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
    from ddss import experiments, parallel

    try:
        parallel.initialize(distributed.value)  # before anything else touches JAX's backends
        if cache.value:
            parallel.compilation_cache(expand(cache.value))
        layout = dict(config.get("mesh") or {})
        layout.update({k: v for k, v in (("data", mesh_data.value), ("population", mesh_population.value))
                       if v is not None})
        experiments.run(config, expand(workdir_flag.value), mesh=parallel.from_config(layout))
    except KeyboardInterrupt:
        raise
    except Exception as e:  # one line for the user; --debug for the traceback
        if debug_flag.value:
            raise
        fail(one_line(e))


CPU_XLA_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=dot",)


def xla_flags(environ) -> str | None:
    """The XLA_FLAGS the command line runs with: the user's, plus our CPU defaults they do not set."""
    current = environ.get("XLA_FLAGS", "")
    if environ.get("DDSS_XLA_DEFAULTS", "1") == "0":
        return current or None
    extra = [f for f in CPU_XLA_FLAGS if f.split("=")[0] not in current]
    return " ".join([current, *extra]).strip() or None


def cli(argv: list[str] | None = None):
    argv = list(sys.argv if argv is None else argv)
    if len(argv) == 1 or any(a in HELP_FLAGS for a in argv[1:]):
        print(help_text())
        sys.exit(0 if len(argv) > 1 else _EXIT_USAGE)
    debug = "--debug" in argv
    try:
        argv = rewrite_argv(argv)
    except UsageError as e:
        fail(str(e), _EXIT_USAGE, hint="")
    flags_value = xla_flags(os.environ)  # before JAX creates its backend, which reads XLA_FLAGS once
    if flags_value is not None:
        os.environ["XLA_FLAGS"] = flags_value
    from absl import app, flags

    app.define_help_flags()  # --helpfull / --helpshort: absl's own listing of every flag
    flags_ = _define_flags()
    try:
        argv = flags.FLAGS(argv)
    except Exception as e:  # a flag, a config file, or a --config.FIELD override the config lacks
        if debug:
            raise
        cause = e.__cause__ or e.__context__ if isinstance(e, flags.Error) else e
        if isinstance(cause, (KeyError, AttributeError)):
            overrides = [a.split("=")[0] for a in argv if a.startswith(("--config.", "-config."))]
            message = (f"the config has no field {str(cause).strip(chr(34))} (among {', '.join(overrides)}); "
                       "`ddss --config=NAME --show_config` lists its fields")
        else:
            message = one_line(cause if cause is not None else e)
            overrides = [a for a in argv if a.startswith(("--config.", "-config."))]
            if isinstance(cause, ValueError) and overrides:
                message += f" (in {' '.join(overrides)})"
        fail(message, _EXIT_USAGE, hint=" (--debug shows the traceback)")
    main(argv, flags_)


if __name__ == "__main__":
    cli()
