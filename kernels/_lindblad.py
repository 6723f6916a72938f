"""Lindblad master-equation kernel, on the full space or on an excitation-number sector.

`solve_markov` integrates

    d rho/dt = -i (H_eff rho - rho H_eff^dag) + sum_k L_k rho L_k^dag - Gamma o rho,
    H_eff = H - (i/2) sum_k L_k^dag L_k,

together with the cumulative output of every channel, N_k(t) = int_{t0}^t Tr(L_k rho L_k^dag),
with an adaptive 8th-order Runge-Kutta method that puts a step boundary on every control jump,
or with fixed 8th-order steps.

- On the full space every dissipator, pure dephasing included, is a Lindblad operator and
  Gamma = 0 (the reference).
- On the at-most-k-excitation basis, pure dephasing D[sqrt(2 gamma_phi) n_j] acts elementwise,
  Gamma_ab = sum_j gamma_phi,j (n_j(a) - n_j(b))^2, because the number operators are diagonal
  in the occupation basis; no dephasing operator is multiplied.
- When every jump lands in the ground state |G> (basis state 0) and H leaves |G> alone
  (`to_ground`: the single-excitation sector), L_k = |G><l_k| and H_eff = 0 (+) H_1, so with
  rho = [[g, c], [c^dag, X]] the equation splits into blocks:

      dX/dt = -i (H_1 X - X H_1^dag) - Gamma_11 o X,   dc/dt = i c H_1^dag - Gamma_G1 o c,
      dg/dt = sum_k F_k,   F_k = l_k X l_k^dag,

  and the kernel works on the blocks: H_1 and the l_k are kept on the excited states only (at
  four modules, D = 9, a warm solve 1.5x faster than on the whole matrix).

The model arrives as numeric tables (`chiraljax.algebra._lowering`): constant matrices, the parameter
atoms that weight them and the time factors (pulses) of each slot, so that the compiled program
depends on sizes and pulse families only; the numbers may be traced (jit, vmap and grad go
through). Adaptive solves are differentiated by the discrete adjoint of their accepted steps
(`kernels._runge_kutta`); fixed steps by reverse mode through a scan.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Complex, Float, Int

from chiraljax._errors import ValidationError
from chiraljax._precision import full_precision_products

from ._adjoint import differentiated
from ._runge_kutta import AdaptiveConfig, SplitField, adaptive, fixed_grid_config, fixed_rk


class Generator(eqx.Module):
    """H(t) = sum_n c_n(t) H_n and L_k(t) = sum_w c_kw(t) L_kw in stacked form, and the
    elementwise dephasing rates: a pytree, so the steppers take it as an explicit argument.

    **Fields:**

    - `h_mats`: the Hamiltonian matrices H_n, (nH, D, D), or from D = `_BLOCKS_FROM` on their
      real block form (2 nH, 2 D^2) (`_blocks`), of which real time factors need only the first
      half (nH, 2 D^2) (`_from_blocks`); when `to_ground` they are the excited blocks
      (D - 1 square) of the effective Hamiltonian's, H_eff = H - (i/2) sum_k L_k^dag L_k, whose
      L^dag L part is a sum over pairs of L slots (precomputed once per solve instead of once
      per evaluation).
    - `l_mats`: (K, W, D, D) jump-operator matrices, W per channel (zero-padded); when
      `to_ground` (K, W, D - 1), the vectors l_kw on the excited states.
    - `slot_time`: (nH + K W, wt) indices into (f, f^*, 1) of each coefficient's time factors,
      the Hamiltonian's first.
    - `time_pulses`: the pulses behind the time factors.
    - `time_factors`: how the factors f(t) follow from them and from the norm integrals the
      state carries (hashable; `time_factors(time_pulses, t, integrals)`, and
      `time_factors.integrands(time_pulses, t)` the integrals' derivatives).
    - `gamma`: (D, D) elementwise dephasing rates Gamma_ab, or None.
    - `to_ground`: every L_kw has nonzeros only in row 0 and H leaves the ground state alone
      (the single-excitation sector, where a jump lands in the ground state): L_k = |G><l_k|,
      and the kernel works with the vectors l_k on the blocks of rho (`_ground_blocks`).
    """

    h_mats: Complex[Array, "nH D D"] | Float[Array, "2nH 2DD"]
    l_mats: Complex[Array, "K W *D"]
    slot_time: Int[ArrayLike, "S wt"]
    time_pulses: tuple
    gamma: Float[Array, "D D"] | None
    to_ground: bool = eqx.field(static=True)
    time_factors: Any = eqx.field(static=True)  # a hashable TimeFactors of chiraljax's algebra

    def coefficients(self, t, integrals):
        """The nH + K W coefficients at time t (given the norm integrals), Hamiltonian terms
        first: products of the time factors f, f^* and 1, real when every pulse is (known
        when the kernel is traced), complex otherwise."""
        f = self.time_factors(self.time_pulses, t, integrals, None)
        if jnp.iscomplexobj(f):
            f = f.astype(self.l_mats.dtype)
            f_ext = jnp.concatenate([f, jnp.conj(f), jnp.ones((1,), f.dtype)])
        else:
            f = f.astype(jnp.finfo(self.l_mats.dtype).dtype)
            f_ext = jnp.concatenate([f, f, jnp.ones((1,), f.dtype)])
        return jnp.prod(f_ext[self.slot_time], axis=1)


class Stepping(NamedTuple):
    """How to step in time.

    - adaptive (`steps=None`): 8th-order Dormand-Prince with error control at `rtol`, `atol`,
      at most `max_steps` steps, a step boundary on every control jump; reverse-mode
      derivatives by the discrete adjoint of up to `checkpoints` accepted steps
      (`adjoint="reverse"`), forward mode through the loop (`adjoint="forward"`), or under
      `adjoint="auto"` forward mode for one real number and the discrete adjoint for more
      (`kernels._adjoint`); step sizes are held fixed under every derivative;
    - fixed (`steps=n`): n equal steps of the 8th-order Dormand-Prince method, for smooth
      controls only. A fixed step count makes vmapped batches run in lockstep and keeps
      reverse-mode differentiation cheap, which is what sweeps and pulse optimisation need.
      `aligned=True` says the save times are t0 + m (t1 - t0) / (n_save - 1); when every save
      interval then holds a whole number of steps, the states are read at step ends (no
      error estimate, no interpolation).

    `unrolled` writes the Runge-Kutta stages out (the faster form for vmapped batches) instead
    of looping over them (the faster form for one solve). `save_states` records rho(t) at the
    save times as well.
    """

    rtol: float = 1e-8
    atol: float = 1e-10
    max_steps: int = 16_384
    steps: int | None = None
    aligned: bool = False
    checkpoints: int = 1024
    adjoint: str = "auto"
    unrolled: bool = False
    save_states: bool = False


class LindbladSolution(NamedTuple):
    """Populations, fluxes and cumulative outputs at the save times, the final state, the
    number of steps, the virtual cavities' mode norms int_{t0}^{t1} |u_m|^2 dt, the
    expectation values Tr(E_e rho(t)) of the requested operators (T, E) and the states
    rho(t) (T, D, D) when they were asked for (else None)."""

    ts: Float[Array, " T"]
    populations: Float[Array, "T n"]
    fluxes: Float[Array, "T K"]
    outputs: Float[Array, "T K"]
    final_state: Complex[Array, "D D"]
    final_outputs: Float[Array, " K"]
    steps: Int[Array, ""]
    mode_norms: Float[Array, " m"]
    expect: Complex[Array, "T E"]
    states: Complex[Array, "T D D"] | None = None


def _to_real(rho):
    """A complex matrix as a real (2, D, D) array: the steppers integrate real states."""
    return jnp.stack([rho.real, rho.imag])


def _to_complex(y):
    return y[0] + 1j * y[1]


# Largest state dimension contracted by broadcasting (measured: D = 5 and 9 faster broadcast;
# D = 13 sector batches 1.4x and the D = 16 full space 3x faster as einsum).
_SMALL = 12


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


def _blocks(mats):
    """The real block form of complex matrices M_n (n, D, D): (2 n, 2 D^2), rows [Re M_n, Im M_n]
    then [-Im M_n, Re M_n], so that [Re c, Im c] @ blocks = [Re, Im] of sum_n c_n M_n."""
    flat = mats.reshape(mats.shape[0], -1)
    return jnp.concatenate(
        [jnp.concatenate([flat.real, flat.imag], axis=1), jnp.concatenate([-flat.imag, flat.real], axis=1)]
    )


def _from_blocks(c, blocks, dim: int):
    """sum_n c_n M_n (D, D) for the M_n in real block form (`_blocks`): one real matrix product.
    For real c_n the blocks' first half [Re M_n, Im M_n] is all it needs (half the work, in the
    solve and in its reverse pass), and all a generator of real time factors holds."""
    if jnp.iscomplexobj(c):
        flat = jnp.concatenate([c.real, c.imag]) @ blocks
    else:
        flat = c @ blocks[: c.shape[0]]
    half = dim * dim
    return jax.lax.complex(flat[:half], flat[half:]).reshape(dim, dim)


# Matrix size from which H(t) = sum_n c_n(t) H_n is assembled from the real block form of the
# H_n (measured on the anchor problem, warm adaptive solves, where H is the excited block of
# H_eff: size 4 (two modules) 4-5 % faster, 6 and 8 8-15 % faster than the complex product).
_BLOCKS_FROM = 4


def _operators(gen: Generator, t, integrals):
    """H(t) and the L_k(t) (the row vectors l_k when `to_ground`)."""
    dim = gen.l_mats.shape[-1]
    n_channels, width = gen.l_mats.shape[:2]
    c = gen.coefficients(t, integrals)
    n_h = c.shape[0] - n_channels * width
    if gen.h_mats.ndim == 2:
        h = _from_blocks(c[:n_h], gen.h_mats, dim)
    else:
        h = _contract("n,nij->ij", c[:n_h], gen.h_mats)
    c_l = c[n_h:].reshape(n_channels, width)
    ls = _contract("kn,knj->kj", c_l, gen.l_mats) if gen.to_ground else _contract("kn,knij->kij", c_l, gen.l_mats)
    return h, ls


def _ground_fluxes(ls, rho):
    """F_k = Tr L_k rho L_k^dag = l_k X l_k^dag for L_k = |G><l_k| (`ls` the row vectors l_k on
    the excited states, (K, D - 1)) and X = rho[1:, 1:] the excited block."""
    return jnp.real(_contract("kj,kj->k", _contract("ki,ij->kj", ls, rho[1:, 1:]), ls.conj()))


def _dissipation(ls, rho):
    """(sum_k L_k rho L_k^dag, the fluxes Tr L_k rho L_k^dag, sum_k L_k^dag L_k) for the
    operators L_k (K, D, D)."""
    lrho = _contract("kij,jl->kil", ls, rho)
    jumped = _contract("kil,kml->im", lrho, ls.conj())
    flux = jnp.real(_contract("kil,kil->k", lrho, ls.conj()))
    return jumped, flux, _contract("kji,kjl->il", ls.conj(), ls)


def _lindblad_rhs(t, rho, integrals, gen: Generator):
    """(d rho/dt, the fluxes) for a complex rho."""
    return _lindblad_given(*_operators(gen, t, integrals), gen.gamma, rho)


def _lindblad_given(h, ls, gamma, rho):
    """(d rho/dt, the fluxes) for a complex rho, given H(t) (H_eff when every jump lands in the
    ground state), the L_k(t) (their row vectors l_k then) and the elementwise dephasing rates
    Gamma (or None)."""
    if ls.ndim == 2:
        return _ground_blocks(h, ls, gamma, rho)
    jumped, flux, ldl = _dissipation(ls, rho)
    a = _contract("ij,jl->il", h - 0.5j * ldl, rho)
    drho = -1j * (a - a.conj().T) + jumped
    if gamma is not None:
        drho = drho - gamma * rho
    return drho, flux


def _ground_blocks(h_eff, ls, gamma, rho):
    """(d rho/dt, the fluxes) block by block when every jump lands in the ground state and H
    leaves it alone (see the module docstring): rho = [[g, c], [c^dag, X]], and `h_eff` the
    excited block H_1 of H_eff = 0 (+) H_1, `ls` the l_k on the excited states."""
    x, c, h1 = rho[1:, 1:], rho[0, 1:], h_eff
    flux = _ground_fluxes(ls, rho)
    # one product for both blocks: B = rho[:, 1:] H_1^dag has the rows c H_1^dag and
    # X H_1^dag = (H_1 X)^dag (X is Hermitian), so dX/dt = i (B_X - B_X^dag) and
    # dc/dt = i B_c (at two modules 20 % faster than two products)
    b = _contract("ij,lj->il", rho[:, 1:], h1.conj())
    dx = 1j * (b[1:] - b[1:].conj().T)
    dc = 1j * b[0]
    if gamma is not None:
        dx = dx - gamma[1:, 1:] * x
        dc = dc - gamma[0, 1:] * c
    dg = jnp.sum(flux).astype(rho.dtype)
    top = jnp.concatenate([dg[None], dc])
    return jnp.concatenate([top[None], jnp.concatenate([dc.conj()[:, None], dx], axis=1)]), flux


def _rhs(t, y, args):
    """d/dt of the real state (rho as (2, D, D), the outputs N, the norm integrals I) for
    args = (generator, numbers): (d rho/dt, the fluxes, |u_m(t)|^2)."""
    gen = args[0]
    drho, flux = _lindblad_rhs(t, _to_complex(y[0]), y[2], gen)
    return _to_real(drho), flux, gen.time_factors.integrands(gen.time_pulses, t, y[2].dtype)


def _operators_at(t, args):
    """H(t), the L_k(t) and the dephasing rates Gamma of a generator without virtual-cavity
    norm integrals: every number the right-hand side reads, at the time t."""
    gen = args[0]
    return (*_operators(gen, t, jnp.zeros((0,))), gen.gamma)


def _rhs_given_operators(operators, y):
    """`_rhs` with H(t), the L_k(t) and Gamma given (no norm integrals to carry)."""
    drho, flux = _lindblad_given(*operators, _to_complex(y[0]))
    return _to_real(drho), flux, jnp.zeros((0,), y[2].dtype)


def _rhs_pullback(operators, y, cotangent):
    """The vector-Jacobian product of `_rhs_given_operators` at (operators, y): (operators bar,
    y bar) as `jax.vjp` gives them, written out for the ground-state blocks (`_ground_blocks`),
    where JAX's own transposes of the broadcast products cost 2.2x as much (4.1 against 1.8 us
    a stage at four modules, D = 9, K = 24); JAX's otherwise."""
    h1, ls, gamma = operators
    if ls.ndim != 2:
        return jax.vjp(_rhs_given_operators, operators, y)[1](cotangent)
    return _ground_blocks_pullback(h1, ls, gamma, y, cotangent)


def _ground_blocks_pullback(h1, ls, gamma, y, cotangent):
    """The pullback of `_ground_blocks` (through `_rhs_given_operators`) at a Hermitian state.

    With G = dL/d Re + i dL/d Im the gradient of a real loss L with respect to a complex array
    (JAX's cotangent is conj(G)), and drho bar = (P, Q) the real and imaginary parts' cotangents,
    G_drho = P + i Q. The output is drho = [[dg, dc], [dc^*, dX]] and the fluxes F, so

        G_dX = G_drho[1:, 1:],   G_dc = G_drho[0, 1:] + conj(G_drho[1:, 0]),
        F~_k = F bar_k + P[0, 0]   (dg = sum_k F_k),
        G_B = [-i G_dc ; -i (G_dX + G_dX^dag)]   for B = rho[:, 1:] H_1^dag,
        G_rho[:, 1:] = G_B H_1 + (the fluxes' L^dag diag(F~) L on the X block)
                       - Gamma o (G_dc, G_dX),
        G_H1 = G_B^dag rho[:, 1:],   G_l_k = F~_k l_k (X + X^dag) = 2 F~_k l_k X,
        Gamma bar = -Re(conj(G_d) o rho) on the blocks G_d = [[0, G_dc], [0, G_dX]].

    The l_k's gradient uses X = X^dag: every state the solver visits is Hermitian to the last
    bit (rho0 is an outer product psi psi^dag, and every derivative and stage combination keeps
    (i, j) and (j, i) exact conjugates), and X + X^dag in the product costs 1.6x the whole
    pullback (a transposed read). rho[:, 0] is never read: its gradient is zero.

    The fluxes' two products are 60 % of the pullback and are skipped when every F~_k is zero:
    a loss that reads no output (a transfer's final population), and every stage whose
    weights b_i vanish (5 of 14) when no save time falls in the step. A value-and-gradient in
    three numbers at four modules: 3.4 -> 2.9 ms for a population, 3.5 -> 3.2 ms for the
    outputs (the branch's own cost included)."""
    dim = y[0].shape[-1]
    rho = _to_complex(y[0])
    drho_bar, flux_bar, _ = cotangent
    g = _to_complex(drho_bar)
    x, rows = rho[1:, 1:], rho[:, 1:]
    g_dx, g_dc = g[1:, 1:], g[0, 1:] + jnp.conj(g[1:, 0])
    weights = flux_bar + drho_bar[0, 0, 0]
    g_b = -1j * jnp.concatenate([g_dc[None], g_dx + g_dx.conj().T])
    g_rows = _contract("il,lj->ij", g_b, h1)
    g_h1 = _contract("li,lj->ij", g_b.conj(), rows)

    def fluxes_pulled():
        weighted = weights[:, None] * ls
        return _contract("ki,kj->ij", ls.conj(), weighted), 2 * weights[:, None] * _contract("ki,ij->kj", ls, x)

    def no_fluxes():
        return jnp.zeros_like(x), jnp.zeros_like(ls)

    g_x, g_ls = jax.lax.cond(jnp.any(weights != 0), fluxes_pulled, no_fluxes)
    g_rows = g_rows.at[1:].add(g_x)
    gamma_bar = None
    if gamma is not None:
        g_d = jnp.concatenate([g_dc[None], g_dx])
        g_rows = g_rows - gamma[:, 1:] * g_d
        gamma_bar = jnp.concatenate([jnp.zeros((dim, 1), y[0].dtype), -jnp.real(g_d.conj() * rows)], axis=1)
    g_rho = jnp.concatenate([jnp.zeros((dim, 1), rho.dtype), g_rows], axis=1)
    y_bar = (_to_real(g_rho), jnp.zeros_like(y[1]), jnp.zeros_like(y[2]))
    return (jnp.conj(g_h1), jnp.conj(g_ls), gamma_bar), y_bar


# The same right-hand side with the operators of all stages of a step built in one pass, for
# generators whose time factors need no norm integrals (a virtual cavity's coupling needs the
# integral the state carries, so those take `_rhs`).
_RHS_SPLIT = SplitField(_operators_at, _rhs_given_operators, _rhs_pullback)


def _observe(t, y, args):
    """(populations, fluxes, cumulative outputs, expectation values Tr(E_e rho)) of the real
    state, for args = (generator, numbers, E)."""
    gen, numbers, e_ops = args
    rho = _to_complex(y[0])
    pops = jnp.real(jnp.einsum("ii,ij->j", rho, numbers))
    _, ls = _operators(gen, t, y[2])
    flux = _ground_fluxes(ls, rho) if gen.to_ground else _dissipation(ls, rho)[1]
    return pops, flux, y[1], jnp.einsum("eij,ji->e", e_ops, rho)


def _observe_states(t, y, args):
    """`_observe` and the state rho itself."""
    return (*_observe(t, y, args), _to_complex(y[0]))


def _integrate(y0, t0, t1, ts, jump_ts, stepping: Stepping, args):
    """(saved observations, final state, steps) of 8th-order Dormand-Prince steps
    (`kernels._runge_kutta`): fixed steps in a scan when the save times fall on step ends, the
    loop of the adaptive method otherwise, with error control or, for fixed steps with save
    times anywhere, on the fixed grid (`fixed_grid_config`)."""
    n_save = ts.shape[0]
    n_jumps = jump_ts.shape[0]
    observe = _observe_states if stepping.save_states else _observe
    rhs = _rhs if y0[2].shape[0] else _RHS_SPLIT
    if stepping.steps is not None:
        if n_jumps:
            raise ValidationError(
                f"fixed stepping (steps={stepping.steps}) needs smooth controls, but a control jumps "
                f"({n_jumps} jump time(s)); use adaptive stepping (steps=None)"
            )
        if stepping.aligned and n_save >= 2 and stepping.steps % (n_save - 1) == 0:
            saved, final = fixed_rk(rhs, observe, y0, t0, t1, stepping.steps, n_save, args, stepping.unrolled)
            return saved, final, jnp.asarray(stepping.steps, jnp.int32)
        config = fixed_grid_config(stepping.steps, n_save, stepping.adjoint, stepping.unrolled)
    else:
        config = AdaptiveConfig(
            stepping.rtol, stepping.atol, stepping.max_steps, stepping.checkpoints, stepping.adjoint, stepping.unrolled
        )
    if y0[0].size > _STATES_IN_LOOP:
        return adaptive(rhs, observe, y0, t0, t1, ts, jump_ts, args, config)
    # Small states: the loop keeps the interpolated states at the save times, and the
    # observations (which need the operators at each time) are made afterwards in one
    # vectorised pass instead of a window at a time inside the loop.
    states, final, steps = adaptive(rhs, _state, y0, t0, t1, ts, jump_ts, args, config)
    return jax.vmap(observe, in_axes=(0, 0, None))(ts, states, args), final, steps


# Largest real state (2 D^2 numbers) whose interpolated values are kept at every save time and
# observed after the loop (D <= 32: at most 2 kB a save time).
_STATES_IN_LOOP = 2 * 32 * 32


def _state(t, y, args):
    """The state itself, as an observation."""
    return y


def dephasing_rates(numbers, gamma_phi):
    """Gamma_ab = sum_j gamma_phi,j (n_j(a) - n_j(b))^2 for the occupation basis."""
    numbers = jnp.asarray(numbers, dtype=float)
    diff = numbers[:, None, :] - numbers[None, :, :]
    return jnp.einsum("abj,j->ab", diff**2, jnp.asarray(gamma_phi, dtype=float))


def assemble(arrays, layout, atoms, time_pulses, gamma=None) -> Generator:
    """The generator of a lowered model (`chiraljax.algebra._lowering`) for parameter atoms a and time
    factors f: H_m = sum_{t in m} (prod_{i in t} a_i) A_t for every slot m, and the coefficient
    of slot m at time t the product of its time factors. When every jump lands in the ground
    state, the pairs L_kw^dag L_kw' = conj(l_kw) l_kw'^T join H_eff, times -i/2, in the
    Hamiltonian's slot of their time monomial (or a pair slot of their own when H has none), so
    that H_eff(t) is one sum over as few slots as there are distinct time monomials."""
    atoms = jnp.asarray(atoms, dtype=complex)
    a_ext = jnp.concatenate([atoms, jnp.conj(atoms), jnp.ones((1,), atoms.dtype)])
    weight = jnp.prod(a_ext[arrays.term_atoms], axis=1)
    n_l = layout.n_channels * layout.width
    mats = (
        jnp.zeros((layout.n_h + n_l, layout.dim, layout.dim), dtype=atoms.dtype)
        .at[arrays.entry_slot, arrays.entry_row, arrays.entry_col]
        .add(weight[arrays.entry_term] * arrays.entry_value)
    )
    l_mats = mats[layout.n_h :].reshape(layout.n_channels, layout.width, layout.dim, layout.dim)
    h_mats, slot_time = mats[: layout.n_h], arrays.slot_time
    if layout.to_ground:
        # only the excited block of H_eff and the excited components of the l_kw are used
        l_mats = l_mats[:, :, 0, 1:]
        h_mats = h_mats[:, 1:, 1:]
        q = jnp.conj(l_mats)[:, :, None, :, None] * l_mats[:, None, :, None, :]
        n_excited = layout.dim - 1
        pair_slots = jnp.zeros((layout.n_pairs, n_excited, n_excited), atoms.dtype)
        h_mats = jnp.concatenate([h_mats, pair_slots]).at[arrays.pair_index].add(-0.5j * q)
        head, tail = layout.n_h, layout.n_h + n_l
        slot_time = jnp.concatenate([slot_time[:head], slot_time[tail:], slot_time[head:tail]])
    if h_mats.shape[-1] >= _BLOCKS_FROM:
        h_mats = _blocks(h_mats)
        if layout.time_factors.real(time_pulses):
            h_mats = h_mats[: h_mats.shape[0] // 2]
    return Generator(h_mats, l_mats, slot_time, tuple(time_pulses), gamma, layout.to_ground, layout.time_factors)


def _stack_jumps(jump_ts):
    return jnp.stack([jnp.asarray(j, dtype=float) for j in jump_ts]) if jump_ts else jnp.zeros((0,))


def _solve_markov(
    arrays, parameters, time_pulses, amplitudes, dephasing, t0, t1, ts, jump_ts, e_ops, *, layout, stepping: Stepping
):
    ts = jnp.asarray(ts, dtype=float)
    t0, t1 = jnp.asarray(t0, dtype=ts.dtype), jnp.asarray(t1, dtype=ts.dtype)
    jump_ts = _stack_jumps(jump_ts)
    n_sub = arrays.numbers.shape[1]
    gamma_phi = jnp.concatenate(
        [jnp.stack([jnp.asarray(d, dtype=float) for d in dephasing]), jnp.zeros((n_sub - len(dephasing),))]
    )
    gamma = dephasing_rates(arrays.numbers, gamma_phi) if layout.sector else None
    generator = assemble(arrays, layout, layout.atoms(parameters), time_pulses, gamma)
    psi0 = (
        jnp.zeros((layout.dim,), complex)
        .at[arrays.initial_index]
        .add(jnp.stack([jnp.asarray(a, dtype=complex) for a in amplitudes]))
    )
    rho0 = jnp.outer(psi0, jnp.conj(psi0))
    # The steppers carry rho as a real (2, D, D) array: XLA runs the stage combinations much
    # faster on real arrays than on complex ones.
    # (rho, the channels' outputs N_k, the virtual cavities' norm integrals)
    y0 = (
        _to_real(rho0),
        jnp.zeros((layout.n_channels,), dtype=ts.dtype),
        jnp.zeros((layout.time_factors.n_integrals,), dtype=ts.dtype),
    )
    e_ops = jnp.asarray(e_ops, dtype=complex).reshape((-1, layout.dim, layout.dim))
    saved, final, steps = _integrate(y0, t0, t1, ts, jump_ts, stepping, (generator, arrays.numbers, e_ops))
    rho1 = _to_complex(final[0])
    sol = LindbladSolution(ts, *saved[:3], rho1, final[1], steps, final[2], *saved[3:])
    initial = jnp.real(jnp.einsum("ii,ij->", rho0, arrays.numbers))
    final_pop = jnp.real(jnp.einsum("ii,ij->", rho1, arrays.numbers))
    error = jnp.abs(final_pop + jnp.sum(final[1] * arrays.carries) - initial)
    return sol, error, jnp.zeros_like(ts)


def _solve_markov_chosen(*args, layout, stepping: Stepping):
    """`_solve_markov`, differentiated as `stepping.adjoint` says; for adaptive steps 'auto'
    picks forward mode for one real number and the discrete adjoint otherwise
    (`kernels._adjoint`); for fixed steps it is 'reverse' (on step ends a scan that JAX
    differentiates both ways, so `jax.hessian` goes through)."""
    if stepping.adjoint == "auto" and stepping.steps is not None:
        return _solve_markov(*args, layout=layout, stepping=stepping._replace(adjoint="reverse"))
    if stepping.adjoint != "auto":
        return _solve_markov(*args, layout=layout, stepping=stepping)
    reverse = functools.partial(_solve_markov, layout=layout, stepping=stepping._replace(adjoint="reverse"))
    forward = functools.partial(_solve_markov, layout=layout, stepping=stepping._replace(adjoint="forward"))
    return differentiated(reverse, forward, args)


_solve_markov_traced = full_precision_products(_solve_markov_chosen)
_solve_markov_jit = jax.jit(_solve_markov_traced, static_argnames=("layout", "stepping"))


def solve_markov(
    arrays,
    parameters,
    time_pulses,
    amplitudes,
    dephasing,
    t0,
    t1,
    ts,
    jump_ts=(),
    e_ops=None,
    *,
    layout,
    stepping: Stepping = Stepping(),
    inline: bool = False,
) -> tuple[LindbladSolution, Any, Any]:
    """Integrate the Lindblad equation of a lowered model.

    d rho/dt = -i (H_eff rho - rho H_eff^dag) + sum_k L_k rho L_k^dag - Gamma o rho, with
    Gamma_ab = sum_j gamma_phi,j (n_j(a) - n_j(b))^2 on a sector (`layout.sector`; the model
    then has no dephasing operators) and Gamma = 0 on the full space (dephasing is an operator).

    **Arguments:**

    - `arrays`, `layout`: the model's tables and sizes (`chiraljax.algebra._lowering.lower`).
    - `parameters`: the numbers the parameter atoms are made of (`layout.atoms` makes them).
    - `time_pulses`: the pulses behind the time factors (`layout.time_factors` says how).
    - `amplitudes`: the initial state's components (at `arrays.initial_index`).
    - `dephasing`: the emitters' pure-dephasing rates gamma_phi,j.
    - `t0`, `t1`, `ts`: time window and save times; `jump_ts`: times where a control jumps.
    - `e_ops`: (E, D, D) operators in the model's basis whose expectation values Tr(E rho(t))
      are recorded at the save times (None: none).
    - `stepping`: adaptive or fixed stepping (see `Stepping`; `save_states` records rho(t)).
    - `inline`: trace the kernel into the caller's own trace instead of calling it as a jitted
      function: for callers that are traced whole anyway (a kept program), where a derivative
      of the jitted call would first trace the kernel's undifferentiated program as well.

    Every number goes in as it is (scalars in tuples): nothing is computed outside the compiled
    program, which depends on the sizes, the pulse families and `layout`, `stepping` only.

    **Returns:** (a `LindbladSolution`, the conservation error |final + outputs - initial|,
    zeros at the save times: nothing is in flight in the Markov limit).
    """
    e_ops = jnp.zeros((0, layout.dim, layout.dim), complex) if e_ops is None else e_ops
    return (_solve_markov_traced if inline else _solve_markov_jit)(
        arrays,
        parameters,
        tuple(time_pulses),
        amplitudes,
        dephasing,
        t0,
        t1,
        ts,
        tuple(jump_ts),
        e_ops,
        layout=layout,
        stepping=stepping,
    )
