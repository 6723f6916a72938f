"""`chiraljax reproduce --quick` writes its report (one small run of the embedded preset)."""

from __future__ import annotations

import json

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
    assert "| W fidelity (left) |" in (out / "report.md").read_text()


def test_unknown_preset_is_refused(tmp_path):
    run = CliRunner().invoke(app, ["reproduce", "--preset", "nope", "--out", str(tmp_path)])
    assert run.exit_code != 0
