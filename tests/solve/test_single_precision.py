"""Single precision (`CHIRALJAX_PRECISION=float32`, chosen before the first import, so in a fresh
process): an adaptive solve with the default tolerances finishes (they are raised to what float32
resolves), a fixed-step sweep passes its check against an adaptive solve, and an output mode's
detector switches on where float32 can follow it; all agree with float64 to float32's accuracy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from chiraljax._precision import FLOAT32_TOLERANCE_FLOOR, resolvable_tolerances

_TRANSFER = """
    import json
    import numpy as np
    import chiraljax as cj
    from chiraljax._precision import resolvable_tolerances

    names = ("A0", "B0", "A1", "B1")
    ports = [cj.Port(f"p{n}", n, x, 1.0, control=c)
             for x, (n, c) in enumerate(zip(names, ["emit", "emit", "absorb", "absorb"]))]
    net = cj.Network(
        [cj.Emitter(n) for n in names], ports,
        links=[cj.Link(phase=np.pi / 2), cj.Link(transmission=0.6), cj.Link(phase=np.pi / 2)],
        couplings=[cj.Coupling("A0", "B0", -0.5, control="emit"), cj.Coupling("A1", "B1", -0.5, control="absorb")],
        controls={"emit": cj.SechEmission(1.0), "absorb": cj.SechAbsorption(1.0)},
        initial={"A0": 1 / np.sqrt(2), "B0": 1j / np.sqrt(2)},
    )
    result = cj.simulate(net, (-12.0, 12.0), n_save=5)
    swept = cj.sweep(net, [cj.Grid("links.1.transmission", [0.5, 0.7])], metrics={"transfer": "population:A1+B1"},
                     t_span=(-12.0, 12.0), steps=48, progress=False)
    # an output mode: its detector cavity switches on at a norm float32 resolves
    detected = cj.Network(
        [cj.Emitter("a"), cj.Emitter("b")],
        [cj.Port("pa", "a", 0, 1.0, right_fraction=1.0), cj.Port("pb", "b", 1, 0.2, right_fraction=1.0)],
        outputs=[cj.OutputMode("out", cj.SechMode(1.0))], initial={"a": 1.0},
    )
    caught = float(np.asarray(cj.simulate(detected, (-20.0, 20.0), n_save=5).populations)[-1, -1])
    print(json.dumps({
        "caught": caught,
        "precision": cj.PRECISION,
        "dtype": str(np.asarray(result.populations).dtype),
        "transfer": float(result.final_population("A1", "B1")),
        "tolerances": resolvable_tolerances(1e-8, 1e-10),
        "swept": np.asarray(swept["transfer"]).ravel().tolist(),
    }))
"""


def test_float32_finishes_with_the_default_tolerances_and_matches_float64():
    env = {**os.environ, "CHIRALJAX_PRECISION": "float32", "CHIRALJAX_COMPILATION_CACHE": "off"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_TRANSFER)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["precision"] == "float32" and out["dtype"] == "float32"
    # the transfer stores eta = 0.6 up to the tail the window cuts off (7e-6), float32 to ~1e-6
    assert abs(out["transfer"] - 0.6) < 3e-5
    assert out["tolerances"] == list(FLOAT32_TOLERANCE_FLOOR)  # the defaults, raised
    np.testing.assert_allclose(out["swept"], [0.5, 0.7], atol=3e-5)
    # float64 catches 0.0493314838 of the photon in the mode
    assert abs(out["caught"] - 0.0493314838) < 1e-4


def test_float64_keeps_the_tolerances_asked_for():
    assert resolvable_tolerances(1e-12, 1e-14) == (1e-12, 1e-14)  # this process computes in float64
