"""Damaged or wrong files give one clear error, never a silently wrong result or a raw traceback.

Every case writes a valid file first (a sampler export, or a tiny random diffusers UNet directory),
damages it the way users have (cut short, header edited with the safetensors library, a key dropped,
NaN inserted, a newer format version, the wrong kind of export) and checks the exception type, a
distinctive fragment of its message, that the message names the file and that it is one line.
"""
import json
import os
import pickle
import shutil
import zipfile

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

import ddss
from ddss import export, schedules
from ddss.models import convert, digits, params_io
from ddss.samplers import ggdm

K, L = 3, 4


# ---------------------------------------------------------------------------------------------------------------
# Valid files, written once.

def _ggdm_params():
    schedule = schedules.linear_beta()
    params = ggdm.init(schedule, schedules.timesteps(schedule, "quadratic", K), family="ggdm+pred",
                       base="dpm_solver++")
    rng = np.random.default_rng(0)
    return params.replace(learned={k: v + 0.01 * rng.standard_normal(v.shape).astype(np.float32)
                                   for k, v in params.learned.items()})


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """{"ggdm": learned GGDM export, "evolved": searched DDIM export, "evolved_ggdm": searched GGDM export}."""
    d = tmp_path_factory.mktemp("pristine")
    params = _ggdm_params()
    files = {name: str(d / f"{name}.safetensors") for name in ("ggdm", "evolved", "evolved_ggdm")}
    export.save_sampler(files["ggdm"], params, clip_denoised=True, info={"note": "test"})
    skip = np.zeros((K, L), bool)
    skip[1, 2] = True
    export.save_evolved_sampler(files["evolved"], [900, 500, 100], skip, kind="ddim", schedule=params.schedule,
                                clip_denoised=False)
    export.save_evolved_sampler(files["evolved_ggdm"], [900, 500, 100], skip, kind="ggdm",
                                schedule=params.schedule, clip_denoised=False, ggdm_params=params)
    return files, params


@pytest.fixture
def files(pristine, tmp_path):
    """Fresh copies of the valid exports in this test's tmp_path, to damage."""
    src, _ = pristine
    out = {}
    for name, path in src.items():
        out[name] = str(tmp_path / os.path.basename(path))
        shutil.copyfile(path, out[name])
        shutil.copyfile(export.timesteps_json_path(path), export.timesteps_json_path(out[name]))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Ways to damage a file. Each takes the path and edits the file in place.

def rewrite(header=None, tensors=None, raw_header=None):
    """Rewrites a file with the safetensors library: `header(meta)` edits the decoded header,
    `tensors(flat)` the flat {name: array} dict, `raw_header(raw)` the undecoded string header."""
    def damage(path):
        flat = load_file(path)
        with safe_open(path, framework="numpy") as f:
            raw = dict(f.metadata() or {})
        if header:  # ddss headers hold JSON values
            meta = {k: json.loads(v) for k, v in raw.items()}
            header(meta)
            raw = {k: json.dumps(v) for k, v in meta.items()}
        if raw_header:
            raw_header(raw)
        if tensors:
            tensors(flat)
        save_file(flat, path, metadata=raw)
    return damage


def set_field(**fields):
    return rewrite(header=lambda m: m.update(fields))


def drop_field(name):
    return rewrite(header=lambda m: m.pop(name))


def drop_tensor(name):
    return rewrite(tensors=lambda t: t.pop(name))


def edit_tensor(name, fn):
    return rewrite(tensors=lambda t: t.__setitem__(name, np.ascontiguousarray(fn(t[name]))))


def poison(name, value=np.nan, index=0):
    def fn(a):
        a = a.copy()
        a.flat[index] = value
        return a
    return edit_tensor(name, fn)


def cut(fraction=None, keep=None):
    def damage(path):
        data = open(path, "rb").read()
        n = keep if keep is not None else int(len(data) * fraction)
        open(path, "wb").write(data[:n])
    return damage


def replace_bytes(data):
    def damage(path):
        open(path, "wb").write(data)
    return damage


def append_bytes(data):
    def damage(path):
        with open(path, "ab") as f:
            f.write(data)
    return damage


def torch_style_zip(path):
    """What torch.save writes (a zip with a pickle inside), made without torch."""
    os.remove(path)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"mu": [0.0]}))
        z.writestr("archive/version", "3\n")


def python_pickle(path):
    open(path, "wb").write(pickle.dumps({"learned": {"mu": [0.0]}}, protocol=4))


def json_twin(path):
    shutil.copyfile(export.timesteps_json_path(path), path)


def unet_file(path):
    shutil.copyfile(digits.UNET_FILE, path)


def nothing(path):
    pass


def delete(path):
    os.remove(path)


def make_directory(path):
    os.remove(path)
    os.makedirs(path)


def reverse_timesteps(path):
    edit_tensor("timesteps", lambda t: t[::-1])(path)
    edit_tensor("skip_mask", lambda m: m[::-1])(path)


# ---------------------------------------------------------------------------------------------------------------
# The sampler-file table: (case id, which valid file, damage, load_sampler keyword arguments,
# expected exception type, distinctive message fragment).

E = export.SamplerFileError
CASES = [
    # 1. A newer format version is refused, naming the version found and the versions supported.
    ("format_version_99", "ggdm", set_field(format_version=99), {}, E,
     "format_version 99, written by a newer ddss: this ddss reads format_version 1 only. Upgrade ddss"),
    ("evolved_format_version_99", "evolved", set_field(format_version=99), {}, E,
     "format_version 99, written by a newer ddss"),
    ("format_version_string", "ggdm", set_field(format_version="1"), {}, E, "format_version '1', which no ddss writes"),
    ("format_version_0", "evolved", set_field(format_version=0), {}, E, "format_version 0, which no ddss writes"),
    # 2. family= is checked for searched exports too.
    ("evolved_ddim_family", "evolved", nothing, {"family": "ggdm"}, E,
     "holds a searched ddim sampler (no GGDM family), not a ggdm sampler"),
    ("evolved_ggdm_family", "evolved_ggdm", nothing, {"family": "ggdm+pred+time"}, E,
     "searched ggdm sampler of GGDM family ggdm+pred, not a ggdm+pred+time sampler"),
    ("ggdm_family", "ggdm", nothing, {"family": "vars"}, E, "holds a ggdm+pred sampler, not vars"),
    ("evolved_num_steps", "evolved", nothing, {"num_steps": 5}, E, "holds a K = 3 sampler, not K = 5"),
    ("evolved_num_blocks", "evolved", nothing, {"num_blocks": 5}, E,
     "searched for a network with 4 skippable blocks; this model has 5"),
    # 3. Missing header fields: one line naming the field.
    ("no_family", "ggdm", drop_field("family"), {}, E, "has no 'family' field in its header"),
    ("no_base", "ggdm", drop_field("base"), {}, E, "has no 'base' field in its header"),
    ("no_clip_denoised", "ggdm", drop_field("clip_denoised"), {}, E, "has no 'clip_denoised' field"),
    ("no_format_version", "ggdm", drop_field("format_version"), {}, E, "has no 'format_version' in its header"),
    ("no_kind", "ggdm", drop_field("kind"), {}, E, "is not a ddss sampler file: its header has no 'kind' field"),
    ("evolved_no_num_blocks", "evolved", drop_field("num_blocks"), {}, E, "has no 'num_blocks' field"),
    ("evolved_no_sampler", "evolved", drop_field("sampler"), {}, E, "has no 'sampler' field"),
    ("evolved_ggdm_no_family", "evolved_ggdm", drop_field("family"), {}, E,
     "has no 'family' field in its header (a searched GGDM sampler needs family, base and eta)"),
    ("bad_family_value", "ggdm", set_field(family="ggdm+fast"), {}, E,
     "family is 'ggdm+fast' (str); it must be one of"),
    ("num_steps_string", "ggdm", set_field(num_steps="3"), {}, E, "num_steps is '3' (str); it must be a positive"),
    ("eta_out_of_range", "ggdm", set_field(eta=3.0), {}, E, "eta is 3.0 (float); it must be a number in [0, 1]"),
    ("header_not_json", "ggdm", rewrite(raw_header=lambda r: r.update(kind="ddss_sampler")), {}, E,
     "has a damaged header: field 'kind' is not JSON"),
    # 4. Cut short, or not safetensors at all: the path, what happened, how to recover.
    ("truncated_half", "ggdm", cut(0.5), {}, E, "is truncated: it has"),
    ("truncated_evolved", "evolved", cut(0.9), {}, E, "bytes are missing: the file was cut short"),
    ("truncated_in_header", "ggdm", cut(keep=50), {}, E, "is truncated: it has 50 bytes, but its safetensors header"),
    ("truncated_to_5_bytes", "ggdm", cut(keep=5), {}, E, "is only 5 bytes, too short for a safetensors file"),
    ("empty", "ggdm", cut(keep=0), {}, E, "is empty (0 bytes)"),
    ("random_bytes", "ggdm", replace_bytes(np.random.default_rng(0).bytes(1000)), {}, E,
     "is corrupt or not a safetensors file"),
    ("torch_zip", "ggdm", torch_style_zip, {}, E, "is a zip archive (torch.save's .pt/.pth/.bin format"),
    ("pickle", "ggdm", python_pickle, {}, E, "is a Python pickle"),
    ("json_twin", "ggdm", json_twin, {}, E, "is a JSON text file, not safetensors"),
    ("trailing_bytes", "ggdm", append_bytes(b"\0" * 16), {}, E, "has 16 unexpected bytes after its last tensor"),
    ("unet_weights", "ggdm", unet_file, {}, E, "its header's kind is 'unet' (a ddss UNet weight file"),
    ("missing", "ggdm", delete, {}, export.SamplerFileNotFoundError, "Sampler file not found"),
    ("directory", "ggdm", make_directory, {}, E, "is a directory, not a sampler file"),
    # 5. The wrong kind of export where one kind is expected.
    ("evolved_as_ggdm", "evolved", nothing, {"expect": "learned"}, E,
     "is a searched sampler export (kind 'ddss_evolved_sampler', a ddim search, written by an evolution search or "
     "ddss.save_evolved_sampler), but a learned GGDM-family sampler export (kind 'ddss_sampler', written by a DDSS "
     "run or ddss.save_sampler) is expected here"),
    ("ggdm_as_evolved", "ggdm", nothing, {"expect": "searched"}, E,
     "is a learned GGDM-family sampler export (kind 'ddss_sampler', written by a DDSS run or ddss.save_sampler), "
     "but a searched sampler export (kind 'ddss_evolved_sampler'"),
    # 6. NaN or inf in any array.
    ("nan_learned", "ggdm", poison("learned/mu"), {}, export.NonFiniteSamplerError,
     "holds NaN or inf in ['learned/mu']"),
    ("inf_base_times", "ggdm", poison("base_times", np.inf), {}, export.NonFiniteSamplerError,
     "holds NaN or inf in ['base_times']"),
    ("nan_schedule", "evolved", poison("schedule/log_alpha_bar_table", index=7), {}, export.NonFiniteSamplerError,
     "holds NaN or inf in ['schedule/log_alpha_bar_table']"),
    ("nan_evolved_ggdm", "evolved_ggdm", poison("ggdm/nu", index=1), {}, export.NonFiniteSamplerError,
     "holds NaN or inf in ['ggdm/nu']"),
    # 7. Arrays that do not match the header (or each other).
    ("header_K_vs_base_times", "ggdm", set_field(num_steps=5), {}, E,
     "its header says K = 5, but base_times has shape (3,), not (5,)"),
    ("evolved_header_K_vs_timesteps", "evolved", edit_tensor("timesteps", lambda t: t[:2]), {}, E,
     "its header says K = 3, L = 4, but its arrays have shapes timesteps (2,) and skip_mask (3, 4)"),
    ("evolved_header_L_vs_mask", "evolved", set_field(num_blocks=6), {}, E, "its header says K = 3, L = 6"),
    ("learned_shape", "ggdm", edit_tensor("learned/mu", lambda m: m[:, :2]), {}, E,
     "GGDM parameter 'mu' has shape (3, 2); K = 3 needs (3, 4)"),
    ("evolved_ggdm_shape", "evolved_ggdm", edit_tensor("ggdm/nu", lambda m: m[:2]), {}, E,
     "does not hold a valid searched ggdm+pred sampler: GGDM parameter 'nu' has shape (2,)"),
    ("learned_array_missing", "ggdm", drop_tensor("learned/log_a"), {}, E, "learns ['log_a', 'log_b', 'mu', 'nu'"),
    ("no_base_times", "ggdm", drop_tensor("base_times"), {}, E, "has no 'base_times' tensor"),
    ("no_schedule", "evolved", drop_tensor("schedule/log_alpha_bar_table"), {}, E,
     "has no 'schedule/log_alpha_bar_table' tensor"),
    ("schedule_2d", "ggdm", edit_tensor("schedule/log_alpha_bar_table", lambda s: s[None]), {}, E,
     "schedule/log_alpha_bar_table has shape (1, 1000), not [T]"),
    ("schedule_increasing", "ggdm", edit_tensor("schedule/log_alpha_bar_table", lambda s: s[::-1]), {}, E,
     "must be negative and strictly decreasing"),
    ("skip_mask_values", "evolved", edit_tensor("skip_mask", lambda m: m + 2), {}, E,
     "skip_mask holds values other than 0 and 1"),
    ("timesteps_out_of_order", "evolved", reverse_timesteps, {}, E, "not distinct and strictly decreasing"),
    ("timesteps_out_of_range", "evolved", edit_tensor("timesteps", lambda t: t + 200), {}, E,
     "fall outside the model's [0, 999]"),
    ("base_times_out_of_range", "ggdm", edit_tensor("base_times", lambda t: t + 2000), {}, E,
     "timesteps must lie in [0, T-1]"),
]


@pytest.mark.parametrize("case,source,damage,kwargs,error,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_sampler_file_gives_one_clear_error(files, case, source, damage, kwargs, error, fragment):
    path = files[source]
    damage(path)
    with pytest.raises(error) as err:
        ddss.load_sampler(path, **kwargs)
    message = str(err.value)
    assert fragment in message
    assert path in message
    assert "\n" not in message
    assert isinstance(err.value, FileNotFoundError if error is export.SamplerFileNotFoundError else ValueError)


DAMAGED = {"truncated_half", "truncated_evolved", "truncated_in_header", "empty", "header_not_json",
           "nan_learned", "no_family", "header_K_vs_base_times", "format_version_string"}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_damaged_files_say_how_to_recover(files, case):
    """A damaged export says how to get it back (rerun from the checkpoint), not how to run another experiment."""
    _, source, damage, kwargs, error, _ = next(c for c in CASES if c[0] == case)
    damage(files[source])
    with pytest.raises(error) as err:
        ddss.load_sampler(files[source], **kwargs)
    message = str(err.value)
    assert "rerun the command that wrote it with the same --workdir" in message
    assert "runs/<run>/checkpoints/" in message and "digits_ddss" not in message


def test_error_types_stay_compatible(files):
    """NaN is still a FloatingPointError, a missing file still a FileNotFoundError; both are WeightFileErrors."""
    poison("learned/mu")(files["ggdm"])
    with pytest.raises(FloatingPointError, match="NaN or inf"):
        ddss.load_sampler(files["ggdm"])
    with pytest.raises(params_io.WeightFileError, match="NaN or inf"):
        ddss.load_sampler(files["ggdm"])
    delete(files["evolved"])
    with pytest.raises(FileNotFoundError, match="not found"):
        ddss.load_sampler(files["evolved"])
    with pytest.raises(params_io.WeightFileError, match="not found"):
        ddss.load_sampler(files["evolved"])
    with pytest.raises(ValueError, match="expect='ggdm': choose one of \\('learned', 'searched'\\)"):
        ddss.load_sampler(files["ggdm"], expect="ggdm")


def test_shipped_sampler_damage_says_reinstall(tmp_path, monkeypatch):
    """A damaged file inside ddss/models/assets is fixed by reinstalling, not by rerunning anything."""
    assets = os.path.dirname(digits.LEARNED_SAMPLER_FILE)
    monkeypatch.setattr(export, "__file__", str(tmp_path / "ddss" / "export.py"))
    path = tmp_path / "ddss" / "models" / "assets" / os.path.basename(digits.LEARNED_SAMPLER_FILE)
    os.makedirs(path.parent)
    data = open(os.path.join(assets, os.path.basename(digits.LEARNED_SAMPLER_FILE)), "rb").read()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(export.SamplerFileError, match="is truncated.*It ships with ddss: reinstall ddss"):
        ddss.load_sampler(str(path))


# ---------------------------------------------------------------------------------------------------------------
# Valid files still load, with identical arrays.

def test_valid_learned_export_loads_identical_arrays(files, pristine):
    _, params = pristine
    for loaded in (ddss.load_sampler(files["ggdm"], family="ggdm+pred", num_steps=K),
                   ddss.load_sampler(files["ggdm"], expect="learned"), export.load_ggdm_sampler(files["ggdm"])):
        assert isinstance(loaded, export.LoadedSampler) and loaded.clip_denoised is True
        assert sorted(loaded.params.learned) == sorted(params.learned)
        for k, v in params.learned.items():
            np.testing.assert_array_equal(loaded.params.learned[k], v)
        np.testing.assert_array_equal(loaded.params.base_times, params.base_times)
        np.testing.assert_array_equal(loaded.params.schedule.log_alpha_bar_table,
                                      params.schedule.log_alpha_bar_table)
        assert (loaded.params.family, loaded.params.base, loaded.params.eta) == ("ggdm+pred", "dpm_solver++", 0.0)
        assert loaded.metadata["info"] == {"note": "test"}
    assert export.safetensors_problem(files["ggdm"]) is None


def test_header_length_that_looks_like_pickle_magic_is_still_safetensors(tmp_path):
    """A header of 640 bytes starts the file with b"\\x80\\x02", pickle's magic: the layout decides, not the magic."""
    path = str(tmp_path / "x.safetensors")
    for pad in range(600):
        save_file({"a": np.arange(3, dtype=np.float32)}, path, metadata={"p": "x" * pad})
        if open(path, "rb").read(2) == b"\x80\x02":
            break
    else:
        pytest.fail("no padding gave a 640-byte header")
    assert export.safetensors_problem(path) is None
    np.testing.assert_array_equal(load_file(path)["a"], np.arange(3, dtype=np.float32))


def test_valid_searched_exports_load_identical_arrays(files, pristine):
    _, params = pristine
    plain = ddss.load_sampler(files["evolved"], num_steps=K, num_blocks=L, expect="searched")
    assert plain.timesteps.tolist() == [900, 500, 100] and plain.skip == ((), (2,), ())
    assert plain.kind == "ddim" and plain.ggdm_params is None
    searched = ddss.load_sampler(files["evolved_ggdm"], family="ggdm+pred", num_steps=K, num_blocks=L)
    assert searched.kind == "ggdm" and searched.ggdm_params.family == "ggdm+pred"
    for k, v in params.learned.items():
        np.testing.assert_array_equal(searched.ggdm_params.learned[k], v)
    np.testing.assert_array_equal(searched.schedule.log_alpha_bar_table, params.schedule.log_alpha_bar_table)


def test_shipped_learned_sampler_still_loads():
    sampler = digits.load_learned_sampler()
    assert sampler.num_steps == 5 and sampler.family == "ggdm+pred+time"


# ---------------------------------------------------------------------------------------------------------------
# diffusers checkpoint directories (convert.load_diffusers).

TINY_UNET = dict(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(16, 32),
                 down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                 norm_num_groups=8, attention_head_dim=8)


@pytest.fixture(scope="module")
def diffusers_checkpoint(tmp_path_factory):
    """A tiny random diffusers UNet2DModel with a DDPM scheduler config, as save_pretrained writes it."""
    torch = pytest.importorskip("torch")
    import diffusers

    directory = tmp_path_factory.mktemp("diffusers") / "checkpoint"
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(**TINY_UNET).eval()
    unet.save_pretrained(str(directory), safe_serialization=True)
    diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").save_pretrained(str(directory))
    state = {k: v.detach().numpy().copy() for k, v in unet.state_dict().items()}
    return str(directory), state


@pytest.fixture
def checkpoint(diffusers_checkpoint, tmp_path):
    src, _ = diffusers_checkpoint
    directory = str(tmp_path / "checkpoint")
    shutil.copytree(src, directory)
    return directory


def _write(name, text):
    def damage(directory):
        with open(os.path.join(directory, name), "w") as f:
            f.write(text)
        return os.path.join(directory, name)
    return damage


def _edit_json(name, **fields):
    def damage(directory):
        path = os.path.join(directory, name)
        with open(path) as f:
            cfg = json.load(f)
        cfg.update(fields)
        with open(path, "w") as f:
            json.dump(cfg, f)
        return path
    return damage


def _weights(fn):
    def damage(directory):
        path = os.path.join(directory, convert.WEIGHTS)
        fn(path)
        return path
    return damage


def _no_weights(directory):
    os.remove(os.path.join(directory, convert.WEIGHTS))
    return directory


def _pickled_garbage(directory):
    os.remove(os.path.join(directory, convert.WEIGHTS))
    path = os.path.join(directory, convert.PICKLED_WEIGHTS)
    open(path, "wb").write(b"garbage, not a torch file")
    return path


def _shapes_from_other_config(directory):
    _edit_json("config.json", block_out_channels=[32, 64])(directory)
    return os.path.join(directory, convert.WEIGHTS)


WE = params_io.WeightFileError
DIFFUSERS_CASES = [
    ("config_bad_json", _write("config.json", '{"sample_size": 8,, "in_channels": 1}'), ValueError,
     "config.json is not valid JSON: Expecting property name enclosed in double quotes at line 1, column 19"),
    ("config_empty", _write("config.json", ""), ValueError, "is not valid JSON: Expecting value at line 1, column 1"),
    ("config_list", _write("config.json", "[1, 2]"), ValueError, "holds a JSON list, not an object"),
    ("scheduler_bad_json", _write("scheduler_config.json", '{"beta_schedule": "linear"'), ValueError,
     "scheduler_config.json is not valid JSON: Expecting ',' delimiter at line 1, column 27"),
    ("scheduler_bad_number", _edit_json("scheduler_config.json", num_train_timesteps="many"), ValueError,
     "num_train_timesteps is 'many'; it must be an integer"),
    ("scheduler_beta_schedule", _edit_json("scheduler_config.json", beta_schedule="scaled_linear"), ValueError,
     "beta_schedule 'scaled_linear' is not supported"),
    ("unsupported_block_type", _edit_json("config.json", down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"]),
     ValueError, "cannot be converted: UNetConfig: unsupported block types ['CrossAttnDownBlock2D']"),
    ("unsupported_class", _edit_json("config.json", _class_name="UNet2DConditionModel"), ValueError,
     "cannot be converted: The checkpoint is a UNet2DConditionModel"),
    ("missing_weights", _no_weights, FileNotFoundError, "No diffusion_pytorch_model.safetensors"),
    ("weights_shape_mismatch", _shapes_from_other_config, WE,
     "does not match the model config: shape mismatch: ['conv_in/bias: file (16,) vs model (32,)'"),
    ("weights_missing_tensor", _weights(drop_tensor("conv_in.weight")), WE, "missing: ['conv_in/kernel']"),
    ("weights_truncated", _weights(cut(0.5)), WE, "is truncated: it has"),
    ("weights_empty", _weights(cut(keep=0)), WE, "is empty (0 bytes)"),
    ("weights_nan", _weights(poison("conv_in.weight")), WE, "has non-finite values in ['conv_in/kernel']"),
    ("weights_not_safetensors", _weights(replace_bytes(b"\0" * 64)), WE, "is corrupt or not a safetensors file"),
    ("pickled_weights_damaged", _pickled_garbage, WE, "cannot be read with torch.load(weights_only=True)"),
]


@pytest.mark.parametrize("case,damage,error,fragment", DIFFUSERS_CASES, ids=[c[0] for c in DIFFUSERS_CASES])
def test_bad_diffusers_checkpoint_gives_one_clear_error(checkpoint, case, damage, error, fragment):
    path = damage(checkpoint)
    with pytest.raises(error) as err:
        convert.load_diffusers(checkpoint)
    message = str(err.value)
    assert fragment in message
    assert path in message
    assert "\n" not in message
    if case == "missing_weights":
        assert isinstance(err.value, params_io.WeightFileError)  # still what callers caught before
    if case == "weights_shape_mismatch":
        assert os.path.join(checkpoint, "config.json") in message


def test_valid_diffusers_checkpoint_loads_identical_arrays(checkpoint, diffusers_checkpoint):
    _, state = diffusers_checkpoint
    model = convert.load_diffusers(checkpoint)
    assert model.schedule_spec == {"kind": "linear_beta", "num_timesteps": 1000, "beta_start": 1e-4,
                                   "beta_end": 0.02}
    np.testing.assert_array_equal(model.params["conv_in"]["kernel"], state["conv_in.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(model.params["time_embedding"]["linear_1"]["kernel"],
                                  state["time_embedding.linear_1.weight"].T)
    assert export.safetensors_problem(os.path.join(checkpoint, convert.WEIGHTS)) is None


def test_a_file_passed_as_checkpoint_directory(checkpoint):
    config = os.path.join(checkpoint, "config.json")
    with pytest.raises(FileNotFoundError, match="is a file; pass the directory holding its config.json"):
        convert.load_diffusers(config)
