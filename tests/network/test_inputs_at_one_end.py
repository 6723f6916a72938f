"""Several photons in distinct, orthogonal modes entering at one end (cascaded virtual sources,
the upstream ones emitting pre-distorted modes: `chiraljax.network._input_cascade`).

- An empty line: a detector of either mode at the far end catches exactly one photon, in
  either order of the inputs (without the pre-distortion the upstream photon arrives reshaped
  by the downstream source and the detector catches 0.76 or 1.56 of a photon).
- A linear absorber (a harmonic level ladder, no anharmonicity): photons in orthogonal modes
  are filtered independently, <n>(t) = |psi_1(t)|^2 + |psi_2(t)|^2, each psi_i the
  single-photon amplitude, so the two-photon trace equals the sum of two one-photon solves.
- Modes that overlap, or jump inside the window, are refused before anything runs.

Tolerance 1e-7 (the emitted modes are cubic Hermite interpolants on 4096 intervals, error
O(h^4) ~ 1e-9 here). In the far tails, after the downstream source has emitted all but 1e-10
of its photon and the kernel switches its diverging coupling off, the upstream photon's last
1e-5 of amplitude passes unfiltered: the linear-absorber trace there agrees to 2e-5 only.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

import chiraljax as cj
from chiraljax._errors import ValidationError

WINDOW = (-10.0, 10.0)
TIGHT = cj.Sector(rtol=1e-10, atol=1e-12)


class HermiteGaussian1(cj.AbstractPulse):
    """The first Hermite-Gaussian mode, orthogonal to `cj.GaussianMode` of the same centre and
    width: (2 pi sigma^2)^(-1/4) x e^{-x^2/4}, x = (t - t0) / sigma."""

    t0: float
    sigma: float

    def __call__(self, t):
        x = (t - self.t0) / self.sigma
        return (2 * math.pi * self.sigma**2) ** -0.25 * x * jnp.exp(-0.25 * x**2)


GAUSS = cj.GaussianMode(0.0, 1.0)
FIRST = HermiteGaussian1(0.0, 1.0)


def _line(modes, detect=None, emitter=None):
    emitter = emitter or cj.Emitter("q")
    return cj.Network(
        [emitter],
        [cj.Port("p", "q", 0, 1.0 if detect is None else 0.0, right_fraction=1.0)],
        inputs=[cj.PhotonInput(f"u{i}", mode, end="left") for i, mode in enumerate(modes)],
        outputs=[] if detect is None else [cj.OutputMode("d", detect, end="right")],
    )


@pytest.mark.parametrize("order", ["gauss first", "hermite first"])
@pytest.mark.parametrize("detect", ["gauss", "hermite"])
def test_each_photon_arrives_in_its_own_mode(order, detect):
    modes = [GAUSS, FIRST] if order == "gauss first" else [FIRST, GAUSS]
    result = cj.simulate(_line(modes, GAUSS if detect == "gauss" else FIRST), WINDOW, method=TIGHT, n_save=2)
    assert abs(float(result.final_population("d")) - 1.0) < 1e-7
    assert float(result.conservation_error) < 1e-9


def test_full_space_agrees_with_the_sector():
    net = _line([GAUSS, FIRST], FIRST)
    full = cj.simulate(net, WINDOW, method=cj.Full(rtol=1e-10, atol=1e-12), n_save=2)
    assert abs(float(full.final_population("d")) - 1.0) < 1e-7


def test_a_linear_absorber_filters_the_two_photons_independently():
    ladder = cj.Emitter("q", levels=3, anharmonicity=0.0)
    two = cj.simulate(_line([GAUSS, FIRST], emitter=ladder), WINDOW, method=TIGHT, n_save=81)
    ones = [cj.simulate(_line([mode], emitter=ladder), WINDOW, method=TIGHT, n_save=81) for mode in (GAUSS, FIRST)]
    expected = sum(np.asarray(r.population("q")) for r in ones)
    error = np.abs(np.asarray(two.population("q")) - expected)
    while_the_photons_arrive = np.asarray(two.ts) <= 5.0
    assert np.max(error[while_the_photons_arrive]) < 1e-7
    assert np.max(error) < 2e-5  # the tails, once the downstream source has switched off
    assert float(np.max(expected)) > 0.5  # the test sees real absorption


def test_overlapping_or_jumping_modes_at_one_end_are_refused():
    with pytest.raises(ValidationError, match="orthogonal modes"):
        cj.simulate(_line([GAUSS, cj.GaussianMode(0.5, 1.0)]), WINDOW)
    box = cj.Sampled([-3.0, 3.0], [1 / math.sqrt(6.0)], kind="hold")
    with pytest.raises(ValidationError, match="smooth inside the window"):
        cj.simulate(_line([GAUSS, box]), WINDOW)
    with pytest.raises(ValidationError, match="one excitation"):
        cj.simulate(_line([GAUSS, FIRST]), WINDOW, method=cj.Delay())
