"""Notebook displays and figures: a Network draws its line (SVG) with emitters, ports, links and
scatterers; a Result has a short repr, an HTML summary and `.plot()`; a sweep result plots
through `dataset.chiraljax`. Figures are written and non-empty."""

from __future__ import annotations

import jax
import matplotlib
import numpy as np
import pytest

import chiraljax as cj

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def network() -> cj.Network:
    emitters = [cj.Emitter("A"), cj.Emitter("B", decay=0.01)]
    ports = [cj.Port("pA", "A", 0, 1.0), cj.Port("pB", "B", 2, 0.5, control="ramp")]
    scatterers = [cj.Scatterer("joint", 1, reflection=0.1)]
    links = [cj.Link(delay=0.5, transmission=0.6), cj.Link(phase=0.3)]
    return cj.Network(
        emitters, ports, scatterers=scatterers, links=links, controls={"ramp": cj.Constant(1.0)}, initial={"A": 1.0}
    )


@pytest.fixture(scope="module")
def result() -> cj.Result:
    net = cj.Network(
        [cj.Emitter("A"), cj.Emitter("B")], [cj.Port("pA", "A", 0, 1.0), cj.Port("pB", "B", 1, 1.0)], initial={"A": 1.0}
    )
    return cj.simulate(net, (0.0, 3.0), n_save=31, representation="sector")


def test_network_html_draws_the_line(network):
    page = network._repr_html_()
    assert page.count("<svg") == 1 and page.count("<circle") == 2 and page.count("<rect x='") >= 3
    for text in ("pA", "pB", "joint", "r=0.1", "τ=0.5, η=0.6", "φ=0.3", "γ=0.5 · ramp", "ramp", "Constant"):
        assert text in page, text


def test_result_repr_html_and_plots(result, tmp_path):
    text = repr(result)
    assert text.startswith("Result(sector, t = 0 .. 3 in 31 saves, final populations A=") and len(text) < 300
    page = result._repr_html_()
    assert "final populations" in page and "right" in page and "conservation error" in page
    for kind in ("populations", "fluxes", "outputs"):
        out = tmp_path / f"{kind}.png"
        fig = result.plot(kind, out=str(out))
        assert out.stat().st_size > 5000 and len(fig.axes[0].lines) >= 2
    fig = result.plot(names=["B"])
    assert [line.get_label() for line in fig.axes[0].lines] == ["B"]
    with pytest.raises(cj.ValidationError, match="no subsystem 'C'"):
        result.plot(names=["C"])
    with pytest.raises(cj.ValidationError, match="kind = 'spectrum'"):
        result.plot("spectrum")


def test_a_traced_result_keeps_the_plain_repr(result):
    seen = []

    @jax.jit
    def inside(rate):
        net = cj.Network([cj.Emitter("A")], [cj.Port("p", "A", 0, rate)], initial={"A": 1.0})
        r = cj.simulate(net, (0.0, 1.0), n_save=2)
        seen.append(repr(r))
        return r.final_population("A")

    assert abs(float(inside(1.0)) - np.exp(-1.0)) < 1e-7
    assert seen[0].startswith("Result(") and "populations=f64[2,1]" in seen[0]


def test_sweep_result_plots_through_its_accessor(tmp_path):
    net = cj.Network([cj.Emitter("A")], [cj.Port("p", "A", 0, 1.0)], initial={"A": 1.0})
    data = cj.sweep(
        net,
        [cj.Grid("ports.p.rate", [0.5, 1.0, 2.0]), cj.Grid("emitters.A.decay", [0.0, 0.1])],
        metrics={"left": "population:A"},
        t_span=(0.0, 1.0),
        progress=False,
    )
    out = tmp_path / "map.png"
    data.chiraljax.save_plot(out)
    assert out.stat().st_size > 5000
    assert data.chiraljax.plot(kind="lines").axes


def test_a_batched_result_shows_the_means():
    def run(rate):
        net = cj.Network([cj.Emitter("A")], [cj.Port("p", "A", 0, rate)], initial={"A": 1.0})
        return cj.simulate(net, (0.0, 1.0), n_save=3, method=cj.Sector(steps=4))

    batch = jax.vmap(run)(jax.numpy.array([0.5, 1.0]))
    mean = (np.exp(-0.5) + np.exp(-1.0)) / 2
    assert repr(batch).startswith(
        f"Result(sector, t = 0 .. 1 in 3 saves (a batch of 2; the values are means over it), "
        f"final populations A={mean:.6g}"
    )
    assert "a batch of 2" in batch._repr_html_()
