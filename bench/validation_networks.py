"""Fifteen small networks (1-4 emitters) of the kinds a physicist checks a model with, each with
its time window: decay, a mirror, a giant atom, a transmon, an absorbed photon, pairs, a chain, the
two-module transfer and its variants. `bench/latency.py` simulates each once in a fresh process
(the "15 small validation networks" of the latency issue): most of that time is compilation, and
networks of the same sizes share their program.
"""

from __future__ import annotations

import numpy as np

import chiraljax as cj

#: (label, network, t_span, method or None for the automatic choice)
Case = tuple[str, cj.Network, tuple[float, float], object]


def _pairs() -> list[Case]:
    E, P = cj.Emitter, cj.Port
    pair = [E("a"), E("b")]
    chiral = [P("pa", "a", 0, 1.0, right_fraction=1.0), P("pb", "b", 1, 1.0, right_fraction=1.0)]
    both = [P("pa", "a", 0, 1.0), P("pb", "b", 1, 1.0)]
    weak = [P("pa", "a", 0, 1.0, right_fraction=1.0), P("pb", "b", 1, 0.2, right_fraction=1.0)]
    return [
        ("cascaded pair", cj.Network(pair, chiral, initial={"a": 1.0}), (0.0, 10.0), None),
        (
            "pair, bidirectional, quarter wave",
            cj.Network(pair, both, links=[cj.Link(phase=np.pi / 2)], initial={"a": 1.0}),
            (0.0, 10.0),
            None,
        ),
        (
            "pair with a direct coupling",
            cj.Network(pair, both, couplings=[cj.Coupling("a", "b", 0.3)], initial={"a": 1.0}),
            (0.0, 10.0),
            None,
        ),
        (
            "pair into an output mode",
            cj.Network(pair, weak, outputs=[cj.OutputMode("out", cj.SechMode(1.0))], initial={"a": 1.0}),
            (-20.0, 20.0),
            None,
        ),
    ]


def _transfers() -> list[Case]:
    names = ("A0", "B0", "A1", "B1")
    roles = ("emit", "emit", "absorb", "absorb")
    ports = [cj.Port(f"p{n}", n, x, 1.0, control=c) for x, (n, c) in enumerate(zip(names, roles))]
    couplings = [cj.Coupling("A0", "B0", -0.5, control="emit"), cj.Coupling("A1", "B1", -0.5, control="absorb")]
    controls = {"emit": cj.SechEmission(1.0), "absorb": cj.SechAbsorption(1.0)}
    start = {"A0": 1 / np.sqrt(2), "B0": 1j / np.sqrt(2)}
    quarter = cj.Link(phase=np.pi / 2)

    def transfer(links, scatterers=(), **emitter) -> cj.Network:
        emitters = [cj.Emitter(n, **emitter) for n in names]
        return cj.Network(
            emitters, ports, links=links, scatterers=scatterers, couplings=couplings, controls=controls, initial=start
        )

    window = (-12.0, 12.0)
    return [
        ("two-module transfer", transfer([quarter, cj.Link(transmission=0.6), quarter]), window, None),
        (
            "the same, lossier, with T1",
            transfer([quarter, cj.Link(transmission=0.4), quarter], decay=0.01),
            window,
            None,
        ),
        (
            "two-module transfer through a partial mirror",
            transfer(
                [quarter, cj.Link(transmission=0.8), cj.Link(transmission=0.8), quarter],
                scatterers=[cj.Scatterer("m", 1.5, 0.2)],
            ),
            window,
            None,
        ),
        (
            "two-module transfer, 2 ns cable",
            transfer([quarter, cj.Link(delay=2.0, transmission=0.6), quarter]),
            (-12.0, 14.0),
            None,
        ),
    ]


def validation_networks() -> list[Case]:
    """The fifteen cases, smallest first."""
    E, P, L = cj.Emitter, cj.Port, cj.Link
    one = [E("a")]
    chiral = [P("p", "a", 0.0, 1.0, right_fraction=1.0)]
    both = [P("p", "a", 0.0, 1.0)]
    singles: list[Case] = [
        ("decay, chiral", cj.Network(one, chiral, initial={"a": 1.0}), (0.0, 10.0), None),
        (
            "decay, bidirectional, T1 and dephasing",
            cj.Network([E("a", decay=0.01, dephasing=0.02)], both, initial={"a": 1.0}),
            (0.0, 10.0),
            None,
        ),
        (
            "atom before a mirror, delayed",
            cj.Network(one, both, scatterers=[cj.Scatterer("m", 1.0, -1.0)], links=[L(delay=0.5)], initial={"a": 1.0}),
            (0.0, 10.0),
            None,
        ),
        (
            "giant atom, two legs",
            cj.Network(
                one,
                [P("p1", "a", 0.0, 0.5), P("p2", "a", 1.0, 0.5)],
                links=[L(delay=1.0, phase=np.pi)],
                initial={"a": 1.0},
            ),
            (0.0, 10.0),
            None,
        ),
        (
            "transmon, three levels, full space",
            cj.Network([E("t", levels=3, anharmonicity=-5.0)], [P("p", "t", 0.0, 1.0)], initial={"t": 1.0}),
            (0.0, 10.0),
            cj.Full(),
        ),
        (
            "photon absorbed from a mode",
            cj.Network(one, chiral, inputs=[cj.PhotonInput("in", cj.SechMode(1.0))]),
            (-20.0, 20.0),
            None,
        ),
    ]
    chain = cj.Network(
        [E("a"), E("b"), E("c")],
        [P(f"p{n}", n, x, 1.0) for x, n in enumerate("abc")],
        links=[L(phase=0.3), L(transmission=0.9)],
        initial={"b": 1.0},
    )
    return [*singles, *_pairs(), ("three in a chain", chain, (0.0, 10.0), None), *_transfers()]
