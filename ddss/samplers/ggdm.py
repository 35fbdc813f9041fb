"""GGDM: generalised Gaussian diffusion samplers with learnable coefficients and times (DDSS).

Every new state mixes *all* earlier (noisier) states and the current x_0 prediction:

  x_{k−1} = Σ_{j≥k} μ_{k−1,j} x_j + ν_{k−1} x̂_0^{(k)} + σ_{k−1} ξ_k,   x̂_0^{(k)} = (x_k − b_k ε̂(x_k, τ_k)) / a_k,

with (a_k, b_k) from the sampler's own marginals: writing x_i = A_i x_0 + Σ_m C_{i,m} z_m,
A_K = α(τ_K), C_{K,K} = σ(τ_K), A_i = ν_i + Σ_{j>i} μ_{ij} A_j, C_{i,m} = Σ_{i<j≤m} μ_{ij} C_{j,m},
C_{i,i} = σ_i, and a_k = A_k, b_k = √Σ_m C_{k,m}². The output step (to x_0) is noise-free: σ_0 ≡ 0.

Families (`FAMILIES`) and what each learns (`params.learned`, the only leaves an optimiser sees):
  vars            s_k only (per-step noise); the means follow from s_k by DDIM's formula
  ggdm            μ (lower-triangular, K(K+1)/2 entries), ν and σ
  ggdm+pred       also per-step log-multipliers of a_k and b_k (our reading of the paper's PRED:
                  free positive x̂_0 coefficients, initialised at the marginals)
  ggdm+time       also the times τ_K > ... > τ_1 through a cumulative softmax over K+1 gaps
  ggdm+pred+time  both
μ and ν are learned as offsets from a *base* solver evaluated at the current times: DDIM(η)
(`base="ddim"`) or DPM-Solver++(2M) written as a GGDM (`base="dpm_solver++"`; its second-order
term uses the previous x̂_0, which is a linear function of the states). With zero offsets the GGDM
reproduces the base sampler, and under +TIME the coefficients move with ᾱ(τ) as the times move.
σ is softplus(u) (VARS: s_k = √(1 − ᾱ_{k−1}) · sigmoid(u_k)); a zero initial σ is u = −20
(σ ≈ 2e-9), so that it can still learn. Under +TIME the initial times are the base stride with
τ_K moved 0.5 below T − 1 (a gap of the softmax cannot be exactly 0).

Gradients (remat=True, the default for `sample`): an explicit adjoint (`jax.custom_vjp`) keeps the
K + 1 states of the forward pass and recomputes each network call in the backward pass, which
carries the states' adjoints: memory grows by about two states per step. (`jax.checkpoint` on a
scan step would save the whole history buffer at every step, O(K²) states.) The network's own parameters are frozen: no gradient reaches them
through `sample`. remat=False differentiates the scan directly (all activations kept);
remat="checkpoint" wraps each scan step in `jax.checkpoint` (for comparison: benchmarks/ddss_cost.py).
"""
from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from ddss import schedules as sched_lib
from ddss.samplers import ddim, dpm_solver, loop

FAMILIES = ("vars", "ggdm", "ggdm+pred", "ggdm+time", "ggdm+pred+time")
BASES = ("ddim", "dpm_solver++")
ZERO_LOGIT = -20.0  # softplus(-20) ≈ 2e-9: "zero" noise that can still be learned
TOP_GAP = 0.5  # under +TIME, τ_K starts this far below T - 1


@flax.struct.dataclass
class GGDMParams:
    schedule: sched_lib.Schedule
    base_times: jax.Array  # [K] the initial (or, without +TIME, fixed) times τ_K > ... > τ_1
    learned: dict  # the trainable arrays of the family (see module docstring)
    family: str = flax.struct.field(pytree_node=False, default="ggdm")
    base: str = flax.struct.field(pytree_node=False, default="ddim")
    eta: float = flax.struct.field(pytree_node=False, default=0.0)

    @property
    def num_steps(self) -> int:
        return np.shape(self.base_times)[0]

    @property
    def timesteps(self) -> jax.Array:
        """The times the sampler evaluates the network at (learned under +TIME)."""
        return times(self)


def check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"Unknown sampler family {family!r}; choose one of {FAMILIES}.")


def _flags(family: str) -> tuple[bool, bool]:
    return "+pred" in family, "+time" in family


def history_mask(num_steps: int) -> np.ndarray:
    """[K, K+1] in loop order: row n (step k = K − n, writing state x_{k−1}) may use states j ≥ k."""
    k = num_steps - np.arange(num_steps)
    return (np.arange(num_steps + 1)[None, :] >= k[:, None]).astype(np.float64)


def _logit(p):
    p = np.clip(p, 1e-12, 1.0)
    return np.where(p >= 1.0, 20.0, np.log(p) - np.log1p(-np.minimum(p, 1 - 1e-12)))


def _inv_softplus(y):
    y = np.asarray(y, np.float64)
    safe = np.maximum(y, 1e-30)
    return np.where(y > np.exp(ZERO_LOGIT), safe + np.log(-np.expm1(-safe)), ZERO_LOGIT)


def init(
    schedule: sched_lib.Schedule,
    timesteps,
    *,
    family: str = "ggdm",
    eta: float = 0.0,
    base: str = "ddim",
) -> GGDMParams:
    """A GGDM of `family` that reproduces `base` (DDIM(η), or DPM-Solver++(2M) with η = 0) at `timesteps`."""
    check_family(family)
    if base not in BASES:
        raise ValueError(f"Unknown GGDM base {base!r}; choose one of {BASES}.")
    if not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"DDIM's η must lie in [0, 1], got {float(eta)}.")
    if base == "dpm_solver++" and (eta != 0.0 or family == "vars"):
        raise ValueError("The DPM-Solver++(2M) base is deterministic: use eta=0 and a ggdm family (not vars).")
    base_times = loop.as_timesteps(timesteps, schedule.num_timesteps)
    if not loop.is_concrete(base_times):
        raise ValueError("GGDM init needs concrete timesteps (numpy), not traced values.")
    T, K = schedule.num_timesteps, len(base_times)
    pred, time = _flags(family)
    if time:
        base_times = _movable_times(base_times, T)
    ab = np.exp(np.asarray(sched_lib.log_alpha_bar(schedule, base_times), np.float64))
    ab_prev = np.append(ab[1:], 1.0)
    s = np.asarray(ddim.noise_scale(ab, ab_prev, eta), np.float64)
    s[-1] = 0.0
    learned = {}
    if family == "vars":
        learned["sigma"] = _logit(s / np.sqrt(np.maximum(1.0 - ab_prev, 1e-30))).astype(np.float32)
    else:
        learned["mu"] = np.zeros((K, K + 1), np.float32)
        learned["nu"] = np.zeros((K,), np.float32)
        learned["sigma"] = _inv_softplus(s).astype(np.float32)
    if pred:
        learned["log_a"] = np.zeros((K,), np.float32)
        learned["log_b"] = np.zeros((K,), np.float32)
    if time:
        learned["time_logits"] = _gap_logits(base_times, T).astype(np.float32)
    return GGDMParams(schedule=schedule, base_times=base_times, learned=learned, family=family, base=base,
                      eta=float(eta))


def _movable_times(t: np.ndarray, T: int) -> np.ndarray:
    """Base times with every softmax gap positive: τ_K ≤ T − 1 − TOP_GAP and τ_1 > 0."""
    t = t.copy()
    t[0] = min(t[0], T - 1 - TOP_GAP)
    t[-1] = max(t[-1], min(TOP_GAP, t[-2] / 2 if len(t) > 1 else TOP_GAP))
    if np.any(np.diff(t) >= 0):
        raise ValueError(f"timesteps {t.tolist()} are too close together for learned times; use fewer steps.")
    return t


def _gap_logits(t: np.ndarray, T: int) -> np.ndarray:
    """log of the K+1 gaps [T−1−τ_K, τ_K−τ_{K−1}, ..., τ_2−τ_1, τ_1] (softmax gives back t)."""
    gaps = -np.diff(np.concatenate([[T - 1.0], t, [0.0]]))
    return np.log(gaps)


def times(params: GGDMParams) -> jax.Array:
    """τ in loop order; under +TIME τ_k = (T − 1)(1 − cumsum(softmax(logits))_k), strictly decreasing."""
    if "time_logits" not in params.learned:
        return jnp.asarray(params.base_times)
    T = params.schedule.num_timesteps
    gaps = jax.nn.softmax(params.learned["time_logits"])
    return (T - 1.0) * (1.0 - jnp.cumsum(gaps)[:-1])


def _base_coefficients(params: GGDMParams, t, ab, ab_prev):
    """(μ [K, K+1], ν [K], s [K]) of the base sampler at times t (loop order)."""
    K = params.num_steps
    if params.base == "ddim":
        s = ddim.noise_scale(ab, ab_prev, params.eta)
        return (*_ddim_mean(ab, ab_prev, s), s)
    onehot = jax.nn.one_hot(K - jnp.arange(K), K + 1, dtype=ab.dtype)  # the state each step reads: x_k, k = K − n
    # DPM-Solver++(2M): order 1: x_{k−1} = r x_k − φ m0; order 2 adds −(φ / 2r0)(m0 − m1), with the
    # previous prediction m1 = (x_k − Σ_j μ_{n−1,j} x_j) / ν_{n−1} (the previous step is noise-free).
    c = dpm_solver.step_coefficients(params.schedule, t)
    orders = dpm_solver.step_orders(K, 2)
    rows, nus = [], []
    for n in range(K):
        mu_n = c["ratio"][n] * onehot[n]
        nu_n = -c["phi"][n]
        if orders[n] == 2:
            w = c["phi"][n] / (2.0 * c["r0"][n])
            nu_n = nu_n - w
            mu_n = mu_n + (w / nus[n - 1]) * (onehot[n] - rows[n - 1])
        rows.append(mu_n)
        nus.append(nu_n)
    return jnp.stack(rows), jnp.stack(nus), jnp.zeros_like(ab)


def _ddim_mean(ab, ab_prev, s):
    """DDIM's mean with noise s_k as a GGDM: μ_{k−1,k} = c_k, ν_{k−1} = √ᾱ_{k−1} − c_k √ᾱ_k."""
    K = ab.shape[0]
    c = loop.safe_sqrt(1.0 - ab_prev - s**2) / jnp.sqrt(1.0 - ab)
    onehot = jax.nn.one_hot(K - jnp.arange(K), K + 1, dtype=ab.dtype)  # the state each step reads
    return c[:, None] * onehot, jnp.sqrt(ab_prev) - c * jnp.sqrt(ab)


def marginals(mu, nu, sigma, alpha_K, sigma_K):
    """(A, √V) of every state slot 0..K from the coefficients (loop order rows), O(K³) scalars."""
    K = nu.shape[0]
    A = jnp.zeros((K + 1,), nu.dtype).at[K].set(alpha_K)
    C = jnp.zeros((K + 1, K + 1), nu.dtype).at[K, K].set(sigma_K)  # C[slot, noise index]
    for n in range(K):
        i = K - n - 1  # the state step n writes
        A = A.at[i].set(nu[n] + mu[n] @ A)
        C = C.at[i].set(mu[n] @ C).at[i, i].set(sigma[n])
    return A, loop.safe_sqrt(jnp.sum(C**2, axis=1))  # the output's √V is 0 at a DDIM(η=0) init


def coefficients(params: GGDMParams) -> dict:
    """Per-step arrays in loop order: t, μ [K, K+1], ν, σ, a, b (everything the chain needs)."""
    K = params.num_steps
    pred, _ = _flags(params.family)
    learned = jax.tree_util.tree_map(jnp.asarray, params.learned)
    t = times(params)
    ab_t = sched_lib.alpha_bar(params.schedule, t)
    dtype = learned["sigma"].dtype
    ab = ab_t.astype(dtype)
    ab_prev = jnp.concatenate([ab[1:], jnp.ones((1,), dtype)])
    last = jnp.arange(K) == K - 1
    mask = jnp.asarray(history_mask(K), dtype)
    if params.family == "vars":
        s = jnp.sqrt(jnp.maximum(1.0 - ab_prev, 0.0)) * jax.nn.sigmoid(learned["sigma"])
        s = jnp.where(last, 0.0, s)
        mu, nu = _ddim_mean(ab, ab_prev, s)
        return dict(t=t.astype(dtype), mu=mu, nu=nu, sigma=s, a=jnp.sqrt(ab), b=jnp.sqrt(1.0 - ab))
    base_mu, base_nu, _ = _base_coefficients(params, t.astype(dtype), ab, ab_prev)
    mu = (base_mu + learned["mu"]) * mask
    nu = base_nu + learned["nu"]
    sigma = jnp.where(last, 0.0, jax.nn.softplus(learned["sigma"]))
    A, sd = marginals(mu, nu, sigma, jnp.sqrt(ab[0]), jnp.sqrt(1.0 - ab[0]))
    slot = K - jnp.arange(K)
    a, b = A[slot], sd[slot]
    if pred:
        a, b = a * jnp.exp(learned["log_a"]), b * jnp.exp(learned["log_b"])
    return dict(t=t.astype(dtype), mu=mu, nu=nu, sigma=sigma, a=a, b=b)


def check_params(params: GGDMParams) -> None:
    """Host-side checks of concrete params: family, shapes, and finite values."""
    check_family(params.family)
    K = params.num_steps
    expected = {
        "sigma": (K,), "mu": (K, K + 1), "nu": (K,), "log_a": (K,), "log_b": (K,), "time_logits": (K + 1,),
    }
    pred, time = _flags(params.family)
    wanted = {"sigma"} | ({"mu", "nu"} if params.family != "vars" else set())
    wanted |= {"log_a", "log_b"} if pred else set()
    wanted |= {"time_logits"} if time else set()
    if set(params.learned) != wanted:
        raise ValueError(f"A {params.family} sampler learns {sorted(wanted)}; these params hold "
                         f"{sorted(params.learned)}. Build them with ggdm.init(..., family={params.family!r}).")
    for name, value in params.learned.items():
        if np.shape(value) != expected[name]:
            raise ValueError(f"GGDM parameter {name!r} has shape {np.shape(value)}; K = {K} needs {expected[name]}.")
    if loop.is_concrete(params.learned):
        bad = [n for n, v in params.learned.items() if not np.all(np.isfinite(np.asarray(v)))]
        if bad:
            raise FloatingPointError(
                f"GGDM parameters {bad} contain NaN or inf: the sampler is invalid. Reload the last good "
                "checkpoint or export, or re-initialise with ggdm.init.")


def sample(
    params: GGDMParams,
    eps_fn: loop.EpsFn,
    x_K: jax.Array,
    key: jax.Array,
    *,
    clip_denoised: bool = False,
    remat: bool | str = True,
    return_info: bool = False,
    unroll_backward: bool = True,
):
    """Runs the K-step GGDM from x_K; returns x_0 (and a SampleInfo).

    Differentiable in `params.learned` (and x_K); see the module docstring for `remat`.
    unroll_backward unrolls the adjoint's backward loop: XLA:CPU runs a network's backward pass 4×
    slower inside a rolled loop (measured on the digits UNet, jax 0.10.2); the price is compile time
    that grows with K. Pass False on accelerators or for large K.
    """
    loop.check_x(x_K)
    check_params(params)
    loop.check_timesteps(params.base_times, params.schedule.num_timesteps)
    c = coefficients(params)
    c = jax.tree_util.tree_map(lambda v: v.astype(x_K.dtype), c)
    t0 = jnp.full(x_K.shape[:1], c["t"][0])
    model, consts = jax.closure_convert(lambda x, t: eps_fn(x, t), x_K, t0)
    if remat not in (True, False, "checkpoint"):
        raise ValueError(f"remat must be True (adjoint), 'checkpoint' or False, got {remat!r}.")
    if remat is True:
        x0, info = _chain_adjoint(model, clip_denoised, unroll_backward, consts, c, x_K, key)
    else:
        x0, info = _chain(model, clip_denoised, consts, c, x_K, key, checkpoint=remat == "checkpoint")[:2]
    info = info.replace(timesteps_ok=loop.timesteps_ok(c["t"], params.schedule.num_timesteps))
    return (x0, info) if return_info else x0


def _predict(model, clip_denoised, consts, x, t, a, b):
    eps = loop.model_output(lambda x_, t_: model(x_, t_, *consts), x, t)
    x0 = (x - b * eps) / a
    return (jnp.clip(x0, -1.0, 1.0) if clip_denoised else x0), eps


def _chain(model, clip_denoised, consts, c, x_K, key, *, checkpoint=False):
    """Forward pass: returns (x_0, info, all states [K+1, ...] by slot)."""
    K = c["nu"].shape[0]
    buf = jnp.zeros((K + 1,) + x_K.shape, x_K.dtype).at[K].set(x_K)
    inputs = dict(c, k=loop.step_indices(K))

    def step(buf, s):
        x = buf[s["k"]]
        x0, eps = _predict(model, clip_denoised, consts, x, s["t"], s["a"], s["b"])
        new = jnp.tensordot(s["mu"], buf, axes=1) + s["nu"] * x0 + loop.scaled_noise(key, s["k"], x, s["sigma"])
        return buf.at[s["k"] - 1].set(new), eps

    buf, info = loop.run(step, buf, inputs, remat=checkpoint)
    return buf[0], info, buf


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _chain_adjoint(model, clip_denoised, unroll, consts, c, x_K, key):
    return _chain(model, clip_denoised, consts, c, x_K, key)[:2]


def _chain_adjoint_fwd(model, clip_denoised, unroll, consts, c, x_K, key):
    x0, info, buf = _chain(model, clip_denoised, consts, c, x_K, key)
    return (x0, info), (consts, c, buf, key)


def _chain_adjoint_bwd(model, clip_denoised, unroll, res, cotangents):
    consts, c, buf, key = res
    g = cotangents[0]
    K = c["nu"].shape[0]
    space = tuple(range(1, buf.ndim))  # the state axes, after the slot axis
    adj = jnp.zeros_like(buf).at[0].set(g)

    def back(adj, s):
        k = s["k"]
        lam = adj[k - 1]  # complete: every consumer of x_{k−1} is a later step, already processed
        d_mu = jnp.tensordot(buf, lam, axes=(space, tuple(range(lam.ndim))))
        adj = adj + s["mu"].reshape((-1,) + (1,) * lam.ndim) * lam
        x = buf[k]
        (x0, _), vjp = jax.vjp(lambda x_, t_, a_, b_: _predict(model, clip_denoised, consts, x_, t_, a_, b_),
                               x, s["t"], s["a"], s["b"])
        d_nu = jnp.vdot(lam, x0)
        d_sigma = jnp.vdot(lam, loop.step_noise(key, k, x))
        dx, dt, da, db = vjp((s["nu"] * lam, jnp.zeros_like(x)))
        adj = adj.at[k].add(dx)
        return adj, dict(t=dt, mu=d_mu, nu=d_nu, sigma=d_sigma, a=da, b=db)

    inputs = {name: v[::-1] for name, v in dict(c, k=loop.step_indices(K)).items()}
    adj, grads = jax.lax.scan(back, adj, inputs, unroll=bool(unroll))
    grads = {name: v[::-1] for name, v in grads.items()}
    d_consts = jax.tree_util.tree_map(jnp.zeros_like, consts)  # the network is frozen
    return d_consts, grads, adj[K], None


_chain_adjoint.defvjp(_chain_adjoint_fwd, _chain_adjoint_bwd)
