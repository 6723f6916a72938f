"""Lindblad master-equation kernels: the full space and the excitation-number sector.

Both integrate

    d rho/dt = -i (H_eff rho - rho H_eff^dag) + sum_k L_k rho L_k^dag - Gamma o rho,
    H_eff = H - (i/2) sum_k L_k^dag L_k,

together with the cumulative output of every channel, N_k(t) = int_{t0}^t Tr(L_k rho L_k^dag),
with an adaptive Runge-Kutta method (diffrax) that puts a step boundary on every control jump.

- `solve_full` is the reference: every dissipator, pure dephasing included, is a Lindblad
  operator and Gamma = 0.
- `solve_sector` works on the at-most-k-excitation basis. Pure dephasing D[sqrt(2 gamma_phi) n_j]
  acts elementwise there, Gamma_ab = sum_j gamma_phi,j (n_j(a) - n_j(b))^2, because the number
  operators are diagonal in the occupation basis; no dephasing operator is multiplied.

Operators arrive as stacks: H(t) = sum_n h_n(t) H_n and L_k(t) = sum_{n in k} l_n(t) L_n, where
the coefficient functions may close over traced parameters (jit, vmap and grad go through).
Reverse-mode memory is bounded by diffrax's recursive checkpointing.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np


class OperatorStack(NamedTuple):
    """sum_n c_n(t) M_n, with M_n stacked as `mats` (n, D, D) and `coefficients(t) -> (n,)`."""

    mats: Any
    coefficients: Callable[[Any], Any]


class ChannelStack(NamedTuple):
    """K channels: `mats` (n, D, D), `coefficients(t) -> (n,)`, `channel` (n,) with each term's
    channel index, `count` = K."""

    mats: Any
    coefficients: Callable[[Any], Any]
    channel: np.ndarray
    count: int


class LindbladSolution(NamedTuple):
    """Populations, fluxes and cumulative outputs at the save times, and the final state."""

    ts: Any
    populations: Any
    fluxes: Any
    outputs: Any
    final_state: Any
    final_outputs: Any
    steps: Any


def _to_real(rho):
    """A complex matrix as a real (2, D, D) array: diffrax integrates real states."""
    return jnp.stack([rho.real, rho.imag])


def _to_complex(y):
    return y[0] + 1j * y[1]


def _evaluate(stack: OperatorStack, t):
    return jnp.einsum("n,nij->ij", stack.coefficients(t), stack.mats)


def _evaluate_channels(stack: ChannelStack, onehot, t):
    return jnp.einsum("n,nk,nij->kij", stack.coefficients(t), onehot, stack.mats)


def _make_rhs(hamiltonian: OperatorStack, channels: ChannelStack, gamma):
    onehot = jnp.asarray(np.eye(channels.count)[channels.channel])
    h_mats = jnp.asarray(hamiltonian.mats)
    l_mats = jnp.asarray(channels.mats)
    hamiltonian = hamiltonian._replace(mats=h_mats)
    channels = channels._replace(mats=l_mats)

    def rates(t, rho):
        ls = _evaluate_channels(channels, onehot, t)
        jumped = jnp.einsum("kij,jl,kml->kim", ls, rho, ls.conj())
        return ls, jumped

    def rhs(t, y, args):
        rho = _to_complex(y[0])
        ls, jumped = rates(t, rho)
        heff = _evaluate(hamiltonian, t) - 0.5j * jnp.einsum("kji,kjl->il", ls.conj(), ls)
        a = heff @ rho
        drho = -1j * (a - a.conj().T) + jumped.sum(0)
        if gamma is not None:
            drho = drho - gamma * rho
        flux = jnp.real(jnp.trace(jumped, axis1=1, axis2=2))
        return _to_real(drho), flux

    def flux(t, rho):
        return jnp.real(jnp.trace(rates(t, rho)[1], axis1=1, axis2=2))

    return rhs, flux


def _solve(rhs, flux_fn, rho0, numbers, n_channels: int, t0, t1, ts, jump_ts, rtol, atol, max_steps,
           solver) -> LindbladSolution:
    y0 = (_to_real(jnp.asarray(rho0, dtype=complex)), jnp.zeros((n_channels,), dtype=float))
    numbers = jnp.asarray(numbers)

    def observe(t, y, args):
        rho = _to_complex(y[0])
        pops = jnp.real(jnp.einsum("ii,ij->j", rho, numbers))
        return pops, flux_fn(t, rho), y[1]

    jump_ts = None if not len(jump_ts) else jnp.clip(jnp.stack([jnp.asarray(j, dtype=float) for j in jump_ts]), t0, t1)
    controller = diffrax.PIDController(rtol=rtol, atol=atol, jump_ts=jump_ts)
    saveat = diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=ts, fn=observe), diffrax.SubSaveAt(t1=True)])
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(rhs), solver, t0=t0, t1=t1, dt0=None, y0=y0, saveat=saveat,
        stepsize_controller=controller, max_steps=max_steps,
        adjoint=diffrax.RecursiveCheckpointAdjoint())
    (pops, fluxes, outputs), final = sol.ys
    return LindbladSolution(ts, pops, fluxes, outputs, _to_complex(final[0][0]), final[1][0], sol.stats["num_steps"])


def solve_full(hamiltonian: OperatorStack, channels: ChannelStack, rho0, numbers, t0, t1, ts, *,
               jump_ts=(), rtol: float = 1e-8, atol: float = 1e-10, max_steps: int = 100_000,
               solver: diffrax.AbstractSolver | None = None) -> LindbladSolution:
    """Integrate the Lindblad equation with every dissipator as an operator.

    **Arguments:**

    - `hamiltonian`, `channels`: H(t) and the K channels' L_k(t) as stacks.
    - `rho0`: (D, D) initial density matrix.
    - `numbers`: (D, n_sub) occupation of each subsystem in each basis state (populations are
      sum_a rho_aa numbers[a, j]).
    - `t0`, `t1`, `ts`: time window and save times.
    - `jump_ts`: times where a control jumps (step boundaries land there).
    - `rtol`, `atol`, `max_steps`, `solver`: adaptive stepping (default Tsit5).

    **Returns:** a `LindbladSolution`.
    """
    rhs, flux = _make_rhs(hamiltonian, channels, None)
    return _solve(rhs, flux, rho0, numbers, channels.count, t0, t1, ts, jump_ts, rtol, atol, max_steps,
                  solver or diffrax.Tsit5())


def dephasing_rates(numbers, gamma_phi):
    """Gamma_ab = sum_j gamma_phi,j (n_j(a) - n_j(b))^2 for the occupation basis."""
    numbers = jnp.asarray(numbers, dtype=float)
    diff = numbers[:, None, :] - numbers[None, :, :]
    return jnp.einsum("abj,j->ab", diff**2, jnp.asarray(gamma_phi, dtype=float))


def solve_sector(hamiltonian: OperatorStack, channels: ChannelStack, rho0, numbers, gamma_phi, t0, t1, ts, *,
                 jump_ts=(), rtol: float = 1e-8, atol: float = 1e-10, max_steps: int = 100_000,
                 solver: diffrax.AbstractSolver | None = None) -> LindbladSolution:
    """Integrate the Lindblad equation on an excitation-number sector, with pure dephasing
    applied elementwise (Gamma_ab = sum_j gamma_phi,j (n_j(a) - n_j(b))^2).

    Arguments as `solve_full`, plus `gamma_phi`: (n_sub,) pure-dephasing rates. `channels` must
    not contain dephasing operators.
    """
    gamma = dephasing_rates(numbers, gamma_phi)
    rhs, flux = _make_rhs(hamiltonian, channels, gamma)
    return _solve(rhs, flux, rho0, numbers, channels.count, t0, t1, ts, jump_ts, rtol, atol, max_steps,
                  solver or diffrax.Tsit5())
