"""`chiraljax simulate`: summary, JSON result, and exit code 2 with one line for bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SINGLE = EXAMPLES / "single_emitter.toml"
N_SAVE = "11"  # as in test_network_io: the compiled solver is shared


def test_simulate_writes_summary_and_json(monkeypatch, capsys, tmp_path):
    out = tmp_path / "result.json"
    code, stdout, stderr = run_cli(monkeypatch, capsys, "simulate", SINGLE, "--out", out, "--n-save", N_SAVE)
    assert code == 0, stderr
    for text in ("final populations", "right", "decay:q", "conservation error", "sector", "wall time"):
        assert text in stdout
    payload = json.loads(out.read_text())
    assert set(payload) == {
        "network",
        "representation",
        "t_span",
        "wall_time_s",
        "channels",
        "scalars",
        "traces",
        "written_by",
    }
    assert payload["representation"] == "sector" and payload["t_span"] == [0.0, 8.0]
    assert payload["channels"] == {"right": "end", "left": "end", "decay:q": "decay"}
    assert {"population:q", "output:right", "output:left", "conservation_error"} <= set(payload["scalars"])
    assert len(payload["traces"]["t"]) == 11 and len(payload["traces"]["flux:right"]) == 11
    assert payload["scalars"]["population:q"] == pytest.approx(math.exp(-1.01 * 8.0), rel=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary file left


def test_command_line_overrides_the_file(monkeypatch, capsys, tmp_path):
    out = tmp_path / "r.json"
    code, _, stderr = run_cli(
        monkeypatch,
        capsys,
        "simulate",
        SINGLE,
        "-o",
        out,
        "--n-save",
        N_SAVE,
        "--t-span",
        "0",
        "4",
        "--representation",
        "sector",
    )
    assert code == 0, stderr
    payload = json.loads(out.read_text())
    assert payload["t_span"] == [0.0, 4.0]
    assert payload["scalars"]["population:q"] == pytest.approx(math.exp(-1.01 * 4.0), rel=1e-5)


def test_help(monkeypatch, capsys):
    code, stdout, _ = run_cli(monkeypatch, capsys, "simulate", "--help")
    assert code == 0
    for text in ("--out", "--representation", "--t-span", "Exit codes"):
        assert text in stdout


BAD_INPUTS = {
    "missing file": (None, "no such network file"),
    "bad toml": ('[[emitters]]\nname = "q"\ndecay = = 1\n', "not valid TOML"),
    "unknown emitter": (('emitter = "q"', 'emitter = "qq"'), "Port 'p': unknown emitter 'qq'"),
    "negative rate": (("rate = 1.0", "rate = -1.0"), "ports[0].rate: -1.0 is less than the minimum of 0"),
    "NaN": (("decay = 0.01", "decay = nan"), "emitters[0].decay: nan is not a finite number"),
    "no time window": (("t_span = [0.0, 8.0]", ""), "no time window"),
    "bad representation": (('representation = "auto"', 'representation = "fast"'), "is not one of"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line(monkeypatch, capsys, tmp_path, case):
    change, message = BAD_INPUTS[case]
    path = tmp_path / "net.toml"
    if isinstance(change, str):
        path.write_text(change)
    elif change is not None:
        old, new = change
        text = SINGLE.read_text()
        assert old in text
        path.write_text(text.replace(old, new))
    code, stdout, stderr = run_cli(monkeypatch, capsys, "simulate", path)
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("chiraljax: error: ")
    assert message in stderr and str(path) in stderr


def test_transmission_above_one_in_json(monkeypatch, capsys, tmp_path):
    doc = json.loads((EXAMPLES / "directional_emission.json").read_text())
    doc["links"][0]["transmission"] = 1.2
    path = tmp_path / "net.json"
    path.write_text(json.dumps(doc))
    code, _, stderr = run_cli(monkeypatch, capsys, "simulate", path)
    assert code == 2
    assert stderr.strip() == f"chiraljax: error: {path}: links[0].transmission: 1.2 is greater than the maximum of 1"


CONSOLE = "import sys; from chiraljax.cli import console; sys.argv[0] = 'chiraljax'; console()"


def test_installed_entry_point_exit_code(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", CONSOLE, "simulate", str(tmp_path / "absent.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"chiraljax: error: {tmp_path / 'absent.json'}: no such network file"]


def test_installed_entry_point_writes_everything_before_its_prompt_exit(tmp_path):
    """The installed command ends its process with `os._exit` (no interpreter teardown): the
    summary on stdout and the result file must be complete, with exit status 0."""
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "-c", CONSOLE, "simulate", str(SINGLE), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    unwrapped = "".join(proc.stdout.split())  # rich wraps long lines at the pipe's 80 columns
    assert "conservationerror" in unwrapped and f"resultwrittento{out}" in unwrapped
    written = json.loads(out.read_text())
    assert written["scalars"] and written["traces"]


def test_output_folder_must_exist(monkeypatch, capsys, tmp_path):
    out = tmp_path / "absent" / "r.json"
    code, _, stderr = run_cli(monkeypatch, capsys, "simulate", SINGLE, "--out", out)
    assert code == 2
    assert stderr.strip() == f"chiraljax: error: --out {out}: the folder {out.parent} does not exist; create it first"
