"""Solver choice as method objects: `simulate(network, t_span, method=cj.Sector(rtol=1e-9))`.

| method | state | when |
|---|---|---|
| `Sector` | (D x D) density matrix on the <= k excitation basis, dephasing elementwise | Markov networks (the default there) |
| `Full` | full-space density matrix, every dissipator an operator | reference, several excitations |
| `Delay` | single-excitation amplitudes + link history | delays, reflections, scatterers (the default there) |

A method holds every option of its representation, with its default in one place; it is
hashable, so it may be a static argument of a compiled function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._errors import require
from .kernels._lindblad import Stepping


ADJOINTS = ("reverse", "forward")


def _check_stepping(method) -> None:
    name = type(method).__name__
    rtol, atol = method.rtol, method.atol
    require(float(rtol) > 0 and float(atol) > 0, f"{name}: rtol and atol must be positive, got rtol={rtol}, atol={atol}")
    require(int(method.max_steps) >= 1, f"{name}: max_steps must be a positive integer, got {method.max_steps}")
    require(method.steps is None or int(method.steps) >= 1,
            f"{name}: steps must be a positive integer or None, got {method.steps}")
    require(method.adjoint in ADJOINTS, f"{name}: adjoint must be one of {', '.join(ADJOINTS)}, got {method.adjoint!r}")
    require(int(method.checkpoints) >= 1, f"{name}: checkpoints must be a positive integer, got {method.checkpoints}")


def _stepping(method, aligned: bool, batched: bool) -> Stepping:
    return Stepping(float(method.rtol), float(method.atol), int(method.max_steps),
                    None if method.steps is None else int(method.steps), aligned, int(method.checkpoints),
                    method.adjoint, batched)


@dataclass(frozen=True)
class Sector:
    """The excitation-sector Lindblad solver.

    **Arguments:**

    - `rtol`, `atol`, `max_steps`: adaptive stepping (8th-order Dormand-Prince with error
      control, a step boundary on every control jump).
    - `steps`: a fixed number of 8th-order steps instead (smooth controls only): vmapped
      batches then run in lockstep; check the accuracy against an adaptive solve once for a
      new kind of problem.
    - `max_excitations`: k of the sector (default: what the initial state and inputs need).
    - `adjoint`: how adaptive solves are differentiated: 'reverse' (`jax.grad`; the discrete
      adjoint of the accepted steps, about 3 forward solves per value-and-gradient) or
      'forward' (`jax.jvp`, `jax.jacfwd`: cheaper for one or two parameters).
    - `checkpoints`: how many accepted steps the reverse pass can record (memory: one state
      each); a solve with more steps gets a NaN gradient.
    """

    rtol: float = 1e-8
    atol: float = 1e-10
    max_steps: int = 16_384
    steps: int | None = None
    max_excitations: int | None = None
    adjoint: str = "reverse"
    checkpoints: int = 1024

    representation = "sector"

    def __post_init__(self) -> None:
        _check_stepping(self)
        require(self.max_excitations is None or int(self.max_excitations) >= 1,
                f"Sector: max_excitations must be >= 1, got {self.max_excitations}")

    def stepping(self, aligned: bool, batched: bool = False) -> Stepping:
        """The kernel's stepping: `aligned` save times (from n_save), a `batched` solve."""
        return _stepping(self, aligned, batched)


@dataclass(frozen=True)
class Full:
    """The full-space Lindblad solver (every dissipator an operator): the reference.
    Arguments as `Sector`, without the sector's k."""

    rtol: float = 1e-8
    atol: float = 1e-10
    max_steps: int = 16_384
    steps: int | None = None
    adjoint: str = "reverse"
    checkpoints: int = 1024

    representation = "full"

    def __post_init__(self) -> None:
        _check_stepping(self)

    def stepping(self, aligned: bool, batched: bool = False) -> Stepping:
        """The kernel's stepping: `aligned` save times (from n_save), a `batched` solve."""
        return _stepping(self, aligned, batched)


@dataclass(frozen=True)
class Delay:
    """The exact single-excitation delay kernel (`chiraljax._delay_model`).

    **Arguments:**

    - `dt`: the fixed step (default chosen from the rates and delays).
    - `trajectories`: phase-noise trajectories averaged with dephasing (default 256).
    - `key`: their PRNG key (default `jax.random.key(0)`).
    - `max_delay`: the longest delay when delays are traced (default t1 - t0).
    """

    dt: float | None = None
    trajectories: int | None = None
    key: Any = field(default=None, compare=False, hash=False)
    max_delay: float | None = None

    representation = "delay"

    def __post_init__(self) -> None:
        require(self.dt is None or float(self.dt) > 0, f"Delay: dt must be positive, got {self.dt}")
        require(self.trajectories is None or int(self.trajectories) >= 1,
                f"Delay: trajectories must be a positive integer, got {self.trajectories}")
        require(self.max_delay is None or float(self.max_delay) > 0,
                f"Delay: max_delay must be positive, got {self.max_delay}")


Method = Sector | Full | Delay
METHODS = (Sector, Full, Delay)
