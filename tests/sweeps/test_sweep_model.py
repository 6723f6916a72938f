"""Sweeps of a Network: equal to a loop of `simulate`, checked input, spec files, CLI, devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import TRANSFER_ATOL, TRANSFER_RTOL, TRANSFER_WINDOW, chiral_link, transfer_parameters

import chiraljax as cj
import chiraljax.sweeps._sweep_model as sweep_model
from chiraljax._errors import ValidationError
from chiraljax.cli import main as cli_main
from chiraljax.network._network_io import save_network

WINDOW = TRANSFER_WINDOW
AXES = (("links.1.loss_db", [0.0, 1.0]), ("emitters.A1.detuning", [0.0, 0.1, 0.3]))
METRICS = {"stored": "population:A1+B1", "right": "output:right", "error": "conservation_error"}


def grid_axes():
    return [cj.Grid(name, values) for name, values in AXES]


@pytest.fixture(scope="module")
def network() -> cj.Network:
    return chiral_link()


@pytest.fixture(scope="module")
def network_file(network, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("net") / "chiral_link.toml"
    save_network(network, path)
    return path


@pytest.fixture(scope="module")
def swept(network_file, tmp_path_factory) -> Path:
    """The sweep of the spec of `spec_text`, run once through the command line."""
    folder = tmp_path_factory.mktemp("sweep")
    spec = folder / "spec.toml"
    spec.write_text(spec_text(network_file))
    out = folder / "scan.nc"
    assert cli_code("sweep", spec, "--out", out, "--no-progress") == 0
    return out


@pytest.fixture
def no_compute(monkeypatch):
    """Fail if anything reaches the solver."""

    def refuse(*args, **kwargs):
        raise AssertionError("simulate must not run when the input is invalid")

    monkeypatch.setattr(sweep_model, "simulate", refuse)


def spec_text(network_file: Path, **overrides: str) -> str:
    tables = {
        "network": f'file = "{network_file}"',
        "simulation": f't_span = [{WINDOW[0]}, {WINDOW[1]}]\nrepresentation = "sector"\n'
        f"rtol = {TRANSFER_RTOL}\natol = {TRANSFER_ATOL}",
        "metrics": "\n".join(f'{k} = "{v}"' for k, v in METRICS.items()),
        "sweep": "chunk_size = 4",
    }
    tables.update(overrides)
    axes = "".join(f'[[axes]]\nname = "{n}"\nkind = "grid"\nvalues = {v}\n\n' for n, v in AXES)
    return axes + "".join(f"[{k}]\n{v}\n\n" for k, v in tables.items() if v)


def cli_code(*args: object) -> int:
    """Run `chiraljax ARGS` in this process and return its exit code."""
    saved = sys.argv
    sys.argv = ["chiraljax", *map(str, args)]
    try:
        cli_main()
    except SystemExit as exit_info:
        return int(exit_info.code or 0)
    finally:
        sys.argv = saved
    return 0


def run_cli(capsys, *args: object) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli_code(*args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------------------ physics


def test_sweep_equals_loop_of_simulate(network, swept, transfer_model):
    result = xr.load_dataset(swept)
    assert result.attrs["representation"] == "sector" and result.attrs["network"].startswith("file:")
    assert result["stored"].dims == tuple(name for name, _ in AXES)
    for i, loss_db in enumerate(AXES[0][1]):
        for j, detuning in enumerate(AXES[1][1]):
            expected = transfer_model(
                transfer_parameters(
                    network, links__1__transmission=10 ** (-loss_db / 10), emitters__A1__detuning=detuning
                )
            )
            point = result.isel({AXES[0][0]: i, AXES[1][0]: j})
            assert float(point["stored"]) == pytest.approx(expected, abs=1e-12)
    # The physics: at 1 dB (eta = 0.794) the transfer drops by eta; detuning the receiver hurts.
    stored = result["stored"].values
    assert stored[1, 0] / stored[0, 0] == pytest.approx(10**-0.1, rel=1e-6)
    assert np.all(np.diff(stored[0, :]) < 0)
    assert float(result["error"].max()) < 1e-8


def test_parameter_names_include_derived_and_wildcards(network):
    names = cj.sweep_parameters(network)
    assert "links.1.loss_db" in names and "emitters.A0.t1" in names
    setter = sweep_model.resolve_parameter("emitters.*.decay", network)
    assert setter.targets == tuple(f"emitters.{q}.decay" for q in ("A0", "B0", "A1", "B1"))
    setter = sweep_model.resolve_parameter("emitters.A0.t1", network)
    assert setter.targets == ("emitters.A0.decay",) and setter.transform(4.0) == 0.25


def test_function_target_is_the_generic_engine():
    result = cj.sweep(lambda p: {"square": p["x"] ** 2}, [cj.Grid("x", [1.0, 2.0, 3.0])], progress=False)
    np.testing.assert_allclose(result["square"].values, [1.0, 4.0, 9.0])


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "axes, fixed, message",
    [
        ([cj.Grid("links.0.los_db", [1.0])], None, "did you mean 'links.0.loss_db'"),
        ([cj.Grid("emitters.C.decay", [1.0])], None, "unknown parameter 'emitters.C.decay'"),
        ([cj.Grid("emitters.*1.detunin", [1.0])], None, "matches no parameter"),
        ([cj.Grid("links.0.transmission", [0.5, 1.5])], None, "must be <= 1.0"),
        ([cj.Grid("emitters.A0.t1", [0.0, 1.0])], None, "must be > 0.0"),
        ([cj.Grid("links.0.loss_db", [1.0])], {"emitters.B0.decay": float("nan")}, "finite"),
        ([cj.Grid("links.0.loss_db", [1.0]), cj.Grid("links.0.transmission", [0.5])], None, "more than one"),
        ([cj.Grid("emitters.*.nope", [1.0])], None, "matches no parameter"),
    ],
)
def test_bad_parameters_refused_before_compute(network, no_compute, axes, fixed, message):
    with pytest.raises(ValidationError, match=message):
        cj.sweep(network, axes, fixed=fixed, metrics=METRICS, t_span=WINDOW, progress=False)


def test_empty_and_non_finite_axes_refused():
    with pytest.raises(ValidationError, match="empty"):
        cj.Grid("links.0.loss_db", [])
    with pytest.raises(ValidationError, match="finite"):
        cj.Grid("links.0.loss_db", [0.0, float("inf")])
    with pytest.raises(ValidationError, match="finite"):
        cj.Random("links.0.loss_db", 0.0, float("nan"), 4)


@pytest.mark.parametrize(
    "metrics, message",
    [
        ({"x": "populaton:A1"}, "did you mean 'population'"),
        ({"x": "population:"}, "give names"),
        ({"x": "directionality:up"}, "'right' or 'left'"),
        ([], "at least one metric"),
    ],
)
def test_bad_metrics_refused_before_compute(network, no_compute, metrics, message):
    with pytest.raises(ValidationError, match=message):
        cj.sweep(network, grid_axes(), metrics=metrics, t_span=WINDOW, progress=False)


def test_unwritable_output_refused_before_compute(network, no_compute, tmp_path):
    with pytest.raises(ValidationError, match="does not exist"):
        cj.sweep(
            network, grid_axes(), metrics=METRICS, t_span=WINDOW, out=tmp_path / "missing" / "scan.nc", progress=False
        )
    with pytest.raises(ValidationError, match="unsupported suffix"):
        cj.sweep(network, grid_axes(), metrics=METRICS, t_span=WINDOW, out=tmp_path / "scan.csv", progress=False)
    # /proc takes no ordinary files, even from root: the check must really try to write.
    with pytest.raises(ValidationError, match="cannot write"):
        cj.sweep(network, grid_axes(), metrics=METRICS, t_span=WINDOW, out="/proc/scan.nc", progress=False)


def test_missing_time_window_refused(network, no_compute):
    with pytest.raises(ValidationError, match="t_span"):
        cj.sweep(network, grid_axes(), metrics=METRICS, progress=False)


def test_a_delay_sweep_takes_its_method_and_equals_the_closed_form():
    """A one-way emitter decays as e^{-gamma t} (docs/theory.md section 1), on the delay kernel;
    its adaptive options are refused by name, its own go in method=cj.Delay."""
    emitter = cj.Network(
        [cj.Emitter("A")], [cj.Port("p", "A", 0, 1.0, right_fraction=1.0)], links=[], initial={"A": 1.0}
    )
    rates = [0.5, 1.0]
    axes = [cj.Grid("ports.p.rate", rates)]
    ds = cj.sweep(emitter, axes, metrics=["population:A"], t_span=(0.0, 2.0), method=cj.Delay(dt=0.01), progress=False)
    assert ds.attrs["representation"] == "delay"
    np.testing.assert_allclose(ds["population:A"], np.exp(-2.0 * np.asarray(rates)), atol=1e-6)
    with pytest.raises(ValidationError, match="rtol do not apply to the delay representation"):
        cj.sweep(emitter, axes, metrics=["population:A"], t_span=(0.0, 2.0), representation="delay", rtol=1e-6)
    with pytest.raises(ValidationError, match=r"give the solver options \(rtol\) in method=, not both"):
        cj.sweep(emitter, axes, metrics=["population:A"], t_span=(0.0, 2.0), method=cj.Delay(), rtol=1e-6)


def test_sweep_options_come_from_the_keyword_the_file_and_the_method(network):
    """One home for the defaults: what is not given comes from the method class."""
    settings = sweep_model.SimulationSettings(rtol=1e-7)
    chosen = sweep_model.sweep_method(network, [], settings, max_steps=99)
    assert chosen == cj.Sector(rtol=1e-7, max_steps=99)
    assert sweep_model.sweep_method(network, [], settings, representation="full", rtol=1e-9) == cj.Full(rtol=1e-9)


# ---------------------------------------------------------------------------- spec files


def test_spec_file_parses(network_file, tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text(spec_text(network_file, output='path = "scan.nc"'))
    spec = cj.load_sweep_spec(path)
    assert [axis.name for axis in spec.axes] == [name for name, _ in AXES]
    assert spec.n_points == 6 and spec.out == tmp_path / "scan.nc"
    assert spec.metrics == METRICS and spec.chunk_size == 4 and spec.steps is None
    path.write_text(spec_text(network_file, simulation=f"t_span = [{WINDOW[0]}, {WINDOW[1]}]\nsteps = 16"))
    assert cj.load_sweep_spec(path).steps == 16
    assert cj.load_sweep_spec(path).method == cj.Sector(steps=16)
    # a delay held fixed is traced into every solve too: 'auto' picks the delay kernel
    auto = f"t_span = [{WINDOW[0]}, {WINDOW[1]}]"
    path.write_text(spec_text(network_file, simulation=auto, fixed='"links.1.delay" = 0.5'))
    assert cj.load_sweep_spec(path).method == cj.Delay()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"sweep": "chunk_sise = 4"}, "sweep.chunk_sise: unknown key; did you mean 'chunk_size'"),
        ({"network": 'file = "nowhere.toml"'}, "network.file: network file"),
        ({"network": ""}, "network: missing"),
        ({"metrics": 'x = "population:A1"\ny = 3'}, "metrics.y = 3"),
        ({"simulation": "t_span = [1.0, 0.0]"}, "simulation.t_span"),
        (
            {"simulation": f"t_span = [{WINDOW[0]}, {WINDOW[1]}]\nsteps = 0"},
            "simulation.steps = 0: expected a positive integer",
        ),
        ({"output": 'path = "out.csv"'}, "output.path"),
        ({"extra": "a = 1"}, "extra: unknown key"),
    ],
)
def test_spec_errors_exit_2_naming_the_field(capsys, no_compute, network_file, tmp_path, change, message):
    path = tmp_path / "spec.toml"
    path.write_text(spec_text(network_file, **change))
    code, _, err = run_cli(capsys, "sweep", path, "--out", tmp_path / "scan.nc")
    assert code == 2
    assert message in err and err.count("\n") == 1


def test_spec_axis_errors_name_the_axis(network_file, tmp_path, no_compute):
    path = tmp_path / "spec.toml"
    text = spec_text(network_file).replace('"emitters.A1.detuning"', '"emitters.A1.detunin"')
    path.write_text(text)
    with pytest.raises(ValidationError, match=r"axes\[1\]\.name: unknown parameter"):
        cj.load_sweep_spec(path)
    path.write_text(spec_text(network_file).replace('kind = "grid"', 'kind = "grd"', 1))
    with pytest.raises(ValidationError, match=r"axes\[0\]\.kind = 'grd'"):
        cj.load_sweep_spec(path)


def test_cli_resume_and_plot(capsys, swept, tmp_path):
    spec = swept.parent / "spec.toml"
    code, _, err = run_cli(capsys, "sweep", spec, "--out", swept, "--no-progress")
    assert code == 0 and "already complete" in err
    figure = tmp_path / "map.png"
    code, _, err = run_cli(capsys, "plot", swept, "--out", figure)
    assert code == 0 and figure.stat().st_size > 0
    code, _, err = run_cli(
        capsys, "plot", swept, "--kind", "lines", "--x", AXES[1][0], "--y", AXES[0][0], "--out", figure
    )
    assert code == 0
    code, _, err = run_cli(capsys, "plot", swept, "--metric", "nope", "--out", figure)
    assert code == 2 and "metric = 'nope'" in err


# ------------------------------------------------------------------------------ devices


@pytest.mark.slow  # a fresh process and a compile: ~25 s (the engine's 4-device test is fast)
def test_four_devices_equal_one(network_file, swept):
    script = textwrap.dedent(f"""
        import json, sys
        import jax
        import chiraljax as cj
        from chiraljax.network._network_io import load_network
        assert len(jax.devices()) == 4, jax.devices()
        network, _ = load_network({str(network_file)!r})
        axes = [cj.Grid(name, values) for name, values in {AXES!r}]
        result = cj.sweep(network, axes, metrics={METRICS!r}, t_span={WINDOW!r},
                          representation="sector", rtol={TRANSFER_RTOL}, atol={TRANSFER_ATOL},
                          chunk_size=4, progress=False)
        assert result.attrs["n_devices"] == 4
        json.dump({{name: result[name].values.tolist() for name in {list(METRICS)!r}}}, sys.stdout)
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    values = json.loads(run.stdout.strip().splitlines()[-1])
    one_device = xr.load_dataset(swept)
    for name in METRICS:
        np.testing.assert_allclose(values[name], one_device[name].values, rtol=0, atol=1e-12)
