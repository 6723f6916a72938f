"""The device study's parts: AWG and drive line, the device protocol, calibration fit, fair contest.

Small models (0.25 GS/s AWG, 32 fixed steps) keep the compile short; the fixtures are shared.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from chiraljax._errors import ValidationError
from chiraljax.optimize import PPOConfig
from chiraljax.optimize._awg import AWG, DriveLine, Waveform, load_waveform, save_waveform
from chiraljax.optimize._calibrate import CalibrationData, fit_device, probe_experiments
from chiraljax.optimize._device import (
    CallbackDevice,
    DeviceError,
    DeviceModel,
    DeviceParameters,
    SimulatedDevice,
    draw_device,
)
from chiraljax.optimize._device_methods import (
    ModelBasedSettings,
    cmaes_on_device,
    model_based_on_device,
    nelder_mead_on_device,
    ppo_on_device,
)

MAX_DRIVE = 2 * math.pi * 5e-3


@pytest.fixture(scope="module")
def model() -> DeviceModel:
    return DeviceModel(awg=AWG(full_scale=MAX_DRIVE, sample_rate=0.25, channel="B.coupler"), steps=32)


# ---- AWG and drive line -------------------------------------------------------------------


def test_awg_clips_and_quantises_with_straight_through_gradient():
    from chiraljax import Constant

    awg = AWG(full_scale=2.0, sample_rate=1.0, bits=4)  # 7 levels per polarity
    v = awg.render(Constant(0.9), 0.0, 3.0)
    assert np.allclose(v, round(0.45 * 7) / 7)
    assert np.allclose(awg.render(Constant(5.0), 0.0, 3.0), 1.0)  # clipped to full scale
    grad = jax.grad(lambda a: awg.render(Constant(a), 0.0, 3.0).sum())(0.9)
    assert grad == pytest.approx(4 * 0.5)  # d(u/2)/du per sample, through the rounding
    assert awg.codes(v).tolist() == [3, 3, 3, 3]


@pytest.mark.parametrize(
    "bad", [dict(full_scale=0.0), dict(full_scale=1.0, sample_rate=-1), dict(full_scale=1.0, bits=1)]
)
def test_awg_refuses_bad_settings(bad):
    with pytest.raises(ValidationError, match="AWG"):
        AWG(**bad)


def test_drive_line_step_response_is_the_one_pole_closed_form():
    awg = AWG(full_scale=1.0, sample_rate=1.0)
    tau, gain, delay = 7.0, 0.8, 3.5
    line = DriveLine(gain, tau, delay)
    pulse = line.pulse(jnp.ones(60), awg, 10.0)
    # zero-order-hold step through exp(-t/tau), sampled at the sample instants, then delayed
    for k in (0, 1, 5, 20, 50):
        t = 10.0 + k + delay
        assert float(pulse(t)) == pytest.approx(gain * (1 - math.exp(-k / tau)), abs=1e-12)
    assert float(pulse(10.0 + delay - 0.5)) == 0.0  # nothing arrives before the delay
    # linear between samples
    mid = 0.5 * (float(pulse(10.0 + 4 + delay)) + float(pulse(10.0 + 5 + delay)))
    assert float(pulse(10.0 + 4.5 + delay)) == pytest.approx(mid, abs=1e-12)


def test_drive_line_refuses_negative_values():
    with pytest.raises(ValidationError, match="tau"):
        DriveLine(1.0, -1.0, 0.0)
    with pytest.raises(ValidationError, match="gain"):
        DriveLine(0.0, 1.0, 0.0)


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_waveform_files_round_trip(tmp_path, suffix):
    awg = AWG(full_scale=0.03, sample_rate=2.0, bits=12, channel="B.coupler")
    w = Waveform(np.array([0, 5, -7, 2047, -2047]), awg, -12.5)
    back = load_waveform(save_waveform(tmp_path / f"w{suffix}", w))
    assert back.awg == awg and back.start == -12.5
    assert back.codes.tolist() == w.codes.tolist()
    assert np.allclose(back.times, [-12.5, -12.0, -11.5, -11.0, -10.5])


def test_waveform_files_refuse_foreign_data(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("time_ns,code\n0,1\n")
    with pytest.raises(ValidationError, match="not a chiraljax-awg-waveform file"):
        load_waveform(bad)
    npz = tmp_path / "bad.npz"
    npz.write_bytes(b"not a zip")
    with pytest.raises(ValidationError, match="unreadable"):
        load_waveform(npz)
    with pytest.raises(ValidationError, match="bit range"):
        Waveform(np.array([0, 40000]), AWG(full_scale=1.0), 0.0)


# ---- the device protocol ------------------------------------------------------------------


def test_simulated_device_counts_follow_the_click_probability(model):
    hidden = draw_device(model.nominal, 11)
    device = SimulatedDevice(model, hidden, seed=3)
    samples = model.scripted_samples()
    ts = np.array([model.t_span[1]])
    p_stored = float(model.stored(hidden, jnp.asarray(samples), jnp.asarray(ts))[0])
    p = float(model.click_probability(hidden, p_stored))
    n = 20000
    k = device.run(model.waveform(samples), ts, n)[0, 0]
    assert abs(k / n - p) < 4 * math.sqrt(p * (1 - p) / n)
    k0 = device.readout(0, n)
    k1 = device.readout(1, n)
    assert abs(k0 / n - float(hidden.false_positive)) < 4 * math.sqrt(0.05 / n) + 1e-3
    assert abs(1 - k1 / n - float(hidden.false_negative)) < 4 * math.sqrt(0.1 / n) + 1e-3
    assert device.shots_spent == 3 * n
    assert device.ledger.by_purpose == {"run": n, "readout": 2 * n}


def test_device_refuses_bad_requests(model):
    device = SimulatedDevice(model, model.nominal, seed=0)
    w = model.waveform(model.scripted_samples())
    with pytest.raises(ValidationError, match="shots"):
        device.run(w, None, 0)
    with pytest.raises(ValidationError, match="protocol window"):
        device.run(w, [model.t_span[1] + 1.0], 10)
    other = Waveform(w.codes, AWG(full_scale=1.0, sample_rate=0.25), w.start)
    with pytest.raises(ValidationError, match="AWG"):
        device.run(other, None, 10)
    with pytest.raises(ValidationError, match="prepared"):
        device.readout(2, 10)
    assert device.shots_spent == 0  # refused requests cost nothing


def test_callback_device_checks_what_the_hardware_answers(model):
    calls = []

    def run(codes, sample_rate, start, read_times, shots):
        calls.append((len(codes), sample_rate, start, tuple(read_times), shots))
        return np.full(len(read_times), shots + 1)  # impossible: more clicks than shots

    device = CallbackDevice(model.awg, *model.t_span, run=run, readout=lambda prepared, shots: shots // 2)
    assert device.readout(1, 100) == 50
    with pytest.raises(DeviceError, match="outside"):
        device.run(model.waveform(model.scripted_samples()), None, 100)
    assert calls[0][1:] == (0.25, model.t_span[0], (model.t_span[1],), 100)
    assert device.shots_spent == 100  # the failed run is not counted


def test_device_parameters_refuse_bad_values(model):
    with pytest.raises(ValidationError, match="unknown"):
        model.nominal.replace(colour=1.0)
    with pytest.raises(ValidationError, match="readout errors"):
        model.nominal.replace(false_positive=0.6, false_negative=0.5)
    with pytest.raises(ValidationError, match="missing"):
        DeviceParameters(detuning=0.0)


def test_stored_excitation_gradient_matches_finite_differences(model):
    """d P(t_end) / d(gain, tau, delay, shift) by reverse mode against central differences."""
    samples = jnp.asarray(model.scripted_samples())
    end = jnp.asarray([model.t_span[1]])
    base = model.nominal

    def f(v):
        return model.stored(base.replace(gain=v[0], tau=v[1], delay=v[2], shift=v[3]), samples, end)[0]

    v0 = jnp.asarray([1.0, 15.0, 20.0, 1.1])
    grad = np.asarray(jax.jit(jax.grad(f))(v0))
    fj = jax.jit(f)
    for i, h in enumerate((1e-4, 1e-3, 1e-3, 1e-4)):
        e = np.zeros(4)
        e[i] = h
        fd = (float(fj(v0 + e)) - float(fj(v0 - e))) / (2 * h)
        assert grad[i] == pytest.approx(fd, rel=1e-5, abs=1e-9)


# ---- calibration and fit ------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted(model):
    """A hidden device drawn at random from the prior (a seed the study does not use), its
    calibration data and the fit."""
    seed = int(np.random.default_rng(20261129).integers(100, 10**6))
    hidden = draw_device(model.nominal, seed)
    device = SimulatedDevice(model, hidden, seed=seed)
    data = CalibrationData()
    data.measure_readout(device, 2000)
    for label, samples, ts in probe_experiments(model, 10):
        data.measure(device, model, label, samples, ts, 400)
    return hidden, device, data, fit_device(model, data)


def test_fit_recovers_the_hidden_parameters_within_their_stated_uncertainty(fitted):
    hidden, _, _, fit = fitted
    assert fit.success
    estimate, truth = fit.parameters.as_dict(), hidden.as_dict()
    for name in fit.names:
        # 3 sigma of the Laplace approximation (99.7 % for a Gaussian posterior)
        assert abs(estimate[name] - truth[name]) <= 3 * fit.std[name], (
            name,
            estimate[name],
            truth[name],
            fit.std[name],
        )
    # the measurements inform what sets the absorbed share: the drive line's gain and the cable
    # transmission are known far better than before (prior 0.1 and 0.05)
    assert fit.std["gain"] < 0.6 * 0.1
    assert fit.std["transmission"] < 0.6 * 0.05


def test_readout_errors_are_estimated_from_the_calibration(fitted):
    hidden, _, data, fit = fitted
    e0, e1 = data.readout_errors()
    assert abs(e0 - float(hidden.false_positive)) < 4 * math.sqrt(0.05 / 2000) + 1e-3
    assert float(fit.parameters.false_negative) == pytest.approx(e1)


def test_posterior_samples_spread_as_the_stated_uncertainty(fitted, model):
    """Devices drawn from the fit's Laplace posterior centre on the estimate and spread by its
    stated 1-sigma (gain and transmission: linear in the prior's scores, away from its bounds)."""
    _, _, _, fit = fitted
    draws = fit.posterior_samples(model, 1500, seed=3)
    for name in ("gain", "transmission"):
        values = np.array([float(getattr(p, name)) for p in draws])
        estimate = float(getattr(fit.parameters, name))
        assert abs(values.mean() - estimate) < 4 * fit.std[name] / math.sqrt(len(values))
        assert values.std() == pytest.approx(fit.std[name], rel=0.1)
    assert all(float(p.false_positive) == float(fit.parameters.false_positive) for p in draws[:5])


# ---- the contest is fair ------------------------------------------------------------------


@pytest.fixture(scope="module")
def contest(model):
    """Each model-free method with the same start and budget on its own copy of one hidden device."""
    hidden = draw_device(model.nominal, 5)
    x0 = np.zeros(model.size)
    budget = 36_000
    runs = {}
    for name, method, kw in (
        ("cmaes", cmaes_on_device, {}),
        ("nelder-mead", nelder_mead_on_device, {}),
        ("ppo", ppo_on_device, {"config": PPOConfig(epochs=1000, batch_size=10, learning_rate=1e-3)}),
    ):
        device = SimulatedDevice(model, hidden, seed=1)
        runs[name] = (method(device, model, x0, budget, 0, shots_per_evaluation=1000, **kw), device)
    return runs, budget, x0


def test_every_method_starts_from_the_same_pulse_and_counts_shots_alike(contest, model):
    runs, budget, _ = contest
    starts = {name: run.absorption[0] for name, (run, _) in runs.items()}
    assert len({round(v, 12) for v in starts.values()}) == 1, starts
    for name, (run, device) in runs.items():
        assert run.shots_used == device.shots_spent <= budget, name
        assert device.ledger.by_purpose == {"optimisation": device.shots_spent}
        assert all(s % 1000 == 0 for s in run.shots)  # whole evaluations of 1000 shots
        assert run.shots == sorted(run.shots)


def test_unused_budget_is_reported_not_hidden(contest):
    runs, budget, _ = contest
    cma_run, _ = runs["cmaes"]
    # 11 candidates of 1000 shots per generation: 3 generations fit in 36000, the rest is reported
    assert cma_run.shots_used == 33_000 and "a generation needs 11000 shots" in cma_run.stop_reason
    for run, _ in runs.values():
        assert run.stop_reason


def test_budgets_below_one_step_are_refused(model):
    device = SimulatedDevice(model, model.nominal, seed=0)
    x0 = np.zeros(model.size)
    with pytest.raises(ValidationError, match="below"):
        cmaes_on_device(device, model, x0, 5000, 0)
    with pytest.raises(ValidationError, match="below"):
        nelder_mead_on_device(device, model, x0, 12_000, 0)
    with pytest.raises(ValidationError, match="below"):
        model_based_on_device(device, model, x0, ModelBasedSettings().first_round() - 1, 0)
    assert device.shots_spent == 0


@pytest.mark.slow
def test_model_based_loop_comes_close_to_the_hidden_devices_optimum(model):
    """One round of calibration, fit, shaping and verification on a device drawn at random from
    the prior ends within 0.02 of the best efficiency the device allows (L-BFGS on its hidden
    parameters, which no method sees) and far above the scripted drive."""
    from chiraljax.optimize import GradientConfig, gradient_optimize
    from chiraljax.optimize._device_methods import FittedAbsorption

    seed = int(np.random.default_rng(7).integers(100, 10**6))
    hidden = draw_device(model.nominal, seed)
    device = SimulatedDevice(model, hidden, seed=seed)
    settings = ModelBasedSettings(rounds=1)
    x0 = np.zeros(model.size)
    run = model_based_on_device(device, model, x0, settings.first_round(), 0, settings=settings)
    assert run.shots_used == settings.first_round()
    oracle = FittedAbsorption(model, hidden, model.incident(hidden))
    best = gradient_optimize(oracle, jnp.asarray(x0), GradientConfig(method="lbfgs", max_steps=60, patience=10))
    scripted = float(oracle(jnp.asarray(x0)))
    assert run.final >= best.best_score - 0.02, (seed, run.final, best.best_score)
    assert run.final >= scripted + 0.5 * (best.best_score - scripted), (seed, run.final, scripted)


# ---- the published study ------------------------------------------------------------------


def test_the_stored_study_is_a_fair_contest_and_reproduce_quotes_it():
    """optimize/results/device_study/study.json (shipped with the package): every method of a
    device starts from the same pulse, spends at most the same budget, and the quote that
    `chiraljax reproduce` prints states its outcome."""
    from chiraljax.optimize._device_study import stored_summary

    study = stored_summary()
    assert study is not None, "optimize/results/device_study/study.json is missing"
    settings = study["settings"]
    assert len(settings["devices"]) >= 2 and settings["seeds"] >= 3
    import json
    from importlib import resources

    report = json.loads(resources.files("chiraljax.optimize").joinpath("results/device_study/study.json").read_text())
    for d in settings["devices"]:
        runs = [r for r in report["runs"] if r["device"] == d]
        assert {r["method"] for r in runs} == set(settings["methods"])
        assert all(r["budget"] == settings["budget_shots"] >= r["shots_used"] for r in runs)
        free_starts = {round(r["absorption"][0], 9) for r in runs if r["method"] in ("cmaes", "nelder-mead")}
        assert len(free_starts) == 1  # the scripted drive, scored before any shot
        assert f"hidden device {d}" in study["quote"]


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(transmission=1.2), "transmission=1.2 must lie in \\(0, 1\\]"),
        (dict(tau=-1.0), "tau=-1.0 must be >= 0"),
        (dict(joint=1.0), "joint=1.0 must lie in \\[0, 1\\)"),
        (dict(gain=0.0), "gain=0.0 must be > 0"),
    ],
)
def test_device_parameters_name_the_value_out_of_range(model, change, message):
    with pytest.raises(ValidationError, match=message):
        model.nominal.replace(**change)


def test_methods_refuse_a_start_of_the_wrong_size(model):
    device = SimulatedDevice(model, model.nominal, seed=0)
    for method in (cmaes_on_device, nelder_mead_on_device, model_based_on_device):
        with pytest.raises(ValidationError, match=f"x0: expected {model.size} finite pulse parameters"):
            method(device, model, np.zeros(model.size + 1), 10**6, 0)
    with pytest.raises(ValidationError, match="x0"):
        ppo_on_device(device, model, np.full(model.size, np.nan), 10**6, 0, config=PPOConfig.hardware())
    assert device.shots_spent == 0
