"""Chiral modules and the protocols of the experiment against their closed forms.

Every network here has the structure of one of a few lines, so each compiled solver is reused
across parameter values (a new value is a new leaf, never a new compile).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

import chiraljax as cj
from chiraljax.experiment._modules import (
    ChiralLine,
    DataModule,
    DataRelease,
    Interconnect,
    TunableModule,
    emission_drive,
    quarter_wave_phase,
)
from chiraljax.experiment._protocols import PulsePlan, directional_emission, error_budget, route, transfer, w_state
from chiraljax.solve._metrics import directional_probability, w_fidelity_halted, w_fidelity_optimal

WQ = 30.0  # design frequency (rad/ns); the carrier equals it unless a test detunes the phase
PLAN = PulsePlan(1.0, lead=12.0, window=12.0, n_save=41)
# Photon left in the emitter at the start of a 12/kappa window, and solver tolerance.
WINDOW_TOL = 5e-5


def tunable_line(eta=1.0, delay=0.0, n=2, carrier=WQ, **module_kw) -> ChiralLine:
    mods = [TunableModule(f"M{i}", float(i), design_frequency=WQ, **module_kw) for i in range(n)]
    return ChiralLine(mods, [Interconnect(delay, eta) for _ in range(n - 1)], carrier=carrier)


def emission_probability(phi, theta, residual_exchange):
    """P_R from (|eg> + e^{i theta}|ge>)/sqrt(2) with constant gamma = 1 and a residual exchange J
    on top of the waveguide's: int |f_R|^2 = c0^dag Q c0 with i (M^dag Q - Q M) = -K_R."""
    M = np.array(
        [[0, residual_exchange + 0.5 * np.sin(phi)], [residual_exchange + 0.5 * np.sin(phi), 0]], dtype=complex
    ) - 0.5j * np.array([[1, np.cos(phi)], [np.cos(phi), 1]])
    lr = np.sqrt(0.5) * np.array([np.exp(1j * phi), 1.0])
    K = np.outer(lr.conj(), lr)
    Q = scipy.linalg.solve_sylvester(1j * M.conj().T, -1j * M, -K)
    c0 = np.array([1.0, np.exp(1j * theta)]) / np.sqrt(2)
    return float(np.real(c0.conj() @ Q @ c0))


@pytest.mark.parametrize(
    "carrier,theta", [(WQ, np.pi / 2), (WQ, -np.pi / 2), (WQ, 0.3), (0.9 * WQ, np.pi / 2), (1.15 * WQ, 1.0)]
)
def test_directionality_closed_form_with_cancellation(carrier, theta):
    """P_R = (1 + sin phi sin theta)/2 for phi(w) = (pi/2) w / w_q (the frequency-mismatch case
    w != w_q included) when the direct coupling cancels the exchange at the operating phase."""
    line = tunable_line(carrier=carrier, n=1)
    phi = float(quarter_wave_phase(carrier, WQ))
    plan = PulsePlan(1.0, lead=12.0, window=30.0, n_save=11)
    net = line.network(
        {"M0": emission_drive(line.modules[0], 1.0)},
        initial={"M0.QA": 1 / np.sqrt(2), "M0.QB": np.exp(1j * theta) / np.sqrt(2)},
    )
    res = cj.simulate(net, plan.span(), n_save=11)
    p_r, p_l = float(res.emitted("right")), float(res.emitted("left"))
    assert p_r + p_l == pytest.approx(1.0, abs=WINDOW_TOL)
    assert p_r == pytest.approx(float(directional_probability(phi, theta)), abs=WINDOW_TOL)


def test_directionality_without_cancellation_and_design_cancellation():
    """No direct coupling at phi = theta = pi/2: a quarter of the photon goes the wrong way.
    A coupling calibrated at w_q used at another frequency leaves the residual exchange
    (sin(phi) - 1)/2, checked against the Lyapunov solution of the two-qubit decay."""
    line = tunable_line(n=1, cancellation="none", max_rate=1.0)
    # Constant gamma = 1 for the closed form: drive = Constant(1), window long enough to decay.
    net = line.network({"M0": cj.Constant(1.0)}, initial={"M0.QA": 1 / np.sqrt(2), "M0.QB": 1j / np.sqrt(2)})
    res = cj.simulate(net, (0.0, 40.0), n_save=11)
    assert float(res.emitted("right")) == pytest.approx(0.75, abs=1e-6)
    assert float(res.emitted("right")) == pytest.approx(emission_probability(np.pi / 2, np.pi / 2, -0.0), abs=1e-6)
    for carrier in (0.8 * WQ, 1.1 * WQ):
        phi = float(quarter_wave_phase(carrier, WQ))
        line = tunable_line(n=1, carrier=carrier, cancellation="design")
        net = line.network({"M0": cj.Constant(1.0)}, initial={"M0.QA": 1 / np.sqrt(2), "M0.QB": 1j / np.sqrt(2)})
        res = cj.simulate(net, (0.0, 40.0), n_save=11)
        expected = emission_probability(phi, np.pi / 2, -0.5)
        assert float(res.emitted("right")) == pytest.approx(expected, abs=1e-6)
        assert expected < float(directional_probability(phi, np.pi / 2))


@pytest.mark.parametrize("direction", ["right", "left"])
def test_directional_emission_protocol_four_qubit_module(direction):
    """The four-qubit module with the exact DataRelease drive emits the whole photon one way."""
    line = ChiralLine([DataModule("M0", 0.0, gamma=10.0, design_frequency=WQ)], carrier=WQ)
    out = directional_emission(line, "M0", direction, PLAN)
    assert out.directionality == pytest.approx(1.0, abs=1e-9)
    assert out.p_right + out.p_left == pytest.approx(1.0, abs=WINDOW_TOL)


@pytest.mark.parametrize("delay,eta", [(0.0, 0.6), (3.0, 0.6), (17.5, 0.35)])
def test_transfer_equals_eta_for_ideal_modules_at_any_delay(delay, eta):
    """Markov with shifted clocks: the receiver stores exactly eta, and eps = 1."""
    out = transfer(tunable_line(eta, delay), "M0", "M1", PLAN)
    assert out.transfer_efficiency == pytest.approx(eta, abs=WINDOW_TOL)
    assert out.absorption_efficiency == pytest.approx(1.0, abs=WINDOW_TOL)
    back = transfer(tunable_line(eta, delay), "M1", "M0", PLAN, measure_incident=False)
    assert back.transfer_efficiency == pytest.approx(eta, abs=WINDOW_TOL)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.5, 4.0])
def test_transfer_equals_eta_with_the_delay_kernel(delay):
    """With real delays the receiver runs late by tau and still stores eta."""
    line = tunable_line(0.6, delay).replace(representation="delay")
    out = transfer(line, "M0", "M1", PLAN, measure_incident=False)
    assert out.transfer_efficiency == pytest.approx(0.6, abs=1e-4)


@pytest.mark.parametrize("eta", [1.0, 0.6, 0.3])
def test_w_fidelity_halted_and_optimal_fraction(eta):
    """F = (1 + sqrt(eta eps))^2 / 4 at the centre, (1 + eta eps)/2 at the optimal fraction
    (ideal modules: eps = 1)."""
    line = tunable_line(eta, 2.0)
    half = w_state(line, "M0", "M1", PLAN)
    assert half.fidelity == pytest.approx(float(w_fidelity_halted(eta)), abs=1e-4)
    assert half.kept == pytest.approx(0.5, abs=1e-4) and half.received == pytest.approx(0.5 * eta, abs=1e-4)
    best = w_state(line, "M0", "M1", PLAN, "optimal", eta_eps=eta)
    assert best.fidelity == pytest.approx(float(w_fidelity_optimal(eta)), abs=1e-4)
    left = w_state(line, "M1", "M0", PLAN)
    # the mirrored network orders its states otherwise and so takes other adaptive steps: the
    # two agree to the solver's tolerance (rtol 1e-8), not to rounding (1e-10 to 1.3e-9 seen,
    # depending on how XLA compiled the kernel)
    assert left.direction == "left" and left.fidelity == pytest.approx(half.fidelity, abs=1e-8)


# A detuned idle module of rate gamma reflects about (gamma / 2 Delta)^2 per qubit; the two
# qubits together lose less than (gamma / Delta)^2 of the photon. Stated bound of the test:
ROUTE_BOUND_FACTOR = 1.0


def test_routing_past_a_detuned_idle_module():
    """Tunable sender and receiver with a four-qubit module between them, idle and detuned by
    Delta = 20 gamma: the idle module costs less than (gamma / Delta)^2 of the transfer."""
    gamma, delta = 10.0, 200.0
    mods = [
        TunableModule("M0", 0.0, design_frequency=WQ),
        DataModule("M1", 1.0, gamma=gamma, design_frequency=WQ),
        TunableModule("M2", 2.0, design_frequency=WQ),
    ]
    line = ChiralLine(mods, [Interconnect(1.0, 0.9), Interconnect(1.0, 0.9)], carrier=WQ, idle_detuning=delta)
    out = route(line, "M0", "M2", PLAN)
    assert out.reference.transfer_efficiency == pytest.approx(0.81, abs=WINDOW_TOL)
    assert 0.0 <= out.excess_loss + WINDOW_TOL
    assert out.excess_loss < ROUTE_BOUND_FACTOR * (gamma / delta) ** 2


def test_error_budget_sums_to_the_infidelity():
    """Shapley shares + residual = 1 - F (1e-12); the five sources explain all of the
    infidelity of ideal-protocol two-qubit modules (residual below the window error 1e-4)."""
    mods = [
        TunableModule(f"M{i}", float(i), design_frequency=WQ, decay=0.002, dephasing=0.001, detuning=0.05 * i)
        for i in range(2)
    ]
    line = ChiralLine(mods, [Interconnect(2.0, 0.7, joints=[0.2, 0.2j])], carrier=1.02 * WQ)
    plan = PulsePlan(1.0, receiver_kappa=0.8, receiver_timing=0.3, lead=12.0, window=12.0, n_save=41)
    budget = error_budget(line, "M0", "M1", plan, "w_state")
    assert budget.closure() < 1e-12
    assert abs(budget.residual) < 1e-4
    assert all(v > 0 for v in budget.shares.values())
    assert budget.shares["loss"] == max(budget.shares.values())


def test_data_release_rate_and_bad_input():
    """4 u^2 / gamma -> gamma_e(t) when gamma >> kappa; kappa >= gamma is refused."""
    u = DataRelease(1.0, 1e4)
    t = np.linspace(-5, 5, 11)
    rate = 4 * np.asarray(u(t)) ** 2 / 1e4
    np.testing.assert_allclose(rate, 0.5 * (1 + np.tanh(0.5 * t)), rtol=1e-3)
    with pytest.raises(cj.ValidationError, match="kappa"):
        DataRelease(2.0, 1.0)
    with pytest.raises(cj.ValidationError, match="increasing position"):
        ChiralLine(
            [TunableModule("a", 1.0, design_frequency=WQ), TunableModule("b", 0.0, design_frequency=WQ)], carrier=WQ
        )
