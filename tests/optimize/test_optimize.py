"""Pulse shaping: parameterisations, objectives, gradient optimiser, comparison harness, CLI.

The compiled objective is the ideal transfer with the two-parameter sech absorber family; it is
built once per module and every test that simulates reuses it (same structure, no recompile).
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import chiraljax as cj
from chiraljax import ValidationError
from chiraljax.optimize import (
    AbsorptionEfficiency,
    AnalyticParameterization,
    BasisParameterization,
    Controls,
    Directionality,
    GaussianAbsorption,
    GaussianEmission,
    GradientConfig,
    ObjectiveError,
    TimeReversed,
    WFidelity,
    get_problem,
    gradient_optimize,
    sample_ensemble,
    transfer_network,
    value_and_grad,
)

TS = jnp.linspace(-12.0, 12.0, 97)
ETA = 0.8


@pytest.fixture(scope="module")
def ideal():
    """The ideal problem, sech absorber family (t0, log width), solver tolerance 1e-8."""
    return get_problem("ideal", parameterization="sech", rtol=1e-8)


# ---- parameterisations -------------------------------------------------------------------


@pytest.mark.parametrize("basis, tol", [("pwc", 0.2), ("spline", 2e-3), ("fourier", 1e-2), ("chebyshev", 5e-3)])
def test_bases_fit_a_sech_absorber_inside_the_bounds(basis, tol):
    target = cj.SechAbsorption(1.0, 0.0)
    p = BasisParameterization(basis, 16, -12.0, 12.0, bounds=(0.0, 1.5))
    u = jax.vmap(p(p.fit(target)))(TS)
    assert float(jnp.max(jnp.abs(u - jax.vmap(target)(TS)))) < tol
    wild = jax.vmap(p(50.0 * jax.random.normal(jax.random.key(1), (16,))))(TS)
    assert float(wild.min()) >= 0.0 and float(wild.max()) <= 1.5


def test_pins_residual_form_and_softplus():
    base = cj.SechAbsorption(1.0, 1.0)
    p = BasisParameterization("spline", 8, -10.0, 10.0, bounds=(0.0, None), baseline=base, start=0.5, end=0.0, ramp=2.0)
    x = jax.random.normal(jax.random.key(0), (8,))
    pulse = p(x)
    assert float(pulse(-10.0)) == pytest.approx(0.5, abs=1e-12)
    assert float(pulse(10.0)) == pytest.approx(0.0, abs=1e-12)
    assert float(pulse(-30.0)) == pytest.approx(0.5, abs=1e-12)
    assert float(jnp.min(jax.vmap(pulse)(TS))) >= 0.0
    # x = 0 reproduces the baseline away from the pinned ramps.
    inner = jnp.linspace(-7.0, 7.0, 29)
    free = BasisParameterization("chebyshev", 5, -10.0, 10.0, bounds=(0.0, 3.0), baseline=base)
    np.testing.assert_allclose(jax.vmap(free(free.initial()))(inner), jax.vmap(base)(inner), atol=1e-7)


def test_analytic_families_are_time_reverses():
    em, ab = GaussianEmission(2.0, 0.5), GaussianAbsorption(2.0, 0.5)
    np.testing.assert_allclose(jax.vmap(TimeReversed(em, 0.5))(TS), jax.vmap(ab)(TS), rtol=1e-12)
    # gamma_a = |f|^2 / int |f|^2: its time integral diverges slowly, gamma_e integrates |f|^2/(1-F).
    sech = AnalyticParameterization("sech", "absorb", width=1.3, t0=0.2)
    np.testing.assert_allclose(jax.vmap(sech(sech.initial()))(TS), jax.vmap(cj.SechAbsorption(1.3, 0.2))(TS))
    bounded = AnalyticParameterization("gaussian", "emit", width=2.0, max_amplitude=1.5)
    big = jax.vmap(bounded(jnp.array([0.0, 0.0, 40.0])))(TS) / jax.vmap(GaussianEmission(2.0, 0.0))(TS)
    assert float(jnp.max(big)) <= 1.5 + 1e-12


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(bounds=(1.0, 1.0)), "lo < hi"),
        (dict(bounds=(0.0, 1.0), start=2.0), "cannot be met"),
        (dict(bounds=(0.0, 0.5), baseline=cj.SechAbsorption(1.0, 0.0)), "cannot be met"),
        (dict(start=0.0, end=0.0, ramp=15.0), "ramp"),
        (dict(bounds=(0.0, 1.0), end=float("nan")), "end"),
    ],
)
def test_constraints_that_cannot_be_met_are_refused(kwargs, words):
    with pytest.raises(ValidationError, match=words):
        BasisParameterization("spline", 6, -12.0, 12.0, **kwargs)


def test_bad_parameterisation_arguments():
    with pytest.raises(ValidationError, match="basis"):
        BasisParameterization("wavelet", 6, 0.0, 1.0)
    with pytest.raises(ValidationError, match="window"):
        BasisParameterization("spline", 6, 1.0, 0.0)
    with pytest.raises(ValidationError, match="max_amplitude"):
        AnalyticParameterization("sech", max_amplitude=0.5)
    with pytest.raises(ValidationError, match="not controls of the network"):
        Controls({"nope": AnalyticParameterization("sech")}).apply(transfer_network(), jnp.zeros(3))


# ---- metrics on hand-made results ---------------------------------------------------------


def _sector_result(rho, names=("A0", "B0", "A1", "B1")):
    n = len(names)
    outputs = jnp.asarray([[0.0, 0.0], [0.3, 0.1]])
    return cj.Result(
        "sector",
        jnp.array([0.0, 1.0]),
        names,
        jnp.zeros((2, n)),
        ("right", "left"),
        ("end", "end"),
        outputs,
        outputs,
        rho,
        jnp.zeros(2),
        jnp.zeros(()),
    )


def test_w_fidelity_and_directionality_closed_forms():
    chi = 0.7
    w = np.array([1, 1j, np.exp(1j * chi), 1j * np.exp(1j * chi)]) / 2
    psi = np.concatenate([[0.0], w])
    result = _sector_result(jnp.asarray(np.outer(psi, psi.conj())))
    target = {"A0": 1, "B0": 1j, "A1": 1, "B1": 1j}
    assert float(WFidelity(target, free_phase=("A1", "B1"))(result, None)) == pytest.approx(1.0, abs=1e-12)
    assert float(WFidelity(target)(result, None)) == pytest.approx(((1 + math.cos(chi)) / 2), abs=1e-12)
    assert float(Directionality()(result, None)) == pytest.approx(0.75)


# ---- gradients, optimisation, checkpoints --------------------------------------------------


def test_gradient_equals_finite_differences(ideal):
    x = jnp.array([1.2, -0.3])
    score, grad = value_and_grad(ideal.objective, x)
    h = 1e-4
    fd = [(float(ideal.objective(x + h * e)) - float(ideal.objective(x - h * e))) / (2 * h) for e in jnp.eye(2)]
    assert float(score) == pytest.approx(float(ideal.objective(x)), abs=1e-12)
    np.testing.assert_allclose(np.asarray(grad), fd, rtol=1e-4, atol=1e-6)


def test_ideal_transfer_reaches_the_link_limit_from_a_mistimed_narrow_absorber(ideal):
    start = float(ideal.objective(ideal.x0))
    assert start < 0.65 * ETA
    config = GradientConfig(method="adam", learning_rate=0.15, max_steps=150, target=0.9995 * ETA, patience=None)
    result = gradient_optimize(ideal.objective, ideal.x0, config)
    assert result.best_score >= 0.999 * ETA, result.history.best_score[-5:]
    assert result.stop_reason == "target"
    assert result.evaluations == len(result.history.score)


def test_interrupted_run_resumes_from_its_checkpoint(ideal, tmp_path):
    config = GradientConfig(method="adam", learning_rate=0.1, max_steps=6, patience=None)
    straight = gradient_optimize(ideal.objective, ideal.x0, config)

    def interrupt(step):
        if step.step == 3:
            raise KeyboardInterrupt

    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        gradient_optimize(ideal.objective, ideal.x0, config, checkpoint=ckpt, callback=interrupt)
    assert ckpt.exists()
    resumed = gradient_optimize(ideal.objective, ideal.x0, config, checkpoint=ckpt)
    assert resumed.steps == 6 and resumed.evaluations == straight.evaluations
    np.testing.assert_allclose(np.asarray(resumed.x), np.asarray(straight.x), rtol=1e-12)
    np.testing.assert_allclose(resumed.history.score, straight.history.score, rtol=1e-12)
    # A checkpoint of another run is refused, not silently reused.
    with pytest.raises(ValidationError, match="different run"):
        gradient_optimize(ideal.objective, ideal.x0 + 1.0, config, checkpoint=ckpt)


def _rosenbrock(x):
    return -((1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2)


def test_lbfgs_with_line_search_counts_every_trial():
    result = gradient_optimize(
        _rosenbrock, jnp.array([-1.2, 1.0]), GradientConfig(method="lbfgs", max_steps=100, tolerance=0.0, patience=5)
    )
    np.testing.assert_allclose(np.asarray(result.best_x), [1.0, 1.0], atol=1e-4)
    assert result.evaluations > result.steps
    assert np.all(np.diff(result.history.evaluations) >= 1)


def test_bad_input_gives_clear_errors(ideal):
    with pytest.raises(ValidationError, match="budget=0"):
        gradient_optimize(_rosenbrock, jnp.zeros(2), budget=0)
    with pytest.raises(ValidationError, match="x0"):
        gradient_optimize(_rosenbrock, jnp.array([np.nan, 0.0]))
    with pytest.raises(ValidationError, match="2 parameters"):
        gradient_optimize(ideal.objective, jnp.zeros(3))
    with pytest.raises(ObjectiveError, match="not finite at step 0"):
        gradient_optimize(lambda x: jnp.log(x[0]) + x[1], jnp.array([-1.0, 0.0]))
    with pytest.raises(ValidationError, match="no network parameter"):
        ideal.objective.with_ensemble({"links.9.delay": jnp.zeros(2)})
    with pytest.raises(ValidationError, match="members"):
        ideal.objective.with_ensemble({"links.1.transmission": jnp.ones(2), "links.0.phase": jnp.ones(3)})


def test_absorption_efficiency_reads_the_members_transmission():
    metric = AbsorptionEfficiency(("A1", "B1"), "links.1.transmission")
    net = transfer_network(eta=0.5)
    result = _sector_result(jnp.eye(5) * 0.0, names=("A0", "B0", "A1", "B1"))
    result = cj.Result(
        "sector",
        result.ts,
        result.names,
        jnp.zeros((2, 4)).at[-1, 2].set(0.2).at[-1, 3].set(0.2),
        result.channel_names,
        result.channel_kinds,
        result.fluxes,
        result.outputs,
        result.final_state,
        result.in_flight,
        result.conservation_error,
    )
    assert float(metric(result, net)) == pytest.approx(0.8)
    spreads = sample_ensemble(net, {"links.1.transmission": 5.0}, 64, jax.random.key(0))
    values = np.asarray(spreads["links.1.transmission"])
    assert values.min() >= 0.0 and values.max() <= 1.0


def test_cli_refuses_bad_input(tmp_path):
    from typer.testing import CliRunner

    from chiraljax.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["optimize", "--preset", "nope", "--budget", "5", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "preset" in str(result.exception or result.output)
    result = runner.invoke(app, ["optimize", "--preset", "ideal", "--budget", "0", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "budget" in str(result.exception or result.output)


# ---- slow: robust objective, harness ------------------------------------------------------


@pytest.mark.slow
def test_robust_objective_improves_the_worst_case(ideal):
    problem = get_problem("ideal", parameterization="sech", rtol=1e-7)
    net = problem.objective.network
    spreads = {"emitters.A1.detuning": 0.4, "emitters.B1.detuning": 0.4}
    train = sample_ensemble(net, spreads, 6, jax.random.key(0))
    test = sample_ensemble(net, spreads, 16, jax.random.key(1))
    config = GradientConfig(method="adam", learning_rate=0.1, max_steps=60, patience=10)
    nominal = gradient_optimize(problem.objective, problem.x0, config)
    robust = gradient_optimize(
        problem.objective.with_ensemble(train).with_aggregate("softmin", 0.005), problem.x0, config
    )
    tested = problem.objective.with_ensemble(test)
    assert tested.report(robust.best_x)["metric_worst"] > tested.report(nominal.best_x)["metric_worst"]


@pytest.mark.slow
def test_compare_writes_report_and_plot(ideal, tmp_path):
    from chiraljax.optimize import PPOConfig, compare, plot_comparison, write_json

    report = compare(
        ideal,
        budget=24,
        seeds=(0, 1),
        ppo_config=PPOConfig(epochs=4, batch_size=5),
        gradient_config=GradientConfig(method="adam", learning_rate=0.1, max_steps=20),
    )
    write_json(report, tmp_path / "r.json")
    plot_comparison(report, tmp_path / "r.png")
    data = json.loads((tmp_path / "r.json").read_text())
    assert set(data["runs"]) == {"grad", "rl"} and len(data["runs"]["rl"]) == 2
    assert (tmp_path / "r.png").stat().st_size > 1000
