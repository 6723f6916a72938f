r"""Several photons in distinct modes entering at one end: the modes their sources emit.

The virtual source cavities of the photon inputs at one end are cascaded in the order the
network lists them, the last one next to the network, so the field of an upstream source passes
every source downstream of it. A source that emits the mode v (coupling
$g_v = v^*/\sqrt{1 - N_v}$, $N_v(t) = \int_{t_0}^t |v|^2$) acts on a photon passing it as a
linear map $F_v$ (Kiilerich and Mølmer, PRA 102, 023717 (2020)); its adjoint is

$$(F_v^\dagger w)(s) = w(s) - v(s)\,\frac{\int_s^{t_1} v^*(t)\, w(t)\, dt}{\int_s^{t_1} |v|^2 dt},$$

and $F_v F_v^\dagger u = u$ for every mode u orthogonal to v. So for inputs $u_1, \dots, u_n$
at one end, source i emits

$$v_n = u_n, \qquad v_i = F_{v_{i+1}}^\dagger \cdots F_{v_n}^\dagger\, u_i,$$

and every photon reaches the network in its own mode $u_i$ (the $v_i$ stay orthogonal and
normalised: $\langle F^\dagger a, F^\dagger b\rangle = \langle a, b\rangle$ for a, b orthogonal
to v). The modes must be smooth inside the window and mutually orthogonal (`check_modes`).

The $v_i$ are computed on a uniform grid of the window, as values and time derivatives, and
read back by cubic Hermite interpolation (`CascadeMode`, error $O(h^4)$); the integrals are
4-point Gauss-Legendre sums over the interpolants, accumulated from $t_1$ backwards. A tail
integral of $|v|^2$ below the threshold at which the kernel switches a used-up source off
(`chiraljax.algebra._markov._MODE_EPS`) leaves w unchanged there, as that source no longer
acts on the field.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex, Float

from chiraljax.network._pulses import AbstractPulse

#: Intervals of the grid on which the emitted modes are computed (h = window / 4096).
GRID_INTERVALS = 4096
_SWITCHED_OFF = 1e-10  # the kernel's threshold on 1 - N_v below which a source is off

_GAUSS_NODES, _GAUSS_WEIGHTS = np.polynomial.legendre.leggauss(4)


def _hermite_basis(s):
    """The cubic Hermite basis (h00, h10, h01, h11) at s in [0, 1]."""
    s2, s3 = s * s, s * s * s
    return 2 * s3 - 3 * s2 + 1, s3 - 2 * s2 + s, -2 * s3 + 3 * s2, s3 - s2


class CascadeMode(AbstractPulse):
    """A mode given by its values and time derivatives on a uniform grid of [t0, t1], cubic
    Hermite between the nodes and 0 outside: the mode an upstream source emits."""

    times: Float[Array, " G"]
    values: Complex[Array, " G"]
    derivatives: Complex[Array, " G"]

    def __call__(self, t):
        t0, t1 = self.times[0], self.times[-1]
        h = (t1 - t0) / (self.times.shape[0] - 1)
        k = jnp.clip(jnp.floor((t - t0) / h).astype(jnp.int32), 0, self.times.shape[0] - 2)
        s = (t - self.times[k]) / h
        h00, h10, h01, h11 = _hermite_basis(s)
        value = (
            h00 * self.values[k]
            + h10 * h * self.derivatives[k]
            + h01 * self.values[k + 1]
            + h11 * h * self.derivatives[k + 1]
        )
        return jnp.where((t >= t0) & (t <= t1), value, 0.0 * value)

    def jump_times(self) -> tuple:
        return (self.times[0], self.times[-1])


def _on_grid(mode: AbstractPulse, times) -> tuple:
    """(values, time derivatives) of a mode at the grid's nodes (forward mode)."""

    def one(t):
        return jax.jvp(lambda x: jnp.asarray(mode(x), complex), (t,), (jnp.ones_like(t),))

    return jax.vmap(one)(times)


def _tail_integrals(times, a, b) -> Array:
    """int_{t_k}^{t1} conj(a) b dt at every node, a and b as (values, derivatives) on the grid,
    each interval by 4-point Gauss-Legendre over the Hermite interpolants."""
    h = times[1] - times[0]
    s = jnp.asarray(0.5 * (_GAUSS_NODES + 1.0))
    basis = jnp.stack(_hermite_basis(s))  # (4 basis functions, 4 nodes)

    def inside(values, derivatives):
        return (
            basis[0][None, :] * values[:-1, None]
            + basis[1][None, :] * h * derivatives[:-1, None]
            + basis[2][None, :] * values[1:, None]
            + basis[3][None, :] * h * derivatives[1:, None]
        )

    pieces = 0.5 * h * jnp.sum(jnp.asarray(_GAUSS_WEIGHTS)[None, :] * jnp.conj(inside(*a)) * inside(*b), axis=1)
    tails = jnp.cumsum(pieces[::-1])[::-1]
    return jnp.concatenate([tails, jnp.zeros((1,), tails.dtype)])


def _adjoint_map(times, v, w) -> tuple:
    """F_v^dag w (values, derivatives) on the grid (module docstring), with
    d/ds = w' - v' R - v R', R = C / M, R' = (|v|^2 R - v^* w) / M, C = int_s v^* w, M = int_s |v|^2."""
    c = _tail_integrals(times, v, w)
    m = jnp.real(_tail_integrals(times, v, v))
    on = m > _SWITCHED_OFF
    safe = jnp.where(on, m, 1.0)
    ratio = jnp.where(on, c / safe, 0.0)
    (v0, v1), (w0, w1) = v, w
    slope = jnp.where(on, (jnp.abs(v0) ** 2 * ratio - jnp.conj(v0) * w0) / safe, 0.0)
    return w0 - v0 * ratio, w1 - v1 * ratio - v0 * slope


def emitted_modes(modes: list[AbstractPulse], t0, t1) -> list[AbstractPulse]:
    """The modes v_1 ... v_n the cascaded sources of the inputs u_1 ... u_n at one end emit
    (u_n next to the network; module docstring): u_n itself, and a `CascadeMode` for each of
    the others."""
    if len(modes) < 2:
        return list(modes)
    times = jnp.linspace(jnp.asarray(t0, float), jnp.asarray(t1, float), GRID_INTERVALS + 1)
    emitted = [_on_grid(modes[-1], times)]
    out: list[AbstractPulse] = [modes[-1]]
    for u in reversed(modes[:-1]):
        w = _on_grid(u, times)
        for v in reversed(emitted):  # v_n first: F_{v_{i+1}}^dag ... F_{v_n}^dag u_i
            w = _adjoint_map(times, v, w)
        emitted.insert(0, w)
        out.insert(0, CascadeMode(times, w[0], w[1]))
    return out
