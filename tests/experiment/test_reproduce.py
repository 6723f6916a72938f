"""`chiraljax reproduce --quick` writes its report (one small run of the embedded preset); the
full run (shaping, budget, sweep) is a slow test."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from chiraljax.cli import app


def test_quick_reproduce_writes_report(tmp_path):
    out = tmp_path / "rep"
    run = CliRunner().invoke(app, ["reproduce", "--preset", "paper", "--out", str(out), "--quick"])
    assert run.exit_code == 0, run.output
    for name in ("results.json", "report.md", "pulses.png", "populations.png", "flux.png", "w_fidelity.png"):
        assert (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())
    assert results["preset"] == "paper" and results["quick"] is True
    assert set(results["w_state"]) >= {"left", "right"}
    for d in ("left", "right"):
        assert 0.0 < results["w_state"][d]["fidelity"] < 1.0
    assert "| W fidelity (left, scripted drive) |" in (out / "report.md").read_text()


@pytest.mark.slow
def test_full_reproduce_shapes_the_receiver_and_closes_the_budget(tmp_path):
    """The default run (about 2-3 minutes): shaping beats the scripted drive, both methods spend
    the same budget, the W fidelities with the best drive and the shaped absorption efficiency
    land in the paper's band, the error budget closes and the sweep is written."""
    out = tmp_path / "rep"
    run = CliRunner().invoke(app, ["reproduce", "--out", str(out), "--budget", "60"])
    assert run.exit_code == 0, run.output
    results = json.loads((out / "results.json").read_text())
    methods = results["optimisation"]["methods"]
    assert {m["evaluations"] for m in methods} == {60}
    assert results["absorption_efficiency_shaped"] > results["transfer"]["absorption_efficiency"] + 0.1
    assert 0.55 <= results["absorption_efficiency_shaped"] <= 0.70
    for d in ("left", "right"):
        assert 0.55 <= results["w_state"][d]["fidelity"] <= 0.70
        assert results["w_state"][d]["fidelity"] > results["w_state_scripted"][d]
    assert results["error_budget"]["closure"] < 1e-9
    assert len(results["sweep"]["w_fidelity"]) == 6
    for name in ("shaping.png", "sweep.png", "error_budget.png"):
        assert (out / name).stat().st_size > 0, name


def test_unknown_preset_is_refused(tmp_path):
    run = CliRunner().invoke(app, ["reproduce", "--preset", "nope", "--out", str(tmp_path)])
    assert run.exit_code != 0
