"""Full-batch training of (α-scaled) networks: ICML paper Sec. 5 (and the engine of App. E and of
Fort & Scherlis' training studies).

* :func:`effective_lr` — the paper's learning rate for an α-scaled network of degree L at T = 1,
  η = η0 · α^(2 − L), so that η0 is comparable across α. Behind it, Eq. (3): at T = α^L and with
  the learning rate times α², training ``scale(θ0, α)`` is exactly α times training θ0 (tested).
* :func:`train` — full-batch GD (``optax.sgd``, no momentum: the paper) or Adam (``optax.adam``)
  on the temperature cross-entropy, true or random labels; steps run in jit-compiled blocks of
  ``log_every`` steps between logs (one host sync per log), the data laid out once as
  :class:`gzone.curvature.Batches` (exact full-batch sums over chunks). Each log records the
  metrics of :data:`HISTORY_FIELDS` at the parameters *before* that step's update, including the
  sharpness — the largest-magnitude Hessian eigenvalue by gzone's Lanczos, warm-started from the
  previous log's eigenvector and stopped once its residual estimate is below 1e-3·|λ| (the
  authors use 20 steps of power iteration from a fresh start, with no accuracy check; 20 Lanczos
  steps reach 1e-7 relative where power iteration needs ~300, PERFORMANCE-NOTES). With Adam and
  ``preconditioned_sharpness=True``, also Adam's preconditioned sharpness λ_max(D^{-1/2} H D^{-1/2})
  (D = √v̂ + ε from the optimizer state; NaN at step 0), by the same vmapped Lanczos
  (:data:`PRECONDITIONED_FIELDS`; without it the history is exactly :data:`HISTORY_FIELDS`).
* Divergence: the first step whose loss or updated parameters are not finite (or a log whose
  loss, ‖g‖ or ‖θ‖ is not) stops the run; the parameters stay at the last finite ones,
  :attr:`TrainResult.diverged_at` names the step, and nothing after it enters the history. A
  metric that is merely undefined at a finite state — cos(θ, −g) at an exact minimum, where
  g = 0 (a confident network classifying every sample with a float32 loss of exactly 0) — is
  NaN in the history (null and flagged in a study's records) and the run goes on.

* :func:`train_grid` — many runs as one program vmapped over (parameters, learning rate, T),
  sharded over the local devices (:mod:`gzone.sharding`), checkpointed at every log (orbax) and
  resumed exactly; :func:`train` is a grid of one.

By job: :mod:`.step` (one update: optimizers, labels, the objective, blocks of steps),
:mod:`.metrics` (what a log measures, the sharpness), :mod:`.loop` (a batch of runs, ``train``,
``train_grid``), :mod:`.checkpoints` (orbax, exact resume).
"""

from gzone.training.loop import GridResult, Settings, TrainResult, train, train_grid
from gzone.training.metrics import (
    DIVERGENCE_FIELDS,
    HISTORY_FIELDS,
    PRECONDITIONED_FIELDS,
    SHARPNESS_FIELDS,
    accuracy,
    sharpness_of,
)
from gzone.training.step import (
    DRIVERS,
    LABELS,
    OPTIMIZERS,
    auto_driver,
    effective_lr,
    init_optimizer,
    make_optimizer,
    update_direction,
)

__all__ = ["DIVERGENCE_FIELDS", "DRIVERS", "HISTORY_FIELDS", "LABELS", "PRECONDITIONED_FIELDS", "OPTIMIZERS",
           "SHARPNESS_FIELDS", "GridResult", "Settings", "TrainResult", "accuracy", "auto_driver",
           "effective_lr", "init_optimizer", "make_optimizer", "sharpness_of", "train",
           "train_grid", "update_direction"]
