"""N emitters at one point of a bidirectional waveguide (instantaneous links, phase 0) decay
collectively: of a single excitation on emitter 0, the symmetric part (1/sqrt N)|S> decays at
N gamma and the rest is dark, so its amplitude is (1/N) e^{-N gamma t / 2} + 1 - 1/N.

With N = 30 and gamma = 1 the collective rate is 30 times each emitter's own; the delay
representation must take its step from the collective rate (a step from the single-emitter
rate is unstable and gave populations of 1e17). Tolerance 1e-6 (the step rule aims at 1e-6).
"""

from __future__ import annotations

import numpy as np
import pytest

import chiraljax as cj

N = 30


def _cluster() -> cj.Network:
    emitters = [cj.Emitter(f"q{i}") for i in range(N)]
    ports = [cj.Port(f"p{i}", f"q{i}", i, 1.0) for i in range(N)]
    return cj.Network(emitters, ports, initial={"q0": 1.0})


@pytest.mark.parametrize("representation", ["delay", "sector"])
def test_superradiant_cluster_matches_closed_form(representation):
    t1 = 2.0
    result = cj.simulate(_cluster(), (0.0, t1), n_save=2, representation=representation)
    amplitude = np.exp(-N * t1 / 2) / N + 1 - 1 / N
    assert abs(float(result.final_population("q0")) - amplitude**2) < 1e-6
    assert abs(float(result.scalars()["conservation_error"])) < 1e-6
