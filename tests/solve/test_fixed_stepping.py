"""Fixed 8th-order stepping (`simulate(..., steps=n)`), in particular the lean stepper used when
the save times fall on step ends (sweeps and pulse optimisation save only the end points).

The model is the two-module transfer link of conftest.py (sech pulses are smooth, so fixed steps
converge at 8th order). Tolerances: 48 steps meet the adaptive solve at rtol 1e-10 to 1e-9
(measured 8e-12 on the sweep grid); explicit save times take the fixed grid of the adaptive
loop, which agrees with the lean stepper and with diffrax's Dopri8 on the same steps to rounding
(1e-12); reverse-mode gradients equal central differences of the same discretisation to 1e-6
relative.
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


def test_explicit_save_times_on_the_step_ends_give_the_lean_steppers_numbers(network, lean):
    """Explicit save times take the fixed grid of the adaptive loop: on the step ends it takes
    the lean stepper's steps, so the numbers agree to rounding."""
    ts = np.linspace(*TRANSFER_WINDOW, N_SAVE)
    ref = cj.simulate(network, TRANSFER_WINDOW, ts=ts, representation="sector", steps=STEPS)
    np.testing.assert_allclose(np.asarray(lean.populations), np.asarray(ref.populations), atol=1e-12)
    np.testing.assert_allclose(np.asarray(lean.outputs), np.asarray(ref.outputs), atol=1e-12)


def _diffrax_fixed_steps(network, ts, steps):
    """The same model integrated by diffrax's Dopri8 with `steps` constant steps and its own
    interpolation at `ts`: (populations at ts, final outputs)."""
    import diffrax

    from chiraljax.algebra._markov import ParameterAtoms
    from chiraljax.kernels._lindblad import _observe, _rhs, _to_real, assemble, dephasing_rates
    from chiraljax.solve._simulate import markov_plan

    plan = markov_plan(network, 1)
    layout, arrays, model = plan.layout, plan.arrays, plan.model
    t0, t1 = TRANSFER_WINDOW
    rates = [e.dephasing for e in network.emitters]
    rates += [0.0] * (arrays.numbers.shape[1] - len(rates))
    gamma = dephasing_rates(arrays.numbers, jnp.asarray(rates, float))
    gen = assemble(
        arrays, layout, layout.atoms(ParameterAtoms.inputs(network)), model.time_pulses(network, (t0, t1)), gamma
    )
    psi0 = (
        jnp.zeros(layout.dim, complex)
        .at[np.asarray(arrays.initial_index)]
        .set(jnp.asarray(model.initial_amplitudes(network), complex))
    )
    y0 = (_to_real(jnp.outer(psi0, psi0.conj())), jnp.zeros(layout.n_channels), jnp.zeros(0))
    args = (gen, jnp.asarray(arrays.numbers), jnp.zeros((0, layout.dim, layout.dim), complex))
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(_rhs),
        diffrax.Dopri8(),
        t0=t0,
        t1=t1,
        dt0=(t1 - t0) / steps,
        y0=y0,
        args=args,
        saveat=diffrax.SaveAt(ts=jnp.asarray(ts), fn=_observe),
        stepsize_controller=diffrax.ConstantStepSize(),
        max_steps=steps,
    )
    return np.asarray(sol.ys[0]), np.asarray(sol.ys[2][-1])


@pytest.mark.filterwarnings("ignore:Complex dtype support in Diffrax")  # the state is real
def test_save_times_between_step_ends_equal_diffrax_fixed_steps(network):
    """Save times between the step ends are read from the interpolant of the same fixed steps:
    diffrax's Dopri8 with the same steps and its own interpolation gives the same numbers to
    rounding (1e-12)."""
    steps = 12
    ts = np.sort(np.concatenate([np.linspace(-11.3, 11.9, 9), [TRANSFER_WINDOW[1]]]))
    ours = cj.simulate(network, TRANSFER_WINDOW, ts=ts, method=cj.Sector(steps=steps))
    populations, outputs = _diffrax_fixed_steps(network, ts, steps)
    np.testing.assert_allclose(np.asarray(ours.populations), populations, atol=1e-12)
    np.testing.assert_allclose(np.asarray(ours.outputs)[-1], outputs, atol=1e-12)


def test_many_save_times_in_one_step_converge_to_the_adaptive_solve(network):
    """More save times than one step reads (8) inside a grid step: the step is cut and finished,
    and the traces at 61 uneven save times still meet the adaptive solve at rtol 1e-10 to the
    accuracy of the fixed steps: 1e-9 at the step ends (the outputs' last row), 1e-8 between
    them, where the interpolant is one order less accurate than the steps."""
    rng = np.random.default_rng(3)
    ts = np.sort(np.concatenate([rng.uniform(*TRANSFER_WINDOW, 59), TRANSFER_WINDOW]))
    fixed = cj.simulate(network, TRANSFER_WINDOW, ts=ts, method=cj.Sector(steps=STEPS))
    ref = cj.simulate(network, TRANSFER_WINDOW, ts=ts, method=cj.Sector(rtol=1e-10, atol=1e-12))
    for field in ("populations", "fluxes", "outputs"):
        np.testing.assert_allclose(np.asarray(getattr(fixed, field)), np.asarray(getattr(ref, field)), atol=1e-8)
    np.testing.assert_allclose(np.asarray(fixed.outputs)[-1], np.asarray(ref.outputs)[-1], atol=1e-9)
    assert float(fixed.conservation_error) < 1e-11


def test_fixed_grid_gradients_equal_finite_differences(network):
    """Reverse mode (the discrete adjoint of the grid's steps) and forward mode through fixed
    steps with save times between the step ends equal central differences of the same
    discretisation to 1e-6 relative."""
    ts = jnp.asarray([-12.0, -3.3, 4.1, 12.0])

    def population(x, adjoint):
        net = network.with_parameters({"links.1.transmission": x[0], "controls.absorb.kappa": x[1]})
        res = cj.simulate(net, TRANSFER_WINDOW, ts=ts, method=cj.Sector(steps=24, adjoint=adjoint))
        return res.populations[2, 2] + res.final_population(*RECEIVER)

    x = jnp.asarray([0.7, 1.2])
    reverse = jax.jit(jax.value_and_grad(lambda x_: population(x_, "reverse")))
    forward = jax.jit(jax.jacfwd(lambda x_: population(x_, "forward")))
    _, grad = reverse(x)
    np.testing.assert_allclose(np.asarray(forward(x)), np.asarray(grad), rtol=1e-9)
    _assert_central_differences(reverse, x)


def _assert_central_differences(value_and_grad, x, h: float = 1e-5) -> None:
    """The gradient of a jitted value-and-gradient equals central differences of its value
    (one compile serves both) to 1e-6 relative, along every coordinate."""
    _, grad = value_and_grad(x)
    for i in range(x.shape[0]):
        e = jnp.zeros(x.shape[0]).at[i].set(h)
        fd = (float(value_and_grad(x + e)[0]) - float(value_and_grad(x - e)[0])) / (2 * h)
        assert abs(fd) > 1e-3
        assert abs(float(grad[i]) - fd) <= 1e-6 * abs(fd), (i, float(grad[i]), fd)


def test_lean_stepper_gradient_equals_finite_difference(network):
    """d P_receiver / d(eta, absorber bandwidth) by reverse mode through the lean stepper."""

    def population(x):
        net = network.with_parameters({"links.1.transmission": x[0], "controls.absorb.kappa": x[1]})
        res = cj.simulate(net, TRANSFER_WINDOW, n_save=2, representation="sector", steps=24)
        return res.final_population(*RECEIVER)

    _assert_central_differences(jax.jit(jax.value_and_grad(population)), jnp.asarray([0.7, 1.2]))


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
