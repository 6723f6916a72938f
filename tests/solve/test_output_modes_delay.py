"""Output modes (virtual detectors) in the delay representation, against the closed form and the
Markov model.

- A sech photon (kappa = 1) passing an empty line is caught by a detector of the same mode
  displaced by `shift` with probability |<v|u>|^2 = (a / sinh a)^2, a = kappa shift / 2.
- A qubit (rate 1) emits e^{-t/2}; a detector of a Gaussian mode at the far end of a link of
  delay tau catches |int e^{-t/2} v|^2 (quadrature), as the Markov model's detector of the mode
  shifted back by tau does.
- Conservation: what passes the detector plus what it caught is what left the end.

Tolerance 1e-7 for the photon passing the line (the windows hold the modes to e^{-20}) and 1e-6
where the emission starts abruptly (the delay kernel's step rule aims at 1e-6).
"""

from __future__ import annotations

import numpy as np
import pytest

import chiraljax as cj


def sech_overlap(shift: float) -> float:
    a = 0.5 * shift
    return 1.0 if a == 0 else (a / np.sinh(a)) ** 2


@pytest.mark.parametrize("shift", [0.0, 1.5])
def test_a_passing_photon_is_caught_with_the_mode_overlap(shift):
    net = cj.Network(
        [cj.Emitter("R")],
        [cj.Port("pR", "R", 0, 0.0, right_fraction=1.0)],
        inputs=[cj.PhotonInput("src", cj.SechMode(1.0, 0.0), end="left")],
        outputs=[cj.OutputMode("det", cj.SechMode(1.0, shift), end="right")],
    )
    result = cj.simulate(net, (-20.0, 20.0), n_save=5, representation="delay")
    caught = float(result.final_population("det"))
    assert abs(caught - sech_overlap(shift)) < 1e-7
    assert abs(caught + float(result.emitted("right")) - 1.0) < 1e-7
    assert result.names == ("R", "det")


@pytest.mark.parametrize("tau", [0.0, 3.0])
def test_a_detector_behind_a_delay_sees_the_emission_shifted(tau):
    emitters = [cj.Emitter("q"), cj.Emitter("idle")]
    ports = [cj.Port("p", "q", 0, 1.0, right_fraction=1.0), cj.Port("pi", "idle", 1, 0.0)]
    delayed = cj.Network(
        emitters,
        ports,
        links=[cj.Link(delay=tau)],
        initial={"q": 1.0},
        outputs=[cj.OutputMode("det", cj.GaussianMode(5.0 + tau, 1.0), end="right")],
    )
    plain = cj.Network(
        emitters, ports, initial={"q": 1.0}, outputs=[cj.OutputMode("det", cj.GaussianMode(5.0, 1.0), end="right")]
    )
    markov = cj.simulate(plain, (0.0, 20.0), n_save=3, method=cj.Sector(rtol=1e-10, atol=1e-12))
    delay = cj.simulate(delayed, (0.0, 20.0 + tau), n_save=3, representation="delay")
    expected = float(markov.final_population("det"))
    # |int_0^inf e^{-t/2} v(t) dt|^2 for the Gaussian v of centre 5 and width 1
    t = np.linspace(0.0, 40.0, 400001)
    v = (2 * np.pi) ** -0.25 * np.exp(-0.25 * (t - 5.0) ** 2)
    assert abs(expected - np.trapezoid(np.exp(-t / 2) * v, t) ** 2) < 1e-7
    assert abs(float(delay.final_population("det")) - expected) < 1e-6
    total = float(delay.final_population("det")) + float(delay.emitted("right")) + float(delay.final_population("q"))
    assert abs(total - 1.0) < 2e-6  # the default step of the delay kernel: 1.3e-6 here


@pytest.mark.slow  # about 16 s of compilation on 2 cores
def test_jit_and_grad_through_a_detector_of_the_delay_representation():
    """Traced modes go through (their norm is checked only when concrete), and the gradient of
    the caught probability with respect to the photon's centre equals central differences."""
    import jax

    def caught(t0):
        net = cj.Network(
            [cj.Emitter("q")],
            [cj.Port("p", "q", 0, 1.0, right_fraction=1.0)],
            inputs=[cj.PhotonInput("u", cj.GaussianMode(t0, 1.0))],
            outputs=[cj.OutputMode("v", cj.GaussianMode(2.0, 1.0), end="right")],
        )
        return cj.simulate(net, (-8.0, 12.0), n_save=2, method=cj.Delay(dt=0.02)).final_population("v")

    value, slope = jax.jit(jax.value_and_grad(caught))(0.0)
    assert abs(float(value) - float(caught(0.0))) < 1e-12
    h = 1e-4
    assert abs(float(slope) - (float(caught(h)) - float(caught(-h))) / (2 * h)) < 1e-6
