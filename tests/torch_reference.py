"""Reference implementations we did not write, loaded for parity tests.

pytorch-fid's Inception subclasses torchvision's Inception blocks, and torch-fidelity's package
import touches torchvision too. The torchvision wheel on PyPI is a CUDA build whose package import
registers CUDA operators and fails against CPU torch; installed into site-packages it also breaks
diffusers, which imports it whenever it is present. So CI unpacks it outside site-packages
(`pip install --no-deps --upgrade --target ~/.cache/ddss/torchvision-src torchvision==0.28.0`, or
$DDSS_TORCHVISION_SRC) and we import its plain-Python model code through bare package stubs (no
`torchvision/__init__.py`). The stubs live in `sys.modules` only while the reference libraries
import, so nothing imported later (diffusers) sees a half-made torchvision.
"""
import contextlib
import importlib
import os
import sys
import types

from conftest import require

TORCHVISION_SRC = os.environ.get(
    "DDSS_TORCHVISION_SRC", os.path.join(os.path.expanduser("~"), ".cache", "ddss", "torchvision-src")
)
_loaded = {}


def _stub(name, path):
    module = types.ModuleType(name)
    module.__path__ = [path]
    module.__package__ = name
    sys.modules[name] = module
    return module


@contextlib.contextmanager
def _torchvision_stubs():
    """`torchvision.models.inception` importable (from a CPU build, or the unpacked CUDA wheel)."""
    require("torch")
    if importlib.util.find_spec("torchvision") is not None:
        try:
            importlib.import_module("torchvision.models.inception")  # a CPU build imports normally
            yield
            return
        except Exception:  # pragma: no cover - the CUDA wheel installed in site-packages
            for name in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
                del sys.modules[name]
    root = os.path.join(TORCHVISION_SRC, "torchvision")
    if not os.path.isfile(os.path.join(root, "models", "inception.py")):
        if os.environ.get("DDSS_REQUIRE_REFERENCES") == "1":
            raise RuntimeError(
                f"torchvision's model code not found under {TORCHVISION_SRC}: run `python -m pip install "
                f"--no-deps --upgrade --target {TORCHVISION_SRC} torchvision==0.28.0` (or set DDSS_TORCHVISION_SRC)"
            )
        import pytest

        pytest.skip(f"torchvision model code not found under {TORCHVISION_SRC}")
    before = set(sys.modules)
    tv = _stub("torchvision", root)
    tv.__version__ = "0.28.0"
    tv.models = _stub("torchvision.models", os.path.join(root, "models"))
    try:
        import torchvision.models.inception as inception

        tv.models.inception = inception
        tv.models.inception_v3 = inception.inception_v3
        yield
    finally:
        for name in set(sys.modules) - before:
            if name == "torchvision" or name.startswith("torchvision."):
                del sys.modules[name]


def _reference_modules():
    """pytorch-fid's inception/fid_score and torch-fidelity's KID/IS modules, imported once."""
    if not _loaded:
        with _torchvision_stubs():  # `require` imports the packages, so it runs inside the stubs too
            require("pytorch_fid")
            require("torch_fidelity")
            import pytorch_fid.fid_score
            import pytorch_fid.inception
            import torch_fidelity.metric_isc
            import torch_fidelity.metric_kid

        _loaded.update(
            inception=pytorch_fid.inception,
            fid_score=pytorch_fid.fid_score,
            kid=torch_fidelity.metric_kid,
            isc=torch_fidelity.metric_isc,
        )
    return _loaded


def pytorch_fid_inception():
    """pytorch-fid's `inception` module (InceptionV3, fid_inception_v3, FID_WEIGHTS_URL)."""
    return _reference_modules()["inception"]


def random_fid_inception(seed: int = 0, output_blocks=(3,)):
    """pytorch-fid's InceptionV3 (FID variant) with random weights in the .pth key layout.

    pytorch-fid builds the network and then fetches FID_WEIGHTS_URL; we hand it a random state dict
    of the network it just built instead (taken from its `inception` local), so every line of its
    construction code runs. Returns (model in eval mode, the state dict, the underlying Inception3).
    """
    import torch

    module = pytorch_fid_inception()
    gen = torch.Generator().manual_seed(seed)
    captured = {}

    def fake_download(url, progress=True):
        inception = sys._getframe(1).f_locals["inception"]
        state = {}
        for name, value in inception.state_dict().items():
            if name.endswith("num_batches_tracked"):
                state[name] = value
            elif name.endswith("conv.weight"):
                fan_in = value[0].numel()
                state[name] = torch.randn(value.shape, generator=gen) * (2.0 / fan_in) ** 0.5
            elif name.endswith("running_var") or name.endswith("bn.weight"):
                state[name] = 0.5 + torch.rand(value.shape, generator=gen)
            elif name == "fc.weight":
                state[name] = torch.randn(value.shape, generator=gen) * 0.02
            else:  # bn.bias, running_mean, fc.bias
                state[name] = torch.randn(value.shape, generator=gen) * 0.1
        captured["state"] = state
        captured["inception"] = inception
        return state

    original = module.load_state_dict_from_url
    module.load_state_dict_from_url = fake_download
    try:
        model = module.InceptionV3(output_blocks=list(output_blocks), resize_input=True, normalize_input=True)
    finally:
        module.load_state_dict_from_url = original
    return model.eval(), captured["state"], captured["inception"]


def pytorch_fid_score():
    """pytorch-fid's `fid_score` module (calculate_frechet_distance, compute_statistics_of_path)."""
    return _reference_modules()["fid_score"]


def torch_fidelity_metrics():
    """torch-fidelity's KID and IS modules."""
    modules = _reference_modules()
    return modules["kid"], modules["isc"]
