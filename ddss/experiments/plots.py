"""Pictures: sample grids and score-against-K plots (written as PNG files).

Figures are drawn on `matplotlib.figure.Figure` objects with their own canvas, never through pyplot's
global state: writing a PNG here leaves the caller's backend (a notebook's inline figures) alone."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

from ddss import parallel


def _figure(**kwargs):
    """A Figure on its own Agg canvas (no pyplot state, no backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


@parallel.main_only
def sample_grid(images, path: str, *, scale: int = 4) -> None:
    """Tiles NHWC images in [-1, 1] (1 or 3 channels) into one PNG, nearest-neighbour upscaled."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"sample_grid needs NHWC images with 1 or 3 channels, got shape {images.shape}.")
    n, h, w, c = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.ones((rows * (h + 1) + 1, cols * (w + 1) + 1, c), np.float32)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + q * (w + 1) : 1 + q * (w + 1) + w] = img
    pixels = np.round((np.clip(grid, -1, 1) + 1) * 127.5).astype(np.uint8)
    pixels = np.repeat(np.repeat(pixels, scale, axis=0), scale, axis=1)
    Image.fromarray(pixels[..., 0] if c == 1 else pixels).save(path)


@parallel.main_only
def samples_picture(samples, path: str) -> None:
    """The picture of a set of samples, whatever their event shape: a grid of the first 64 for images
    ([N, H, W, C] with 1 or 3 channels, or [N, H, W]; other channel counts show channel 0), a scatter of
    the first two coordinates for vectors [N, D] (a histogram when D = 1)."""
    samples = np.asarray(samples, np.float32)
    if samples.ndim == 3:
        samples = samples[..., None]
    if samples.ndim == 4:
        sample_grid(samples[:64] if samples.shape[-1] in (1, 3) else samples[:64, ..., :1], path)
        return
    flat = samples.reshape(len(samples), -1)
    fig = _figure(figsize=(4, 4))
    ax = fig.subplots()
    if flat.shape[1] == 1:
        ax.hist(flat[:, 0], bins=50)
        ax.set_xlabel("x")
    else:
        ax.scatter(flat[:, 0], flat[:, 1], s=2, alpha=0.5)
        ax.set_xlabel("x[0]")
        ax.set_ylabel("x[1]")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


@parallel.main_only
def score_vs_k(rows, path: str, *, ylabel: str = "FID") -> None:
    """One line per method (score against K, log scale), horizontal lines for K-free rows."""
    fig = _figure(figsize=(6, 4))
    ax = fig.subplots()
    flat = {r["method"] for r in rows if r["K"] == 0 or r["method"].startswith("ddpm-") and r["method"][5:].isdigit()}
    methods = sorted({r["method"] for r in rows} - flat)
    for method in methods:
        pts = sorted((r["K"], r["fid"]) for r in rows if r["method"] == method)
        ax.plot(*zip(*pts), marker="o", label=method)
    for r in rows:
        if r["method"] in flat:
            ax.axhline(r["fid"], linestyle="--", color="gray" if r["method"] == "data" else "black",
                       label=f"{r['method']} ({r['fid']:.3g})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("K (network evaluations)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


@parallel.main_only
def timesteps(rows, schedule, methods, path: str) -> None:
    """The learned times of each row that has them, against the baseline strides, one panel per K."""
    from ddss import schedules as sched_lib

    learned = [r for r in rows if r.get("timesteps")]
    ks = sorted({r["K"] for r in learned})
    if not ks:
        return
    strides = sorted({m.rpartition("-")[2] for m in methods} & set(sched_lib.STRIDES))
    fig = _figure(figsize=(4 * len(ks), 3.5))
    axes = fig.subplots(1, len(ks), squeeze=False)
    for ax, k in zip(axes[0], ks):
        steps = np.arange(k, 0, -1)
        for stride in strides:
            ax.plot(steps, sched_lib.timesteps(schedule, stride, k), linestyle="--", marker=".", label=stride)
        for r in learned:
            if r["K"] == k:
                ax.plot(steps, r["timesteps"], marker="o", label=r["method"])
        ax.set_title(f"K = {k}")
        ax.set_xlabel("step k")
        ax.set_ylabel("model time τ_k")
        ax.invert_xaxis()
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


@parallel.main_only
def search_progress(costs: dict, path: str) -> None:
    """Best fitness (search FID) after each generation, one line per search."""
    fig = _figure(figsize=(5, 3.5))
    ax = fig.subplots()
    for method, cost in costs.items():
        best = cost["best_fitness_by_generation"]
        ax.plot(np.arange(len(best)), best, marker="o", label=method)
        if cost.get("stage1_end", -1) > 0:
            ax.axvline(cost["stage1_end"] - 0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("generation")
    ax.set_ylabel("best search FID so far")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
