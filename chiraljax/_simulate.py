"""`simulate`: pick a representation for a Network, run its kernel, return a `Result`.

| representation | state | used when |
|---|---|---|
| 'sector' | (D x D) density matrix on the <= k excitation basis | Markov networks (default) |
| 'full'   | full-space density matrix, every dissipator an operator | reference, several excitations |
| 'delay'  | single-excitation amplitudes + link history | delays, reflections, scatterers |
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from ._errors import require
from ._markov import LindbladModel, compile_markov, required_excitations
from ._network import Network
from ._pulses import _concrete
from ._result import Result
from ._operator import stack_operators
from .kernels._lindblad import Generator, Stepping, solve_full, solve_sector

REPRESENTATIONS = ("auto", "sector", "full", "delay")


def _generator(hamiltonian, channels) -> Generator:
    """Stack H and the channels' operators with one shared coefficient function."""
    mats, coefficients = stack_operators([hamiltonian] + [c.operator for c in channels])
    owner = np.concatenate([np.full(m.shape[0], k) for k, m in enumerate(mats[1:])])
    to_ground = all(not c.operator.pattern()[1:].any() for c in channels)
    return Generator(mats[0], jnp.concatenate(mats[1:]), owner, len(channels), coefficients, to_ground)


def _choose(network: Network, representation: str) -> str:
    if representation != "auto":
        return representation
    if network.scatterers or network.has_reflections or network.has_delays:
        return "delay"
    return "sector"


def _run_lindblad(model: LindbladModel, representation: str, t0, t1, ts, stepping: Stepping) -> Result:
    space = model.space
    numbers = space.basis.astype(float)
    psi = model.initial
    rho0 = jnp.outer(psi, psi.conj())
    photon = model.photon_channels
    if representation == "sector":
        channels = photon
        sol = solve_sector(_generator(model.hamiltonian, channels), rho0, numbers,
                           model.dephasing, t0, t1, ts, jump_ts=model.jump_times, stepping=stepping)
    else:
        channels = model.channels
        sol = solve_full(_generator(model.hamiltonian, channels), rho0, numbers,
                         t0, t1, ts, jump_ts=model.jump_times, stepping=stepping)
    kinds = tuple(c.kind for c in channels)
    carries = jnp.asarray([kind != "dephasing" for kind in kinds], dtype=float)
    initial = jnp.real(jnp.einsum("ii,ij->", rho0, jnp.asarray(numbers)))
    final_pop = jnp.real(jnp.einsum("ii,ij->", sol.final_state, jnp.asarray(numbers)))
    error = jnp.abs(final_pop + jnp.sum(sol.final_outputs * carries) - initial)
    return Result(representation, ts, space.names, sol.populations, tuple(c.name for c in channels), kinds,
                  sol.fluxes, sol.outputs, sol.final_state, jnp.zeros_like(ts), error)


def _simulate_impl(network: Network, t0, t1, ts, representation: str, stepping: Stepping,
                   max_excitations: int | None, delay_plan=None, key=None) -> Result:
    if representation == "delay":
        from ._delay_model import simulate_delay

        return simulate_delay(network, t0, t1, ts, key=key, plan=delay_plan)
    k = None if representation == "full" else max_excitations
    model = compile_markov(network, t0, max_excitations=k)
    return _run_lindblad(model, representation, t0, t1, ts, stepping)


_simulate = eqx.filter_jit(_simulate_impl)


def simulate(network: Network, t_span: tuple[float, float], *, ts: Any = None, n_save: int = 201,
             representation: str = "auto", rtol: float = 1e-8, atol: float = 1e-10,
             max_steps: int = 16_384, steps: int | None = None, max_excitations: int | None = None,
             dt: float | None = None,
             key: Any = None, n_trajectories: int | None = None, max_delay: float | None = None) -> Result:
    """Simulate a Network over a time window.

    **Arguments:**

    - `network`: the device (its numbers may be traced: simulate works under jit, vmap, grad).
    - `t_span`: (t0, t1).
    - `ts`: save times (default `n_save` equally spaced points spanning t_span).
    - `representation`: 'auto' (delay kernel when delays or reflections matter, otherwise the
      excitation-sector Lindblad solver), 'sector', 'full' or 'delay'.
    - `rtol`, `atol`, `max_steps`: adaptive-step tolerances of the Lindblad solvers.
    - `steps`: a fixed number of 8th-order steps instead of adaptive stepping (smooth controls
      only): vmapped batches then run in lockstep and gradients cost less; check the accuracy
      against an adaptive solve once for a new kind of problem.
    - `max_excitations`: k of the sector (default: what the initial state and inputs need).
    - `dt`, `key`, `n_trajectories`, `max_delay`: options of the delay representation (see
      `chiraljax._delay_model`): the fixed step (default chosen from the rates and delays), the
      PRNG key and number of phase-noise trajectories used with dephasing (default
      `jax.random.key(0)` and 256), the longest delay when delays are traced (default t1 - t0).

    **Returns:** a `Result`.
    """
    require(isinstance(network, Network), f"simulate: network must be a Network, got {type(network).__name__}")
    require(representation in REPRESENTATIONS,
            f"simulate: representation must be one of {', '.join(REPRESENTATIONS)}, got {representation!r}")
    require(len(t_span) == 2, f"simulate: t_span must be (t0, t1), got {t_span!r}")
    t0, t1 = (jnp.asarray(x, dtype=float) for x in t_span)
    c0, c1 = _concrete(t0), _concrete(t1)
    if c0 is not None and c1 is not None:
        require(np.isfinite(c0) and np.isfinite(c1) and float(c1) > float(c0),
                f"simulate: t_span must be finite with t1 > t0, got {t_span!r}")
    ts_given = ts
    if ts is None:
        require(int(n_save) >= 2, f"simulate: n_save must be >= 2, got {n_save}")
        ts = jnp.linspace(t0, t1, int(n_save))
    ts = jnp.asarray(ts, dtype=float)
    require(steps is None or int(steps) >= 1, f"simulate: steps must be a positive integer or None, got {steps}")
    require(int(max_steps) >= 1, f"simulate: max_steps must be positive, got {max_steps}")
    # Save times from n_save are equally spaced (the kernel checks that steps fit them).
    stepping = Stepping(float(rtol), float(atol), int(max_steps), None if steps is None else int(steps),
                        aligned=ts_given is None)
    representation = _choose(network, representation)
    if representation == "delay":
        from ._delay_model import plan_delay

        plan = plan_delay(network, t_span[0], t_span[1], ts_given, n_save=n_save, dt=dt, max_delay=max_delay,
                          n_trajectories=n_trajectories)
        return _simulate(network, t0, t1, ts, representation, stepping, 1, plan, key)
    need = required_excitations(network)
    k = need if max_excitations is None else int(max_excitations)
    require(k >= 1, "simulate: max_excitations must be >= 1")
    return _simulate(network, t0, t1, ts, representation, stepping, k)
