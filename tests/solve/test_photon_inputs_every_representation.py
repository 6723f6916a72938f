"""One photon of many shapes absorbed by one qubit (gamma = 1), in the sector, full and delay
representations, with windows that start before the photon, against closed forms and the
direct solution of the amplitude equation.

A qubit coupled to the photon's direction with rate f gamma (f = 1 chiral, 1/2 two-sided)
obeys c' = -(gamma/2) c - sqrt(f gamma) u(t) (no delay): its excited population is
P(t) = |int_{t0}^t e^{-gamma (t - s)/2} sqrt(f gamma) u(s) ds|^2.

- decaying exponential u = sqrt(r) e^{-r t/2}, t >= 0: P(t*) = 4 r^{(1+r)/(1-r)} (4/e^2 at r = 1);
- rising exponential u = e^{t/2}, t <= 0 (the time reverse of emission): absorbed with
  probability (1 - e^{-30})^2 at t = 0 from a window starting at -30;
- rectangle of length T: P(T) = (4/T)(1 - e^{-T/2})^2;
- a two-sided qubit absorbs half of each;
- Gaussian and sech modes: the quadrature of the formula above (scipy, rtol 1e-12);
- a sampled Gaussian (linear between samples 0.002 apart) equals its analytic twin to the
  interpolation order.

Tolerance 1e-7 (2e-6 for the sampled mode). The Lindblad solves run at rtol 1e-10; the delay
kernel with a step that puts every jump on its grid.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad

import chiraljax as cj

TOL = 1e-7


class Exponential(cj.AbstractPulse):
    """u(t) = sqrt(r) e^{-r t/2} for t >= 0 (decaying, `rising=False`), or sqrt(r) e^{r t/2}
    for t <= 0 (rising)."""

    r: jnp.ndarray
    rising: bool = eqx.field(static=True, default=False)

    def __call__(self, t):
        s = -1.0 if self.rising else 1.0
        inside = (s * t) >= 0
        return jnp.where(inside, jnp.sqrt(self.r) * jnp.exp(-0.5 * self.r * jnp.where(inside, s * t, 0.0)), 0.0)

    def jump_times(self):
        return (0.0,)


def absorber(mode, right_fraction: float = 1.0) -> cj.Network:
    return cj.Network(
        [cj.Emitter("q")],
        [cj.Port("p", "q", 0, 1.0, right_fraction=right_fraction)],
        inputs=[cj.PhotonInput("u", mode, end="left")],
    )


def solve(network, window, ts, representation: str, dt: float):
    if representation == "delay":
        method = cj.Delay(dt=dt)
    elif representation == "full":
        method = cj.Full(rtol=1e-10, atol=1e-12)
    else:
        method = cj.Sector(rtol=1e-10, atol=1e-12)
    return np.asarray(cj.simulate(network, window, ts=np.asarray(ts), method=method).population("q"))


def direct(mode, window, t, fraction: float = 1.0) -> float:
    """|int_{t0}^t e^{-(t-s)/2} sqrt(f) u(s) ds|^2 by adaptive quadrature."""
    if t <= window[0]:
        return 0.0
    re = quad(
        lambda s: math.exp(-(t - s) / 2) * float(np.real(mode(s))), window[0], t, epsabs=1e-14, epsrel=1e-12, limit=400
    )[0]
    im = quad(
        lambda s: math.exp(-(t - s) / 2) * float(np.imag(mode(s))), window[0], t, epsabs=1e-14, epsrel=1e-12, limit=400
    )[0]
    return fraction * (re**2 + im**2)


REPRESENTATIONS = ["sector", "full", "delay"]


@pytest.mark.parametrize("representation", REPRESENTATIONS)
@pytest.mark.parametrize("r", [1.0, 2.0, 0.5])
def test_decaying_exponential_peak(representation, r):
    peak = 2.0 if r == 1.0 else 2 * math.log(r) / (r - 1)
    best = 4 / math.e**2 if r == 1.0 else 4 * r ** ((1 + r) / (1 - r))
    window = (-1.0, 30.0 / r)
    p = solve(absorber(Exponential(jnp.asarray(r))), window, [-1.0, peak, window[1]], representation, dt=0.01)
    assert abs(p[1] - best) < TOL


@pytest.mark.parametrize("representation", REPRESENTATIONS)
def test_two_sided_qubit_absorbs_half(representation):
    r = 2.0
    window = (-1.0, 15.0)
    p = solve(
        absorber(Exponential(jnp.asarray(r)), 0.5), window, [-1.0, 2 * math.log(r), 15.0], representation, dt=0.01
    )
    assert abs(p[1] - 0.25) < TOL


@pytest.mark.parametrize("representation", REPRESENTATIONS)
def test_rising_exponential_is_absorbed_completely(representation):
    window = (-30.0, 2.0)
    p = solve(
        absorber(Exponential(jnp.asarray(1.0), rising=True)), window, [-30.0, -1.0, 0.0, 2.0], representation, dt=0.01
    )
    assert abs(p[2] - (1 - math.exp(-30.0)) ** 2) < TOL
    assert abs(p[1] - math.exp(-1.0)) < TOL  # c(t) = -e^{t/2} for t <= 0: P(-1) = e^{-1}
    assert abs(p[3] - math.exp(-2.0)) < TOL  # then it decays freely


@pytest.mark.parametrize("representation", REPRESENTATIONS)
def test_rectangle(representation):
    T = 2.51286
    mode = cj.Sampled(np.array([0.0, T]), np.array([1 / math.sqrt(T)]), kind="hold")
    p = solve(absorber(mode), (-T, 3 * T), [-T, T, 3 * T], representation, dt=T / 200)
    assert abs(p[1] - 4 / T * (1 - math.exp(-T / 2)) ** 2) < TOL


@pytest.mark.parametrize("representation", REPRESENTATIONS)
@pytest.mark.parametrize("mode", [cj.GaussianMode(0.0, 1.0), cj.SechMode(1.5, 0.5)], ids=["gaussian", "sech"])
def test_smooth_modes_against_the_amplitude_equation(representation, mode):
    window = (-12.0, 12.0)
    ts = [-12.0, -1.0, 0.0, 0.8, 2.0, 5.0]
    p = solve(absorber(mode), window, ts, representation, dt=0.01)
    exact = [direct(mode, window, t) for t in ts]
    np.testing.assert_allclose(p, exact, atol=TOL)


@pytest.mark.parametrize("representation", REPRESENTATIONS)
def test_a_sampled_mode_equals_its_analytic_twin(representation):
    t = np.linspace(-8.0, 8.0, 8001)
    twin = cj.GaussianMode(0.0, 1.0)
    sampled = cj.Sampled(t, np.asarray(twin(jnp.asarray(t))))
    ts = [-8.0, 0.0, 1.0, 8.0]
    a = solve(absorber(sampled), (-8.0, 8.0), ts, representation, dt=0.01)
    b = solve(absorber(twin), (-8.0, 8.0), ts, representation, dt=0.01)
    np.testing.assert_allclose(a, b, atol=2e-6)


@pytest.mark.parametrize(
    "method",
    [cj.Sector(max_excitations=2, rtol=1e-10, atol=1e-12), cj.Full(rtol=1e-10, atol=1e-12)],
    ids=["sector-k2", "full"],
)
def test_two_photons_from_the_two_ends(method):
    """A photon from each end, each met by a qubit that couples only to its direction: each
    qubit absorbs what it would absorb alone (the quadrature), in the two-excitation sector and
    the full space. The delay kernel holds one excitation and says so."""
    mode = cj.SechMode(1.0, 0.0)
    net = cj.Network(
        [cj.Emitter("A"), cj.Emitter("B")],
        [cj.Port("pA", "A", 0, 1.0, right_fraction=0.0), cj.Port("pB", "B", 1, 1.0, right_fraction=1.0)],
        inputs=[cj.PhotonInput("uL", mode, end="left"), cj.PhotonInput("uR", mode, end="right")],
    )
    window = (-20.0, 20.0)
    result = cj.simulate(net, window, ts=np.array([-20.0, 0.0, 1.0]), method=method)
    for t, row in zip([0.0, 1.0], np.asarray(result.populations)[1:]):
        alone = direct(mode, window, t)
        assert abs(row[0] - alone) < TOL and abs(row[1] - alone) < TOL
    with pytest.raises(cj.ValidationError, match="holds one excitation"):
        cj.simulate(net, window, representation="delay")


class NotANumber(cj.AbstractPulse):
    """A broken mode: NaN everywhere."""

    def __call__(self, t):
        return jnp.nan * t


@pytest.mark.parametrize("representation", REPRESENTATIONS)
@pytest.mark.parametrize(
    "mode, shown",
    [
        (cj.Scaled(cj.GaussianMode(0.0, 1.0), 0.0), "= 0 over"),
        (NotANumber(), "= nan over"),
        (cj.GaussianMode(3.0, 1.0), "= 0.99865 over"),
    ],
    ids=["zero", "nan", "cut-off"],
)
def test_a_mode_that_cannot_work_is_refused_before_anything_runs(representation, mode, shown, monkeypatch):
    import chiraljax.solve._simulate

    def must_not_run(*args, **kwargs):
        raise AssertionError("the solver ran")

    monkeypatch.setattr(chiraljax.solve._simulate, "solve_markov", must_not_run)
    with pytest.raises(cj.ValidationError, match=f"the mode of 'u' has int .u.\\^2 dt {shown}"):
        cj.simulate(absorber(mode), (-6.0, 6.0), representation=representation)


def test_a_concrete_mode_is_checked_inside_jit_too(monkeypatch):
    """A mode whose numbers are known is checked under `jax.jit` as well (its norm computed
    then and there), before the solver is traced."""
    import chiraljax.solve._simulate

    def must_not_run(*args, **kwargs):
        raise AssertionError("the solver ran")

    monkeypatch.setattr(chiraljax.solve._simulate, "solve_markov", must_not_run)

    def population(rate):
        net = absorber(cj.GaussianMode(3.0, 1.0)).with_parameters({"emitters.q.decay": rate})
        return cj.simulate(net, (-6.0, 6.0), representation="sector").final_population("q")

    with pytest.raises(cj.ValidationError, match="the mode of 'u' has int .u.\\^2 dt = 0.99865 over"):
        jax.jit(population)(0.0)


@pytest.mark.parametrize("representation", ["sector", "full"])
@pytest.mark.parametrize("eta", [1.0, 0.6])
def test_a_two_photon_fock_input_is_absorbed_by_a_matched_oscillator(representation, eta):
    """Two photons in one sech mode (a Fock state: one virtual source holding two quanta) pass
    a link of power transmission eta and meet a harmonic oscillator whose coupling is the
    mode's time reverse. The oscillator is linear, so it absorbs what arrives: each photon
    survives with probability eta, and the stored state is binomial, with <n> = 2 eta and
    P(n = 2) = eta^2. Tolerance 1e-7 (the window holds the mode to e^{-20})."""
    import qutip

    emitters = [cj.Emitter("idle"), cj.Emitter("c", levels=3)]
    ports = [cj.Port("pi", "idle", 0, 0.0), cj.Port("pc", "c", 1, 1.0, right_fraction=1.0, control="absorb")]
    net = cj.Network(
        emitters,
        ports,
        links=[cj.Link(transmission=eta)],
        controls={"absorb": cj.SechAbsorption(1.0, 0.0)},
        inputs=[cj.PhotonInput("u", cj.SechMode(1.0, 0.0), photons=2)],
    )
    both = qutip.tensor(qutip.qeye(2), qutip.fock_dm(3, 2), qutip.qeye(3))
    result = cj.simulate(net, (-20.0, 20.0), n_save=3, representation=representation, e_ops={"both": both})
    assert result.dims == (2, 3, 3)
    assert abs(float(result.final_population("c")) - 2 * eta) < TOL
    assert abs(float(np.real(result.expect["both"][-1])) - eta**2) < TOL
    assert float(result.conservation_error) < 1e-9
    with pytest.raises(cj.ValidationError, match="holds one excitation"):
        cj.simulate(net, (-20.0, 20.0), representation="delay")
