"""`cj.simulate` on small Markov networks against closed forms (docs/theory.md sections 2, 4, 5).

Each network structure is compiled once (module fixtures); parameter values change through
`with_parameters` or a new Network of the same structure, which reuses the compiled solver.
Tolerances: the Lindblad solvers run at rtol 1e-8 / atol 1e-10 (1e-10 / 1e-12 for the transfer
link), so closed forms with no window truncation are checked to 1e-7; sech pulses on a finite
window miss a tail of order e^{-kappa T}, checked to 1e-4 (window +-12/kappa) or 1e-6
(+-20/kappa).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import scipy.linalg
from conftest import PAIR_SAVES, TRANSFER_KEYS, emitter_pair, transfer_parameters

import chiraljax as cj
from chiraljax.algebra._markov import compile_markov

ODE_TOL = 1e-7


# ---------------------------------------------------------------------------------------------
# free decay and the cascade of two identical emitters

CASCADE_TS = np.linspace(0.0, 8.0, PAIR_SAVES)  # contains t = 2 (the maximum of P_B for gamma = 1)


@pytest.fixture(scope="module")
def cascade():
    """A -> B on a one-way waveguide (right_fraction = 1), A excited."""
    net = emitter_pair(right_fraction=(1.0, 1.0))

    def run(**changes):
        params = {k.replace("__", "."): v for k, v in changes.items()}
        return cj.simulate(net.with_parameters(params), (0.0, 8.0), ts=CASCADE_TS, representation="sector")

    return run


@pytest.mark.parametrize("gamma", [1.0, 0.6])
def test_cascade_of_two_identical_emitters(cascade, gamma):
    """P_A = e^{-gamma t}, P_B = (gamma t)^2 e^{-gamma t}, whose maximum 4/e^2 = 0.5413 is at
    t = 2/gamma: the bound of a fixed-rate absorber."""
    r = cascade(ports__pA__rate=gamma, ports__pB__rate=gamma)
    gt = gamma * CASCADE_TS
    np.testing.assert_allclose(np.asarray(r.population("A")), np.exp(-gt), atol=ODE_TOL)
    np.testing.assert_allclose(np.asarray(r.population("B")), gt**2 * np.exp(-gt), atol=ODE_TOL)
    if gamma == 1.0:
        peak = np.asarray(r.population("B"))[CASCADE_TS == 2.0][0]
        assert abs(peak - 4 / np.e**2) < ODE_TOL and abs(4 / np.e**2 - 0.5413) < 1e-4
        assert np.asarray(r.population("B")).max() <= 4 / np.e**2 + ODE_TOL
    # nothing goes left, and every excitation is accounted for
    assert abs(float(r.emitted("left"))) < ODE_TOL
    assert float(r.conservation_error) < ODE_TOL


def test_free_decay_split_between_directions_and_t1(cascade):
    """A bidirectional port (f = 1/2) alone (B uncoupled) with T1: P_A = e^{-(gamma + gamma') t},
    half of gamma/(gamma + gamma') leaves each way, the rest through decay:A."""
    gamma, t1 = 0.8, 0.3
    r = cascade(ports__pA__rate=gamma, ports__pA__right_fraction=0.5, ports__pB__rate=0.0, emitters__A__decay=t1)
    total = gamma + t1
    np.testing.assert_allclose(np.asarray(r.population("A")), np.exp(-total * CASCADE_TS), atol=ODE_TOL)
    left = 1 - np.exp(-total * 8.0)
    assert abs(float(r.emitted("right")) - 0.5 * gamma / total * left) < ODE_TOL
    assert abs(float(r.emitted("left")) - 0.5 * gamma / total * left) < ODE_TOL
    assert abs(float(r.emitted("decay:A")) - t1 / total * left) < ODE_TOL
    assert float(np.abs(np.asarray(r.population("B"))).max()) < ODE_TOL


# ---------------------------------------------------------------------------------------------
# the chiral module: SLH model and directional emission


def module(phi: float, theta: float, g: float) -> cj.Network:
    """Equal rates gamma = 1, quarter-wave phase phi, coupling g, (|eg> + e^{i theta}|ge>)/sqrt 2."""
    return emitter_pair(phase=phi, coupling=g, initial=(1 / np.sqrt(2), np.exp(1j * theta) / np.sqrt(2)))


def test_module_slh_model_matches_theory():
    """compile_markov of a module gives L_R = sqrt(gA/2) e^{i phi} s_A + sqrt(gB/2) s_B,
    L_L = sqrt(gA/2) s_A + sqrt(gB/2) e^{i phi} s_B and H = (g + J_wg)(s_A^dag s_B + h.c.),
    J_wg = sqrt(gA gB) sin(phi)/2 (docs/theory.md section 2), to 1e-12."""
    gA, gB, phi, g, dA = 0.7, 1.3, 1.1, 0.25, 0.4
    net = cj.Network(
        [cj.Emitter("A", detuning=dA), cj.Emitter("B")],
        [cj.Port("pA", "A", 0, gA), cj.Port("pB", "B", 1, gB)],
        links=[cj.Link(phase=phi)],
        couplings=[cj.Coupling("A", "B", g)],
        initial={"A": 1.0},
    )
    space = cj.Space.qubits(["A", "B"], max_excitations=1)
    sA, sB = space.destroy("A"), space.destroy("B")

    model = compile_markov(net)
    assert model.space == space
    hamiltonian, ops = jax.tree_util.tree_map(np.asarray, model.evaluate(net, 0.3))
    np.testing.assert_allclose(ops["right"], np.sqrt(gA / 2) * np.exp(1j * phi) * sA + np.sqrt(gB / 2) * sB, atol=1e-12)
    np.testing.assert_allclose(ops["left"], np.sqrt(gA / 2) * sA + np.sqrt(gB / 2) * np.exp(1j * phi) * sB, atol=1e-12)
    J = 0.5 * np.sqrt(gA * gB) * np.sin(phi)
    exchange = sA.conj().T @ sB
    H = dA * sA.conj().T @ sA + (g + J) * (exchange + exchange.conj().T)
    np.testing.assert_allclose(hamiltonian, H, atol=1e-12)
    # the correlated decay: L_R^dag L_R + L_L^dag L_L = gA n_A + gB n_B + Gamma_AB (s_A^dag s_B + h.c.)
    decay = ops["right"].conj().T @ ops["right"] + ops["left"].conj().T @ ops["left"]
    gab = np.sqrt(gA * gB) * np.cos(phi)
    np.testing.assert_allclose(
        decay, gA * sA.conj().T @ sA + gB * sB.conj().T @ sB + gab * (exchange + exchange.conj().T), atol=1e-12
    )


def right_fraction_lyapunov(phi: float, theta: float, g: float, gamma: float = 1.0) -> float:
    """P_R = int_0^inf |<L_R>|^2 dt in the one-excitation sector, from a Lyapunov equation
    (independent of chiraljax): P_R = c0^dag X c0 with A^dag X + X A = -v v^dag, A = -i H_eff."""
    vR = np.sqrt(gamma / 2) * np.array([np.exp(1j * phi), 1.0])
    vL = np.sqrt(gamma / 2) * np.array([1.0, np.exp(1j * phi)])
    J = 0.5 * gamma * np.sin(phi) + g
    heff = np.array([[0, J], [J, 0]]) - 0.5j * (np.outer(vR.conj(), vR) + np.outer(vL.conj(), vL))
    A = -1j * heff
    X = scipy.linalg.solve_continuous_lyapunov(A.conj().T, -np.outer(vR.conj(), vR))
    c0 = np.array([1.0, np.exp(1j * theta)]) / np.sqrt(2)
    return float(np.real(c0.conj() @ X @ c0))


MODULE_WINDOW = (0.0, 40.0)


@pytest.fixture(scope="module")
def emit_module():
    def run(phi, theta, g):
        r = cj.simulate(module(phi, theta, g), MODULE_WINDOW, n_save=PAIR_SAVES, representation="sector")
        return float(r.emitted("right")), float(r.emitted("left"))

    return run


@pytest.mark.parametrize("phi", [np.pi / 2, np.pi / 3, 2.0])
@pytest.mark.parametrize("theta", [np.pi / 2, -np.pi / 2, 0.4])
def test_directional_emission_with_exchange_cancelled(emit_module, phi, theta):
    """With g = -(gamma/2) sin(phi) cancelling J_wg: P_R = (1 + sin(phi) sin(theta))/2 (to 1e-7;
    the slowest collective rate gamma(1 - |cos phi|) >= gamma/2 has decayed by e^{-20} at t = 40)."""
    g = -0.5 * np.sin(phi)
    right, left = emit_module(phi, theta, g)
    expected = 0.5 * (1 + np.sin(phi) * np.sin(theta))
    assert abs(expected - right_fraction_lyapunov(phi, theta, g)) < 1e-12
    assert abs(right - expected) < ODE_TOL
    assert abs(right + left - 1.0) < ODE_TOL


def test_directional_emission_without_cancellation(emit_module):
    """At phi = theta = pi/2 with g = 0 the uncancelled exchange sends a quarter of the photon
    the wrong way: P_R = 3/4 (also from the Lyapunov computation)."""
    right, left = emit_module(np.pi / 2, np.pi / 2, 0.0)
    assert abs(right_fraction_lyapunov(np.pi / 2, np.pi / 2, 0.0) - 0.75) < 1e-12
    assert abs(right - 0.75) < ODE_TOL and abs(left - 0.25) < ODE_TOL


# ---------------------------------------------------------------------------------------------
# sech emission and absorption between chiral modules (time-reversal transfer)

TRANSFER_TOL = 1e-4  # window +-12/kappa: the sech tails beyond it hold ~6e-6


@pytest.mark.parametrize("eta", [1.0, 0.6, 0.25])
def test_sech_transfer_succeeds_with_probability_eta(transfer_model, eta):
    """Module 0 emits a sech photon (kappa = 1), module 1 absorbs it by the time reverse: without
    T1 and dephasing the receiver ends with population eta, the link's power transmission."""
    zero = {k: 0.0 for k in TRANSFER_KEYS if k.endswith((".decay", ".dephasing"))}
    params = {**transfer_parameters(transfer_model.base), **zero, "links.1.transmission": eta}
    assert abs(transfer_model(params) - eta) < TRANSFER_TOL


def test_transfer_reproduces_peer_benchmark(transfer_model):
    """With T1 and dephasing rates 1e-3 and eta = 0.6 the receiver ends with 0.5770813, the value
    the QuTiP and dynamiqs peer solvers give (bench/), to 1e-6."""
    assert abs(transfer_model(transfer_parameters(transfer_model.base)) - 0.577081321870) < 1e-6


# ---------------------------------------------------------------------------------------------
# photon input and output mode (virtual cavities)

PHOTON_WINDOW = (-20.0, 20.0)
PHOTON_TOL = 1e-6  # +-20/kappa window: tails ~e^{-20}


def sech_overlap(kappa: float, shift: float) -> float:
    """|<f|g>|^2 of two sech modes of bandwidth kappa displaced by `shift`: int sech(x) sech(x - a)
    dx = 2a/sinh(a), so <f|g> = a/sinh(a) with a = kappa shift/2."""
    a = 0.5 * kappa * shift
    return 1.0 if a == 0 else (a / np.sinh(a)) ** 2


@pytest.fixture(scope="module")
def photon_line():
    """A sech photon (kappa = 1) enters from the left, a one-way receiver R absorbs it by the
    time-reversed coupling, and an output-mode detector at the right end catches what passes."""
    net = cj.Network(
        [cj.Emitter("R")],
        [cj.Port("pR", "R", 0, 1.0, right_fraction=1.0, control="absorb")],
        controls={"absorb": cj.SechAbsorption(1.0, 0.0)},
        inputs=[cj.PhotonInput("src", cj.SechMode(1.0, 0.0), end="left")],
        outputs=[cj.OutputMode("det", cj.SechMode(1.0, 0.0), end="right")],
    )

    def run(**changes):
        params = {k.replace("__", "."): v for k, v in changes.items()}
        return cj.simulate(net.with_parameters(params), PHOTON_WINDOW, n_save=3, representation="sector")

    return run


def test_photon_input_is_absorbed_by_time_reversed_receiver(photon_line):
    r = photon_line()
    assert abs(float(r.final_population("R")) - 1.0) < PHOTON_TOL
    assert float(r.final_population("src")) < PHOTON_TOL and float(r.final_population("det")) < PHOTON_TOL
    assert float(r.conservation_error) < PHOTON_TOL


@pytest.mark.parametrize("shift", [0.0, 1.5])
def test_output_mode_captures_mode_overlap(photon_line, shift):
    """Receiver off: the detector of mode v (sech displaced by `shift`) catches |<v|u>|^2."""
    r = photon_line(ports__pR__rate=0.0, outputs__det__t0=shift)
    assert abs(float(r.final_population("det")) - sech_overlap(1.0, shift)) < PHOTON_TOL


def test_mismatched_receiver_absorbs_mode_overlap(photon_line):
    """A receiver tuned for mode f sent a photon in mode g absorbs |<f|g>|^2 (docs/theory.md section 5)."""
    shift = 1.2
    r = photon_line(controls__absorb__t0=shift)
    assert abs(float(r.final_population("R")) - sech_overlap(1.0, shift)) < PHOTON_TOL
