"""Shared fixtures of the physics tests.

JAX compiles are the expensive part of this suite, so the networks here are tiny and every
compiled function is built once per session and reused: a new parameter value goes in through
`Network.with_parameters` (or a new Network of the same structure), which never recompiles.

The default run (`-m 'not slow'`) also compiles with LLVM's optimiser off
(`--xla_backend_optimization_level=0` in `XLA_FLAGS`, for this process, its workers and the
processes the tests start): the tests check numbers, not speed, and the suite then runs 1.5x
faster (3:21 -> 2:14 for the same 587 tests on two cores). The long physics checks (`-m slow`)
run as compiled for users, and so does a run whose `XLA_FLAGS` names the option itself. Kept programs compile one build only
(`CHIRALJAX_QUICK_BUILD=0`; `tests/solve/test_tiers.py` tests the two builds).
"""

from __future__ import annotations

import os
import sys

import jax
import numpy as np
import pytest

import chiraljax as cj


def emitter_pair(
    *, rate_a=1.0, rate_b=1.0, right_fraction=(0.5, 0.5), phase=0.0, coupling=0.0, initial=(1.0, 0.0)
) -> cj.Network:
    """Qubits A (port at x = 0) and B (port at x = d) on one waveguide: link phase phi = w d/v,
    direct coupling g, initial amplitudes (c_A, c_B). With right_fraction (1, 1) it is the
    one-way cascade A -> B; with (1/2, 1/2) the bidirectional chiral module of docs/theory.md
    section 2. One structure for all, so one compiled solver serves them."""
    return cj.Network(
        [cj.Emitter("A"), cj.Emitter("B")],
        [
            cj.Port("pA", "A", 0, rate_a, right_fraction=right_fraction[0]),
            cj.Port("pB", "B", 1, rate_b, right_fraction=right_fraction[1]),
        ],
        links=[cj.Link(phase=phase)],
        couplings=[cj.Coupling("A", "B", coupling)],
        initial={"A": initial[0], "B": initial[1]},
    )


PAIR_SAVES = 33  # save points of every emitter_pair simulation (the shape is part of the compile)


# The chiral state-transfer link of docs/theory.md sections 2 and 5: two modules of two qubits a
# quarter wavelength apart (phase pi/2), the exchange J_wg cancelled by a direct coupling
# -gamma/2, sech emission from module 0 and time-reversed absorption by module 1, with a lossy
# link of power transmission eta between them.
TRANSFER_WINDOW = (-12.0, 12.0)
TRANSFER_RTOL, TRANSFER_ATOL = 1e-10, 1e-12
RECEIVER = ("A1", "B1")


def chiral_link(eta: float = 0.6, t1_rate: float = 1e-3, dephasing: float = 1e-3) -> cj.Network:
    """Two chiral modules: A0-B0 emits a sech photon (kappa = 1), A1-B1 absorbs it.

    Links: 0 = inside module 0 (phase pi/2), 1 = between the modules (transmission eta),
    2 = inside module 1 (phase pi/2)."""
    from chiraljax.experiment._references import chiral_transfer_network

    return chiral_transfer_network(2, eta, t1_rate, dephasing)


# The parameters the transfer tests vary: one fixed key set, so one compiled function serves
# the closed forms, the gradients and the recompilation check.
TRANSFER_KEYS = (
    "links.1.transmission",
    "links.0.phase",
    "ports.pA0.rate",
    "controls.emit.kappa",
    "emitters.A1.detuning",
    "emitters.B1.dephasing",
    "emitters.A0.decay",
    "emitters.B0.decay",
    "emitters.A1.decay",
    "emitters.B1.decay",
    "emitters.A0.dephasing",
    "emitters.B0.dephasing",
    "emitters.A1.dephasing",
)


def transfer_parameters(network: cj.Network, **changes: float) -> dict:
    """The TRANSFER_KEYS values of `network` as floats, with `changes` (keys with '.' -> '__')."""
    values = {k: float(np.asarray(v)) for k, v in network.parameters().items() if k in TRANSFER_KEYS}
    for key, value in changes.items():
        values[key.replace("__", ".")] = float(value)
    return values


class TransferModel:
    """P(params) = receiver population at the end of the transfer window, with `traces`
    counting how often the jitted function was traced (compiled)."""

    def __init__(self):
        self.base = chiral_link()
        self.traces = 0

        def population(params):
            self.traces += 1
            result = cj.simulate(
                self.base.with_parameters(params),
                TRANSFER_WINDOW,
                n_save=2,
                representation="sector",
                rtol=TRANSFER_RTOL,
                atol=TRANSFER_ATOL,
            )
            return result.final_population(*RECEIVER)

        self.population = population
        self.jitted = jax.jit(population)

    def __call__(self, params) -> float:
        return float(self.jitted(params))


@pytest.fixture(scope="session")
def transfer_model() -> TransferModel:
    return TransferModel()


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run the `chiraljax` entry point in this process; return (exit code, stdout, stderr)."""
    from chiraljax.cli import main

    monkeypatch.setattr(sys, "argv", ["chiraljax", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def delay_series(a: complex, b: complex, tau: float, t) -> np.ndarray:
    """c(t) of dc/dt = -a c + b c(t - tau), c(0) = 1, c(t < 0) = 0: the closed form of a delayed
    feedback (method of steps), sum_n (b s_n)^n / n! e^{-a s_n} with s_n = t - n tau >= 0."""
    from math import factorial

    t = np.asarray(t, float)
    out = np.zeros(t.shape, complex)
    for n in range(int(t.max() / tau) + 1):
        s = np.maximum(t - n * tau, 0.0)
        out += np.where(t >= n * tau, (b * s) ** n / factorial(n) * np.exp(-a * s), 0.0)
    return out


_OPT_LEVEL = "--xla_backend_optimization_level=0"


def pytest_configure(config):
    """Before any JAX backend starts (and before the workers are spawned, which inherit the
    environment): the compile settings of the module docstring."""
    os.environ.setdefault("CHIRALJAX_QUICK_BUILD", "0")
    flags = os.environ.get("XLA_FLAGS", "")
    if config.option.markexpr.replace(" ", "") == "notslow" and "xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {_OPT_LEVEL}".strip()
