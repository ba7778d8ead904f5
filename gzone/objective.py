"""Temperature-softmax cross-entropy and its derivatives with respect to the logits.

ICML paper, Eq. (1): p = σ_T(z) = softmax(z / T); loss ℓ = −log p_y. With respect to the logits
(Eq. 4 and below Eq. 4, for temperature T): ∇_z ℓ = (p − y)/T and ∇²_z ℓ = (diag p − p pᵀ)/T².

Everything is computed from ``log_softmax`` (log-sum-exp), so logits of 1e15 (LeNet-5 at α = 1e3)
give finite losses and probabilities. Logits that already overflowed (inf/NaN, e.g. float32 past
3.4e38) cannot be repaired; :func:`nonfinite_flags` reports them so callers never write silently
wrong numbers.

Logit normalisation (Wei et al., 2022) is the cross-entropy at T = τ of the unit logits
z / (‖z‖ + ε): :func:`unit_logits`, and :class:`LogitNormalized` wraps a model's apply with it.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def log_probs(logits: jax.Array, temperature: float | jax.Array = 1.0) -> jax.Array:
    """log σ_T(z), (N, K), log-sum-exp stable (Eq. 1)."""
    return jax.nn.log_softmax(logits / temperature, axis=-1)


def probs(logits: jax.Array, temperature: float | jax.Array = 1.0) -> jax.Array:
    """Softmax probabilities σ_T(z), (N, K) (Eq. 1)."""
    return jax.nn.softmax(logits / temperature, axis=-1)


def cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    temperature: float | jax.Array = 1.0,
    weights: jax.Array | None = None,
) -> jax.Array:
    """Cross-entropy −log p_y: the mean over samples, or Σ_μ w_μ ℓ_μ when ``weights`` are given."""
    per_sample = -jnp.take_along_axis(log_probs(logits, temperature), labels[:, None], axis=-1)[:, 0]
    return _sample_mean(per_sample, weights)


def _sample_mean(per_sample: jax.Array, weights: jax.Array | None) -> jax.Array:
    """The mean over samples, or Σ_μ w_μ (·)_μ with ``weights``."""
    return per_sample.mean() if weights is None else jnp.sum(weights * per_sample)


def uniform_softmax_objective(
    logits: jax.Array,
    labels: jax.Array,
    temperature: float | jax.Array = 1.0,
    weights: jax.Array | None = None,
) -> jax.Array:
    """The objective whose gradient is the USO update (ICML App. E): Σ_k (1/K − 1{y = k}) z_k / T
    per sample — Eq. (3) with the softmax held uniform, p_k = 1/K, whatever the logits are —
    averaged over samples, or Σ_μ w_μ (…) with ``weights``. Linear in the logits: its gradient
    with respect to θ is (1/T) Σ_k (1/K − 1{y = k}) ∂z_k/∂θ, which equals the cross-entropy's
    while σ_T(z) is uniform."""
    k = logits.shape[-1]
    picked = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
    per_sample = (jnp.sum(logits, axis=-1) / k - picked) / temperature
    return _sample_mean(per_sample, weights)


def logit_gradient(
    logits: jax.Array, labels: jax.Array, temperature: float | jax.Array = 1.0
) -> jax.Array:
    """∇_z ℓ = (p − y)/T per sample, (N, K) (below Eq. 4)."""
    onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    return (probs(logits, temperature) - onehot) / temperature


def logit_hessian(logits: jax.Array, temperature: float | jax.Array = 1.0) -> jax.Array:
    """∇²_z ℓ = (diag p − p pᵀ)/T² per sample, (N, K, K) (below Eq. 4). For small K only."""
    p = probs(logits, temperature)
    return (jax.vmap(jnp.diag)(p) - p[:, :, None] * p[:, None, :]) / temperature**2


def centre(p: jax.Array, u: jax.Array) -> jax.Array:
    """u − (p·u) along the class axis: u (..., N, K) centred by the softmax means of p (N, K).

    The mean is a contraction (``einsum``), not ``sum(p * u)``: jaxlib 0.10.2 miscompiles the
    latter's multiply-reduce-broadcast fusion on CPU (jax-ml/jax#39103).
    """
    return u - jnp.einsum("nk,...nk->...n", p, u)[..., None]


def centred_quadratic_form(
    p: jax.Array, u: jax.Array, v: jax.Array, temperature: float | jax.Array = 1.0
) -> jax.Array:
    """uᵀ (diag p − p pᵀ) v / T² per sample in the centred form Σ_k p_k (u_k − p·u)(v_k − p·v) / T².

    Shapes: p (N, K), u and v (..., N, K) → (..., N). The textbook form Σ_k p_k u_k v_k − (p·u)(p·v)
    cancels catastrophically once softmax saturates (a negative-trace G-term at α = 100 in
    float32); the centred form is a sum of non-negative terms when u = v.
    """
    return jnp.sum(p * centre(p, u) * centre(p, v), axis=-1) / temperature**2


def nonfinite_flags(**arrays: jax.Array) -> list[str]:
    """Names of the given arrays that hold inf or NaN (host-side check for results)."""
    return [name for name, a in arrays.items() if not bool(jnp.all(jnp.isfinite(a)))]


#: ε of the logit norm in Wei et al.'s LogitNorm code (``torch.norm(x) + 1e-7``)
LOGIT_NORM_EPS = 1e-7


def unit_logits(logits: jax.Array, eps: float = LOGIT_NORM_EPS) -> jax.Array:
    """z / (‖z‖₂ + ε) per sample (N, K): the logits of logit normalisation (Wei et al., ICML 2022,
    "Mitigating neural network overconfidence with logit normalization", Sec. 3: the LogitNorm
    loss is −log softmax(z / (τ‖z‖))_y; their code adds ε = 1e-7 to the norm). The cross-entropy
    at temperature T = τ of these logits is that loss: ``cross_entropy(unit_logits(z), y, tau)``.
    A sample whose logits are all zero stays zero."""
    square = jnp.sum(logits * logits, axis=-1, keepdims=True)
    positive = square > 0
    # the norm's derivative z/‖z‖ is 0/0 at z = 0: the double where keeps it (and the Hessian) 0
    norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, square, 1)), 0)
    return logits / (norm + jnp.asarray(eps, logits.dtype))


class LogitNormalized:
    """``apply(params, x) -> unit_logits(apply_fn(params, x), eps)``: a model whose logits are
    normalised (Wei et al., 2022), so that every engine of gzone — :func:`gzone.curvature.projected`,
    the operators, :func:`gzone.training.train_grid` — computes the LogitNorm loss with the
    temperature T = τ unchanged. The predicted class (argmax) is the model's. For a network
    homogeneous of degree L and ε = 0 the normalised logits are homogeneous of degree 0 in θ:
    loss(αθ) = loss(θ), ∇ℓ(αθ) = ∇ℓ(θ)/α, H(αθ) = H(θ)/α².

    Hashable and equal by (``apply_fn``, ``eps``), so one compiled program serves every call with
    the same model (it is a static argument of the jitted passes)."""

    def __init__(self, apply_fn: Any, eps: float = LOGIT_NORM_EPS) -> None:
        self.apply_fn, self.eps = apply_fn, float(eps)

    def __call__(self, params: Any, x: jax.Array) -> jax.Array:
        return unit_logits(self.apply_fn(params, x), self.eps)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, LogitNormalized) and other.apply_fn == self.apply_fn
                and other.eps == self.eps)

    def __hash__(self) -> int:
        return hash((LogitNormalized, self.apply_fn, self.eps))

    def __repr__(self) -> str:
        return f"LogitNormalized({self.apply_fn!r}, eps={self.eps!r})"
