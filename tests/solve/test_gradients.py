"""Differentiation, batching and compilation of `cj.simulate`.

The model is the two-module transfer link of conftest.py (sech emission and absorption, lossy
link, T1 and dephasing) at a generic operating point, P = receiver population at the end.
jit(vmap(value_and_grad(P))) is compiled once for a batch of two points; central finite
differences use the jitted forward solve shared with the closed-form tests. Solver tolerances
rtol 1e-10 / atol 1e-12 keep the finite-difference noise (~1e-12/h, h = 1e-4) well below the
relative tolerance 1e-6.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import PAIR_SAVES, emitter_pair, transfer_parameters

import chiraljax as cj
import chiraljax.solve._simulate as simulate_module

# the parameters differentiated, at a point where none of the derivatives vanishes by symmetry
CENTRE_CHANGES = {
    "links.1.transmission": 0.7,
    "links.0.phase": 1.3,
    "ports.pA0.rate": 0.6,
    "controls.emit.kappa": 1.4,
    "emitters.A1.detuning": 0.15,
    "emitters.B1.dephasing": 0.02,
}
OTHER_CHANGES = {"links.1.transmission": 0.45, "links.0.phase": 1.7, "emitters.A1.detuning": -0.1}
STEP = 1e-4
GRAD_RTOL = 1e-6  # measured: <= 5e-8


@pytest.fixture(scope="module")
def batch(transfer_model):
    """jit(vmap(value_and_grad(P))) at a batch of two points: the centre and another point."""
    centre = transfer_parameters(transfer_model.base)
    centre.update(CENTRE_CHANGES)
    points = [centre, {**centre, **OTHER_CHANGES}]
    stacked = {k: jnp.asarray([p[k] for p in points]) for k in centre}
    value_and_grad = jax.jit(jax.vmap(jax.value_and_grad(transfer_model.population)))
    values, grads = value_and_grad(stacked)
    return points, np.asarray(values), {k: np.asarray(v) for k, v in grads.items()}, value_and_grad, stacked


@pytest.fixture(scope="module")
def finite_differences(batch, transfer_model):
    """Central differences (P(p + h) - P(p - h)) / 2h with the jitted forward solve."""
    centre = batch[0][0]
    return {
        name: (
            transfer_model({**centre, name: centre[name] + STEP})
            - transfer_model({**centre, name: centre[name] - STEP})
        )
        / (2 * STEP)
        for name in CENTRE_CHANGES
    }


@pytest.mark.parametrize("name", list(CENTRE_CHANGES))
def test_gradient_equals_central_finite_difference(batch, finite_differences, name):
    """Reverse-mode dP/dparam through the adaptive Lindblad solve = central FD, relative 1e-6."""
    grad, fd = batch[2][name][0], finite_differences[name]
    assert abs(fd) > 1e-3, "the operating point should make every parameter matter"
    assert abs(grad - fd) <= GRAD_RTOL * abs(fd), (grad, fd)


def test_vmap_equals_python_loop(batch, transfer_model):
    """The batched values equal one-by-one jitted solves."""
    points, values, _, _, _ = batch
    for k, point in enumerate(points):
        assert abs(values[k] - transfer_model(point)) < 1e-10


def test_no_recompile_when_parameter_values_change(batch, transfer_model):
    """A new parameter value reuses the compiled program: the jitted forward function and the
    batched gradient are traced once."""
    points, values, _, value_and_grad, stacked = batch
    transfer_model(points[0])
    before = transfer_model.traces
    transfer_model({**points[0], "links.1.transmission": 0.31})
    transfer_model({**points[0], "controls.emit.kappa": 0.93, "emitters.A1.detuning": -0.2})
    assert transfer_model.traces == before
    shifted = {k: v * 1.01 for k, v in stacked.items()}
    new_values, _ = value_and_grad(shifted)
    assert transfer_model.traces == before
    assert not np.allclose(np.asarray(new_values), values)


def test_simulate_reuses_its_compiled_solver(monkeypatch):
    """cj.simulate on networks of one structure with different numbers builds (traces) the model
    at most once."""
    calls = []
    original = simulate_module.compile_markov

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(simulate_module, "compile_markov", counting)

    def net(rate, detuning):
        return emitter_pair(rate_a=rate, rate_b=rate, right_fraction=(1.0, 1.0)).with_parameters(
            {"emitters.A.detuning": detuning}
        )

    ts = np.linspace(0.0, 8.0, PAIR_SAVES)  # the cascade of test_markov_closed_forms
    out = [
        float(cj.simulate(net(r, d), (0.0, 8.0), ts=ts, representation="sector").final_population("B"))
        for r, d in ((1.0, 0.0), (0.6, 0.0), (0.6, 0.3))
    ]
    assert len(calls) <= 1
    assert abs(out[0] - 64 * np.exp(-8.0)) < 1e-7 and abs(out[1] - 4.8**2 * np.exp(-4.8)) < 1e-7
    assert out[2] < out[1]  # detuned emitters exchange less
