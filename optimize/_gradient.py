r"""Gradient pulse shaping: optax optimisers on the differentiable simulator.

The loss is the negative score, `L(x) = -J(x)`, and its gradient comes from reverse-mode
differentiation through the solver. Two optimisers:

- **Adam** (`method="adam"`): `x ← x - α m̂ / (sqrt(v̂) + ε)`, one `value_and_grad` per step.
- **L-BFGS** (`method="lbfgs"`): optax's limited-memory BFGS with its zoom line search
  (strong Wolfe conditions); each line-search trial is one `value_and_grad`, and the value and
  gradient at the accepted point are reused for the next step.

**Cost convention.** One `value_and_grad` of the objective counts as *one simulator
evaluation* per ensemble member, whatever its wall time; the forward solve alone would also
count as one. The measured wall-time ratio `cost(value_and_grad) / cost(forward)` is reported
with every run (`GradientResult.cost_ratio`) so that budgets can also be read in forward-solve
equivalents (`evaluations × cost_ratio`).

Runs stop at `max_steps`, at the evaluation `budget`, when the score reaches `target`, or early
when the best score has not improved by more than `tolerance` for `patience` steps. With
`checkpoint`, the state (parameters, optimiser state, best point, history) is written atomically
after every step and on `KeyboardInterrupt`, and a later call with the same arguments resumes
from it.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float

from chiraljax._checks import require_budget
from chiraljax._errors import ChiralJaxError, require
from chiraljax._precision import real_dtype

from ._checkpoint import checkpointed_loop, read_checkpoint, write_checkpoint
from ._results import OptimizeResult, older_name

__all__ = [
    "ObjectiveError",
    "GradientConfig",
    "GradientHistory",
    "GradientResult",
    "GradientStep",
    "gradient_optimize",
    "value_and_grad",
    "measure_cost_ratio",
]

_CHECKPOINT_FORMAT = "chiraljax-gradient-checkpoint"
_CHECKPOINT_VERSION = 1
_METHODS = ("adam", "lbfgs")


class ObjectiveError(ChiralJaxError, ValueError):
    """The objective returned a NaN or infinite value or gradient."""


class GradientConfig(eqx.Module):
    """Settings of a gradient run.

    **Arguments:**

    - `method`: `"adam"` or `"lbfgs"`.
    - `learning_rate`: Adam's step size α (L-BFGS takes its step from the line search).
    - `max_steps`: optimiser steps at most.
    - `patience`, `tolerance`: stop when the best score has not risen by more than
      `tolerance` in `patience` consecutive steps (`patience=None`: never stop early).
    - `target`: stop once the score reaches this value.
    - `memory_size`: L-BFGS history length.
    - `max_linesearch_steps`: L-BFGS line-search trials per step at most.
    """

    method: str = eqx.field(static=True, default="adam")
    learning_rate: float = eqx.field(static=True, default=0.05)
    max_steps: int = eqx.field(static=True, default=200)
    patience: int | None = eqx.field(static=True, default=20)
    tolerance: float = eqx.field(static=True, default=1e-7)
    target: float | None = eqx.field(static=True, default=None)
    memory_size: int = eqx.field(static=True, default=10)
    max_linesearch_steps: int = eqx.field(static=True, default=12)

    def __check_init__(self) -> None:
        require(self.method in _METHODS, f"GradientConfig.method={self.method!r}: choose one of {', '.join(_METHODS)}")
        for name in ("max_steps", "memory_size", "max_linesearch_steps"):
            value = getattr(self, name)
            require(
                isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1,
                f"GradientConfig.{name}={value!r}: must be an integer >= 1",
            )
        if self.patience is not None:
            require(
                isinstance(self.patience, (int, np.integer)) and self.patience >= 1,
                f"GradientConfig.patience={self.patience!r}: must be an integer >= 1 or None",
            )
        require(
            math.isfinite(self.learning_rate) and self.learning_rate > 0,
            f"GradientConfig.learning_rate={self.learning_rate!r}: must be a finite number > 0",
        )
        require(
            math.isfinite(self.tolerance) and self.tolerance >= 0,
            f"GradientConfig.tolerance={self.tolerance!r}: must be >= 0",
        )
        if self.target is not None:
            require(math.isfinite(self.target), f"GradientConfig.target={self.target!r}: must be finite")

    def optimiser(self) -> optax.GradientTransformation:
        """The optax transformation of this method."""
        return self._settings().optimiser()

    def _settings(self) -> _Settings:
        """The fields the compiled update depends on (so stopping rules never recompile)."""
        return _Settings(self.method, float(self.learning_rate), int(self.memory_size), int(self.max_linesearch_steps))

    def fingerprint(self) -> dict[str, Any]:
        """The fields that define the trajectory (a resumed run may change the stopping rules)."""
        return {
            "method": self.method,
            "learning_rate": float(self.learning_rate),
            "memory_size": int(self.memory_size),
            "max_linesearch_steps": int(self.max_linesearch_steps),
        }


class _Settings(NamedTuple):
    method: str
    learning_rate: float
    memory_size: int
    max_linesearch_steps: int

    def optimiser(self) -> optax.GradientTransformation:
        if self.method == "adam":
            return optax.adam(self.learning_rate)
        return optax.lbfgs(
            memory_size=self.memory_size,
            linesearch=optax.scale_by_zoom_linesearch(
                max_linesearch_steps=self.max_linesearch_steps, initial_guess_strategy="one"
            ),
        )


class GradientHistory(NamedTuple):
    """Per-step record (S steps; entry 0 is the starting point).

    - `evaluations`: simulator evaluations spent so far, (S,).
    - `score`: score at the step's point, (S,).
    - `best_score`: best score so far, (S,).
    - `grad_norm`: gradient norm at the step's point, (S,).
    - `wall_time`: seconds from the start of the run to the evaluation of the step's point
      (summed over resumed parts), (S,).
    """

    evaluations: np.ndarray
    score: np.ndarray
    best_score: np.ndarray
    grad_norm: np.ndarray
    wall_time: np.ndarray

    @staticmethod
    def empty() -> GradientHistory:
        return GradientHistory(*(np.zeros((0,), d) for d in (np.int64,) + (np.float64,) * 4))

    def append(self, *row: float) -> GradientHistory:
        return GradientHistory(*(np.append(a, v).astype(a.dtype) for a, v in zip(self, row)))

    def to_json(self) -> dict[str, list]:
        return {k: v.tolist() for k, v in self._asdict().items()}

    @staticmethod
    def from_json(data: dict[str, list]) -> GradientHistory:
        empty = GradientHistory.empty()
        return GradientHistory(*(np.asarray(data[k], e.dtype) for k, e in zip(empty._fields, empty)))


class GradientStep(NamedTuple):
    """What a callback receives after each step."""

    step: int
    evaluations: int
    score: float
    best_score: float
    grad_norm: float


class GradientResult(OptimizeResult):
    """Outcome of `gradient_optimize` (the names of `OptimizeResult`).

    - `best_x`, `best_value`: the best point seen and its score.
    - `final_x`: the last iterate.
    - `history`: the `GradientHistory`.
    - `evaluations`: simulator evaluations spent (value_and_grad calls × ensemble size).
    - `iterations`: optimiser steps taken.
    - `stop_reason`: `"max_steps"`, `"budget"`, `"target"`, `"converged"` or `"callback"`.
    - `cost_ratio`: measured wall time of one value_and_grad over one forward solve (NaN if not
      measured).

    The older names `best_score`, `x` and `steps` read `best_value`, `final_x` and `iterations`.
    """

    history: GradientHistory
    cost_ratio: float

    best_score = older_name("best_value")
    x = older_name("final_x")
    steps = older_name("iterations")


def _loss(objective, x):
    return -objective(x)


_value_and_grad_loss = eqx.filter_jit(lambda objective, x: jax.value_and_grad(lambda y: _loss(objective, y))(x))
_forward = eqx.filter_jit(lambda objective, x: objective(x))


def value_and_grad(objective: Callable, x: Float[Array, " P"]) -> tuple[Float[Array, ""], Float[Array, " P"]]:
    """The score `J(x)` and its gradient `∇J(x)`, jit-compiled once per objective structure.

    **Arguments:**

    - `objective`: an `Objective` (or any equinox module / function `x -> scalar`).
    - `x`: parameters, shape (P,).

    **Returns:** `(J, ∇J)`.
    """
    loss, grad = _value_and_grad_loss(objective, jnp.asarray(x, real_dtype()))
    return -loss, -grad


def measure_cost_ratio(objective: Callable, x: Float[Array, " P"], repeats: int = 3) -> dict[str, float]:
    """Wall time of one forward evaluation and one value_and_grad (both compiled beforehand).

    **Arguments:**

    - `objective`: the objective.
    - `x`: the point to time at.
    - `repeats`: timed calls of each (the minimum is kept).

    **Returns:** `{"forward_s", "value_and_grad_s", "ratio"}`.
    """
    x = jnp.asarray(x, real_dtype())
    times = {}
    for name, fn in (("forward_s", _forward), ("value_and_grad_s", _value_and_grad_loss)):
        jax.block_until_ready(fn(objective, x))
        best = math.inf
        for _ in range(max(int(repeats), 1)):
            t = time.perf_counter()
            jax.block_until_ready(fn(objective, x))
            best = min(best, time.perf_counter() - t)
        times[name] = best
    times["ratio"] = times["value_and_grad_s"] / times["forward_s"]
    return times


@eqx.filter_jit
def _adam_update(config: _Settings, grad, opt_state, x):
    updates, opt_state = config.optimiser().update(grad, opt_state, x)
    return optax.apply_updates(x, updates), opt_state


@eqx.filter_jit
def _lbfgs_update(config: _Settings, objective, loss, grad, opt_state, x):
    updates, opt_state = config.optimiser().update(
        grad, opt_state, x, value=loss, grad=grad, value_fn=lambda y: _loss(objective, y)
    )
    info = optax.tree.get(opt_state, "info")
    return (
        optax.apply_updates(x, updates),
        opt_state,
        optax.tree.get(opt_state, "value"),
        optax.tree.get(opt_state, "grad"),
        info.num_linesearch_steps,
    )


class _State(NamedTuple):
    x: np.ndarray
    opt_state: optax.OptState
    best_x: np.ndarray
    best_score: float
    step: int
    evaluations: int
    stale: int
    history: GradientHistory
    loss: float  # loss and grad at x, when known from the line search (NaN otherwise)
    grad: np.ndarray


def _check_finite(name: str, value, step: int, x) -> None:
    if not bool(np.all(np.isfinite(np.asarray(value)))):
        raise ObjectiveError(
            f"objective: the {name} is not finite at step {step} "
            f"(x = {np.asarray(x).tolist()}); check the model at these parameters, bound the "
            "controls (BasisParameterization bounds) or lower the learning rate"
        )


def gradient_optimize(
    objective: Callable,
    x0: Float[Array, " P"],
    config: GradientConfig = GradientConfig(),
    *,
    budget: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    callback: Callable[[GradientStep], bool | None] | None = None,
    measure_cost: bool = False,
) -> GradientResult:
    """Maximise `objective(x)` by gradient ascent from `x0`.

    **Arguments:**

    - `objective`: an `Objective` (or an equinox module / pure function `x -> scalar`); its
      `evaluations_per_call` (1 if absent) is what one value_and_grad costs.
    - `x0`: starting parameters, shape (P,).
    - `config`: a `GradientConfig`.
    - `budget`: maximum simulator evaluations (see the module's cost convention); `None` for
      no limit. An L-BFGS step is only started if its worst case (1 + max_linesearch_steps
      evaluations) fits.
    - `checkpoint`: file to resume from if it exists and to save to after every step.
    - `callback`: called after every step with a `GradientStep`; returning `True` stops.
    - `measure_cost`: time one forward and one value_and_grad first (`cost_ratio`).

    **Returns:** a `GradientResult`. Raises `ValidationError` for bad arguments (a budget below
    one evaluation, a misshaped or non-finite `x0`) and `ObjectiveError` when the objective or
    its gradient is NaN or infinite, naming the step and the parameters.
    """
    require(isinstance(config, GradientConfig), f"config: expected a GradientConfig, got {type(config).__name__}")
    require(callable(objective), "objective: must be callable, mapping x of shape (P,) to a scalar")
    x0 = np.asarray(x0, dtype=np.float64)
    require(x0.ndim == 1 and x0.size >= 1, f"x0: expected a 1-D parameter vector, got shape {x0.shape}")
    require(bool(np.all(np.isfinite(x0))), "x0: contains NaN or infinite entries")
    size = getattr(objective, "size", x0.size)
    require(size == x0.size, f"x0: has {x0.size} entries, the objective takes {size} parameters")
    per_call = int(getattr(objective, "evaluations_per_call", 1))
    step_cost = per_call * (1 if config.method == "adam" else 1 + config.max_linesearch_steps)
    if budget is not None:
        require_budget(
            "budget",
            budget,
            step_cost,
            "simulator evaluations",
            f"one {config.method} step may cost up to {step_cost} simulator evaluations (None: no limit)",
        )
    if checkpoint is not None:
        directory = os.path.dirname(os.path.abspath(checkpoint))
        require(os.path.isdir(directory), f"checkpoint: folder {directory!r} does not exist; create it first")

    cost_ratio = math.nan
    if measure_cost:
        cost_ratio = measure_cost_ratio(objective, x0)["ratio"]

    x0j = jnp.asarray(x0, real_dtype())
    state = _State(
        x=x0,
        opt_state=config.optimiser().init(x0j),
        best_x=x0,
        best_score=-math.inf,
        step=0,
        evaluations=0,
        stale=0,
        history=GradientHistory.empty(),
        loss=math.nan,
        grad=np.full_like(x0, np.nan),
    )
    identity = {"config": config.fingerprint(), "x0": x0.tolist(), "per_call": per_call}
    if checkpoint is not None and os.path.exists(checkpoint):
        state = _load(checkpoint, state, identity)
    elapsed0 = float(state.history.wall_time[-1]) if state.history.wall_time.size else 0.0
    start = time.perf_counter()

    clock = lambda: elapsed0 + time.perf_counter() - start

    def advance(state: _State) -> tuple[_State, str | None]:
        reason = _stop_before(state, config, budget, step_cost)
        if reason is not None:
            return state, reason
        state = _step(objective, state, config, per_call, clock)
        record = GradientStep(
            state.step,
            state.evaluations,
            float(state.history.score[-1]),
            state.best_score,
            float(state.history.grad_norm[-1]),
        )
        return state, ("callback" if callback is not None and callback(record) else None)

    save = None if checkpoint is None else (lambda state: _save(checkpoint, state, identity))
    state, stop_reason = checkpointed_loop(state, advance, save)
    return GradientResult(
        best_x=jnp.asarray(state.best_x),
        best_value=state.best_score,
        final_x=jnp.asarray(state.x),
        history=state.history,
        evaluations=state.evaluations,
        iterations=state.step,
        stop_reason=stop_reason,
        cost_ratio=cost_ratio,
    )


def _stop_before(state: _State, config: GradientConfig, budget: int | None, step_cost: int) -> str | None:
    if config.target is not None and state.best_score >= config.target:
        return "target"
    if config.patience is not None and state.stale >= config.patience:
        return "converged"
    if state.step >= config.max_steps:
        return "max_steps"
    if budget is not None and state.evaluations + step_cost > budget:
        return "budget"
    return None


def _step(objective, state: _State, config: GradientConfig, per_call: int, clock: Callable[[], float]) -> _State:
    """Evaluate at the current point (unless the line search already did), record, update."""
    x = jnp.asarray(state.x, real_dtype())
    evaluations = state.evaluations
    if math.isfinite(state.loss):
        loss, grad = jnp.asarray(state.loss, real_dtype()), jnp.asarray(state.grad, real_dtype())
    else:
        loss, grad = _value_and_grad_loss(objective, x)
        evaluations += per_call
    score = -float(loss)
    _check_finite("score", score, state.step, state.x)
    _check_finite("gradient", grad, state.step, state.x)

    improved = score > state.best_score + config.tolerance
    best_x, best_score = (state.x, score) if score > state.best_score else (state.best_x, state.best_score)
    history = state.history.append(evaluations, score, best_score, float(jnp.linalg.norm(grad)), clock())
    if config.method == "adam":
        new_x, opt_state = _adam_update(config._settings(), grad, state.opt_state, x)
        next_loss, next_grad = math.nan, np.full_like(state.x, np.nan)
    else:
        new_x, opt_state, next_loss, next_grad, n_ls = _lbfgs_update(
            config._settings(), objective, loss, grad, state.opt_state, x
        )
        evaluations += per_call * int(n_ls)
        next_loss, next_grad = float(next_loss), np.asarray(next_grad)
        if not (math.isfinite(next_loss) and np.all(np.isfinite(next_grad))):
            _check_finite("score", next_loss, state.step + 1, new_x)
    _check_finite("update", new_x, state.step, state.x)
    return _State(
        x=np.asarray(new_x),
        opt_state=opt_state,
        best_x=np.asarray(best_x),
        best_score=best_score,
        step=state.step + 1,
        evaluations=evaluations,
        stale=0 if improved else state.stale + 1,
        history=history,
        loss=next_loss,
        grad=np.asarray(next_grad),
    )


def _save(path, state: _State, identity: dict[str, Any]) -> None:
    """Write the state atomically: a JSON header line, then the arrays (equinox leaves)."""
    path = os.fspath(path)
    header = {
        "format": _CHECKPOINT_FORMAT,
        "version": _CHECKPOINT_VERSION,
        "identity": identity,
        "best_score": state.best_score,
        "step": state.step,
        "evaluations": state.evaluations,
        "stale": state.stale,
        "loss": state.loss,
        "history": state.history.to_json(),
    }
    arrays = (state.x, state.opt_state, state.best_x, state.grad)
    write_checkpoint(path, header, arrays)


def _load(path, like: _State, identity: dict[str, Any]) -> _State:
    def check(header: dict[str, Any]) -> None:
        saved = header.get("identity") or {}
        changed = sorted(k for k in identity if saved.get(k) != identity[k])
        require(
            not changed,
            f"checkpoint: {os.fspath(path)!r} belongs to a different run (differs in {', '.join(changed)}); "
            "use the original arguments or a new checkpoint path",
        )

    template = (like.x, like.opt_state, like.best_x, like.grad)
    header, (x, opt_state, best_x, grad) = read_checkpoint(
        path, template, format=_CHECKPOINT_FORMAT, version=_CHECKPOINT_VERSION, kind="gradient", check_header=check
    )
    return _State(
        x=np.asarray(x),
        opt_state=opt_state,
        best_x=np.asarray(best_x),
        best_score=float(header["best_score"]),
        step=int(header["step"]),
        evaluations=int(header["evaluations"]),
        stale=int(header["stale"]),
        history=GradientHistory.from_json(header["history"]),
        loss=float(header["loss"]),
        grad=np.asarray(grad),
    )
