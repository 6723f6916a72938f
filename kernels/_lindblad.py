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
import jax.numpy as jnp
import numpy as np

from chiraljax._errors import ValidationError


class Generator(NamedTuple):
    """H(t) = sum_n c_n(t) H_n and L_k(t) = sum_{n in k} c_n(t) L_n in stacked form.

    **Fields:**

    - `h_mats`: (nH, D, D) Hamiltonian matrices.
    - `l_mats`: (nL, D, D) jump-operator matrices; `l_channel`: (nL,) the channel of each.
    - `n_channels`: K.
    - `coefficients(t)`: the nH + nL coefficients, Hamiltonian terms first.
    - `to_ground`: every L_n has nonzeros only in row 0 (the single-excitation sector, where a
      jump lands in the ground state): L_k = |G><l_k|, and the kernel works with the vectors l_k.
    """

    h_mats: Any
    l_mats: Any
    l_channel: np.ndarray
    n_channels: int
    coefficients: Callable[[Any], Any]
    to_ground: bool = False


class Stepping(NamedTuple):
    """How to step in time.

    - adaptive (`steps=None`): Tsit5 with a PID controller at `rtol`, `atol`, at most
      `max_steps` steps, a step boundary on every control jump;
    - fixed (`steps=n`): n equal steps of the 8th-order Dormand-Prince method, for smooth
      controls only. A fixed step count makes vmapped batches run in lockstep and keeps
      reverse-mode differentiation cheap, which is what sweeps and pulse optimisation need.
    """

    rtol: float = 1e-8
    atol: float = 1e-10
    max_steps: int = 16_384
    steps: int | None = None


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


_SMALL = 24


def _contract(spec: str, *operands):
    """einsum; for the small matrices of excitation sectors it is written as broadcast products
    and sums, which XLA fuses into one vectorised loop that also batches well under vmap
    (tiny batched matrix products are slow on CPUs)."""
    if operands[0].shape[-1] > _SMALL:
        return jnp.einsum(spec, *operands)
    inputs, output = spec.split("->")
    inputs = inputs.split(",")
    letters = sorted(set("".join(inputs)), key=lambda c: (c not in output, output.find(c), c))
    prod = None
    for term, x in zip(inputs, operands):
        shape = [x.shape[term.index(c)] if c in term else 1 for c in letters]
        perm = [term.index(c) for c in letters if c in term]
        x = jnp.transpose(x, perm).reshape(shape)
        prod = x if prod is None else prod * x
    summed = tuple(range(len(output), len(letters)))
    return prod.sum(axis=summed) if summed else prod


def _make_rhs(gen: Generator, gamma):
    n_h, n_l = gen.h_mats.shape[0], gen.l_mats.shape[0]
    # Channel k's terms, padded to a common count with a zero term: (K, T) indices into the
    # L terms, so that L_k(t) = sum_j c_{idx[k, j]}(t) L_{idx[k, j]} is one product and one sum.
    members = [np.flatnonzero(gen.l_channel == k) for k in range(gen.n_channels)]
    width = max([len(m) for m in members] + [1])
    idx = np.full((gen.n_channels, width), n_l, dtype=int)
    for k, m in enumerate(members):
        idx[k, :len(m)] = m
    dim = gen.l_mats.shape[-1]
    mats = gen.l_mats[:, 0, :] if gen.to_ground else gen.l_mats
    l_pad = jnp.concatenate([mats, jnp.zeros((1,) + mats.shape[1:], mats.dtype)])[idx]

    def operators(t):
        c = gen.coefficients(t)
        h = _contract("n,nij->ij", c[:n_h], gen.h_mats)
        c_l = jnp.concatenate([c[n_h:], jnp.zeros((1,), c.dtype)])[idx]
        ls = _contract("kn,knj->kj", c_l, l_pad) if gen.to_ground else _contract("kn,knij->kij", c_l, l_pad)
        return h, ls

    def dissipation(ls, rho):
        """(sum_k L_k rho L_k^dag, the fluxes Tr L_k rho L_k^dag, sum_k L_k^dag L_k)."""
        if gen.to_ground:
            flux = jnp.real(_contract("kl,kl->k", _contract("kj,jl->kl", ls, rho), ls.conj()))
            jumped = jnp.zeros((dim, dim), rho.dtype).at[0, 0].set(jnp.sum(flux))
            return jumped, flux, _contract("ki,kl->il", ls.conj(), ls)
        lrho = _contract("kij,jl->kil", ls, rho)
        jumped = _contract("kil,kml->im", lrho, ls.conj())
        flux = jnp.real(_contract("kil,kil->k", lrho, ls.conj()))
        return jumped, flux, _contract("kji,kjl->il", ls.conj(), ls)

    def rhs(t, y, args):
        rho = _to_complex(y[0])
        h, ls = operators(t)
        jumped, flux, ldl = dissipation(ls, rho)
        a = _contract("ij,jl->il", h - 0.5j * ldl, rho)
        drho = -1j * (a - a.conj().T) + jumped
        if gamma is not None:
            drho = drho - gamma * rho
        return _to_real(drho), flux

    def flux(t, rho):
        _, ls = operators(t)
        return dissipation(ls, rho)[1]

    return rhs, flux


def _solve(rhs, flux_fn, rho0, numbers, n_channels: int, t0, t1, ts, jump_ts, stepping: Stepping,
           solver) -> LindbladSolution:
    y0 = (_to_real(jnp.asarray(rho0, dtype=complex)), jnp.zeros((n_channels,), dtype=float))
    numbers = jnp.asarray(numbers)

    def observe(t, y, args):
        rho = _to_complex(y[0])
        pops = jnp.real(jnp.einsum("ii,ij->j", rho, numbers))
        return pops, flux_fn(t, rho), y[1]

    saveat = diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=ts, fn=observe), diffrax.SubSaveAt(t1=True)])
    if stepping.steps is None:
        jumps = None if not len(jump_ts) else jnp.clip(jnp.stack([jnp.asarray(j, dtype=float) for j in jump_ts]), t0, t1)
        controller = diffrax.PIDController(rtol=stepping.rtol, atol=stepping.atol, jump_ts=jumps)
        dt0, max_steps, solver = None, stepping.max_steps, solver or diffrax.Tsit5()
    else:
        if len(jump_ts):
            raise ValidationError(
                f"fixed stepping (steps={stepping.steps}) needs smooth controls, but a control jumps "
                f"({len(jump_ts)} jump time(s)); use adaptive stepping (steps=None)")
        controller = diffrax.ConstantStepSize()
        dt0, max_steps, solver = (t1 - t0) / stepping.steps, stepping.steps, solver or diffrax.Dopri8()
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(rhs), solver, t0=t0, t1=t1, dt0=dt0, y0=y0, saveat=saveat,
        stepsize_controller=controller, max_steps=max_steps,
        adjoint=diffrax.RecursiveCheckpointAdjoint())
    (pops, fluxes, outputs), final = sol.ys
    return LindbladSolution(ts, pops, fluxes, outputs, _to_complex(final[0][0]), final[1][0], sol.stats["num_steps"])


def solve_full(generator: Generator, rho0, numbers, t0, t1, ts, *,
               jump_ts=(), stepping: Stepping = Stepping(),
               solver: diffrax.AbstractSolver | None = None) -> LindbladSolution:
    """Integrate the Lindblad equation with every dissipator as an operator.

    **Arguments:**

    - `generator`: H(t) and the K channels' L_k(t) as stacks.
    - `rho0`: (D, D) initial density matrix.
    - `numbers`: (D, n_sub) occupation of each subsystem in each basis state (populations are
      sum_a rho_aa numbers[a, j]).
    - `t0`, `t1`, `ts`: time window and save times.
    - `jump_ts`: times where a control jumps (step boundaries land there).
    - `stepping`: adaptive or fixed stepping (see `Stepping`); `solver` overrides its method.

    **Returns:** a `LindbladSolution`.
    """
    rhs, flux = _make_rhs(generator, None)
    return _solve(rhs, flux, rho0, numbers, generator.n_channels, t0, t1, ts, jump_ts, stepping, solver)


def dephasing_rates(numbers, gamma_phi):
    """Gamma_ab = sum_j gamma_phi,j (n_j(a) - n_j(b))^2 for the occupation basis."""
    numbers = jnp.asarray(numbers, dtype=float)
    diff = numbers[:, None, :] - numbers[None, :, :]
    return jnp.einsum("abj,j->ab", diff**2, jnp.asarray(gamma_phi, dtype=float))


def solve_sector(generator: Generator, rho0, numbers, gamma_phi, t0, t1, ts, *,
                 jump_ts=(), stepping: Stepping = Stepping(),
                 solver: diffrax.AbstractSolver | None = None) -> LindbladSolution:
    """Integrate the Lindblad equation on an excitation-number sector, with pure dephasing
    applied elementwise (Gamma_ab = sum_j gamma_phi,j (n_j(a) - n_j(b))^2).

    Arguments as `solve_full`, plus `gamma_phi`: (n_sub,) pure-dephasing rates. The generator must
    not contain dephasing operators.
    """
    gamma = dephasing_rates(numbers, gamma_phi)
    rhs, flux = _make_rhs(generator, gamma)
    return _solve(rhs, flux, rho0, numbers, generator.n_channels, t0, t1, ts, jump_ts, stepping, solver)
