"""Tests of the batched sweep engine on analytic metric functions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

from chiraljax._errors import ValidationError
from chiraljax.sweeps._sweep import ChunkDone, Grid, QuasiRandom, Random, plan_sweep, sweep, sweep_cost
from chiraljax.sweeps._sweep_store import sidecar_path


def metrics(p):
    """A smooth analytic stand-in for a physics metric: two outputs, one nested."""
    return {
        "efficiency": jnp.exp(-p["gamma"] * p["delay"]) * jnp.cos(p["phase"]) ** 2,
        "extra": {"sum": p["gamma"] + p["delay"] + p["phase"]},
    }


def expected(gamma, delay, phase):
    return np.exp(-gamma * delay) * np.cos(phase) ** 2


AXES = [Grid.linspace("gamma", 0.1, 2.0, 5), Grid("delay", [0.0, 0.5, 1.0, 3.0])]
FIXED = {"phase": 0.3}


def never_called(p):
    raise AssertionError("the metric function must not run when the input is invalid")


class Recorder:
    """Callback that records the chunks computed, optionally interrupting after `stop_after`."""

    def __init__(self, stop_after: int | None = None):
        self.chunks: list[int] = []
        self.stop_after = stop_after

    def __call__(self, done: ChunkDone) -> None:
        self.chunks.append(done.index)
        if self.stop_after is not None and len(self.chunks) >= self.stop_after:
            raise KeyboardInterrupt


def test_cartesian_values_shape_and_attrs():
    ds = sweep(metrics, AXES, fixed=FIXED, progress=False)
    assert ds["efficiency"].dims == ("gamma", "delay")
    assert ds["efficiency"].shape == (5, 4)
    g, d = np.meshgrid(AXES[0].values, AXES[1].values, indexing="ij")
    np.testing.assert_allclose(ds["efficiency"], expected(g, d, 0.3), rtol=1e-14)
    np.testing.assert_allclose(ds["extra.sum"], g + d + 0.3, rtol=1e-14)
    np.testing.assert_array_equal(ds["gamma"], AXES[0].values)
    assert json.loads(ds.attrs["sweep_spec"])["mode"] == "cartesian"
    cost = sweep_cost(ds)
    assert cost.points_computed == 20 and cost.points_per_second > 0 and cost.compile_time_s > 0


def test_zip_shape():
    axes = [Grid("gamma", [0.1, 0.2, 0.3]), Grid("delay", [1.0, 2.0, 3.0])]
    ds = sweep(metrics, axes, mode="zip", fixed=FIXED, progress=False)
    assert ds["efficiency"].dims == ("point",)
    np.testing.assert_array_equal(ds["delay"], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(ds["efficiency"], expected(ds["gamma"], ds["delay"], 0.3))


def test_random_axes_are_zipped_into_one_sample_dim():
    axes = [QuasiRandom("gamma", 0.0, 1.0, 8), Grid("phase", [0.0, 1.0, 2.0]), QuasiRandom("delay", 2.0, 5.0, 8)]
    ds = sweep(metrics, axes, progress=False)
    assert ds["efficiency"].dims == ("sample", "phase")
    assert ds["efficiency"].shape == (8, 3)
    assert ds["delay"].dims == ("sample",)
    assert float(ds["delay"].min()) >= 2.0 and float(ds["delay"].max()) < 5.0
    np.testing.assert_allclose(ds["efficiency"], expected(ds["gamma"], ds["delay"], ds["phase"]), rtol=1e-14)


def test_random_and_quasirandom_reproducible_by_seed():
    def values(axes, key=None):
        plan = plan_sweep(axes, mode="zip", key=key)
        return np.stack([plan.points[a.name] for a in axes])

    sobol = [QuasiRandom("a", 0, 1, 16, seed=3), QuasiRandom("b", -1, 1, 16, seed=3)]
    np.testing.assert_array_equal(values(sobol), values(sobol))
    other = [QuasiRandom("a", 0, 1, 16, seed=4), QuasiRandom("b", -1, 1, 16, seed=4)]
    assert not np.array_equal(values(sobol), values(other))
    # A scrambled Sobol sequence puts exactly one of 16 points in each 1/16 interval.
    counts = np.bincount((values(sobol)[0] * 16).astype(int), minlength=16)
    np.testing.assert_array_equal(counts, np.ones(16))
    halton = [QuasiRandom("a", 0, 1, 10, method="halton")]
    np.testing.assert_array_equal(values(halton, key=7), values(halton, key=7))
    assert not np.array_equal(values(halton, key=7), values(halton, key=8))
    uniform = [Random("a", 0, 1, 10), Random("b", 0, 1, 10)]
    first = values(uniform, key=1)
    np.testing.assert_array_equal(first, values(uniform, key=1))
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first, values(uniform, key=2))


def test_chunked_equals_unchunked():
    whole = sweep(metrics, AXES, fixed=FIXED, progress=False)
    recorder = Recorder()
    chunked = sweep(metrics, AXES, fixed=FIXED, chunk_size=6, progress=False, callback=recorder)
    assert recorder.chunks == [0, 1, 2, 3]  # 20 points in chunks of 6: the last one padded
    assert chunked.attrs["batch_size"] == 6
    xr.testing.assert_identical(whole.drop_attrs(), chunked.drop_attrs())


def test_interrupted_sweep_resumes_only_missing_chunks(tmp_path):
    reference = sweep(metrics, AXES, fixed=FIXED, chunk_size=6, progress=False)
    out = tmp_path / "scan.nc"
    with pytest.raises(KeyboardInterrupt):
        sweep(metrics, AXES, fixed=FIXED, chunk_size=6, out=out, progress=False, callback=Recorder(stop_after=2))
    folder = sidecar_path(out)
    assert not out.exists()
    assert sorted(p.name for p in folder.glob("chunk_*.npz")) == ["chunk_000000.npz", "chunk_000001.npz"]

    resumed = Recorder()
    result = sweep(metrics, AXES, fixed=FIXED, out=out, progress=False, callback=resumed)
    assert resumed.chunks == [2, 3]
    assert result.attrs["points_computed"] == 8  # chunks of 6 and 2 points
    assert not folder.exists()
    on_disk = xr.load_dataset(out)
    xr.testing.assert_identical(on_disk.drop_attrs(), reference.drop_attrs())
    assert on_disk.attrs["spec_hash"] == reference.attrs["spec_hash"]

    again = Recorder()
    loaded = sweep(metrics, AXES, fixed=FIXED, out=out, progress=False, callback=again)
    assert again.chunks == []
    xr.testing.assert_identical(loaded.drop_attrs(), reference.drop_attrs())


def test_sidecar_of_another_spec_is_refused(tmp_path):
    out = tmp_path / "scan.nc"
    with pytest.raises(KeyboardInterrupt):
        sweep(metrics, AXES, fixed=FIXED, chunk_size=6, out=out, progress=False, callback=Recorder(stop_after=1))
    with pytest.raises(ValidationError, match="different spec.*overwrite=True"):
        sweep(metrics, AXES, fixed={"phase": 0.4}, out=out, progress=False)
    with pytest.raises(ValidationError, match="chunk_size=6"):
        sweep(metrics, AXES, fixed=FIXED, chunk_size=5, out=out, progress=False)

    def edited(p):
        return {"efficiency": p["gamma"], "extra": {"sum": p["delay"] + p["phase"]}}

    with pytest.raises(ValidationError, match="different spec"):
        sweep(edited, AXES, fixed=FIXED, out=out, progress=False)
    ds = sweep(metrics, AXES, fixed={"phase": 0.4}, out=out, progress=False, overwrite=True)
    assert out.exists() and not sidecar_path(out).exists()
    with pytest.raises(ValidationError, match="already holds a different result"):
        sweep(metrics, AXES, fixed=FIXED, out=out, progress=False)
    np.testing.assert_allclose(xr.load_dataset(out)["efficiency"], ds["efficiency"])


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: [Grid("gama", [1.0])], "unknown parameter 'gama': did you mean 'gamma'"),
        (lambda: [Grid("gamma", [])], "axis 'gamma' is empty"),
        (lambda: [Grid("gamma", [1.0, np.nan])], "must be finite"),
        (lambda: [Random("gamma", 0.0, np.inf, 4)], "must be finite"),
        (lambda: [QuasiRandom("gamma", 0.0, 1.0, 0)], "at least one point"),
        (lambda: [Grid("gamma", [1.0]), Grid("gamma", [2.0])], "more than once"),
        (lambda: [Grid("sample", [1.0])], "reserved"),
    ],
)
def test_bad_axes_are_refused_before_compute(build, message):
    with pytest.raises(ValidationError, match=message):
        sweep(never_called, build(), parameters={"gamma", "delay", "phase"}, progress=False)


def test_bad_sweep_arguments_are_refused_before_compute(tmp_path):
    grid = [Grid("gamma", [1.0, 2.0])]
    with pytest.raises(ValidationError, match="equal length"):
        sweep(never_called, [*grid, Grid("delay", [1.0])], mode="zip", progress=False)
    with pytest.raises(ValidationError, match="equal n"):
        sweep(never_called, [Random("gamma", 0, 1, 3), Random("delay", 0, 1, 4)])
    with pytest.raises(ValidationError, match=r"fixed\['phase'\]"):
        sweep(never_called, grid, fixed={"phase": float("nan")}, progress=False)
    with pytest.raises(ValidationError, match="did you mean 'phase'"):
        sweep(never_called, grid, fixed={"phse": 1.0}, parameters={"gamma", "phase"})
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(ValidationError, match="does not exist"):
        sweep(never_called, grid, out=blocker / "scan.nc", progress=False)
    with pytest.raises(ValidationError, match="unsupported suffix"):
        sweep(never_called, grid, out=tmp_path / "scan.csv", progress=False)
    with pytest.raises(ValidationError, match="chunk_size"):
        sweep(never_called, grid, chunk_size=0, progress=False)


def test_bad_metric_outputs_are_refused():
    grid = [Grid("gamma", [1.0, 2.0])]
    with pytest.raises(ValidationError, match="shape"):
        sweep(lambda p: {"v": jnp.ones(3) * p["gamma"]}, grid, progress=False)
    with pytest.raises(ValidationError, match="neither an axis nor fixed"):
        sweep(lambda p: {"v": p["delay"]}, grid, progress=False)


def test_progress_bar_reports_rate(capsys):
    sweep(metrics, AXES, fixed=FIXED, progress=True)
    assert "pts/s" in capsys.readouterr().err
    sweep(metrics, AXES, fixed=FIXED, progress=False)
    assert capsys.readouterr().err == ""


_MULTI_DEVICE = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    from chiraljax.sweeps._sweep import Grid, QuasiRandom, sweep

    def fn(p):
        return {"v": jnp.sin(p["a"]) * p["b"] ** 2 + p["c"]}

    axes = [Grid.linspace("a", 0.0, 3.0, 7), QuasiRandom("b", -1.0, 1.0, 5, seed=2)]
    many = sweep(fn, axes, fixed={"c": 0.5}, chunk_size=6, progress=False)
    one = sweep(fn, axes, fixed={"c": 0.5}, chunk_size=6, progress=False,
                devices=jax.devices()[:1])
    json.dump({
        "devices": len(jax.devices()),
        "n_devices": int(many.attrs["n_devices"]),
        "batch_size": int(many.attrs["batch_size"]),
        "max_diff": float(np.max(np.abs(many["v"].values - one["v"].values))),
        "one_n_devices": int(one.attrs["n_devices"]),
    }, sys.stdout)
    """
)


def test_four_devices_match_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    env["JAX_PLATFORMS"] = "cpu"
    run = subprocess.run(
        [sys.executable, "-c", _MULTI_DEVICE],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],  # tests/, where conftest.py is
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["devices"] == 4 and report["n_devices"] == 4
    assert report["one_n_devices"] == 1
    assert report["batch_size"] == 8  # 6 points per chunk, padded to a multiple of 4
    assert report["max_diff"] == 0.0
