"""The Runge-Kutta integrators of the kernels: fixed and adaptive 8th-order Dormand-Prince.

Both integrate dy/dt = f(t, y, args) (y a pytree of real arrays) and record observe(t, y, args)
at the save times ts. They run as single XLA loops with no host callback, so the compiled
programs can be kept in JAX's persistent cache.

- `fixed_rk`: n equal steps, the save times on step ends; a scan, so reverse mode goes through.
- `adaptive`: error-controlled steps in a `while_loop`; the save times inside a step are read
  from the method's interpolant. Reverse mode is the discrete adjoint of the accepted steps
  (`custom_vjp`): the forward pass records the state at the start of every accepted step (and,
  for a small state, the 14 stages of the first `STAGE_SLOTS` steps; a later step's stages are
  evaluated again), the backward pass walks them in reverse and pulls the
  cotangent through each step stage by stage (`_pull_stages`; a `SplitField` may bring its
  right-hand side's pullback written out), so a value-and-gradient costs about 2.2-2.5 forward
  solves (the anchor problem at two to four modules, jitted; about 3 when the loss reads the
  output channels) and the gradient is the exact derivative of the computed solution (step
  sizes held fixed). Only the args JAX marks as differentiated get cotangents. Forward
  mode (`adjoint="forward"`) differentiates through the loop instead, with the error control
  behind a stop-gradient, so it too holds the step sizes fixed and agrees with the discrete
  adjoint to rounding.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PyTree

from ._adjoint import instantiate, is_symbolic_zero


class Dopri8(NamedTuple):
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


_TABLEAU = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dopri8_tableau.npz")


@functools.cache
def dopri8() -> Dopri8:
    """The tableau, from the package's data file `dopri8_tableau.npz` (the coefficients diffrax's
    `Dopri8` holds, stored so that a first solve need not import diffrax: 0.3 s; a test checks
    that the two agree)."""
    with np.load(_TABLEAU) as data:
        rows = [data["a"][i, : i + 1] for i in range(data["a"].shape[0])]
        return Dopri8(rows, data["b"], data["e"], data["c"], data["dense"])


def combine(y, h, weights, ks):
    """y + h sum_j w_j k_j over the nonzero weights (pytrees of arrays)."""
    terms = [(float(w), k) for w, k in zip(weights, ks) if w != 0.0]
    return jax.tree.map(
        lambda y_, *k_: y_ + h * sum(w * kk for (w, _), kk in zip(terms, k_)), y, *[k for _, k in terms]
    )


def weigh(w, k):
    """sum_i w[..., i] k[i]: a contraction of a few stages written as products and a sum, which
    XLA fuses into the loop around it (a matrix-library call costs more than the arithmetic for
    a few hundred numbers)."""
    w = jnp.asarray(w)
    return jnp.sum(w.reshape(w.shape + (1,) * (k.ndim - 1)) * k, axis=w.ndim - 1)


def scaled_rms(err, y_a, y_b, rtol: float, atol: float):
    """sqrt(mean (e / (atol + rtol max(|y_a|, |y_b|)))^2) over every component."""
    parts = jax.tree.leaves(
        jax.tree.map(lambda e, a, b: (e / (atol + rtol * jnp.maximum(jnp.abs(a), jnp.abs(b)))) ** 2, err, y_a, y_b)
    )
    return jnp.sqrt(sum(jnp.sum(p) for p in parts) / sum(p.size for p in parts))


class SplitField(NamedTuple):
    """A right-hand side f(t, y, args) = apply(prepare(t, args), y) whose time-only part (the
    operators at time t) is split off: the steppers evaluate `prepare` at the stage times
    t + c_i h of a step in one vectorised pass, and each stage then does only the work that
    depends on the state (for the Lindblad generator of two chiral modules, D = 5: 2.0 -> 1.1 us
    a stage).

    `prepare(t, args)` returns a pytree of arrays; `apply(prepared, y)` the derivative. `apply`
    sees the args only through what `prepare` returns, so reverse mode pulls the cotangents of
    the args back through `prepare` alone, once per step, not through every stage.

    `pullback(prepared, y, cotangent)`, when given, is apply's vector-Jacobian product written
    out: (prepared bar, y bar), as `jax.vjp(apply, prepared, y)[1](cotangent)` gives them. The
    discrete adjoint pulls every stage through it."""

    prepare: Callable
    apply: Callable
    pullback: Callable | None = None

    def __call__(self, t, y, args):
        return self.apply(self.prepare(t, args), y)

    def at_stages(self, times, args):
        """`prepare` at every time of `times`: the pytree with a leading time axis."""
        return jax.vmap(self.prepare, in_axes=(0, None))(times, args)


def _stage_inputs(f, c, t, h, args):
    """(xs, rhs) for the stages of one step (c_i static numbers): per-stage inputs xs with a
    leading stage axis, and rhs(x, y) = f(t + c_i h, y, args) given the slice x of stage i.
    For a `SplitField` x is the time-only part, prepared for every stage at once (in a scan
    over the stages its cotangent then comes out stacked under reverse mode, instead of being
    added into a carried buffer stage by stage); otherwise x is the stage time."""
    apply = _stage_apply(f)
    return _stage_xs(f, c, t, h, args), lambda x, y: apply(x, y, args)


def _stage_xs(f, c, t, h, args):
    """The per-stage inputs of `_stage_inputs`."""
    times = t + jnp.asarray(np.asarray(c)) * h
    return f.at_stages(times, args) if isinstance(f, SplitField) else times


def _stage_apply(f):
    """apply(x, y, args): the right-hand side of a stage given its input x (`_stage_inputs`)."""
    if isinstance(f, SplitField):
        return lambda x, y, args: f.apply(x, y)
    return f


def _stage_matrix(a_rows) -> np.ndarray:
    """The Butcher matrix (a_ij), stage by stage, from its rows below the diagonal."""
    a = np.zeros((len(a_rows) + 1,) * 2)
    for i, row in enumerate(a_rows):
        a[i + 1, : len(row)] = row
    return a


def _stage(xs, i: int):
    """The slice of the per-stage inputs for stage i (static)."""
    return jax.tree.map(lambda x: x[i], xs)


# ---- fixed steps --------------------------------------------------------------------------------


def _unrolled_step(f, a, b, c, args):
    """One step with the 13 stages written out (the right-hand side traced 13 times)."""

    def step(t, h, y):
        xs, rhs = _stage_inputs(f, c, t, h, args)
        ks = [rhs(_stage(xs, 0), y)]
        for i, row in enumerate(a):
            ks.append(rhs(_stage(xs, i + 1), combine(y, h, row, ks)))
        return combine(y, h, b, ks)

    return step


def _scan_stages(f, a_rows, c, t, h, y, args, k1=None):
    """The stages k_i = f(t + c_i h, y + h sum_{j<i} a_ij k_j), i = 1 .. len(a_rows) + 1, in a
    scan over a buffer of the k_i (the right-hand side traced once): a pytree with a leading
    stage axis. `k1` = f(t, y) when it is known (first same as last)."""
    n_stages = len(a_rows) + 1
    a = jnp.asarray(_stage_matrix(a_rows))
    first = 0 if k1 is None else 1
    xs, rhs = _stage_inputs(f, np.asarray(c)[first:n_stages], t, h, args)
    leaves, treedef = jax.tree.flatten(y)

    def stage(k, inputs):
        i, x = inputs
        y_i = [y_ + h * weigh(a[i], k_) for y_, k_ in zip(leaves, k)]
        k_i = jax.tree.leaves(rhs(x, jax.tree.unflatten(treedef, y_i)))
        return [jax.lax.dynamic_update_index_in_dim(k_, v, i, 0) for k_, v in zip(k, k_i)], None

    k0 = [jnp.zeros((n_stages,) + x.shape, x.dtype) for x in leaves]
    if k1 is not None:
        k0 = [k_.at[0].set(v) for k_, v in zip(k0, jax.tree.leaves(k1))]
    k, _ = jax.lax.scan(stage, k0, (jnp.arange(first, n_stages), xs))
    return jax.tree.unflatten(treedef, k)


def _weighted(y, h, weights, ks):
    """y + h sum_i w_i k_i for stacked stages."""
    w = jnp.asarray(weights)
    return jax.tree.map(lambda y_, k: y_ + h * weigh(w, k), y, ks)


def _scanned_step(f, a_rows, b, c, args):
    """One step with the stages in a scan (traced once)."""

    def step(t, h, y):
        return _weighted(y, h, b, _scan_stages(f, a_rows, c, t, h, y, args))

    return step


def _fixed_rk_loop(step, observe, y0, t0, t1, steps: int, n_save: int, args):
    per = steps // (n_save - 1)
    h = (t1 - t0) / steps

    def interval(y, m):
        # A static trip count keeps the loop a scan, so reverse mode goes through it.
        y = jax.lax.fori_loop(0, per, lambda j, y_: step(t0 + (m * per + j) * h, h, y_), y)
        return y, observe(t0 + (m + 1) * per * h, y, args)

    y_end, saved = jax.lax.scan(interval, y0, jnp.arange(n_save - 1))
    first = observe(t0, y0, args)
    saved = jax.tree.map(lambda f_, s: jnp.concatenate([f_[None], s]), first, saved)
    return saved, y_end


def fixed_rk(f: Callable, observe: Callable, y0, t0, t1, steps: int, n_save: int, args, unrolled: bool = True):
    """Integrate with `steps` equal 8th-order Runge-Kutta steps and observe at the n_save
    equally spaced times (`steps` a multiple of n_save - 1): y_{n+1} = y_n + h sum_i b_i k_i,
    k_i = f(t_n + c_i h, y_n + h sum_{j<i} a_ij k_j), with no error estimate.

    With `unrolled` a plain evaluation writes the 13 stages out, which runs vmapped batches 2x
    faster than a loop over the stages; a single solve, and derivatives (forward or reverse
    mode), go through the same scheme with the stages in a scan, whose traced graph is 13x
    smaller, compiles 3x faster and runs a single small state faster. Both compute the same
    numbers; a custom JVP picks the scan under differentiation.

    **Returns:** (observations at the save times, final state)."""
    tab = dopri8()
    # the 13 stages the solution uses (the 14th, first same as last, has weight zero)
    a, b, c = tab.a[:12], tab.b[:13], tab.c[:13]

    def solve(unrolled, y0_, t0_, t1_, args_):
        step = (_unrolled_step if unrolled else _scanned_step)(f, a, b, c, args_)
        return _fixed_rk_loop(step, observe, y0_, t0_, t1_, steps, n_save, args_)

    @jax.custom_jvp
    def fast(y0_, t0_, t1_, args_):
        return solve(unrolled, y0_, t0_, t1_, args_)

    @fast.defjvp
    def fast_jvp(primals, tangents):
        return jax.jvp(lambda *p: solve(False, *p), primals, tangents)

    return fast(y0, t0, t1, args)


# ---- adaptive steps -----------------------------------------------------------------------------


class AdaptiveConfig(NamedTuple):
    """Tolerances, the step budget, the number of accepted steps the reverse pass can record
    (`checkpoints`), the adjoint ('reverse': discrete adjoint; 'forward': through the loop),
    whether the stages are written out (for vmapped batches), and `grid`: when set, the steps
    follow the grid t0 + n (t1 - t0) / grid with no error control (`fixed_grid_config`)."""

    rtol: float
    atol: float
    max_steps: int
    checkpoints: int = 1024
    adjoint: str = "reverse"
    unrolled: bool = False
    grid: int | None = None


def fixed_grid_config(steps: int, n_save: int, adjoint: str = "reverse", unrolled: bool = False) -> AdaptiveConfig:
    """The loop of `adaptive` as a fixed-step method: the `steps` equal steps of the grid
    t0 + n (t1 - t0) / steps, every one accepted, with the save times anywhere (read from the
    interpolant). A grid step that holds more than `SAVES_PER_STEP` pending save times is cut
    at the last of them and finished by a second step, so a solve takes at most
    steps + n_save / SAVES_PER_STEP + 1 steps, and the tape holds them all."""
    budget = int(steps) + -(-int(n_save) // SAVES_PER_STEP) + 2
    return AdaptiveConfig(0.0, 0.0, budget, budget, adjoint, unrolled, int(steps))


SAVES_PER_STEP = 8  # save times read per step at most (the interpolant's window)


class _Stepper:
    """The pieces of one adaptive solve that the forward and the reverse pass share."""

    def __init__(self, f, observe, config: AdaptiveConfig, ts):
        self.f, self.config, self.tab = f, config, dopri8()
        self.n_save = ts.shape[0]
        self.window = min(SAVES_PER_STEP, self.n_save)
        self.ts_pad = jnp.concatenate([ts, jnp.full((self.window + 1,), jnp.inf, ts.dtype)])
        self.observe = jax.vmap(observe, in_axes=(0, 0, None))

    def step(self, t, t_end, y, k1, args):
        """(y_new, the 14 stages (stacked), the error estimate) of a step from t to t_end:
        the stages written out for batches (`config.unrolled`, 2x the throughput of a scan
        under vmap), in a scan otherwise (faster on one small state, and compiled sooner)."""
        if not self.config.unrolled:
            y_new, ks = self.scanned_step(t, t_end, y, args, k1)
        else:
            tab, h = self.tab, t_end - t
            xs, rhs = _stage_inputs(self.f, tab.c, t, h, args)
            stages = [k1]
            for i, row in enumerate(tab.a[:-1]):
                stages.append(rhs(_stage(xs, i + 1), combine(y, h, row, stages)))
            y_new = combine(y, h, tab.b, stages)
            stages.append(rhs(_stage(xs, len(tab.c) - 1), y_new))
            ks = jax.tree.map(lambda *k: jnp.stack(k), *stages)
        e = jnp.asarray(self.tab.e)
        err = jax.tree.map(lambda k: (t_end - t) * weigh(e, k), ks)
        return y_new, ks, err

    def scanned_step(self, t, t_end, y, args, k1=None):
        """y_new and the 14 stages (stacked) of a step from t to t_end, the stages in a scan
        (a 14x smaller traced graph than the stages written out, and as fast on small
        states). `k1` = f(t, y) when known (first same as last)."""
        ks = _scan_stages(self.f, self.tab.a, self.tab.c, t, t_end - t, y, args, k1)
        return _weighted(y, t_end - t, self.tab.b, ks), ks

    def window_of(self, i, t_to):
        """The pending save times i .. i + S - 1 and which of them are <= t_to."""
        times = jax.lax.dynamic_slice(self.ts_pad, (i,), (self.window,))
        return times, (times <= t_to) & jnp.isfinite(times)

    def observations(self, i, t_to, states, args):
        """The observations at the due save times of the window at i (`states(times)` gives
        the states there), and the due mask."""
        times, due = self.window_of(i, t_to)
        # The rows that are not due are thrown away; they are evaluated at a finite time so
        # that no infinity reaches a derivative.
        times = jnp.where(due, times, self.ts_pad[0])
        return self.observe(times, states(times), args), due

    def write(self, saved, i, obs, due):
        def put(buffer, rows):
            old = jax.lax.dynamic_slice_in_dim(buffer, i, self.window)
            mask = due.reshape((self.window,) + (1,) * (rows.ndim - 1))
            return jax.lax.dynamic_update_slice_in_dim(buffer, jnp.where(mask, rows, old), i, 0)

        return jax.tree.map(put, saved, obs), i + jnp.sum(due, dtype=i.dtype)

    def dense(self, t, t_end, y, ks):
        """The interpolant of a step as a function of the times (`ks` the 14 stages, a list
        or stacked)."""
        weights = jnp.asarray(self.tab.dense.T)
        h = t_end - t
        stacked = jax.tree.map(lambda *k: jnp.stack(k), *ks) if isinstance(ks, list) else ks

        def states(times):
            theta = jnp.clip((times - t) / h, 0.0, 1.0)
            w = jax.vmap(lambda th: jnp.polyval(weights, th) * th)(theta)  # (S, 14)
            # a matrix product: as products and a sum (`weigh`) XLA fuses it into the write of
            # the saved rows, which then runs 1.2x slower
            return jax.tree.map(lambda y_, k: y_ + h * jnp.tensordot(w, k, axes=1), y, stacked)

        return states

    @staticmethod
    def constant(y):
        return lambda times: jax.tree.map(lambda x: jnp.broadcast_to(x, times.shape + x.shape), y)


class _Tape(NamedTuple):
    starts: Float[Array, " B"]  # t of each accepted step
    ends: Float[Array, " B"]  # its end
    saves: Int[Array, " B"]  # the first pending save index at its start
    states: PyTree[Array]  # (B, ...) the state at its start
    stages: PyTree[Array] | None  # (B, 14, ...) its stages (a small state), or None


# Largest state (in numbers) whose 14 stages per accepted step are kept on the tape. Larger
# states evaluate each step's stages again in the reverse pass.
_STAGES_ON_TAPE = 256

# Accepted steps whose stages the tape keeps (the first ones); the reverse pass evaluates the
# stages of any later step again from its recorded start. The tape is zeroed on every
# differentiated solve, so a tape of stages for all `checkpoints` steps (21 MB at four modules
# of the anchor problem) cost more than the whole reverse pass of a typical solve's 30-100
# steps: 1.9 ms of a 9.2 ms value-and-gradient.
STAGE_SLOTS = 128


def _stage_slots(config: AdaptiveConfig, y0) -> int:
    """How many accepted steps keep their stages on the tape (0: none, the reverse pass
    evaluates every step's stages again)."""
    if config.unrolled or not _stages_on_tape(y0):
        return 0
    return min(config.checkpoints, STAGE_SLOTS)


def _stages_on_tape(y0) -> bool:
    """Whether the forward pass records the stages of its steps: a small state (and, the
    caller checks, a single solve: under vmap the tape is one per batch member, and 14 stages
    a step would multiply its memory by 15)."""
    return sum(x.size for x in jax.tree.leaves(y0)) <= _STAGES_ON_TAPE


def _forward(f, observe, config: AdaptiveConfig, y0, t0, t1, ts, jump_ts, args, record: bool):
    """The adaptive solve: ((saved, final, steps), tape or None, (final state, save index)).

    A step of size h from (t, y) is accepted when the RMS of its error estimate, scaled by
    atol + rtol max(|y|, |y_new|), is <= 1; the next h is 0.9 err^(-1/8) h (at most 5x larger,
    at least 5x smaller). Steps end just before each control jump and restart just after it,
    and never span more than S pending save times. A solve that exhausts `max_steps` returns
    NaN."""
    s = _Stepper(f, observe, config, ts)
    rtol, atol = config.rtol, config.atol
    grid = config.grid
    inf = jnp.asarray(jnp.inf, dtype=ts.dtype)
    obs0 = observe(t0, y0, args)
    saved = jax.tree.map(lambda o: jnp.zeros((s.n_save + s.window,) + o.shape, o.dtype), obs0)
    obs, due = s.observations(jnp.zeros((), jnp.int32), t0, s.constant(y0), args)
    saved, i0 = s.write(saved, jnp.zeros((), jnp.int32), obs, due)
    k1 = f(t0, y0, args)
    if grid:
        h0 = jnp.ones((), ts.dtype)  # the index of the first grid point ahead
    else:
        y0_, k1_ = jax.lax.stop_gradient((y0, k1))
        d0, d1 = scaled_rms(y0_, y0_, y0_, rtol, atol), scaled_rms(k1_, y0_, y0_, rtol, atol)
        h0 = jnp.minimum(jnp.where((d0 > 1e-5) & (d1 > 1e-5), 0.01 * d0 / jnp.where(d1 > 0, d1, 1.0), 1e-6), t1 - t0)
    size = config.checkpoints if record else 0
    n_slots = _stage_slots(config, y0) if record else 0
    n_stages = len(s.tab.c)
    tape = _Tape(
        jnp.zeros((size,), ts.dtype),
        jnp.zeros((size,), ts.dtype),
        jnp.zeros((size,), jnp.int32),
        jax.tree.map(lambda x: jnp.zeros((size,) + x.shape, x.dtype), y0),
        # one row more than the slots: the steps past them write their stages there
        jax.tree.map(lambda x: jnp.zeros((n_slots + 1, n_stages) + x.shape, x.dtype), y0) if n_slots else None,
    )

    def cond(c):
        return (c[0] < t1) & (c[6] < config.max_steps)

    def grid_time(g):
        """The g-th point of the fixed grid (t1 exactly at its end)."""
        return jnp.where(g >= grid, t1, t0 + g.astype(ts.dtype) * ((t1 - t0) / grid))

    def body(c):
        t, y, k1, h, saved, i, n, m, tape = c
        nxt = jnp.min(jnp.where(jump_ts > t, jump_ts, inf)) if jump_ts.shape[0] else inf
        # on a fixed grid, h holds the index of the next grid point (as a number)
        ahead = grid_time(h.astype(jnp.int32)) if grid else t + h
        target = jnp.minimum(jnp.minimum(ahead, t1), s.ts_pad[i + s.window])
        hit = nxt <= target
        t_end = jnp.where(hit, jnp.nextafter(nxt, -inf), target)
        y_new, ks, err = s.step(t, t_end, y, k1, args)
        if grid:
            accept = jnp.asarray(True)
            h_next = jnp.where(t_end >= ahead, h + 1.0, h)
        else:
            # The step sizes are held fixed under differentiation (forward mode then carries
            # no tangent through the error control, as the discrete adjoint does).
            norm = scaled_rms(*jax.lax.stop_gradient((err, y, y_new)), rtol, atol)
            accept = norm <= 1.0
            factor = jnp.clip(0.9 * jnp.maximum(norm, 1e-10) ** -0.125, 0.2, 5.0)
            h_step = t_end - t
            # A step cut short by a jump, a save window or t1 does not shrink the step after it.
            h_next = jnp.where(
                accept,
                jnp.maximum(h_step * factor, jnp.where(t_end < t + h, h, 0.0)),
                h_step * jnp.minimum(factor, 0.9),
            )

        def save():
            o, d = s.observations(i, t_end, s.dense(t, t_end, y, ks), args)
            return s.write(saved, i, o, d)

        saved_a, i_a = jax.lax.cond(accept & (s.ts_pad[i] <= t_end), save, lambda: (saved, i))
        if record:
            # A rejected step writes the slot the accepted retry overwrites (m advances only on
            # acceptance); past the tape's end the gradient is NaN anyway.
            slot = jnp.minimum(m, size - 1)

            def put(buffer, value):
                return jax.lax.dynamic_update_index_in_dim(buffer, value, slot, 0)

            def put_stages(buffer, value):
                return jax.lax.dynamic_update_index_in_dim(buffer, value, jnp.minimum(m, n_slots), 0)

            tape = _Tape(
                put(tape.starts, t),
                put(tape.ends, t_end),
                put(tape.saves, i),
                jax.tree.map(put, tape.states, y),
                None if tape.stages is None else jax.tree.map(put_stages, tape.stages, ks),
            )
        t_after = jnp.where(hit, jnp.nextafter(nxt, inf), t_end)
        last = jax.tree.map(lambda k: k[-1], ks)
        k_after = jax.lax.cond(hit, lambda: f(t_after, y_new, args), lambda: last) if jump_ts.shape[0] else last

        def pick(a, b):
            return jax.tree.map(lambda a_, b_: jnp.where(accept, a_, b_), a, b)

        return (
            jnp.where(accept, t_after, t),
            pick(y_new, y),
            pick(k_after, k1),
            h_next,
            saved_a,
            i_a,
            n + 1,
            m + accept.astype(jnp.int32),
            tape,
        )

    zero = jnp.zeros((), jnp.int32)
    t, y, _, _, saved, i, n, m, tape = jax.lax.while_loop(cond, body, (t0, y0, k1, h0, saved, i0, zero, zero, tape))
    obs, due = s.observations(i, inf, s.constant(y), args)
    saved, _ = s.write(saved, i, obs, due)
    # A solve that ran out of steps has no answer from where it stopped on: NaN, never numbers
    # that look right.
    done = t >= t1
    final = jax.tree.map(lambda x: jnp.where(done, x, jnp.nan), y)
    rows = jnp.arange(s.n_save + s.window)
    saved = jax.tree.map(
        lambda x: jnp.where(((rows >= i) & ~done).reshape((-1,) + (1,) * (x.ndim - 1)), jnp.nan, x)[: s.n_save], saved
    )
    return (saved, final, n), (tape, m, done), (y, i)


def _pull_stages(s: _Stepper, t, t_end, y, ks, diff, static, cotangents, i):
    """The cotangents (of y, of the differentiable args) of one accepted step whose 14 stages
    `ks` were recorded, given those of its end state and of its observations.

    The step is y_new = y + h sum_i b_i k_i with k_i = apply(x_i, Y_i), Y_i = y + h sum_{j<i}
    a_ij k_j and x_i the stage's input (`_stage_inputs`: for a `SplitField` the operators at
    t + c_i h). The readout (y_new and the interpolated observations) is pulled back first,
    giving the cotangents of the k_i; then the stages in reverse: (x_i, Y_i) bar = vjp of
    apply at Y_i, which adds h a_ij Y_i bar to the cotangent of every earlier k_j and Y_i bar
    to that of y; last the x_i bar go back to the args, once for all stages. The Y_i follow
    from y and the k_i, so no stage is integrated again: a reverse pass costs about two
    evaluations of each stage (the vjp of apply) against the three to four of a vjp through
    the stage loop."""
    f, tab = s.f, s.tab
    h = t_end - t
    n_stages = len(tab.c)

    def readout(y_, ks_, d_):
        args = eqx.combine(d_, static)
        obs, _ = s.observations(i, t_end, s.dense(t, t_end, y_, ks_), args)
        return _weighted(y_, h, tab.b, ks_), obs

    _, pull_readout = jax.vjp(readout, y, ks, diff)
    y_bar, ks_bar, d_bar = pull_readout(cotangents)
    xs, pull_prepare = jax.vjp(lambda d_: _stage_xs(f, tab.c, t, h, eqx.combine(d_, static)), diff)
    apply = _stage_apply(f)
    a = jnp.asarray(_stage_matrix(tab.a))
    inputs = jax.tree.map(lambda y_, k: y_[None] + h * jnp.tensordot(a, k, axes=1), y, ks)  # the Y_i

    split = isinstance(f, SplitField)  # then apply reads no args: none of their cotangents here

    def stage(carry, rows):
        inputs_bar, y_bar, d_bar = carry
        n, x, y_n = rows
        # k_n bar = its readout's share + h sum_{i > n} a_in Y_i bar (the later stages' inputs,
        # pulled back already): gathered from a buffer written a row a stage, rather than added
        # into every earlier k bar at each stage (which made XLA copy the whole buffer)
        k_bar = jax.tree.map(lambda kb, ib: kb[n] + h * weigh(a[:, n], ib), ks_bar, inputs_bar)
        if split:
            x_bar, y_n_bar = _split_pullback(f)(x, y_n, k_bar)
        else:
            _, pull = jax.vjp(lambda x_, y_, d_: apply(x_, y_, eqx.combine(d_, static)), x, y_n, diff)
            x_bar, y_n_bar, d_n_bar = pull(k_bar)
            d_bar = jax.tree.map(jnp.add, d_bar, d_n_bar)
        inputs_bar = jax.tree.map(lambda b, v: jax.lax.dynamic_update_index_in_dim(b, v, n, 0), inputs_bar, y_n_bar)
        y_bar = jax.tree.map(jnp.add, y_bar, y_n_bar)
        return (inputs_bar, y_bar, d_bar), x_bar

    order = jnp.arange(n_stages)[::-1]
    flipped = jax.tree.map(lambda x: x[::-1], (xs, inputs))
    inputs_bar = jax.tree.map(jnp.zeros_like, ks_bar)
    (_, y_bar, d_bar), xs_bar = jax.lax.scan(stage, (inputs_bar, y_bar, d_bar), (order, *flipped))
    (d_prepare,) = pull_prepare(jax.tree.map(lambda x: x[::-1], xs_bar))
    return y_bar, jax.tree.map(jnp.add, d_bar, d_prepare)


def _split_pullback(f: SplitField) -> Callable:
    """(x, y, cotangent) -> (x bar, y bar) of f.apply: its written-out pullback, or JAX's."""
    if f.pullback is not None:
        return f.pullback

    def pull(x, y, cotangent):
        return jax.vjp(f.apply, x, y)[1](cotangent)

    return pull


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _adaptive(f, observe, config, y0, t0, t1, ts, jump_ts, args):
    return _forward(f, observe, config, y0, t0, t1, ts, jump_ts, args, record=False)[0]


def _adaptive_fwd(f, observe, config, y0, t0, t1, ts, jump_ts, args):
    y0, t0, t1, ts, jump_ts = jax.tree.map(_value, (y0, t0, t1, ts, jump_ts), is_leaf=_is_primal)
    # The args the caller differentiates (JAX marks them perturbed) and the rest: the reverse
    # pass pulls no cotangent back to the others (a network's pulses and dephasing rates when
    # only its couplings are differentiated: 7 % of the reverse pass at four modules).
    diff, static = eqx.partition(args, _differentiated, is_leaf=_is_primal)
    diff, static = jax.tree.map(_value, (diff, static), is_leaf=_is_primal)
    args = eqx.combine(diff, static)
    out, (tape, m, done), (y_end, i_end) = _forward(f, observe, config, y0, t0, t1, ts, jump_ts, args, record=True)
    return out, (tape, m, done, y_end, i_end, y0, t0, t1, ts, jump_ts, diff, static)


def _is_primal(x) -> bool:
    return isinstance(x, jax.custom_derivatives.CustomVJPPrimal)


def _differentiated(x) -> bool:
    """Whether an arg's leaf (a `CustomVJPPrimal`) is a floating array JAX differentiates."""
    return _is_primal(x) and x.perturbed and eqx.is_inexact_array(x.value)


def _value(x):
    return x.value if _is_primal(x) else x


def _adaptive_bwd(f, observe, config, residuals, cotangents):
    tape, m, done, y_end, i_end, y0, t0, t1, ts, jump_ts, diff, static = residuals
    saved_bar, final_bar = jax.tree.map(instantiate, cotangents[:2], is_leaf=is_symbolic_zero)
    s = _Stepper(f, observe, config, ts)
    inf = jnp.asarray(jnp.inf, dtype=ts.dtype)
    saved_bar = jax.tree.map(lambda x: jnp.concatenate([x, jnp.zeros((s.window,) + x.shape[1:], x.dtype)]), saved_bar)

    def rows_bar(i, due):
        def take(buffer):
            rows = jax.lax.dynamic_slice_in_dim(buffer, i, s.window)
            return jnp.where(due.reshape((s.window,) + (1,) * (rows.ndim - 1)), rows, 0.0)

        return jax.tree.map(take, saved_bar)

    def pull_constant(y, i, t_to, y_bar, d_bar):
        """Cotangents through the observations of the constant state y at the due times."""
        _, due = s.window_of(i, t_to)
        _, vjp = jax.vjp(lambda y_, d_: s.observations(i, t_to, s.constant(y_), eqx.combine(d_, static))[0], y, diff)
        yb, db = vjp(rows_bar(i, due))
        return jax.tree.map(jnp.add, y_bar, yb), jax.tree.map(jnp.add, d_bar, db)

    zero_diff = jax.tree.map(jnp.zeros_like, diff)
    y_bar, d_bar = pull_constant(y_end, i_end, inf, final_bar, zero_diff)

    def body(c, taped: bool):
        j, y_bar, d_bar = c
        t, t_end, i = tape.starts[j], tape.ends[j], tape.saves[j]
        y = jax.tree.map(lambda x: x[j], tape.states)
        _, due = s.window_of(i, t_end)

        if taped:
            ks = jax.tree.map(lambda x: x[j], tape.stages)
        else:  # a large state, or a step past the stage slots: its stages are evaluated again
            ks = s.scanned_step(t, t_end, y, eqx.combine(diff, static))[1]
        yb, db = _pull_stages(s, t, t_end, y, ks, diff, static, (y_bar, rows_bar(i, due)), i)
        return j - 1, yb, jax.tree.map(jnp.add, d_bar, db)

    # the steps without stages on the tape (the last ones), then those with
    n_slots = _stage_slots(config, y0)  # as the forward pass recorded them
    carry = (m - 1, y_bar, d_bar)
    if n_slots < config.checkpoints:
        carry = jax.lax.while_loop(lambda c: c[0] >= n_slots, functools.partial(body, taped=False), carry)
    if n_slots:
        carry = jax.lax.while_loop(lambda c: c[0] >= 0, functools.partial(body, taped=True), carry)
    _, y_bar, d_bar = carry
    y_bar, d_bar = pull_constant(y0, jnp.zeros((), jnp.int32), t0, y_bar, d_bar)
    # More accepted steps than the tape holds, or a solve that ran out of steps: the gradient is
    # unknown, and says so.
    overflow = (m > config.checkpoints) | ~done
    y_bar, d_bar = jax.tree.map(lambda x: jnp.where(overflow, jnp.nan, x), (y_bar, d_bar))
    args_bar = eqx.combine(d_bar, jax.tree.map(_zero_cotangent, static))
    return (y_bar, jnp.zeros_like(t0), jnp.zeros_like(t1), jnp.zeros_like(ts), jnp.zeros_like(jump_ts), args_bar)


def _zero_cotangent(x):
    """The zero cotangent of an arg that is not differentiated: zeros, float0 for integers."""
    if eqx.is_inexact_array(x):
        return jnp.zeros_like(x)
    return np.zeros(np.shape(x), dtype=jax.dtypes.float0)


_adaptive.defvjp(_adaptive_fwd, _adaptive_bwd, symbolic_zeros=True)


def adaptive(f: Callable, observe: Callable, y0, t0, t1, ts, jump_ts, args, config: AdaptiveConfig):
    """Integrate with error-controlled 8th-order Dormand-Prince steps (see the module docstring).

    **Arguments:**

    - `f`, `observe`: module-level functions f(t, y, args) and observe(t, y, args).
    - `y0`, `t0`, `t1`, `ts`: initial state, window and save times (sorted, in [t0, t1]).
    - `jump_ts`: (J,) times where f jumps (a step ends just before each, the next restarts
      just after it).
    - `args`: a pytree of the numbers f depends on (differentiable).
    - `config`: tolerances, step budget, tape size and adjoint.

    **Returns:** (observations at the save times, final state, number of steps tried).
    """
    if config.adjoint == "forward":
        return _forward(f, observe, config, y0, t0, t1, ts, jump_ts, args, record=False)[0]
    return _adaptive(f, observe, config, y0, t0, t1, ts, jump_ts, args)
