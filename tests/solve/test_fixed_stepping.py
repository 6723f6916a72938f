"""Fixed 8th-order stepping (`simulate(..., steps=n)`), in particular the lean stepper used when
the save times fall on step ends (sweeps and pulse optimisation save only the end points).

The model is the two-module transfer link of conftest.py (sech pulses are smooth, so fixed steps
converge at 8th order). Tolerances: 48 steps meet the adaptive solve at rtol 1e-10 to 1e-9
(measured 8e-12 on the sweep grid); the lean stepper and diffrax's Dopri8 take the same steps
with the same tableau, so they agree to rounding (1e-12); reverse-mode gradients through the
lean stepper equal central differences of the same discretisation to 1e-6 relative.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import RECEIVER, TRANSFER_WINDOW, chiral_link

import chiraljax as cj

N_SAVE = 5
STEPS = 48


@pytest.fixture(scope="module")
def network():
    return chiral_link(eta=0.7).with_parameters({"emitters.A1.detuning": 0.1, "controls.absorb.kappa": 1.2})


@pytest.fixture(scope="module")
def lean(network):
    """Aligned save times (48 steps, 4 save intervals): the lean stepper."""
    return cj.simulate(network, TRANSFER_WINDOW, n_save=N_SAVE, representation="sector", steps=STEPS)


def test_lean_stepper_matches_adaptive(network, lean):
    """Populations, fluxes and channel outputs at the save times agree with the adaptive solve."""
    ref = cj.simulate(network, TRANSFER_WINDOW, n_save=N_SAVE, representation="sector", rtol=1e-10, atol=1e-12)
    for field in ("populations", "fluxes", "outputs"):
        np.testing.assert_allclose(np.asarray(getattr(lean, field)), np.asarray(getattr(ref, field)), atol=1e-9)
    assert float(lean.conservation_error) < 1e-12


def test_lean_stepper_equals_diffrax_fixed_steps(network, lean):
    """Explicit save times take diffrax's Dopri8 with the same fixed steps: the same numbers."""
    ts = np.linspace(*TRANSFER_WINDOW, N_SAVE)
    ref = cj.simulate(network, TRANSFER_WINDOW, ts=ts, representation="sector", steps=STEPS)
    np.testing.assert_allclose(np.asarray(lean.populations), np.asarray(ref.populations), atol=1e-12)
    np.testing.assert_allclose(np.asarray(lean.outputs), np.asarray(ref.outputs), atol=1e-12)


def test_lean_stepper_gradient_equals_finite_difference(network):
    """d P_receiver / d(eta, absorber bandwidth) by reverse mode through the lean stepper."""

    def population(x):
        net = network.with_parameters({"links.1.transmission": x[0], "controls.absorb.kappa": x[1]})
        res = cj.simulate(net, TRANSFER_WINDOW, n_save=2, representation="sector", steps=24)
        return res.final_population(*RECEIVER)

    x = jnp.asarray([0.7, 1.2])
    value_and_grad = jax.jit(jax.value_and_grad(population))  # one compile serves the differences
    _, grad = value_and_grad(x)
    h = 1e-5
    for i in range(2):
        e = jnp.zeros(2).at[i].set(h)
        fd = (float(value_and_grad(x + e)[0]) - float(value_and_grad(x - e)[0])) / (2 * h)
        assert abs(fd) > 1e-3
        assert abs(float(grad[i]) - fd) <= 1e-6 * abs(fd), (i, float(grad[i]), fd)


def test_packaged_tableau_is_diffrax_dopri8():
    """The Dormand-Prince coefficients shipped with the kernels are diffrax's, to the last bit."""
    import diffrax

    from chiraljax.kernels._runge_kutta import dopri8

    ours, theirs = dopri8(), diffrax.Dopri8.tableau
    assert len(ours.a) == len(theirs.a_lower)
    for row, reference in zip(ours.a, theirs.a_lower):
        np.testing.assert_array_equal(row, np.asarray(reference, dtype=float))
    np.testing.assert_array_equal(ours.b, np.asarray(theirs.b_sol, dtype=float))
    np.testing.assert_array_equal(ours.e, np.asarray(theirs.b_error, dtype=float))
    np.testing.assert_array_equal(ours.c[1:], np.asarray(theirs.c, dtype=float))
    np.testing.assert_array_equal(ours.dense, np.asarray(diffrax.Dopri8.interpolation_cls.eval_coeffs, dtype=float))
