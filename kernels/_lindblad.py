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

import functools
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

    - `h_mats`: (nH, D, D) Hamiltonian matrices; when `to_ground` they are the effective
      Hamiltonian's, H_eff = H - (i/2) sum_k L_k^dag L_k, whose L^dag L part is a sum over
      pairs of L slots (precomputed once per solve instead of once per evaluation).
    - `l_mats`: (K, W, D, D) jump-operator matrices, W per channel (zero-padded); (K, W, D)
      when `to_ground`.
    - `slot_time`: (nH + K W, wt) indices into (f, f^*, 1) of each coefficient's time factors,
      the `h_mats` ones first.
    - `time_pulses`, `t0`: the pulses behind the time factors and the window start.
    - `time_factors`: how the factors f(t) follow from them (a hashable callable
      `time_factors(time_pulses, t, t0)`).
    - `gamma`: (D, D) elementwise dephasing rates Gamma_ab, or None.
    - `to_ground`: every L_kw has nonzeros only in row 0 (the single-excitation sector, where a
      jump lands in the ground state): L_k = |G><l_k|, and the kernel works with the vectors l_k.
    """

    h_mats: Any
    l_mats: Any
    slot_time: Any
    time_pulses: tuple
    t0: Any
    gamma: Any
    to_ground: bool = eqx.field(static=True)
    time_factors: Any = eqx.field(static=True)

    def coefficients(self, t):
        """The nH + K W coefficients at time t, Hamiltonian terms first."""
        dtype = self.h_mats.dtype
        f = self.time_factors(self.time_pulses, t, self.t0, dtype)
        f_ext = jnp.concatenate([f, jnp.conj(f), jnp.ones((1,), dtype)])
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
    """(sum_k L_k rho L_k^dag, the fluxes Tr L_k rho L_k^dag, sum_k L_k^dag L_k or None when
    it is part of `h_mats` already)."""
    if gen.to_ground:
        # L_k = |G><l_k|: L_k rho L_k^dag = |G><G| l_k rho l_k^dag, and F_k = l_k rho l_k^dag.
        flux = jnp.real(_contract("kj,kj->k", _contract("ki,ij->kj", ls, rho), ls.conj()))
        ground = jnp.zeros(rho.shape, rho.dtype).at[0, 0].set(1.0)
        return ground * jnp.sum(flux), flux, None
    lrho = _contract("kij,jl->kil", ls, rho)
    jumped = _contract("kil,kml->im", lrho, ls.conj())
    flux = jnp.real(_contract("kil,kil->k", lrho, ls.conj()))
    return jumped, flux, _contract("kji,kjl->il", ls.conj(), ls)


def _lindblad_rhs(t, rho, gen: Generator):
    """(d rho/dt, the fluxes) for a complex rho."""
    h, ls = _operators(gen, t)
    jumped, flux, ldl = _dissipation(gen, ls, rho)
    a = _contract("ij,jl->il", h if ldl is None else h - 0.5j * ldl, rho)
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
    tab = _dopri8()
    # the 13 stages the solution uses (the 14th, first same as last, has weight zero)
    a, b, c = tab.a[:12], tab.b[:13], tab.c[:13]

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
    Dopri8 with a step boundary at every jump, or fixed Dopri8 steps; reverse mode through
    diffrax's recursive checkpointing. A solve that exhausts `max_steps` returns NaN."""
    import diffrax

    saveat = diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=ts, fn=_observe), diffrax.SubSaveAt(t1=True)])
    if stepping.steps is None:
        jumps = jnp.clip(jump_ts, t0, t1) if jump_ts.shape[0] else None
        controller = diffrax.PIDController(rtol=stepping.rtol, atol=stepping.atol, jump_ts=jumps)
        dt0, max_steps, solver = None, stepping.max_steps, diffrax.Dopri8()
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


class _Dopri8(NamedTuple):
    """The 8th-order Dormand-Prince pair (Prince and Dormand 1981) with the interpolant of
    Bogacki and Shampine (1990), as diffrax's `Dopri8` holds them: stages k_1 ... k_14 with
    k_i = f(t + c_i h, y + h sum_{j<i} a_ij k_j), k_14 = f(t + h, y_new) (first same as last),

        y_new = y + h sum_i b_i k_i,   error = h sum_i e_i k_i,
        y(t + theta h) = y + h theta sum_i P_i(theta) k_i   (P_i polynomials of degree 5).
    """

    a: list
    b: np.ndarray
    e: np.ndarray
    c: np.ndarray
    dense: np.ndarray


@functools.cache
def _dopri8() -> _Dopri8:
    import diffrax

    tab = diffrax.Dopri8.tableau
    return _Dopri8([np.asarray(row, dtype=float) for row in tab.a_lower],
                   np.asarray(tab.b_sol, dtype=float), np.asarray(tab.b_error, dtype=float),
                   np.concatenate([[0.0], np.asarray(tab.c, dtype=float)]),
                   np.asarray(diffrax.Dopri8.interpolation_cls.eval_coeffs, dtype=float))


def _scaled_rms(err, y_a, y_b, rtol: float, atol: float):
    """sqrt(mean (e / (atol + rtol max(|y_a|, |y_b|)))^2) over every component."""
    parts = jax.tree.leaves(jax.tree.map(
        lambda e, a, b: (e / (atol + rtol * jnp.maximum(jnp.abs(a), jnp.abs(b)))) ** 2, err, y_a, y_b))
    return jnp.sqrt(sum(jnp.sum(p) for p in parts) / sum(p.size for p in parts))


def _lean_adaptive(y0, t0, t1, ts, jump_ts, stepping: Stepping, args):
    """Adaptive 8th-order Dormand-Prince in one `while_loop`: (saved observations, final
    state, steps).

    A step of size h from (t, y) is accepted when the RMS of its error estimate, scaled by
    atol + rtol max(|y|, |y_new|), is <= 1; the next h is 0.9 err^(-1/8) h (at most 5x larger,
    at least 5x smaller). Steps end just before each control jump and restart just after it.
    The save times inside a step are read from the interpolant, a window of S of them at once
    (a step never spans more than S pending save times). Nothing calls back to the host (the
    compiled program can be cached on disk): a solve that exhausts `max_steps` returns NaN.
    Forward evaluation only (`_integrate` differentiates through `_diffrax_solve`)."""
    tab = _dopri8()
    n_save = ts.shape[0]
    window = min(8, n_save)
    rtol, atol = stepping.rtol, stepping.atol
    inf = jnp.asarray(jnp.inf, dtype=ts.dtype)
    ts_pad = jnp.concatenate([ts, jnp.full((window + 1,), jnp.inf, ts.dtype)])
    observe = jax.vmap(_observe, in_axes=(0, 0, None))

    def f(t, y):
        return _rhs(t, y, args)

    def save(saved, i, t_to, states):
        """Write the observations of the pending save times <= t_to; `states(times)` gives
        the states there. Returns the buffers and the next pending index."""
        times = jax.lax.dynamic_slice(ts_pad, (i,), (window,))
        due = times <= t_to
        new = observe(jnp.where(due, times, t_to), states(jnp.where(due, times, t_to)), args)

        def put(buffer, rows):
            old = jax.lax.dynamic_slice_in_dim(buffer, i, window)
            mask = due.reshape((window,) + (1,) * (rows.ndim - 1))
            return jax.lax.dynamic_update_slice_in_dim(buffer, jnp.where(mask, rows, old), i, 0)

        return jax.tree.map(put, saved, new), i + jnp.sum(due, dtype=i.dtype)

    def constant(y):
        return lambda times: jax.tree.map(lambda x: jnp.broadcast_to(x, times.shape + x.shape), y)

    obs0 = _observe(t0, y0, args)
    saved = jax.tree.map(lambda o: jnp.zeros((n_save + window,) + o.shape, o.dtype), obs0)
    saved, i0 = save(saved, jnp.zeros((), jnp.int32), t0, constant(y0))
    k1 = f(t0, y0)
    d0 = _scaled_rms(y0, y0, y0, rtol, atol)
    d1 = _scaled_rms(k1, y0, y0, rtol, atol)
    h0 = jnp.where((d0 > 1e-5) & (d1 > 1e-5), 0.01 * d0 / jnp.where(d1 > 0, d1, 1.0), 1e-6)
    h0 = jnp.minimum(h0, t1 - t0)
    weights = jnp.asarray(tab.dense.T)

    def cond(c):
        t, n = c[0], c[6]
        return (t < t1) & (n < stepping.max_steps)

    def body(c):
        t, y, k1, h, saved, i, n = c
        nxt = jnp.min(jnp.where(jump_ts > t, jump_ts, inf)) if jump_ts.shape[0] else inf
        target = jnp.minimum(jnp.minimum(t + h, t1), ts_pad[i + window])
        hit = nxt <= target
        t_end = jnp.where(hit, jnp.nextafter(nxt, -inf), target)
        h_step = t_end - t
        ks = [k1]
        for row, ci in zip(tab.a[:-1], tab.c[1:-1]):
            ks.append(f(t + ci * h_step, _combine(y, h_step, row, ks)))
        y_new = _combine(y, h_step, tab.b, ks)
        err = jax.tree.map(lambda *k: h_step * sum(float(e) * k_ for e, k_ in zip(tab.e, k) if e != 0.0), *ks)
        ks.append(f(t_end, y_new))
        norm = _scaled_rms(err, y, y_new, rtol, atol)
        accept = norm <= 1.0
        factor = jnp.clip(0.9 * jnp.maximum(norm, 1e-10) ** -0.125, 0.2, 5.0)
        # A step cut short by a jump, a save window or t1 does not shrink the step after it.
        h_next = jnp.where(accept, jnp.maximum(h_step * factor, jnp.where(t_end < t + h, h, 0.0)),
                           h_step * jnp.minimum(factor, 0.9))

        def states(times):
            theta = jnp.clip((times - t) / h_step, 0.0, 1.0)
            w = jax.vmap(lambda th: jnp.polyval(weights, th) * th)(theta)  # (S, 14)
            return jax.tree.map(lambda y_, *k: y_ + h_step * jnp.tensordot(w, jnp.stack(k), axes=1), y, *ks)

        saved_a, i_a = jax.lax.cond(accept & (ts_pad[i] <= t_end), lambda: save(saved, i, t_end, states),
                                    lambda: (saved, i))
        t_after = jnp.where(hit, jnp.nextafter(nxt, inf), t_end)
        if jump_ts.shape[0]:
            k_after = jax.lax.cond(hit, lambda: f(t_after, y_new), lambda: ks[-1])
        else:
            k_after = ks[-1]

        def pick(a, b):
            return jax.tree.map(lambda a_, b_: jnp.where(accept, a_, b_), a, b)

        return (jnp.where(accept, t_after, t), pick(y_new, y), pick(k_after, k1), h_next,
                saved_a, i_a, n + 1)

    init = (t0, y0, k1, h0, saved, i0, jnp.zeros((), jnp.int32))
    t, y, _, _, saved, i, n = jax.lax.while_loop(cond, body, init)
    saved, _ = save(saved, i, inf, constant(y))
    done = t >= t1
    saved = jax.tree.map(lambda x: x[:n_save], saved)
    return saved, jax.tree.map(lambda x: jnp.where(done, x, jnp.nan), y), n


def _integrate(y0, t0, t1, ts, jump_ts, stepping: Stepping, args):
    """(saved observations, final state, steps) with the lean steppers when they apply, and
    through diffrax otherwise. Under differentiation the adaptive path takes its tangent
    (custom JVP) from diffrax's Dopri8, whose reverse mode is checkpointed."""
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


def assemble(arrays, layout, atoms, time_pulses, t0, gamma=None) -> Generator:
    """The generator of a lowered model (`chiraljax._lowering`) for parameter atoms a and time
    factors f: H_m = sum_{t in m} (prod_{i in t} a_i) A_t for every slot m, and the coefficient
    of slot m at time t the product of its time factors. When every jump lands in the ground
    state, the pairs L_kw^dag L_kw' = conj(l_kw) l_kw'^T join the Hamiltonian's matrices as
    -(i/2) Q_p (Q_p the sum of the pairs of one time monomial)."""
    atoms = jnp.asarray(atoms, dtype=complex)
    a_ext = jnp.concatenate([atoms, jnp.conj(atoms), jnp.ones((1,), atoms.dtype)])
    weight = jnp.prod(a_ext[arrays.term_atoms], axis=1)
    n_l = layout.n_channels * layout.width
    mats = jnp.zeros((layout.n_h + n_l, layout.dim, layout.dim), dtype=atoms.dtype).at[
        arrays.entry_slot, arrays.entry_row, arrays.entry_col].add(weight[arrays.entry_term] * arrays.entry_value)
    l_mats = mats[layout.n_h:].reshape(layout.n_channels, layout.width, layout.dim, layout.dim)
    h_mats, slot_time = mats[:layout.n_h], arrays.slot_time
    if layout.to_ground:
        l_mats = l_mats[:, :, 0, :]
        q = jnp.conj(l_mats)[:, :, None, :, None] * l_mats[:, None, :, None, :]
        pairs = jnp.zeros((layout.n_pairs, layout.dim, layout.dim), atoms.dtype).at[arrays.pair_index].add(q)
        h_mats = jnp.concatenate([h_mats, -0.5j * pairs])
        head, tail = layout.n_h, layout.n_h + n_l
        slot_time = jnp.concatenate([slot_time[:head], slot_time[tail:], slot_time[head:tail]])
    return Generator(h_mats, l_mats, slot_time, tuple(time_pulses), t0, gamma, layout.to_ground, layout.time_factors)


def _solve_markov(arrays, atoms, time_pulses, psi0, gamma_phi, t0, t1, ts, jump_ts, *, layout, stepping: Stepping):
    ts = jnp.asarray(ts, dtype=float)
    t0, t1 = jnp.asarray(t0, dtype=ts.dtype), jnp.asarray(t1, dtype=ts.dtype)
    gamma = dephasing_rates(arrays.numbers, gamma_phi) if layout.sector else None
    generator = assemble(arrays, layout, atoms, time_pulses, t0, gamma)
    psi0 = jnp.asarray(psi0, dtype=complex)
    rho0 = jnp.outer(psi0, jnp.conj(psi0))
    # The steppers carry rho as a real (2, D, D) array: XLA runs the stage combinations much
    # faster on real arrays than on complex ones.
    y0 = (_to_real(rho0), jnp.zeros((layout.n_channels,), dtype=ts.dtype))
    (pops, fluxes, outputs), final, steps = _integrate(y0, t0, t1, ts, jump_ts, stepping, (generator, arrays.numbers))
    rho1 = _to_complex(final[0])
    sol = LindbladSolution(ts, pops, fluxes, outputs, rho1, final[1], steps)
    initial = jnp.real(jnp.einsum("ii,ij->", rho0, arrays.numbers))
    final_pop = jnp.real(jnp.einsum("ii,ij->", rho1, arrays.numbers))
    error = jnp.abs(final_pop + jnp.sum(final[1] * arrays.carries) - initial)
    return sol, error, jnp.zeros_like(ts)


_solve_markov_jit = jax.jit(_solve_markov, static_argnames=("layout", "stepping"))


def solve_markov(arrays, atoms, time_pulses, psi0, gamma_phi, t0, t1, ts, jump_ts=(), *, layout,
                 stepping: Stepping = Stepping()) -> tuple[LindbladSolution, Any, Any]:
    """Integrate the Lindblad equation of a lowered model.

    d rho/dt = -i (H_eff rho - rho H_eff^dag) + sum_k L_k rho L_k^dag - Gamma o rho, with
    Gamma_ab = sum_j gamma_phi,j (n_j(a) - n_j(b))^2 on a sector (`layout.sector`; the model
    then has no dephasing operators) and Gamma = 0 on the full space (dephasing is an operator).

    **Arguments:**

    - `arrays`, `layout`: the model's tables and sizes (`chiraljax._lowering.lower`).
    - `atoms`: (A,) parameter atoms; `time_pulses`: the pulses behind the time factors
      (`layout.time_factors` says how).
    - `psi0`: (D,) initial state; `gamma_phi`: (n_sub,) pure-dephasing rates.
    - `t0`, `t1`, `ts`: time window and save times; `jump_ts`: times where a control jumps.
    - `stepping`: adaptive or fixed stepping (see `Stepping`).

    The compiled program depends on the shapes of these arrays, the pytree structure of the
    pulses (their families) and `layout`, `stepping`: never on the numbers.

    **Returns:** (a `LindbladSolution`, the conservation error |final + outputs - initial|,
    zeros at the save times: nothing is in flight in the Markov limit).
    """
    if any(isinstance(j, jax.core.Tracer) for j in jump_ts):
        jump_ts = jnp.stack([jnp.asarray(j, dtype=float) for j in jump_ts])
    else:
        jump_ts = np.asarray([float(j) for j in jump_ts], dtype=float)
    args = (arrays, atoms, tuple(time_pulses), psi0, gamma_phi, t0, t1, ts, jump_ts)
    return _solve_markov_jit(*args, layout=layout, stepping=stepping)
