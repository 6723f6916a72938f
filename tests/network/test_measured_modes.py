"""Photon modes from measured samples (`cj.load_mode`): CSV and NPZ, normalised or refused with
their norm, and absorbed like the analytic mode they sample."""

from __future__ import annotations

import math

import numpy as np
import pytest

import chiraljax as cj

T_GRID = np.linspace(-8.0, 8.0, 1601)


def gaussian(t, sigma=1.0):
    return (2 * math.pi * sigma**2) ** -0.25 * np.exp(-0.25 * (t / sigma) ** 2)


def absorbed(mode: cj.AbstractPulse) -> float:
    net = cj.Network(
        [cj.Emitter("q")],
        [cj.Port("p", "q", 0, 1.0, right_fraction=1.0)],
        inputs=[cj.PhotonInput("u", mode, end="left")],
    )
    return float(cj.simulate(net, (-8.0, 8.0), ts=np.array([-8.0, 0.5, 8.0])).population("q")[1])


def test_piecewise_linear_norm_is_exact():
    t = np.array([0.0, 1.0, 3.0])
    u = np.array([1.0, 1j, 0.0])
    # segments: (1 + 0 + 1)/3 * 1 and (1 + 0 + 0)/3 * 2
    assert cj.sampled_norm(t, u) == pytest.approx(2 / 3 + 2 / 3, abs=1e-15)


def test_a_csv_mode_is_absorbed_like_the_gaussian_it_samples(tmp_path):
    path = tmp_path / "mode.csv"
    np.savetxt(path, np.column_stack([T_GRID, gaussian(T_GRID), 0 * T_GRID]), delimiter=",", header="t,re,im")
    mode = cj.load_mode(path, normalise=True)
    assert cj.sampled_norm(np.asarray(mode.times), np.asarray(mode.values)) == pytest.approx(1.0, abs=1e-12)
    assert abs(absorbed(mode) - absorbed(cj.GaussianMode(0.0, 1.0))) < 1e-5


def test_a_chirped_npz_mode_keeps_its_phase(tmp_path):
    path = tmp_path / "mode.npz"
    u = gaussian(T_GRID) * np.exp(0.3j * T_GRID**2)
    np.savez(path, t=T_GRID, u=u / math.sqrt(cj.sampled_norm(T_GRID, u)))
    mode = cj.load_mode(path)
    assert np.iscomplexobj(np.asarray(mode.values))
    assert absorbed(mode) < absorbed(cj.GaussianMode(0.0, 1.0)) - 1e-3  # a chirp absorbs worse


def test_a_normalised_rectangle_is_accepted_as_it_is(tmp_path):
    path = tmp_path / "mode.csv"
    path.write_text("t,re\n0,1\n1,1\n")
    mode = cj.load_mode(path)
    np.testing.assert_allclose(np.asarray(mode.values), [1.0, 1.0])


@pytest.mark.parametrize(
    "content, message",
    [
        ("t,re\n0,2\n1,2\n", r"int \|u\|\^2 dt = 4, not 1"),
        ("t,re\n0,0\n1,0\n", "zero everywhere"),
        ("t,re\n1,1\n0,1\n", "strictly increasing"),
        ("t,re\n0,nan\n1,1\n", "NaN"),
        ("t\n0\n1\n", "columns t, Re"),
    ],
)
def test_bad_modes_are_refused_with_the_reason(tmp_path, content, message):
    path = tmp_path / "mode.csv"
    path.write_text(content)
    with pytest.raises(cj.ValidationError, match=message):
        cj.load_mode(path)


def test_a_network_file_reads_a_measured_mode_beside_it(tmp_path):
    """`shape = "measured"` in a network file loads the samples of a data file next to it (a
    relative path), normalised on request; the photon is absorbed as from `cj.load_mode`."""
    folder = tmp_path / "lab"
    folder.mkdir()
    np.savetxt(folder / "photon.csv", np.column_stack([T_GRID, 2 * gaussian(T_GRID), 0 * T_GRID]), delimiter=",")
    (folder / "net.toml").write_text(
        '[[emitters]]\nname = "q"\n[[ports]]\nname = "p"\nemitter = "q"\nposition = 0\nrate = 1.0\n'
        'right_fraction = 1.0\n[[inputs]]\nname = "u"\nend = "left"\n'
        '[inputs.mode]\nshape = "measured"\nfile = "photon.csv"\nnormalise = true\n'
    )
    network, _ = cj.load_network(folder / "net.toml")
    mode = network.inputs[0].mode
    assert isinstance(mode, cj.Sampled)
    assert absorbed(mode) == pytest.approx(absorbed(cj.load_mode(folder / "photon.csv", normalise=True)), abs=1e-12)
    (folder / "bad.toml").write_text((folder / "net.toml").read_text().replace("normalise = true", "normalise = false"))
    with pytest.raises(
        cj.ValidationError, match=r"bad.toml: inputs\[0\]: .*photon.csv: the mode has int \|u\|\^2 dt = 3.99"
    ):
        cj.load_network(folder / "bad.toml")
