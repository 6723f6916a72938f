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

from chiraljax._errors import require
from chiraljax._precision import resolvable_tolerances
from chiraljax.kernels._lindblad import Stepping

ADJOINTS = ("auto", "reverse", "forward")


@dataclass(frozen=True)
class AbstractLindblad:
    """What the Lindblad solvers share: how they step and how they are differentiated.

    **Arguments:**

    - `rtol`, `atol`, `max_steps`: adaptive stepping (8th-order Dormand-Prince with error
      control, a step boundary on every control jump). In single precision
      (`CHIRALJAX_PRECISION=float32`) tolerances tighter than rtol 1e-6, atol 1e-8 are raised
      to them: float32 cannot resolve more.
    - `steps`: a fixed number of 8th-order steps instead (smooth controls only): vmapped
      batches then run in lockstep; check the accuracy against an adaptive solve once for a
      new kind of problem. Save times on the step ends are read there; save times anywhere
      else from the method's interpolant (a step holding more than 8 of them is cut and
      finished by a second step).
    - `adjoint`: how adaptive solves are differentiated. 'auto': `jax.grad` in one real number
      by forward mode (a jitted value-and-gradient then costs about 1.7-2.4 forward solves), in
      several by the discrete adjoint of the accepted steps (about 2.2-3), and under `jax.jvp`,
      `jax.jacfwd` forward mode through the solver's loop; 'reverse': always the discrete
      adjoint; 'forward': always forward mode through the loop (also for a `jax.jacfwd` with
      a `jax.jit` inside it, which hides the forward mode from 'auto'). All differentiate the
      computed solution with the step sizes held fixed. Under 'auto' fixed steps take 'reverse'
      (with the save times on step ends a scan, which JAX differentiates both ways).
    - `checkpoints`: how many accepted steps the reverse pass can record (memory: one state
      each, and its 14 stages for states of at most 256 numbers); a solve with more steps gets
      a NaN gradient. The tape is allocated on every differentiated solve, so a smaller value
      speeds up gradients of solves that take few steps.
    """

    rtol: float = 1e-8
    atol: float = 1e-10
    max_steps: int = 16_384
    steps: int | None = None
    adjoint: str = "auto"
    checkpoints: int = 1024

    def __post_init__(self) -> None:
        name = type(self).__name__
        require(
            float(self.rtol) > 0 and float(self.atol) > 0,
            f"{name}: rtol and atol must be positive, got rtol={self.rtol}, atol={self.atol}",
        )
        require(int(self.max_steps) >= 1, f"{name}: max_steps must be a positive integer, got {self.max_steps}")
        require(
            self.steps is None or int(self.steps) >= 1,
            f"{name}: steps must be a positive integer or None, got {self.steps}",
        )
        require(self.adjoint in ADJOINTS, f"{name}: adjoint must be one of {', '.join(ADJOINTS)}, got {self.adjoint!r}")
        require(int(self.checkpoints) >= 1, f"{name}: checkpoints must be a positive integer, got {self.checkpoints}")

    def stepping(self, aligned: bool, batched: bool = False) -> Stepping:
        """The kernel's stepping: `aligned` save times (from n_save), a `batched` solve."""
        rtol, atol = resolvable_tolerances(float(self.rtol), float(self.atol))
        return Stepping(
            rtol,
            atol,
            int(self.max_steps),
            None if self.steps is None else int(self.steps),
            aligned,
            int(self.checkpoints),
            self.adjoint,
            batched,
        )


@dataclass(frozen=True)
class Sector(AbstractLindblad):
    """The excitation-sector Lindblad solver: the options of `AbstractLindblad`, and

    - `max_excitations`: k of the sector (default: what the initial state and inputs need).
    """

    max_excitations: int | None = None

    representation = "sector"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            self.max_excitations is None or int(self.max_excitations) >= 1,
            f"Sector: max_excitations must be >= 1, got {self.max_excitations}",
        )


@dataclass(frozen=True)
class Full(AbstractLindblad):
    """The full-space Lindblad solver (every dissipator an operator): the reference. Options
    as `AbstractLindblad`."""

    representation = "full"


@dataclass(frozen=True)
class Delay:
    """The exact single-excitation delay kernel (`chiraljax.algebra._delay_model`).

    **Arguments:**

    - `dt`: the fixed step (default chosen from the rates and delays).
    - `trajectories`: phase-noise trajectories averaged with dephasing (default 256).
    - `key`: their PRNG key (default `jax.random.key(0)`).
    - `max_delay`: the longest delay when delays are traced (default t1 - t0).
    - `adjoint`: how `jax.grad` goes through the kernel: 'auto' by forward mode when one real
      number of the network is differentiated (a value-and-gradient then costs about 2.3
      solves against about 10 for reverse mode through the checkpointed scan), by reverse mode
      otherwise, JAX's forward mode under `jax.jvp`, `jax.jacfwd`, `jax.hessian`; 'reverse' or
      'forward': JAX's own reverse and forward mode through the scan, both available (for a
      `jax.jacfwd` with a `jax.jit` inside it, which hides the forward mode from 'auto').
    """

    dt: float | None = None
    trajectories: int | None = None
    key: Any = field(default=None, compare=False, hash=False)
    max_delay: float | None = None
    adjoint: str = "auto"

    representation = "delay"

    def __post_init__(self) -> None:
        require(self.dt is None or float(self.dt) > 0, f"Delay: dt must be positive, got {self.dt}")
        require(
            self.trajectories is None or int(self.trajectories) >= 1,
            f"Delay: trajectories must be a positive integer, got {self.trajectories}",
        )
        require(
            self.max_delay is None or float(self.max_delay) > 0,
            f"Delay: max_delay must be positive, got {self.max_delay}",
        )
        require(self.adjoint in ADJOINTS, f"Delay: adjoint must be one of {', '.join(ADJOINTS)}, got {self.adjoint!r}")


Method = Sector | Full | Delay
METHODS = (Sector, Full, Delay)
