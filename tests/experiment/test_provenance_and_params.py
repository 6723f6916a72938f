"""Every file chiraljax writes names the chiraljax and JAX versions and the precision that made
it; sweep variables carry CF `long_name` and `units`; `chiraljax params` lists a network file's
parameter names with values, ranges and units."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import xarray as xr

import chiraljax as cj
import chiraljax.cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STAMP = {"chiraljax": cj.__version__, "jax": jax.__version__, "precision": "float64"}


def _run(argv, monkeypatch, capsys) -> str:
    monkeypatch.setattr(sys, "argv", ["chiraljax", *argv])
    try:
        chiraljax.cli.main()
    except SystemExit as stop:
        assert stop.code in (0, None), capsys.readouterr().err
    return capsys.readouterr().out


def test_params_lists_base_and_derived_names(monkeypatch, capsys):
    rows = json.loads(_run(["params", str(EXAMPLES / "two_module_transfer.toml"), "--json"], monkeypatch, capsys))
    by_name = {row["name"]: row for row in rows}
    assert by_name["links.1.transmission"] == {
        "name": "links.1.transmission",
        "value": 0.6,
        "low": 0.0,
        "high": 1.0,
        "units": "1",
        "sets": None,
    }
    loss = by_name["links.1.loss_db"]
    assert loss["sets"] == "links.1.transmission" and loss["units"] == "dB"
    assert abs(loss["value"] - (-10 * np.log10(0.6))) < 1e-12
    assert by_name["emitters.A1.t1"]["value"] == pytest.approx(1e3)
    assert by_name["emitters.A1.dephasing"]["units"] == "rad/time_unit"
    assert len(rows) == len(cj.sweep_parameters(cj.load_network(EXAMPLES / "two_module_transfer.toml")[0]))
    table = _run(["params", str(EXAMPLES / "two_module_transfer.toml")], monkeypatch, capsys)
    assert "links.1.loss_db" in table and "2.21849" in table


def test_every_written_format_is_stamped(tmp_path, monkeypatch, capsys):
    network, settings = cj.load_network(EXAMPLES / "single_emitter.toml")
    cj.save_network(network, tmp_path / "net.toml", settings)
    cj.save_network(network, tmp_path / "net.json", settings)
    assert json.loads((tmp_path / "net.json").read_text())["written_by"] == STAMP
    assert cj.load_network(tmp_path / "net.toml")[0].parameters().keys() == network.parameters().keys()
    assert "[written_by]" in (tmp_path / "net.toml").read_text()

    _run(["simulate", str(EXAMPLES / "single_emitter.toml"), "--out", str(tmp_path / "r.json")], monkeypatch, capsys)
    assert json.loads((tmp_path / "r.json").read_text())["written_by"] == STAMP

    out = tmp_path / "s.nc"
    cj.sweep(
        network,
        [cj.Grid("ports.p.rate", [0.5, 1.0])],
        metrics={"excited": "conservation_error"},
        t_span=settings.t_span,
        out=out,
        progress=False,
    )
    data = xr.load_dataset(out)
    assert (data.attrs["chiraljax_version"], data.attrs["jax_version"], data.attrs["precision"]) == (
        cj.__version__,
        jax.__version__,
        "float64",
    )
    axis = next(iter(data.coords))
    assert data[axis].attrs["units"] == "rad/time_unit" and data[axis].attrs["long_name"].endswith(axis)
    assert data["excited"].attrs == {
        "long_name": "conservation error (emitters + outputs + in flight - initial)",
        "units": "1",
    }

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from chiraljax._files import save_figure

    fig = plt.figure()
    save_figure(fig, tmp_path / "f.png")
    plt.close(fig)
    assert Image.open(tmp_path / "f.png").info["Software"].startswith(f"chiraljax {cj.__version__} (jax ")
