"""Single photons of non-smooth shape absorbed by one qubit (rate gamma = 1), against closed forms.

The virtual source's coupling g_u = u^* / sqrt(1 - int |u|^2) needs the norm integral of its
mode; the kernel carries it as part of the state and steps onto the mode's jumps, so modes with
a jump or a compact support are as exact as smooth ones.

- Decaying exponential u = sqrt(r) e^{-r t/2} (t >= 0) into a chiral qubit:
  P(t) = 4 r / (r - 1)^2 (e^{-t/2} - e^{-r t/2})^2, largest at t* = 2 ln r / (r - 1) with
  P(t*) = 4 r^{(1 + r)/(1 - r)} (4/e^2 at r = 1); a two-sided qubit (half its rate into the
  input's direction) absorbs half of that at the same time.
- Rectangle of length T: P(T) = (4 / T)(1 - e^{-T/2})^2.

Traces are compared at rtol 1e-10 (to 1e-7) and at the default tolerances (to 1e-6: save times
between steps are read from the 7th-order interpolant, whose error the step control does not
bound).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

import chiraljax as cj


class DecayingExponential(cj.AbstractPulse):
    """u(t) = sqrt(r) e^{-r t/2} for t >= 0: the photon a qubit or cavity of rate r emits."""

    r: jnp.ndarray

    def __call__(self, t):
        return jnp.where(t >= 0, jnp.sqrt(self.r) * jnp.exp(-0.5 * self.r * jnp.maximum(t, 0.0)), 0.0)

    def jump_times(self):
        return (0.0,)


TIGHT = cj.Sector(rtol=1e-10, atol=1e-12)


def absorber(mode: cj.AbstractPulse, right_fraction: float = 1.0) -> cj.Network:
    return cj.Network(
        [cj.Emitter("q")],
        [cj.Port("p", "q", 0, 1.0, right_fraction=right_fraction)],
        inputs=[cj.PhotonInput("u", mode, end="left")],
    )


def exponential_population(r: float, t: np.ndarray) -> np.ndarray:
    if r == 1.0:
        return t**2 * np.exp(-t) * (t >= 0)
    return 4 * r / (r - 1) ** 2 * (np.exp(-t / 2) - np.exp(-r * t / 2)) ** 2 * (t >= 0)


@pytest.mark.parametrize("r", [1.0, 2.0, 0.5])
def test_decaying_exponential_is_absorbed_as_the_closed_form(r):
    peak = 2.0 if r == 1.0 else 2 * math.log(r) / (r - 1)
    ts = np.sort(np.array([-1.0, -0.5, 0.0, 0.7, peak, 3.0, 6.0, 12.0]))
    exact = exponential_population(r, ts)
    window = (-1.0, 30.0 / r)  # the mode holds 1 - e^{-r t1} of its norm: all of it to 1e-13
    ts = np.append(ts, window[1])
    exact = np.append(exact, exponential_population(r, np.array([window[1]])))
    res = cj.simulate(absorber(DecayingExponential(jnp.asarray(r))), window, ts=ts, method=TIGHT)
    p = np.asarray(res.population("q"))
    np.testing.assert_allclose(p, exact, atol=1e-7)
    # default tolerances: the save times between steps are read from the interpolant
    default = np.asarray(cj.simulate(absorber(DecayingExponential(jnp.asarray(r))), window, ts=ts).population("q"))
    np.testing.assert_allclose(default, exact, atol=1e-6)
    best = 4 / math.e**2 if r == 1.0 else 4 * r ** ((1 + r) / (1 - r))
    assert abs(p[list(ts).index(peak)] - best) < 1e-7
    assert float(res.conservation_error) < 1e-8


def test_a_two_sided_qubit_absorbs_half():
    r = 2.0
    ts = np.array([-1.0, 2 * math.log(r) / (r - 1), 15.0])
    res = cj.simulate(absorber(DecayingExponential(jnp.asarray(r)), right_fraction=0.5), (-1.0, 15.0), ts=ts)
    assert abs(float(np.asarray(res.population("q"))[1]) - 0.25) < 1e-7


@pytest.mark.parametrize("start", [-1.0, 0.0])
def test_rectangular_photon_peak_equals_the_closed_form(start):
    T = 2.51286
    mode = cj.Sampled(np.array([0.0, T]), np.array([1 / math.sqrt(T)]), kind="hold")
    res = cj.simulate(absorber(mode), (start, 8.0), ts=np.array([start, T, 8.0]))
    assert abs(float(np.asarray(res.population("q"))[1]) - 4 / T * (1 - math.exp(-T / 2)) ** 2) < 1e-8
    assert float(res.conservation_error) < 1e-8


def test_a_window_that_cuts_the_mode_off_is_refused():
    with pytest.raises(cj.ValidationError, match=r"int \|u\|\^2 dt = 0.9975"):
        cj.simulate(absorber(DecayingExponential(jnp.asarray(0.5))), (-1.0, 12.0))
