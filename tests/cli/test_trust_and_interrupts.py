"""Data files are data, and Ctrl-C is not success.

A sweep spec that names Python code is refused before any of it runs unless the caller
consents, and even then only a `.py` file beside the spec runs (never `module:function`). An
interrupted command exits 130 with one line, never 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import chiraljax as cj
import chiraljax.cli
import chiraljax.solve._simulate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def spec_text(network: str, simulation: str, axis: str, metric: str) -> str:
    """A sweep spec over one grid axis of two values."""
    return (
        f"[network]\n{network}\n[simulation]\n{simulation}\n"
        f'[[axes]]\nname = "{axis}"\nkind = "grid"\nvalues = [0.5, 0.6]\n[metrics]\n{metric}\n'
    )


BUILDER = """
import pathlib
import chiraljax as cj
pathlib.Path({marker!r}).write_text("ran")

def network():
    return cj.Network([cj.Emitter("A")], [cj.Port("p", "A", 0, 1.0)], initial={{"A": 1.0}})
"""


def write_spec(folder, reference: str, arguments: str = "") -> str:
    path = folder / "spec.toml"
    network = f'python = "{reference}"\n[network.arguments]\n{arguments}'
    path.write_text(spec_text(network, "t_span = [0.0, 1.0]", "ports.p.rate", 'a = "population:A"'))
    return str(path)


def test_python_in_a_spec_is_refused_without_consent_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran.txt"
    (tmp_path / "build.py").write_text(BUILDER.format(marker=str(marker)))
    with pytest.raises(cj.ValidationError, match="allow-python"):
        cj.load_sweep_spec(write_spec(tmp_path, "build.py:network"))
    assert not marker.exists()


@pytest.mark.parametrize("reference", ["os:system", "subprocess:run", "build:network"])
def test_module_references_are_refused_even_with_consent(tmp_path, reference):
    marker = tmp_path / "touched"
    spec = write_spec(tmp_path, reference, f'command = "touch {marker}"')
    with pytest.raises(cj.ValidationError, match="file.py:function"):
        cj.load_sweep_spec(spec, allow_python=True)
    assert not marker.exists()


def test_a_file_outside_the_spec_folder_is_refused(tmp_path):
    (tmp_path / "build.py").write_text(BUILDER.format(marker=str(tmp_path / "ran.txt")))
    inner = tmp_path / "specs"
    inner.mkdir()
    with pytest.raises(cj.ValidationError, match="not a file beside the spec"):
        cj.load_sweep_spec(write_spec(inner, "../build.py:network"), allow_python=True)
    assert not (tmp_path / "ran.txt").exists()


def test_a_builder_beside_the_spec_runs_with_consent(tmp_path):
    marker = tmp_path / "ran.txt"
    (tmp_path / "build.py").write_text(BUILDER.format(marker=str(marker)))
    spec = cj.load_sweep_spec(write_spec(tmp_path, "build.py:network"), allow_python=True)
    assert marker.read_text() == "ran" and spec.network.emitter_names == ("A",)


def test_cli_sweep_refuses_python_with_exit_2(tmp_path, monkeypatch, capsys):
    (tmp_path / "build.py").write_text(BUILDER.format(marker=str(tmp_path / "ran.txt")))
    spec = write_spec(tmp_path, "build.py:network")
    monkeypatch.setattr(sys, "argv", ["chiraljax", "sweep", spec, "--out", str(tmp_path / "out.nc")])
    with pytest.raises(SystemExit) as stop:
        chiraljax.cli.main()
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--allow-python" in err[0]
    assert not (tmp_path / "ran.txt").exists()


def test_an_interrupted_command_exits_130(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(chiraljax.solve._simulate, "simulate", interrupted)
    monkeypatch.setattr(
        sys, "argv", ["chiraljax", "simulate", str(EXAMPLES / "single_emitter.toml"), "--out", str(tmp_path / "r.json")]
    )
    with pytest.raises(SystemExit) as stop:
        chiraljax.cli.main()
    assert stop.value.code == 130
    assert capsys.readouterr().err.strip() == "chiraljax: interrupted; rerun the same command to resume"
    assert not (tmp_path / "r.json").exists()


def test_a_sweep_whose_solves_fail_exits_1_and_its_plot_exits_2(tmp_path, monkeypatch, capsys):
    spec = tmp_path / "nan.toml"
    spec.write_text(
        spec_text(
            f'file = "{EXAMPLES / "two_module_transfer.toml"}"',
            "t_span = [-12.0, 12.0]\nn_save = 2\nmax_steps = 3",
            "links.1.transmission",
            'transfer = "population:A1+B1"',
        )
    )
    out = tmp_path / "nan.nc"
    monkeypatch.setattr(sys, "argv", ["chiraljax", "sweep", str(spec), "--out", str(out), "--no-progress"])
    with pytest.raises(SystemExit) as stop:
        chiraljax.cli.main()
    assert stop.value.code == 1
    assert "NaN (transfer at 2 of 2 points)" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["chiraljax", "plot", str(out), "--out", str(tmp_path / "nan.png")])
    with pytest.raises(SystemExit) as stop:
        chiraljax.cli.main()
    assert stop.value.code == 2
    assert "nothing to draw" in capsys.readouterr().err
    assert not (tmp_path / "nan.png").exists()


def test_version(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["chiraljax", "--version"])
    chiraljax.cli.main()  # returns: exit status 0
    assert capsys.readouterr().out.startswith(f"chiraljax {cj.__version__} (jax ")


def test_writers_replace_a_planted_symlink_instead_of_following_it(tmp_path):
    """A link at the output path pointing outside the folder: the target is left untouched."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from chiraljax._files import save_figure, write_text_atomic

    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    folder = tmp_path / "out"
    folder.mkdir()
    for name, write in (
        ("result.json", lambda p: write_text_atomic(p, "{}")),
        ("figure.png", lambda p: save_figure(plt.figure(), p)),
    ):
        link = folder / name
        link.symlink_to(outside)
        write(link)
        assert not link.is_symlink() and link.stat().st_size > 0
        assert outside.read_text() == "precious"


def test_overwrite_never_deletes_a_folder_chiraljax_did_not_make(tmp_path):
    from chiraljax.sweeps._sweep_store import sidecar_path

    out = tmp_path / "result.nc"
    foreign = sidecar_path(out)
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    net = cj.Network([cj.Emitter("A")], [cj.Port("p", "A", 0, 1.0)], initial={"A": 1.0})
    with pytest.raises(cj.ValidationError, match="not a sweep chunk folder of chiraljax"):
        cj.sweep(
            net,
            [cj.Grid("ports.p.rate", [0.5, 1.0])],
            metrics={"a": "population:A"},
            t_span=(0.0, 1.0),
            out=out,
            overwrite=True,
            progress=False,
        )
    assert (foreign / "thesis.tex").read_text() == "years of work"


def test_finished_optimisation_runs_are_reused_only_for_the_same_run(tmp_path):
    from types import SimpleNamespace

    from chiraljax.optimize import GradientConfig, write_json
    from chiraljax.optimize._compare import _finished_run, _run_identity

    def identity(problem="ideal", budget=24):
        return _run_identity(
            SimpleNamespace(name=problem), "grad", 0, [0.1, 0.2], [1.0, 1.0], budget, GradientConfig(method="adam")
        )

    path = tmp_path / "grad-seed0.json"
    write_json({"final_best": 0.9, "identity": identity()}, path)
    assert _finished_run(str(path), identity())["final_best"] == 0.9
    assert _finished_run(str(path), identity(problem="distorted")) is None
    assert _finished_run(str(path), identity(budget=48)) is None
    path.write_text("{damaged")
    assert _finished_run(str(path), identity()) is None
