"""Receiver shaping on the paper preset (`chiraljax.optimize` problem `paper`).

One compiled value-and-gradient of the paper problem serves every test here (module-scoped
fixture); finite differences reuse it, so the file costs one adaptive compile (the incident
photon) and one reverse-mode compile.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import chiraljax as cj
from chiraljax._errors import ValidationError
from chiraljax.experiment._protocols import receiver_drive, transfer_network, w_state_network
from chiraljax.network._pulses import Halted, Scaled, Shifted
from chiraljax.optimize import GradientConfig, get_problem, gradient_optimize, value_and_grad


@pytest.fixture(scope="module")
def paper():
    return get_problem("paper")


def test_shaped_network_is_the_protocol_network_with_that_drive(paper):
    """The objective's network is `ChiralLine.network` with the shaped drive, and the coupler
    shift of the receiver follows the shaped drive."""
    obj = paper.objective
    x = np.linspace(-1.0, 1.0, obj.size)
    net = obj.network_at(x)
    drive = obj.pulses(x)["drive"]
    ref = transfer_network(obj.line, obj.sender, obj.receiver, obj.plan.replace(receiver_drive=drive))
    a, b = net.parameters(), ref.parameters()
    assert a.keys() == b.keys()
    assert all(np.allclose(a[k], b[k]) for k in a)
    ts = jnp.linspace(*obj.t_span, 7)
    shift = float(obj.line.module(obj.receiver).shift)
    u, delta = (np.asarray([net.controls[f"{obj.receiver}.{c}"](t) for t in ts]) for c in ("drive", "shift"))
    assert isinstance(net.controls[f"{obj.receiver}.shift"], Scaled)
    np.testing.assert_allclose(delta, shift * u, rtol=1e-12)
    # x = 0 is the scripted drive.
    scripted = receiver_drive(obj.line, obj.sender, obj.receiver, obj.plan)
    zero = obj.pulses(np.zeros(obj.size))["drive"]
    np.testing.assert_allclose([zero(t) for t in ts], [scripted(t) for t in ts], rtol=1e-9, atol=1e-12)


def test_w_state_halts_a_given_drive_where_the_scripted_one_halts(paper):
    obj = paper.objective
    scripted = receiver_drive(obj.line, obj.sender, obj.receiver, obj.plan)
    a = w_state_network(obj.line, obj.sender, obj.receiver, obj.plan)
    b = w_state_network(obj.line, obj.sender, obj.receiver, obj.plan.replace(receiver_drive=scripted))
    name = f"{obj.receiver}.drive"
    assert isinstance(b.controls[name], Halted) and isinstance(b.controls[name].pulse, Shifted)
    ts = np.linspace(*obj.t_span, 41)
    np.testing.assert_allclose([a.controls[name](t) for t in ts], [b.controls[name](t) for t in ts], atol=1e-15)
    jumps = [[float(t) for t in net.controls[name].jump_times()] for net in (a, b)]
    assert jumps[0] == pytest.approx(jumps[1])


def test_gradient_equals_finite_differences(paper):
    """Reverse mode through the fixed-step solver against central differences (h = 1e-4 on the
    spline knots): agreement to 1e-7 absolute (measured: ~1e-10)."""
    obj, x0 = paper.objective, np.asarray(paper.x0)
    value, grad = value_and_grad(obj, x0)
    assert 0.4 < float(value) < 0.6  # the scripted drive
    h = 1e-4
    for i in np.argsort(-np.abs(np.asarray(grad)))[:4]:
        e = np.zeros_like(x0)
        e[i] = h
        fd = (float(value_and_grad(obj, x0 + e)[0]) - float(value_and_grad(obj, x0 - e)[0])) / (2 * h)
        assert abs(fd - float(grad[i])) < 1e-7, (i, fd, float(grad[i]))


def test_a_few_gradient_steps_beat_the_scripted_drive(paper):
    """Five Adam steps raise the absorption efficiency well above the scripted drive's."""
    obj, x0 = paper.objective, np.asarray(paper.x0)
    result = gradient_optimize(obj, x0, GradientConfig(method="adam", learning_rate=1.0, max_steps=5, patience=None))
    start = float(result.history.score[0])
    assert result.best_score > start + 0.08, (start, result.best_score)


def test_preset_shaping_table_is_checked():
    p = cj.load_preset("paper")
    assert p.shaping["max_drive"] > 0 and p.shaping["knots"] == 12 and p.shaping["steps"] == 64
    from chiraljax.experiment._presets import _shaping

    with pytest.raises(ValidationError, match="unknown field"):
        _shaping({"knot": 3})
    with pytest.raises(ValidationError, match="knots must be an integer"):
        _shaping({"knots": 2.5})
    with pytest.raises(ValidationError, match="problem 'paper'"):
        get_problem("paper", preset="kannan2023")


@pytest.mark.slow
def test_fixed_stepping_matches_the_adaptive_solver(paper):
    """The fixed 64-step solve agrees with the adaptive one to 1e-6 at the scripted drive and at
    random residuals of spread 2 (measured: 1e-11 and 1e-7)."""
    obj = paper.objective
    rng = np.random.default_rng(0)
    for x in (np.zeros(obj.size), rng.normal(0.0, 2.0, obj.size)):
        assert obj.check_steps(x) < 1e-6
