"""`cj.simulate(..., representation='delay')`: the delay kernel behind the Network.

The networks are tiny and each structure is compiled once (module-scoped fixtures); parameter
values go in through `Network.with_parameters`, which never recompiles.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import chiral_link, delay_series

import chiraljax as cj
from chiraljax import ValidationError
from chiraljax.algebra._delay_model import plan_delay

# ---------------------------------------------------------------------------------------------
# Atom in front of a mirror: a Scatterer with reflection -1, the port a distance tau/2 away.

MIRROR_TAU, MIRROR_DT, MIRROR_T = 1.0, 0.05, 12.0


def mirror_network(tau: float = MIRROR_TAU, reflection: float = -1.0, dephasing: float = 0.0) -> cj.Network:
    return cj.Network(
        [cj.Emitter("a", dephasing=dephasing)],
        [cj.Port("p", "a", 1.0, 1.0)],
        scatterers=[cj.Scatterer("m", 0.0, reflection)],
        links=[cj.Link(delay=tau / 2)],
        initial={"a": 1.0},
    )


@pytest.fixture(scope="module")
def mirror():
    return cj.simulate(mirror_network(), (0.0, MIRROR_T), n_save=241, dt=MIRROR_DT)


def test_auto_picks_delay_for_a_mirror(mirror):
    assert mirror.representation == "delay"
    assert mirror.names == ("a",)
    assert mirror.channel_names == ("right", "left", "loss:link0", "absorbed:m", "decay:a")
    assert mirror.channel_kinds == ("end", "end", "loss", "loss", "decay")


def test_mirror_trace_and_trapped_population(mirror):
    exact = delay_series(0.5, 0.5, MIRROR_TAU, np.asarray(mirror.ts))
    np.testing.assert_allclose(np.asarray(mirror.amplitudes[:, 0]), exact, atol=1e-8)
    trapped = (1 + MIRROR_TAU / 2) ** -2
    assert abs(float(mirror.final_population("a")) - trapped) < 1e-8
    # What is not trapped left through the right end or is still between atom and mirror.
    total = mirror.final_population("a") + mirror.emitted("right") + mirror.in_flight[-1]
    assert abs(float(total) - 1.0) < 1e-7


def test_mirror_conservation(mirror):
    assert float(mirror.conservation_error) < 1e-7
    assert float(mirror.emitted("left")) == 0.0


# ---------------------------------------------------------------------------------------------
# Two ideal chiral emitters: sech emission, absorption shifted by the delay, a lossy link.

CASCADE_WINDOW, CASCADE_DT = (-15.0, 16.5), 0.1


def cascade_network(tau: float = 0.5, eta: float = 0.8, kappa_b: float = 1.0) -> cj.Network:
    controls = {"emit": cj.SechEmission(1.0, 0.0), "absorb": cj.Shifted(cj.SechAbsorption(kappa_b, 0.0), tau)}
    return cj.Network(
        [cj.Emitter("a"), cj.Emitter("b")],
        [
            cj.Port("pa", "a", 0.0, 1.0, right_fraction=1.0, control="emit"),
            cj.Port("pb", "b", 1.0, 1.0, right_fraction=1.0, control="absorb"),
        ],
        links=[cj.Link(delay=tau, transmission=eta, phase=0.7)],
        controls=controls,
        initial={"a": 1.0},
    )


@pytest.fixture(scope="module")
def cascade():
    """Vmapped over (delay, eta, kappa_b), compiled once; counts its traces."""
    base = cascade_network()
    traces = []

    @jax.jit
    @jax.vmap
    def run(tau, eta, kappa_b):
        traces.append(1)
        net = base.with_parameters(
            {
                "links.0.delay": tau,
                "controls.absorb.delay": tau,
                "links.0.transmission": eta,
                "links.0.phase": 0.7 + tau,
                "controls.absorb.pulse.kappa": kappa_b,
            }
        )
        r = cj.simulate(net, CASCADE_WINDOW, ts=np.array(CASCADE_WINDOW), dt=CASCADE_DT)
        return r.final_population("b"), r.conservation_error, r.emitted("loss:link0")

    return run, traces


def test_ideal_chiral_transfer_is_eta_for_any_delay(cascade):
    run, traces = cascade
    taus = jnp.array([0.3, 0.75, 1.15])
    etas = jnp.array([0.8, 0.5, 0.95])
    p_b, err, lost = run(taus, etas, jnp.ones(3))
    np.testing.assert_allclose(np.asarray(p_b), np.asarray(etas), atol=1e-6)
    np.testing.assert_allclose(np.asarray(lost), 1 - np.asarray(etas), atol=1e-6)
    assert float(err.max()) < 1e-7
    # New delays: no recompilation.
    n = len(traces)
    p_b2, _, _ = run(taus + 0.2, etas, jnp.ones(3))
    assert len(traces) == n
    np.testing.assert_allclose(np.asarray(p_b2), np.asarray(etas), atol=1e-6)


def test_one_way_cascade_matches_qutip(cascade):
    """A mismatched receiver (kappa_b = 0.6): with the delay shifted out the cascade is Markov,
    so QuTiP's cascaded master equation (no delay, unshifted controls) must agree."""
    qutip = pytest.importorskip("qutip")
    run, _ = cascade
    eta, kb = 0.7, 0.6
    p_b, _, _ = run(jnp.array([0.9]), jnp.array([eta]), jnp.array([kb]))

    sm = qutip.destroy(2)
    a, b = qutip.tensor(sm, qutip.qeye(2)), qutip.tensor(qutip.qeye(2), sm)
    ge = lambda t: 0.5 * (1 + np.tanh(0.5 * t))  # noqa: E731
    ga = lambda t: 0.5 * kb * (1 - np.tanh(0.5 * kb * t))  # noqa: E731
    # L_out = sqrt(eta ge) a + sqrt(ga) b; loss sqrt((1 - eta) ge) a;
    # H = (1/2i)(L_b^dag L_a - L_a^dag L_b) of the series product.
    x = b.dag() * a
    H = [[x, lambda t: 0.5j * -np.sqrt(eta * ge(t) * ga(t))], [x.dag(), lambda t: 0.5j * np.sqrt(eta * ge(t) * ga(t))]]
    c_ops = [
        qutip.QobjEvo([[a, lambda t: np.sqrt(eta * ge(t))], [b, lambda t: np.sqrt(ga(t))]]),
        qutip.QobjEvo([[a, lambda t: np.sqrt((1 - eta) * ge(t))]]),
    ]
    psi0 = qutip.tensor(qutip.basis(2, 1), qutip.basis(2, 0))
    t0, t1 = CASCADE_WINDOW
    res = qutip.mesolve(
        qutip.QobjEvo(H),
        psi0,
        [t0, t1 - 0.9],
        c_ops=c_ops,
        e_ops=[b.dag() * b],
        options={"atol": 1e-12, "rtol": 1e-10, "nsteps": 100_000},
    )
    assert abs(float(p_b[0]) - res.expect[0][-1]) < 1e-6


# ---------------------------------------------------------------------------------------------
# Markov limit: zero-delay links, the delay kernel equals the sector solver.


def two_modules(eta: float = 0.6, decay: float = 1e-3, dephasing: float = 0.0) -> cj.Network:
    return chiral_link(eta, decay, dephasing)


def test_markov_limit_small_cascade():
    """Zero-delay, partly chiral pair with detuning, a direct coupling and T1."""
    net = cj.Network(
        [cj.Emitter("a", decay=0.05), cj.Emitter("b", detuning=0.3)],
        [cj.Port("pa", "a", 0.0, 1.0, right_fraction=0.8), cj.Port("pb", "b", 1.0, 0.7, right_fraction=0.6)],
        links=[cj.Link(transmission=0.9, phase=0.4)],
        couplings=[cj.Coupling("a", "b", 0.2)],
        initial={"a": 1.0},
    )
    ts = np.linspace(0.0, 4.0, 9)
    delay = cj.simulate(net, (0.0, 4.0), ts=ts, representation="delay", dt=0.02)
    sector = cj.simulate(net, (0.0, 4.0), ts=ts, representation="sector", rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(delay.populations), np.asarray(sector.populations), atol=1e-6)
    for channel in ("right", "left", "decay:a"):
        np.testing.assert_allclose(
            np.asarray(delay.outputs[:, delay.channel_names.index(channel)]),
            np.asarray(sector.outputs[:, sector.channel_names.index(channel)]),
            atol=1e-6,
        )
    assert float(delay.conservation_error) < 1e-7


@pytest.mark.slow
def test_markov_limit_equals_sector():
    net = two_modules()
    assert cj.simulate(net, (-12.0, -11.0), n_save=2, representation="auto").representation == "sector"
    ts = np.linspace(-12.0, 12.0, 25)
    delay = cj.simulate(net, (-12.0, 12.0), ts=ts, representation="delay")
    sector = cj.simulate(net, (-12.0, 12.0), ts=ts, representation="sector", rtol=1e-10, atol=1e-12)
    assert delay.representation == "delay"
    np.testing.assert_allclose(np.asarray(delay.populations), np.asarray(sector.populations), atol=1e-6)
    for channel in ("right", "left", "decay:A1"):
        np.testing.assert_allclose(
            np.asarray(delay.outputs[:, delay.channel_names.index(channel)]),
            np.asarray(sector.outputs[:, sector.channel_names.index(channel)]),
            atol=1e-6,
        )
    lost = sum(float(sector.emitted(f"loss:link1:{d}")) for d in "RL")
    assert abs(float(delay.emitted("loss:link1")) - lost) < 1e-6
    assert float(delay.conservation_error) < 1e-7
    assert float(jnp.abs(delay.in_flight).max()) == 0.0


# ---------------------------------------------------------------------------------------------
# Gradients through cj.simulate.

GRAD_POINT = {"delay": 0.565, "phase": 0.4, "eta": 0.85, "r": -0.8}


@pytest.fixture(scope="module")
def mirror_value():
    base = mirror_network(reflection=-0.8)

    def value(p):
        net = base.with_parameters(
            {
                "links.0.delay": p["delay"],
                "links.0.phase": p["phase"],
                "links.0.transmission": p["eta"],
                "scatterers.m.reflection": p["r"],
            }
        )
        r = cj.simulate(net, (0.0, 3.0), ts=np.array([0.0, 3.0]), dt=MIRROR_DT, max_delay=1.0)
        return r.final_population("a")

    return jax.jit(jax.value_and_grad(value))


def test_gradients_equal_finite_differences(mirror_value):
    value_and_grad = mirror_value
    value = lambda p: value_and_grad(p)[0]  # noqa: E731  (one compiled function for both)
    point = {k: jnp.asarray(v) for k, v in GRAD_POINT.items()}
    _, g = value_and_grad(point)
    h = 1e-5
    for name in point:
        up = dict(point, **{name: point[name] + h})
        down = dict(point, **{name: point[name] - h})
        fd = (float(value(up)) - float(value(down))) / (2 * h)
        assert abs(float(g[name]) - fd) < 1e-6 * max(1.0, abs(fd)), (name, float(g[name]), fd)
        assert abs(fd) > 1e-3, name  # every parameter matters here


def test_a_gradient_in_one_number_goes_by_forward_mode_and_matches_the_bound_state():
    """The trapped population |c(inf)|^2 = (1 + Gamma tau / 2)^-2 has the slope
    d/dGamma = -tau (1 + Gamma tau / 2)^-3 (-8/27 at Gamma = tau = 1). Under 'auto' (the
    default) `jax.grad` in the one rate goes by forward mode, and `jax.jvp` of the default
    (which 'auto' leaves to JAX's forward mode) gives the same derivative of the same discrete
    solution (reverse mode, for several numbers, is `test_gradients_equal_finite_differences`)."""

    def trapped(rate, adjoint):
        net = mirror_network().with_parameters({"ports.p.rate": rate})
        method = cj.Delay(dt=MIRROR_DT, adjoint=adjoint)
        return cj.simulate(net, (0.0, MIRROR_T), n_save=2, method=method).final_population("a")

    auto = float(jax.jit(jax.grad(lambda r: trapped(r, "auto")))(1.0))
    _, forward = jax.jit(lambda r: jax.jvp(lambda x: trapped(x, "auto"), (r,), (1.0,)))(1.0)
    assert auto == pytest.approx(-8 / 27, abs=1e-7)
    assert float(forward) == pytest.approx(auto, rel=1e-10)


@pytest.mark.slow  # about 10 s of compilation
def test_the_bound_state_curvature_by_forward_over_reverse():
    """`jax.hessian` (forward over reverse) of the default method: 'auto' steps aside, and the
    curvature is (3 tau^2 / 4) (1 + Gamma tau / 2)^-4 = 8/27 at Gamma = tau = 1."""
    net = mirror_network()

    def trapped(rate):
        changed = net.with_parameters({"ports.p.rate": rate})
        return cj.simulate(changed, (0.0, MIRROR_T), n_save=2, method=cj.Delay(dt=MIRROR_DT)).final_population("a")

    assert float(jax.jit(jax.hessian(trapped))(1.0)) == pytest.approx(8 / 27, abs=1e-6)


# ---------------------------------------------------------------------------------------------
# Dephasing: phase-noise trajectories.


def dephased_cascade(gamma_phi: float = 0.3) -> cj.Network:
    return cj.Network(
        [cj.Emitter("a", dephasing=gamma_phi), cj.Emitter("b", detuning=0.3, dephasing=gamma_phi)],
        [cj.Port("pa", "a", 0.0, 1.0, right_fraction=1.0), cj.Port("pb", "b", 1.0, 0.7, right_fraction=1.0)],
        initial={"a": 1.0},
    )


def test_dephasing_trajectories_reproducible_with_stderr():
    net = dephased_cascade()
    ts = np.linspace(0.0, 3.0, 7)
    opts = dict(ts=ts, representation="delay", dt=0.01, n_trajectories=128)
    r1 = cj.simulate(net, (0.0, 3.0), key=jax.random.key(1), **opts)
    r2 = cj.simulate(net, (0.0, 3.0), key=jax.random.key(1), **opts)
    r3 = cj.simulate(net, (0.0, 3.0), key=jax.random.key(2), **opts)
    np.testing.assert_array_equal(np.asarray(r1.populations), np.asarray(r2.populations))
    assert not np.array_equal(np.asarray(r1.populations), np.asarray(r3.populations))
    err = np.asarray(r1.populations_stderr)
    assert err.shape == (7, 2) and np.all(err[1:, 1] > 0)
    assert r1.amplitudes is None
    # Against the exact dephased master equation: within 4 standard errors plus the O(dt) bias.
    exact = cj.simulate(net, (0.0, 3.0), ts=ts, representation="sector", rtol=1e-10, atol=1e-12)
    dev = np.abs(np.asarray(r1.populations) - np.asarray(exact.populations))
    assert np.all(dev <= 4 * err + 2e-3), (dev, err)
    assert float(r1.conservation_error) < 1e-5  # per trajectory; the noise is rough at dt


# ---------------------------------------------------------------------------------------------
# Bad input.


def test_delay_shorter_than_step():
    with pytest.raises(ValidationError, match=r"Link 0: delay 0\.1 is shorter than the step"):
        cj.simulate(mirror_network(tau=0.2), (0.0, 1.0), dt=0.5)


def test_non_unitary_scatterer():
    with pytest.raises(ValidationError, match="not a passive element"):
        cj.Scatterer("m", 0.0, 0.8, 0.8)
    lossy = cj.Network(
        [cj.Emitter("a")],
        [cj.Port("p", "a", 1.0, 1.0)],
        scatterers=[cj.Scatterer("m", 0.0, -0.6, 0.7)],
        links=[cj.Link(delay=0.5)],
        initial={"a": 1.0},
    )
    net = lossy.with_parameters({"scatterers.m.reflection": 0.9})
    with pytest.raises(ValidationError, match=r"Scatterer 'm': \|reflection\|\^2 \+ \|transmission\|\^2"):
        cj.simulate(net, (0.0, 1.0), dt=0.1)


def test_zero_delay_loop_of_reflectors():
    net = cj.Network([cj.Emitter("a")], [cj.Port("p", "a", 0.0)], initial={"a": 1.0}, end_reflections=(-1.0, -1.0))
    with pytest.raises(ValidationError, match="zero delay close a lossless loop"):
        cj.simulate(net, (0.0, 1.0), dt=0.1)


def test_time_grid_missing_a_control_jump():
    net = cj.Network(
        [cj.Emitter("a")],
        [cj.Port("p", "a", 1.0, control="u")],
        scatterers=[cj.Scatterer("m", 0.0, -1.0)],
        links=[cj.Link(delay=0.5)],
        controls={"u": cj.Halted(cj.Constant(1.0), 1.05)},
        initial={"a": 1.0},
    )
    with pytest.raises(ValidationError, match=r"control 'u' jumps at t = 1\.05"):
        cj.simulate(net, (0.0, 2.0), dt=0.1)
    # The default step puts the jump on the grid.
    plan = plan_delay(net, 0.0, 2.0)
    assert abs(1.05 / plan.dt - round(1.05 / plan.dt)) < 1e-9
    assert abs(0.5 / plan.dt - round(0.5 / plan.dt)) < 1e-9


def test_refused_networks():
    with pytest.raises(ValidationError, match="holds one excitation"):
        net = cj.Network(
            [cj.Emitter("a")],
            [cj.Port("p", "a", 0.0)],
            initial={"a": 1.0},
            inputs=[cj.PhotonInput("u", cj.SechMode(1.0))],
        )
        cj.simulate(net, (0.0, 1.0), representation="delay")


def test_default_step_rule():
    # Omega = 1: dt_max = min(0.2, window / 20); the delay 0.3 is split into steps.
    plan = plan_delay(mirror_network(tau=0.6), 0.0, 6.0)
    assert plan.dt == pytest.approx(0.15) and plan.n_steps == 40
    assert plan.ts_index is None  # the 201 save times (spacing 0.03) are interpolated
    plan = plan_delay(mirror_network(tau=0.6), 0.0, 3.0, n_save=11)
    assert plan.dt == pytest.approx(0.15) and plan.ts_index == tuple(range(0, 21, 2))
