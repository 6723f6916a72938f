"""Derivatives of adaptive solves: the discrete adjoint (reverse mode, `jax.grad`), forward mode
through the loop (`adjoint="forward"`, `jax.jacfwd`), finite differences and the converged
derivative agree, with save times inside steps and with a control that jumps; a solve whose
steps overflow the tape gets a NaN gradient, never a wrong one.

Finite differences of adaptive solves are noisy at the 1e-4 level when the outputs are read
between steps (a parameter change moves the steps, and the interpolant's error with them), so
traces are checked against the derivative of a converged fixed-step solve, whose own finite
differences are smooth.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import chiraljax as cj

WINDOW = (0.0, 6.0)
NAMES = ("ports.pA.rate", "emitters.A.detuning")
X = jnp.asarray([0.8, 0.25])
ADAPTIVE = cj.Sector(rtol=1e-10, atol=1e-12)


def cascade(gate: cj.AbstractPulse) -> cj.Network:
    """A feeds B one way through a link of phase 0.4; A's coupling follows `gate`."""
    return cj.Network(
        [cj.Emitter("A", detuning=0.3), cj.Emitter("B")],
        [
            cj.Port("pA", "A", 0, 1.0, right_fraction=1.0, control="gate"),
            cj.Port("pB", "B", 1, 0.7, right_fraction=1.0),
        ],
        links=[cj.Link(phase=0.4)],
        controls={"gate": gate},
        initial={"A": 1.0},
    )


def trace_loss(x, method, gate=cj.Constant(1.0), n_save=9):
    """Sum of B's population over the save times (every save time carries a cotangent)."""
    net = cascade(gate).with_parameters(dict(zip(NAMES, x)))
    return jnp.sum(cj.simulate(net, WINDOW, n_save=n_save, method=method).population("B"))


def central_differences(fn, x, h=1e-5):
    return np.array([(float(fn(x + h * e)) - float(fn(x - h * e))) / (2 * h) for e in jnp.eye(len(x))])


def test_reverse_mode_through_saves_equals_the_converged_derivative():
    reverse = np.asarray(jax.jit(jax.grad(lambda x: trace_loss(x, ADAPTIVE)))(X))
    fixed = cj.Sector(steps=800)
    converged = np.asarray(jax.jit(jax.grad(lambda x: trace_loss(x, fixed)))(X))
    fd = central_differences(jax.jit(lambda x: trace_loss(x, fixed)), X)
    assert np.all(np.abs(fd) > 1e-2)
    np.testing.assert_allclose(converged, fd, rtol=1e-6)
    np.testing.assert_allclose(reverse, converged, rtol=1e-6)


@pytest.mark.slow  # about 20 s of compilation on 2 cores
def test_reverse_mode_across_a_jump_equals_forward_mode_and_finite_differences():
    gate = cj.Halted(cj.Constant(1.0), 2.0)
    forward_method = cj.Sector(rtol=1e-10, atol=1e-12, adjoint="forward")
    reverse = np.asarray(jax.jit(jax.grad(lambda x: trace_loss(x, ADAPTIVE, gate)))(X))
    forward = np.asarray(jax.jit(jax.jacfwd(lambda x: trace_loss(x, forward_method, gate)))(X))
    np.testing.assert_allclose(reverse, forward, rtol=1e-6)
    # the end value alone (no interpolation): finite differences are clean
    end = jax.jit(jax.grad(lambda x: trace_loss(x, ADAPTIVE, gate, n_save=2)))(X)
    fd = central_differences(jax.jit(lambda x: trace_loss(x, ADAPTIVE, gate, n_save=2)), X)
    assert np.all(np.abs(fd) > 1e-3)
    np.testing.assert_allclose(np.asarray(end), fd, rtol=1e-6)


def test_steps_past_the_stage_slots_are_evaluated_again(monkeypatch):
    """The tape keeps the stages of the first `STAGE_SLOTS` steps; the reverse pass evaluates
    those of later steps again from their recorded starts, to the same gradient."""
    from chiraljax.kernels import _runge_kutta

    taped = np.asarray(jax.jit(jax.grad(lambda x: trace_loss(x, ADAPTIVE)))(X))
    monkeypatch.setattr(_runge_kutta, "STAGE_SLOTS", 2)
    # other checkpoints: a program of its own, traced with two stage slots
    partly = cj.Sector(rtol=1e-10, atol=1e-12, checkpoints=1000)
    from chiraljax.kernels._lindblad import solve_markov
    from chiraljax.solve._simulate import _markov_call

    call = _markov_call(cascade(cj.Constant(1.0)), partly, *WINDOW, np.linspace(*WINDOW, 9), True)
    steps = int(solve_markov(*call.args, layout=call.plan.layout, stepping=call.stepping)[0].steps)
    assert steps > 2 * _runge_kutta.STAGE_SLOTS  # most steps are evaluated again
    again = np.asarray(jax.jit(jax.grad(lambda x: trace_loss(x, partly)))(X))
    np.testing.assert_allclose(again, taped, rtol=1e-12)


def test_a_tape_too_short_gives_a_nan_gradient():
    short = cj.Sector(checkpoints=3)
    grad = jax.grad(lambda x: trace_loss(x, short))(X)
    assert np.all(np.isnan(np.asarray(grad)))
    assert np.isfinite(float(trace_loss(X, short)))


def test_recorded_stages_and_stages_evaluated_again_give_the_same_gradient(monkeypatch):
    """Small states keep the stages of every step on the tape for the reverse pass; larger ones
    evaluate them again. Both are the same discrete adjoint."""
    from chiraljax.kernels import _runge_kutta

    recorded = np.asarray(jax.jit(jax.grad(lambda x: trace_loss(x, ADAPTIVE)))(X))
    monkeypatch.setattr(_runge_kutta, "_STAGES_ON_TAPE", 0)
    again = np.asarray(jax.jit(jax.grad(lambda x: trace_loss(x, ADAPTIVE)))(X))
    np.testing.assert_allclose(again, recorded, rtol=1e-12, atol=1e-15)


def test_reverse_mode_with_a_photon_input_equals_finite_differences():
    """A photon input's virtual cavity carries its mode's norm integral in the state (the
    right-hand side is then not split into operators and state work): the gradient of what the
    qubit holds at the end in its rate and the photon's width."""

    def absorbed(x):
        net = cj.Network(
            [cj.Emitter("q")],
            [cj.Port("p", "q", 0, x[0], right_fraction=1.0)],
            inputs=[cj.PhotonInput("u", cj.GaussianMode(0.0, x[1]), end="left")],
        )
        return cj.simulate(net, (-6.0, 6.0), n_save=2, method=ADAPTIVE).final_population("q")

    x = jnp.asarray([0.5, 1.1])
    grad = np.asarray(jax.jit(jax.grad(absorbed))(x))
    fd = central_differences(jax.jit(absorbed), x)
    assert np.all(np.abs(fd) > 1e-3)
    np.testing.assert_allclose(grad, fd, rtol=1e-6)


def coherence_loss(x, method):
    """|rho_AB(t1)|^2 + P_B(t1): the end state's complex coherence and a population, as functions
    of A's rate alone (one real number: 'auto' takes forward mode)."""
    net = cascade(cj.Constant(1.0)).with_parameters({NAMES[0]: x})
    res = cj.simulate(net, WINDOW, n_save=9, method=method)
    rho = res.final_state
    return jnp.abs(rho[1, 2]) ** 2 + jnp.sum(res.population("B"))


def test_one_differentiated_number_goes_by_forward_mode_and_agrees_with_the_discrete_adjoint():
    """Under 'auto' (the default) a gradient in one real number is built by forward mode, which
    needs no tape: a tape of 3 steps (a NaN gradient for the discrete adjoint, see above) still
    gives it. Forward mode, the discrete adjoint and forward mode through the loop (which
    `jax.jacfwd` of the default method gets: 'auto' steps aside under forward mode) all
    differentiate the computed solution with the step sizes held fixed, so they agree to
    rounding, through a complex output (the end state's coherence) too."""
    x = 0.8
    short = cj.Sector(rtol=1e-10, atol=1e-12, checkpoints=3)
    auto = float(jax.jit(jax.grad(lambda v: coherence_loss(v, short)))(x))
    reverse_method = cj.Sector(rtol=1e-10, atol=1e-12, adjoint="reverse")
    reverse = float(jax.jit(jax.grad(lambda v: coherence_loss(v, reverse_method)))(x))
    forward = float(jax.jit(jax.jacfwd(lambda v: coherence_loss(v, ADAPTIVE)))(x))
    assert np.isfinite(auto) and abs(auto) > 1e-2
    assert auto == pytest.approx(reverse, rel=1e-9)
    assert forward == pytest.approx(reverse, rel=1e-9)


@pytest.mark.parametrize(
    "dim, n_channels, dephased, flux_cotangent",
    [(9, 24, True, "random"), (5, 6, False, "random"), (2, 1, True, "random"), (5, 6, True, "zero")],
)
def test_the_written_out_stage_pullback_equals_jax_reverse_mode(dim, n_channels, dephased, flux_cotangent):
    """The discrete adjoint pulls each stage of a single-excitation solve through a written-out
    pullback of the right-hand side (`_rhs_pullback`); at a Hermitian state it gives JAX's own
    vector-Jacobian product, for the operators, the dephasing rates and the state, to
    rounding, with the fluxes' products skipped when their cotangents are zero."""
    from chiraljax.kernels import _lindblad

    rng = np.random.default_rng(dim)

    def complex_normal(*shape):
        return jnp.asarray(rng.normal(size=shape) + 1j * rng.normal(size=shape))

    h1, ls = complex_normal(dim - 1, dim - 1), complex_normal(n_channels, dim - 1)
    gamma = jnp.asarray(np.abs(rng.normal(size=(dim, dim)))) if dephased else None
    rho = complex_normal(dim, dim)
    state = (_lindblad._to_real(rho + rho.conj().T), jnp.asarray(rng.normal(size=n_channels)), jnp.zeros(0))
    drho_bar, flux_bar = rng.normal(size=(2, dim, dim)), rng.normal(size=n_channels)
    if flux_cotangent == "zero":  # neither the fluxes nor the ground population is read
        drho_bar[0, 0, 0], flux_bar = 0.0, np.zeros(n_channels)
    cotangent = (jnp.asarray(drho_bar), jnp.asarray(flux_bar), jnp.zeros(0))
    operators = (h1, ls, gamma)
    expected = jax.vjp(_lindblad._rhs_given_operators, operators, state)[1](cotangent)
    written = _lindblad._rhs_pullback(operators, state, cotangent)
    assert jax.tree.structure(written) == jax.tree.structure(expected)
    for got, want in zip(jax.tree.leaves(written), jax.tree.leaves(expected)):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)
