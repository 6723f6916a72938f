"""Notebook displays: a drawing of a Network's line and summaries of a Network and a Result.

`network_html` draws the waveguide left to right as SVG: each port as a dot on the line with
its emitter above it (giant atoms join their ports), scatterers as bars, each link labelled
with what it does to the field (delay tau, transmission eta, phase phi), the ends with their
reflection; tables of emitters and controls follow. `result_html` shows the final
populations, the output of each channel and the conservation error. Values that are traced
(inside jit) are shown as '?'.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from chiraljax._checks import concrete


def _number(x: Any, digits: int = 4) -> str:
    value = concrete(x)
    if value is None:
        return "?"
    value = np.asarray(value)
    if value.size != 1:
        return f"array{tuple(value.shape)}"
    v = complex(value.reshape(()))
    return f"{v.real:.{digits}g}" if v.imag == 0 else f"{v.real:.{digits}g}{v.imag:+.{digits}g}j"


def _table(title: str, header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td style='padding:2px 8px'>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<details open><summary><b>{html.escape(title)}</b></summary><table><tr>{head}</tr>{body}</table></details>"


def _link_label(link) -> str:
    parts = []
    if _number(link.delay) != "0":
        parts.append(f"τ={_number(link.delay, 3)}")
    if _number(link.transmission) != "1":
        parts.append(f"η={_number(link.transmission, 3)}")
    if _number(link.phase) != "0":
        parts.append(f"φ={_number(link.phase, 3)}")
    return ", ".join(parts)


def network_svg(network) -> str:
    """The line as an SVG drawing (see the module docstring)."""
    from chiraljax.network._network import Port

    elements = network.elements
    step, margin, line_y = 120, 60, 90
    width = margin * 2 + step * max(len(elements) - 1, 1)
    x_of = {el.name: margin + step * i for i, el in enumerate(elements)}
    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='150' "
        "font-family='sans-serif' font-size='11'>",
        f"<line x1='10' y1='{line_y}' x2='{width - 10}' y2='{line_y}' stroke='#444' stroke-width='2'/>",
    ]
    ends = concrete(network.end_reflections)
    for x, r, anchor in (
        (10, None if ends is None else ends[0], "start"),
        (width - 10, None if ends is None else ends[1], "end"),
    ):
        label = "r=?" if r is None else (f"r={_number(r, 3)}" if abs(complex(r)) > 0 else "open")
        out.append(f"<text x='{x}' y='{line_y + 32}' text-anchor='{anchor}' fill='#666'>{html.escape(label)}</text>")
    emitter_x: dict[str, list[float]] = {}
    for el in elements:
        x = x_of[el.name]
        if isinstance(el, Port):
            emitter_x.setdefault(el.emitter, []).append(x)
            control = f" · {el.control}" if el.control else ""
            out.append(f"<circle cx='{x}' cy='{line_y}' r='5' fill='#1f77b4'/>")
            out.append(f"<text x='{x}' y='{line_y + 18}' text-anchor='middle'>{html.escape(el.name)}</text>")
            out.append(
                f"<text x='{x}' y='{line_y + 31}' text-anchor='middle' fill='#666'>"
                f"γ={html.escape(_number(el.rate, 3))}{html.escape(control)}</text>"
            )
        else:
            out.append(f"<rect x='{x - 3}' y='{line_y - 18}' width='6' height='36' fill='#d62728'/>")
            out.append(
                f"<text x='{x}' y='{line_y + 32}' text-anchor='middle'>{html.escape(el.name)} "
                f"r={html.escape(_number(el.reflection, 3))}</text>"
            )
    for name, xs in emitter_x.items():
        centre = sum(xs) / len(xs)
        for x in xs:
            out.append(f"<line x1='{x}' y1='{line_y}' x2='{centre}' y2='38' stroke='#1f77b4'/>")
        out.append(f"<rect x='{centre - 22}' y='20' width='44' height='18' rx='4' fill='#e8f0fa' stroke='#1f77b4'/>")
        out.append(f"<text x='{centre}' y='33' text-anchor='middle'>{html.escape(name)}</text>")
    for i, link in enumerate(network.links):
        a, b = x_of[elements[i].name], x_of[elements[i + 1].name]
        label = _link_label(link)
        if label:
            out.append(
                f"<text x='{(a + b) / 2}' y='{line_y - 8}' text-anchor='middle' fill='#2ca02c'>"
                f"{html.escape(label)}</text>"
            )
    out.append("</svg>")
    return "".join(out)


def network_html(network) -> str:
    """The notebook display of a Network: the drawing, then its emitters and controls."""
    emitters = [
        [
            e.name,
            _number(e.detuning),
            _number(e.decay),
            _number(e.dephasing),
            str(e.levels),
            f"{_number(network.initial[e.name])}" if e.name in network.initial else "",
        ]
        for e in network.emitters
    ]
    parts = [
        f"<div><b>Network</b>: {len(network.emitters)} emitters, {len(network.ports)} ports, "
        f"{len(network.scatterers)} scatterers, {len(network.links)} links",
        network_svg(network),
        _table("emitters", ["name", "detuning", "decay", "dephasing", "levels", "initial"], emitters),
    ]
    if network.controls:
        parts.append(
            _table("controls", ["name", "pulse"], [[n, type(p).__name__] for n, p in network.controls.items()])
        )
    if network.inputs or network.outputs:
        parts.append(
            _table(
                "photon inputs and output modes",
                ["name", "kind", "end", "mode"],
                [[x.name, "input", x.end, type(x.mode).__name__] for x in network.inputs]
                + [[x.name, "output", x.end, type(x.mode).__name__] for x in network.outputs],
            )
        )
    return "".join(parts) + "</div>"


def _window(result) -> tuple[str, str]:
    """("t = t0 .. t1 in T saves", " (a batch of B; means shown)" or "") of a Result, batched
    by vmap or not."""
    ts = np.asarray(result.ts)
    first = ts.reshape(-1, ts.shape[-1])[0]
    batch = int(np.prod(ts.shape[:-1])) if ts.ndim > 1 else 0
    return (
        f"t = {first[0]:g} .. {first[-1]:g} in {first.size} saves",
        f" (a batch of {batch}; the values are means over it)" if batch else "",
    )


def result_summary(result) -> dict[str, list[list[str]]]:
    """The rows of a Result's summary: final populations and outputs per channel (means over a
    batch)."""
    populations = np.asarray(result.populations)
    outputs = np.asarray(result.outputs)
    return {
        "populations": [[n, f"{populations[..., -1, j].mean():.6g}"] for j, n in enumerate(result.names)],
        "outputs": [
            [c, k, f"{outputs[..., -1, i].mean():.6g}"]
            for i, (c, k) in enumerate(zip(result.channel_names, result.channel_kinds))
            if k != "dephasing"
        ],
    }


def result_text(result) -> str:
    """A short text form of a Result (the default repr prints every array)."""
    window, batch = _window(result)
    pops = ", ".join(f"{n}={v}" for n, v in result_summary(result)["populations"])
    error = float(np.max(np.asarray(result.conservation_error)))
    return f"Result({result.representation}, {window}{batch}, final populations {pops}, conservation error {error:.2e})"


def result_html(result) -> str:
    """The notebook display of a Result."""
    window, batch = _window(result)
    rows = result_summary(result)
    head = (
        f"<div><b>Result</b> ({html.escape(result.representation)}): {window}{batch}, "
        f"conservation error {float(np.max(np.asarray(result.conservation_error))):.2e}"
    )
    return (
        head
        + _table("final populations", ["subsystem", "population"], rows["populations"])
        + _table("photon number out per channel", ["channel", "kind", "output"], rows["outputs"])
        + "</div>"
    )
