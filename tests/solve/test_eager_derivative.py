"""An eager derivative in one real number goes through a kept program that computes the solve
and its derivative column together, an eager gradient in several through kept programs of the
solve and of its discrete adjoint (`chiraljax.solve._eager_derivative`): they equal the ordinary
path's derivatives and finite differences; anything else takes the ordinary path."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import RECEIVER, TRANSFER_WINDOW, chiral_link

import chiraljax as cj
from chiraljax.solve import _eager_derivative

KEY = "links.1.transmission"


@pytest.fixture(scope="module")
def link():
    return chiral_link()


@pytest.fixture
def kept_columns(monkeypatch):
    """The names of the kept column programs bound during a test."""
    names = []
    original = _eager_derivative.bind_cached

    def spy(name, *args, **kwargs):
        names.append(name)
        return original(name, *args, **kwargs)

    monkeypatch.setattr(_eager_derivative, "bind_cached", spy)
    return names


def transfer(link, eta, method=None):
    result = cj.simulate(link.with_parameters({KEY: eta}), TRANSFER_WINDOW, n_save=5, method=method)
    return result.final_population(*RECEIVER)


@pytest.fixture(scope="module")
def reference(link):
    """The value and derivative at eta = 0.6 by the ordinary path (jitted: traced, no kept
    program), and by central finite differences."""
    value, slope = jax.jit(jax.value_and_grad(lambda e: transfer(link, e)))(0.6)
    step = 1e-5
    fd = (float(transfer(link, 0.6 + step)) - float(transfer(link, 0.6 - step))) / (2 * step)
    return float(value), float(slope), fd


def test_an_eager_gradient_uses_the_kept_column_and_equals_the_ordinary_path(link, reference, kept_columns):
    value, slope = jax.value_and_grad(lambda e: transfer(link, e))(0.6)
    assert kept_columns == ["markov-forward-column"]
    ref_value, ref_slope, fd = reference
    # the same computed solution differentiated two ways: forward mode holds the steps fixed
    assert float(value) == pytest.approx(ref_value, abs=1e-10)
    assert float(slope) == pytest.approx(ref_slope, rel=1e-8)
    assert float(slope) == pytest.approx(fd, rel=1e-6)


def test_eager_forward_mode_and_jacfwd_give_the_same_slope(link, reference, kept_columns):
    _, tangent = jax.jvp(lambda e: transfer(link, e), (0.6,), (1.0,))
    jacobian = jax.jacfwd(lambda e: transfer(link, e))(0.6)
    assert kept_columns == ["markov-forward-column"] * 2
    assert float(tangent) == pytest.approx(reference[1], rel=1e-8)
    assert float(jacobian) == pytest.approx(reference[1], rel=1e-8)


def test_a_gradient_through_every_saved_population(link, kept_columns):
    """A cotangent on the whole time series (not only the end point) is contracted too."""

    def mean_receiver(eta):
        pops = cj.simulate(link.with_parameters({KEY: eta}), TRANSFER_WINDOW, n_save=5).populations
        return jnp.mean(pops[:, 2] + pops[:, 3])

    eager = jax.grad(mean_receiver)(0.6)
    ordinary = jax.jit(jax.grad(mean_receiver))(0.6)
    assert kept_columns == ["markov-forward-column"]
    assert float(eager) == pytest.approx(float(ordinary), rel=1e-8)


def two_numbers(link, p, method=None):
    return transfer(link.with_parameters({"links.0.phase": p[1]}), p[0], method=method)


def test_an_eager_gradient_in_several_numbers_uses_the_kept_pullback(link, reference, kept_columns):
    """Several numbers: the solve with its adjoint's tape and, with the cotangent, the discrete
    adjoint from that tape, each a kept program; the same gradient as the jitted ordinary
    path."""
    p = jnp.array([0.6, np.pi / 2])
    value, grads = jax.value_and_grad(lambda q: two_numbers(link, q))(p)
    assert kept_columns == ["markov-taped", "markov-taped-pullback"]
    ordinary = jax.jit(jax.grad(lambda q: two_numbers(link, q)))(p)
    np.testing.assert_allclose(np.asarray(grads), np.asarray(ordinary), rtol=1e-10, atol=1e-12)
    assert float(value) == pytest.approx(reference[0], abs=1e-10)
    assert float(grads[0]) == pytest.approx(reference[1], rel=1e-7)
    # the discrete adjoint asked for by name takes the same programs in one number too
    kept_columns.clear()
    slope = jax.grad(lambda e: transfer(link, e, method=cj.Sector(adjoint="reverse")))(0.6)
    assert kept_columns == ["markov-taped", "markov-taped-pullback"]
    assert float(slope) == pytest.approx(reference[1], rel=1e-7)


def test_a_pullback_through_every_saved_population_in_several_numbers(link, kept_columns):
    def mean_receiver(p):
        net = link.with_parameters({KEY: p[0], "links.0.phase": p[1]})
        pops = cj.simulate(net, TRANSFER_WINDOW, n_save=5).populations
        return jnp.mean(pops[:, 2] + pops[:, 3])

    p = jnp.array([0.6, np.pi / 2])
    eager = jax.grad(mean_receiver)(p)
    ordinary = jax.jit(jax.grad(mean_receiver))(p)
    assert kept_columns == ["markov-taped", "markov-taped-pullback"]
    # the same computed solution (its operators built from packed numbers there, folded constants
    # here: the step sizes may differ in the last bits)
    np.testing.assert_allclose(np.asarray(eager), np.asarray(ordinary), rtol=1e-8, atol=1e-12)


def test_other_derivatives_take_the_ordinary_path(link, reference, kept_columns):
    p = jnp.array([0.6, np.pi / 2])
    # a jit around the derivative: everything is traced
    jitted = jax.jit(jax.grad(lambda q: two_numbers(link, q)))(p)
    # forward mode in several numbers
    columns = jax.jacfwd(lambda q: two_numbers(link, q))(p)
    assert kept_columns == []
    assert float(jitted[0]) == pytest.approx(reference[1], rel=1e-7)
    np.testing.assert_allclose(np.asarray(columns), np.asarray(jitted), rtol=1e-7)


def test_an_eager_gradient_of_a_delay_solve_uses_its_kept_column(kept_columns):
    """An atom before a mirror (round trip tau = 1): the trapped population (1 + Gamma tau/2)^-2
    has the slope -tau (1 + Gamma tau/2)^-3 = -8/27 in Gamma at Gamma = 1 (THEORY.md section 3)."""

    def trapped(gamma):
        net = cj.Network(
            [cj.Emitter("a")],
            [cj.Port("p", "a", 1.0, gamma)],
            scatterers=[cj.Scatterer("m", 0.0, -1.0)],
            links=[cj.Link(delay=0.5)],
            initial={"a": 1.0},
        )
        return cj.simulate(net, (0.0, 12.0), dt=0.05).final_population("a")

    value, slope = jax.value_and_grad(trapped)(1.0)
    assert kept_columns == ["delay-forward-column"]
    assert float(value) == pytest.approx(4 / 9, abs=1e-8)
    assert float(slope) == pytest.approx(-8 / 27, abs=1e-7)


def test_a_failed_pullback_program_falls_back_to_jax_reverse_mode(link, reference, monkeypatch):
    """When the kept program of the backward pass fails, the same product comes from JAX's
    reverse mode in Python, not a wrong or missing gradient."""
    original = _eager_derivative.bind_cached

    def failing_pullback(name, *args, **kwargs):
        run = original(name, *args, **kwargs)
        return (lambda: None) if name.endswith("-taped-pullback") else run

    monkeypatch.setattr(_eager_derivative, "bind_cached", failing_pullback)
    p = jnp.array([0.6, np.pi / 2])
    grads = jax.grad(lambda q: two_numbers(link, q))(p)
    ordinary = jax.jit(jax.grad(lambda q: two_numbers(link, q)))(p)
    np.testing.assert_allclose(np.asarray(grads), np.asarray(ordinary), rtol=1e-8, atol=1e-12)
