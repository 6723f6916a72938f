"""Lindblad master-equation kernel, on the full space or on an excitation-number sector.

`solve_markov` integrates

    d rho/dt = -i (H_eff rho - rho H_eff^dag) + sum_k L_k rho L_k^dag - Gamma o rho,
    H_eff = H - (i/2) sum_k L_k^dag L_k,

together with the cumulative output of every channel, N_k(t) = int_{t0}^t Tr(L_k rho L_k^dag),
with an adaptive Runge-Kutta method (diffrax) that puts a step boundary on every control jump,
or with fixed 8th-order steps.

- On the full space every dissipator, pure dephasing included, is a Lindblad operator and
  Gamma = 0 (the reference).
- On the at-most-k-excitation basis, pure dephasing D[sqrt(2 gamma_phi) n_j] acts elementwise,
  Gamma_ab = sum_j gamma_phi,j (n_j(a) - n_j(b))^2, because the number operators are diagonal
  in the occupation basis; no dephasing operator is multiplied.

The model arrives as numeric tables (`chiraljax._lowering`): constant matrices, the parameter
atoms that weight them and the time factors (pulses) of each slot, so that the compiled program
depends on sizes and pulse families only; the numbers may be traced (jit, vmap and grad go
through). Reverse-mode memory is bounded by diffrax's recursive checkpointing.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from chiraljax._errors import ValidationError


class Generator(eqx.Module):
    """H(t) = sum_n c_n(t) H_n and L_k(t) = sum_w c_kw(t) L_kw in stacked form, and the
    elementwise dephasing rates: a pytree, so the steppers take it as an explicit argument.

    **Fields:**

    - `h_mats`: (nH, D, D) Hamiltonian matrices.
    - `l_mats`: (K, W, D, D) jump-operator matrices, W per channel (zero-padded); (K, W, D)
      when `to_ground`.
    - `slot_time`: (nH + K W, wt) indices into (f, f^*, 1) of each coefficient's time factors.
    - `time_factors`: the callables f_i(t).
    - `gamma`: (D, D) elementwise dephasing rates Gamma_ab, or None.
    - `to_ground`: every L_kw has nonzeros only in row 0 (the single-excitation sector, where a
      jump lands in the ground state): L_k = |G><l_k|, and the kernel works with the vectors l_k.
    """

    h_mats: Any
    l_mats: Any
    slot_time: Any
    time_factors: tuple
    gamma: Any
    to_ground: bool = eqx.field(static=True)

    def coefficients(self, t):
        """The nH + K W coefficients at time t, Hamiltonian terms first."""
        dtype = self.h_mats.dtype
        if self.time_factors:
            f = jnp.stack([jnp.asarray(tf(t), dtype=dtype) for tf in self.time_factors])
            f_ext = jnp.concatenate([f, jnp.conj(f), jnp.ones((1,), dtype)])
        else:
            f_ext = jnp.ones((1,), dtype)
        return jnp.prod(f_ext[self.slot_time], axis=1)


class Stepping(NamedTuple):
    """How to step in time.

    - adaptive (`steps=None`): Tsit5 with a PID controller at `rtol`, `atol`, at most
      `max_steps` steps, a step boundary on every control jump;
    - fixed (`steps=n`): n equal steps of the 8th-order Dormand-Prince method, for smooth
      controls only. A fixed step count makes vmapped batches run in lockstep and keeps
      reverse-mode differentiation cheap, which is what sweeps and pulse optimisation need.
      `aligned=True` says the save times are t0 + m (t1 - t0) / (n_save - 1); when every save
      interval then holds a whole number of steps, the states are read at step ends and the
      lean stepper `_fixed_rk` (no error estimate, no interpolation) integrates.
    """

    rtol: float = 1e-8
    atol: float = 1e-10
    max_steps: int = 16_384
    steps: int | None = None
    aligned: bool = False


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


def _operators(gen: Generator, t):
    """H(t) and the L_k(t) (the row vectors l_k when `to_ground`)."""
    n_h = gen.h_mats.shape[0]
    n_channels, width = gen.l_mats.shape[:2]
    c = gen.coefficients(t)
    h = _contract("n,nij->ij", c[:n_h], gen.h_mats)
    c_l = c[n_h:].reshape(n_channels, width)
    ls = (_contract("kn,knj->kj", c_l, gen.l_mats) if gen.to_ground
          else _contract("kn,knij->kij", c_l, gen.l_mats))
    return h, ls


def _dissipation(gen: Generator, ls, rho):
    """(sum_k L_k rho L_k^dag, the fluxes Tr L_k rho L_k^dag, sum_k L_k^dag L_k)."""
    if gen.to_ground:
        # L_k = |G><l_k|: with P_k = conj(l_k) l_k^T, F_k = Re Tr(P_k rho^T) and
        # L^dag L = sum_k P_k (K D^2 products instead of K D^3).
        p = _contract("ki,kl->kil", ls.conj(), ls)
        flux = jnp.real(_contract("kil,il->k", p, rho.T))
        ground = jnp.zeros(rho.shape, rho.dtype).at[0, 0].set(1.0)
        return ground * jnp.sum(flux), flux, p.sum(axis=0)
    lrho = _contract("kij,jl->kil", ls, rho)
    jumped = _contract("kil,kml->im", lrho, ls.conj())
    flux = jnp.real(_contract("kil,kil->k", lrho, ls.conj()))
    return jumped, flux, _contract("kji,kjl->il", ls.conj(), ls)


def _lindblad_rhs(t, rho, gen: Generator):
    """(d rho/dt, the fluxes) for a complex rho."""
    h, ls = _operators(gen, t)
    jumped, flux, ldl = _dissipation(gen, ls, rho)
    a = _contract("ij,jl->il", h - 0.5j * ldl, rho)
    drho = -1j * (a - a.conj().T) + jumped
    if gen.gamma is not None:
        drho = drho - gen.gamma * rho
    return drho, flux


def _rhs(t, y, args):
    """d/dt of the real state (rho as (2, D, D), N) for args = (generator, numbers)."""
    drho, flux = _lindblad_rhs(t, _to_complex(y[0]), args[0])
    return _to_real(drho), flux


def _observe(t, y, args):
    """(populations, fluxes, cumulative outputs) of the real state."""
    gen, numbers = args
    rho = _to_complex(y[0])
    pops = jnp.real(jnp.einsum("ii,ij->j", rho, numbers))
    _, ls = _operators(gen, t)
    return pops, _dissipation(gen, ls, rho)[1], y[1]


def _dopri8_tableau():
    """(a, b, c) of the 13 stages of the 8th-order Dormand-Prince pair that the solution uses
    (diffrax's `Dopri8` tableau; its 14th, first-same-as-last stage has weight zero)."""
    import diffrax

    tab = diffrax.Dopri8.tableau
    a = [np.asarray(row, dtype=float) for row in tab.a_lower[:12]]
    b = np.asarray(tab.b_sol, dtype=float)[:13]
    c = np.concatenate([[0.0], np.asarray(tab.c, dtype=float)[:12]])
    return a, b, c


def _combine(y, h, weights, ks):
    """y + h sum_j w_j k_j over the nonzero weights (pytrees of arrays)."""
    terms = [(float(w), k) for w, k in zip(weights, ks) if w != 0.0]
    return jax.tree.map(lambda y_, *k_: y_ + h * sum(w * kk for (w, _), kk in zip(terms, k_)),
                        y, *[k for _, k in terms])


def _unrolled_step(rhs, a, b, c, args):
    """One step with the 13 stages written out (the right-hand side traced 13 times)."""

    def step(t, h, y):
        ks = [rhs(t, y, args)]
        for i, row in enumerate(a):
            ks.append(rhs(t + c[i + 1] * h, _combine(y, h, row, ks), args))
        return _combine(y, h, b, ks)

    return step


def _scanned_step(rhs, a_rows, b, c, args):
    """One step with the stages as a scan over a buffer of the k_i (traced once)."""
    n_stages = len(b)
    a = np.zeros((n_stages, n_stages))
    for i, row in enumerate(a_rows):
        a[i + 1, : len(row)] = row
    a, b, c = jnp.asarray(a), jnp.asarray(b), jnp.asarray(c)

    def step(t, h, y):
        y_leaves, treedef = jax.tree.flatten(y)

        def combine(weights, k_leaves):
            return [y_ + h * jnp.tensordot(weights, k, axes=1) for y_, k in zip(y_leaves, k_leaves)]

        def stage(k_leaves, i):
            ki = jax.tree.leaves(rhs(t + c[i] * h, jax.tree.unflatten(treedef, combine(a[i], k_leaves)), args))
            return [k.at[i].set(v) for k, v in zip(k_leaves, ki)], None

        k0 = [jnp.zeros((n_stages,) + y_.shape, y_.dtype) for y_ in y_leaves]
        k_leaves, _ = jax.lax.scan(stage, k0, jnp.arange(n_stages))
        return jax.tree.unflatten(treedef, combine(b, k_leaves))

    return step


def _fixed_rk_loop(step, y0, t0, t1, steps: int, n_save: int, args):
    per = steps // (n_save - 1)
    h = (t1 - t0) / steps

    def interval(y, m):
        # A static trip count keeps the loop a scan, so reverse mode goes through it.
        y = jax.lax.fori_loop(0, per, lambda j, y_: step(t0 + (m * per + j) * h, h, y_), y)
        return y, _observe(t0 + (m + 1) * per * h, y, args)

    y_end, saved = jax.lax.scan(interval, y0, jnp.arange(n_save - 1))
    first = _observe(t0, y0, args)
    saved = jax.tree.map(lambda f, s: jnp.concatenate([f[None], s]), first, saved)
    return saved, y_end


def _fixed_rk(y0, t0, t1, steps: int, n_save: int, args):
    """Integrate with `steps` equal 8th-order Runge-Kutta steps and observe at the n_save
    equally spaced times (`steps` a multiple of n_save - 1): y_{n+1} = y_n + h sum_i b_i k_i,
    k_i = f(t_n + c_i h, y_n + h sum_{j<i} a_ij k_j), with no error estimate.

    A plain evaluation writes the 13 stages out, which on small states runs 2-3x faster than
    a loop over the stages; derivatives (forward or reverse mode) go through the same scheme
    with the stages in a scan, whose traced graph is 13x smaller and compiles 3x faster. Both
    compute the same numbers; a custom JVP picks the second under differentiation."""
    a, b, c = _dopri8_tableau()

    def solve(unrolled, y0_, t0_, t1_, args_):
        step = (_unrolled_step if unrolled else _scanned_step)(_rhs, a, b, c, args_)
        return _fixed_rk_loop(step, y0_, t0_, t1_, steps, n_save, args_)

    @jax.custom_jvp
    def fast(y0_, t0_, t1_, args_):
        return solve(True, y0_, t0_, t1_, args_)

    @fast.defjvp
    def fast_jvp(primals, tangents):
        return jax.jvp(lambda *p: solve(False, *p), primals, tangents)

    return fast(y0, t0, t1, args)


def _diffrax_solve(y0, t0, t1, ts, jump_ts, stepping: Stepping, args):
    """The same integration with diffrax: (saved observations, final state, steps). Adaptive
    Dopri5 with a step boundary at every jump, or fixed Dopri8 steps; reverse mode through
    diffrax's recursive checkpointing. A solve that exhausts `max_steps` returns NaN."""
    import diffrax

    saveat = diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=ts, fn=_observe), diffrax.SubSaveAt(t1=True)])
    if stepping.steps is None:
        jumps = jnp.clip(jump_ts, t0, t1) if jump_ts.shape[0] else None
        controller = diffrax.PIDController(rtol=stepping.rtol, atol=stepping.atol, jump_ts=jumps)
        dt0, max_steps, solver = None, stepping.max_steps, diffrax.Dopri5()
    else:
        controller = diffrax.ConstantStepSize()
        dt0, max_steps, solver = (t1 - t0) / stepping.steps, stepping.steps, diffrax.Dopri8()
    with warnings.catch_warnings():
        # The state is real; the complex matrices in `args` are only read.
        warnings.filterwarnings("ignore", message="Complex dtype support in Diffrax")
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(_rhs), solver, t0=t0, t1=t1, dt0=dt0, y0=y0, args=args, saveat=saveat,
            stepsize_controller=controller, max_steps=max_steps,
            adjoint=diffrax.RecursiveCheckpointAdjoint(), throw=False)
    saved, final = sol.ys
    ok = sol.result == diffrax.RESULTS.successful
    final = jax.tree.map(lambda x: jnp.where(ok, x[0], jnp.nan), final)
    return saved, final, jnp.asarray(sol.stats["num_steps"], jnp.int32)


# Dormand-Prince 5(4) (Hairer, Norsett and Wanner, Solving ODEs I, II.5) with the continuous
# extension of order 4 of the DOPRI5 code.
_DP5_C = np.array([0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0])
_DP5_A = [np.array([1 / 5]), np.array([3 / 40, 9 / 40]), np.array([44 / 45, -56 / 15, 32 / 9]),
          np.array([19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729]),
          np.array([9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656]),
          np.array([35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84])]
_DP5_B = np.array([35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0])
_DP5_E = _DP5_B - np.array([5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40])
_DP5_D = np.array([-12715105075 / 11282082432, 0.0, 87487479700 / 32700410799, -10690763975 / 1880347072,
                   701980252875 / 199316789632, -1453857185 / 822651844, 69997945 / 29380423])


def _dense(y0, y1, h, ks, theta):
    """The DOPRI5 continuous extension at t0 + theta h, with dy = y1 - y0, r3 = h k1 - dy,
    r4 = dy - h k7 - r3 and r5 = h sum_i d_i k_i:
    y0 + theta (dy + (1 - theta)(r3 + theta (r4 + (1 - theta) r5)))."""
    def one(y0_, y1_, *k):
        dy = y1_ - y0_
        r3 = h * k[0] - dy
        r4 = dy - h * k[6] - r3
        r5 = h * sum(float(d) * k_ for d, k_ in zip(_DP5_D, k) if d != 0.0)
        return y0_ + theta * (dy + (1 - theta) * (r3 + theta * (r4 + (1 - theta) * r5)))

    return jax.tree.map(one, y0, y1, *ks)


def _scaled_rms(err, y_a, y_b, rtol: float, atol: float):
    """sqrt(mean (e / (atol + rtol max(|y_a|, |y_b|)))^2) over every component."""
    parts = jax.tree.leaves(jax.tree.map(
        lambda e, a, b: (e / (atol + rtol * jnp.maximum(jnp.abs(a), jnp.abs(b)))) ** 2, err, y_a, y_b))
    return jnp.sqrt(sum(jnp.sum(p) for p in parts) / sum(p.size for p in parts))


def _lean_adaptive(y0, t0, t1, ts, jump_ts, stepping: Stepping, args):
    """Adaptive Dormand-Prince 5(4) in one `while_loop`: (saved observations, final state, steps).

    A step of size h from (t, y) is accepted when the RMS of its error estimate, scaled by
    atol + rtol max(|y|, |y_new|), is <= 1; the next h is 0.9 err^(-1/5) h (at most 5x larger,
    at least 5x smaller). Steps end just before each control jump and restart just after it;
    the save times inside an accepted step are read from the continuous extension. Nothing
    calls back to the host (the compiled program can be cached on disk): a solve that exhausts
    `max_steps` returns NaN. Forward evaluation only (`_integrate` differentiates through
    `_diffrax_solve`)."""
    n_save = ts.shape[0]
    rtol, atol = stepping.rtol, stepping.atol
    inf = jnp.asarray(jnp.inf, dtype=ts.dtype)

    def f(t, y):
        return _rhs(t, y, args)

    def save_until(t_from, t_to, y_from, y_to, h, ks, saved, i):
        def cond(c):
            return (c[1] < n_save) & (ts[jnp.minimum(c[1], n_save - 1)] <= t_to)

        def body(c):
            saved_, j = c
            tj = ts[j]
            if ks is None:
                yj = y_to
            else:
                yj = _dense(y_from, y_to, h, ks, jnp.clip((tj - t_from) / h, 0.0, 1.0))
            o = _observe(tj, yj, args)
            return jax.tree.map(lambda s, v: s.at[j].set(v), saved_, o), j + 1

        return jax.lax.while_loop(cond, body, (saved, i))

    obs0 = _observe(t0, y0, args)
    saved = jax.tree.map(lambda o: jnp.zeros((n_save,) + o.shape, o.dtype), obs0)
    saved, i0 = save_until(t0, t0, y0, y0, None, None, saved, 0)
    k1 = f(t0, y0)
    d0 = _scaled_rms(y0, y0, y0, rtol, atol)
    d1 = _scaled_rms(k1, y0, y0, rtol, atol)
    h0 = jnp.where((d0 > 1e-5) & (d1 > 1e-5), 0.01 * d0 / jnp.where(d1 > 0, d1, 1.0), 1e-6)
    h0 = jnp.minimum(h0, t1 - t0)

    def cond(c):
        t, n = c[0], c[6]
        return (t < t1) & (n < stepping.max_steps)

    def body(c):
        t, y, k1, h, saved, i, n = c
        nxt = jnp.min(jnp.where(jump_ts > t, jump_ts, inf)) if jump_ts.shape[0] else inf
        target = jnp.minimum(t + h, t1)
        hit = nxt <= target
        t_end = jnp.where(hit, jnp.nextafter(nxt, -inf), target)
        h_step = t_end - t
        ks = [k1]
        for row, ci in zip(_DP5_A, _DP5_C[1:]):
            ks.append(f(t + ci * h_step, _combine(y, h_step, row, ks)))
        y_new = _combine(y, h_step, _DP5_B, ks)
        err = jax.tree.map(lambda *k: h_step * sum(float(e) * k_ for e, k_ in zip(_DP5_E, k) if e != 0.0), *ks)
        norm = _scaled_rms(err, y, y_new, rtol, atol)
        accept = norm <= 1.0
        factor = jnp.clip(0.9 * jnp.maximum(norm, 1e-10) ** -0.2, 0.2, 5.0)
        # A step cut short by a jump or by t1 does not shrink the step that follows it.
        h_next = jnp.where(accept, jnp.maximum(h_step * factor, jnp.where(t_end < t + h, h, 0.0)),
                           h_step * jnp.minimum(factor, 0.9))
        saved_a, i_a = save_until(t, t_end, y, y_new, h_step, ks, saved, i)
        t_after = jnp.where(hit, jnp.nextafter(nxt, inf), t_end)
        k_after = jax.lax.cond(hit, lambda: f(t_after, y_new), lambda: ks[6])

        def pick(a, b):
            return jax.tree.map(lambda a_, b_: jnp.where(accept, a_, b_), a, b)

        return (jnp.where(accept, t_after, t), pick(y_new, y), pick(k_after, k1), h_next,
                pick(saved_a, saved), jnp.where(accept, i_a, i), n + 1)

    init = (t0, y0, k1, h0, saved, i0, jnp.zeros((), jnp.int32))
    t, y, _, _, saved, i, n = jax.lax.while_loop(cond, body, init)
    saved, _ = save_until(t, inf, y, y, None, None, saved, i)
    done = t >= t1
    return saved, jax.tree.map(lambda x: jnp.where(done, x, jnp.nan), y), n


def _integrate(y0, t0, t1, ts, jump_ts, stepping: Stepping, args):
    """(saved observations, final state, steps) with the lean steppers when they apply, and
    through diffrax otherwise. Under differentiation the adaptive path takes its tangent
    (custom JVP) from diffrax's Dopri5, whose reverse mode is checkpointed."""
    n_save = ts.shape[0]
    n_jumps = jump_ts.shape[0]
    if stepping.steps is not None:
        if n_jumps:
            raise ValidationError(
                f"fixed stepping (steps={stepping.steps}) needs smooth controls, but a control jumps "
                f"({n_jumps} jump time(s)); use adaptive stepping (steps=None)")
        if stepping.aligned and n_save >= 2 and stepping.steps % (n_save - 1) == 0:
            saved, final = _fixed_rk(y0, t0, t1, stepping.steps, n_save, args)
            return saved, final, jnp.asarray(stepping.steps, jnp.int32)
        return _diffrax_solve(y0, t0, t1, ts, jump_ts, stepping, args)

    @jax.custom_jvp
    def adaptive(y0_, t0_, t1_, ts_, jump_ts_, args_):
        return _lean_adaptive(y0_, t0_, t1_, ts_, jump_ts_, stepping, args_)

    @adaptive.defjvp
    def adaptive_jvp(primals, tangents):
        # The value stays the lean stepper's (a derivative never changes the answer); the
        # tangent is diffrax's, same method and tolerances.
        _, tangent = jax.jvp(lambda *p: _diffrax_solve(*p[:5], stepping, p[5]), primals, tangents)
        return adaptive(*primals), tangent

    return adaptive(y0, t0, t1, ts, jump_ts, args)


def dephasing_rates(numbers, gamma_phi):
    """Gamma_ab = sum_j gamma_phi,j (n_j(a) - n_j(b))^2 for the occupation basis."""
    numbers = jnp.asarray(numbers, dtype=float)
    diff = numbers[:, None, :] - numbers[None, :, :]
    return jnp.einsum("abj,j->ab", diff**2, jnp.asarray(gamma_phi, dtype=float))


def assemble(arrays, layout, atoms, time_factors, gamma=None) -> Generator:
    """The generator of a lowered model (`chiraljax._lowering`) for parameter atoms a and time
    factors f: H_m = sum_{t in m} (prod_{i in t} a_i) A_t for every slot m, and the coefficient
    of slot m at time t the product of its time factors."""
    atoms = jnp.asarray(atoms, dtype=complex)
    a_ext = jnp.concatenate([atoms, jnp.conj(atoms), jnp.ones((1,), atoms.dtype)])
    weight = jnp.prod(a_ext[arrays.term_atoms], axis=1)
    n_slots = arrays.slot_time.shape[0]
    mats = jnp.zeros((n_slots, layout.dim, layout.dim), dtype=atoms.dtype).at[
        arrays.entry_slot, arrays.entry_row, arrays.entry_col].add(weight[arrays.entry_term] * arrays.entry_value)
    l_mats = mats[layout.n_h:].reshape(layout.n_channels, layout.width, layout.dim, layout.dim)
    if layout.to_ground:
        l_mats = l_mats[:, :, 0, :]
    return Generator(mats[:layout.n_h], l_mats, arrays.slot_time, tuple(time_factors), gamma, layout.to_ground)


def _solve_markov(arrays, atoms, time_factors, psi0, gamma_phi, t0, t1, ts, jump_ts, *, layout, stepping: Stepping):
    gamma = dephasing_rates(arrays.numbers, gamma_phi) if layout.sector else None
    generator = assemble(arrays, layout, atoms, time_factors, gamma)
    psi0 = jnp.asarray(psi0, dtype=complex)
    rho0 = jnp.outer(psi0, jnp.conj(psi0))
    ts = jnp.asarray(ts, dtype=float)
    t0, t1 = jnp.asarray(t0, dtype=ts.dtype), jnp.asarray(t1, dtype=ts.dtype)
    # The steppers carry rho as a real (2, D, D) array: XLA runs the stage combinations much
    # faster on real arrays than on complex ones.
    y0 = (_to_real(rho0), jnp.zeros((layout.n_channels,), dtype=ts.dtype))
    (pops, fluxes, outputs), final, steps = _integrate(y0, t0, t1, ts, jump_ts, stepping, (generator, arrays.numbers))
    rho1 = _to_complex(final[0])
    sol = LindbladSolution(ts, pops, fluxes, outputs, rho1, final[1], steps)
    initial = jnp.real(jnp.einsum("ii,ij->", rho0, arrays.numbers))
    final_pop = jnp.real(jnp.einsum("ii,ij->", rho1, arrays.numbers))
    error = jnp.abs(final_pop + jnp.sum(final[1] * arrays.carries) - initial)
    return sol, error


_solve_markov_jit = jax.jit(_solve_markov, static_argnames=("layout", "stepping"))


def solve_markov(arrays, atoms, time_factors, psi0, gamma_phi, t0, t1, ts, jump_ts=(), *, layout,
                 stepping: Stepping = Stepping()) -> tuple[LindbladSolution, Any]:
    """Integrate the Lindblad equation of a lowered model.

    d rho/dt = -i (H_eff rho - rho H_eff^dag) + sum_k L_k rho L_k^dag - Gamma o rho, with
    Gamma_ab = sum_j gamma_phi,j (n_j(a) - n_j(b))^2 on a sector (`layout.sector`; the model
    then has no dephasing operators) and Gamma = 0 on the full space (dephasing is an operator).

    **Arguments:**

    - `arrays`, `layout`: the model's tables and sizes (`chiraljax._lowering.lower`).
    - `atoms`: (A,) parameter atoms; `time_factors`: a tuple of callables of t.
    - `psi0`: (D,) initial state; `gamma_phi`: (n_sub,) pure-dephasing rates.
    - `t0`, `t1`, `ts`: time window and save times; `jump_ts`: times where a control jumps.
    - `stepping`: adaptive or fixed stepping (see `Stepping`).

    The compiled program depends on the shapes of these arrays, the pytree structure of the
    time factors (the pulse families) and `layout`, `stepping`: never on the numbers.

    **Returns:** (a `LindbladSolution`, the conservation error |final + outputs - initial|).
    """
    jump_ts = jnp.stack([jnp.asarray(j, dtype=float) for j in jump_ts]) if len(jump_ts) else jnp.zeros((0,))
    args = (arrays, atoms, tuple(time_factors), psi0, gamma_phi, t0, t1, ts, jump_ts)
    return _solve_markov_jit(*args, layout=layout, stepping=stepping)
