"""Traced kernels kept on disk (`chiraljax.solve._program_cache`): a second process reads the program
instead of tracing it (and without importing scipy for LAPACK it does not call) and gets the same
numbers; user-defined pulse classes never use it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp

import chiraljax as cj
from chiraljax.solve import _program_cache

RUN = """
import json, sys
import chiraljax as cj
from chiraljax.solve import _program_cache
sys.path.insert(0, {tests!r})
from conftest import chiral_link, TRANSFER_WINDOW
p = float(cj.simulate(chiral_link(), TRANSFER_WINDOW, n_save=9).final_population("A1", "B1"))
print(json.dumps({{"P": p, "loaded": [k for k, v in _program_cache._LOADED.items() if v is not None],
                  "scipy": "scipy" in sys.modules}}))
"""


def run(folder) -> dict:
    env = {**os.environ, "CHIRALJAX_COMPILATION_CACHE": str(folder)}
    code = RUN.format(tests=os.fspath(Path(__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_second_process_reads_the_program_from_disk(tmp_path):
    first = run(tmp_path)
    files = sorted(p.name for p in (tmp_path / "programs").iterdir())
    # the traced program, and the marker saying its optimized build is compiled (`_tiers`)
    key = files[0].removesuffix(".optimized")
    assert files == [f"{key}.optimized", f"{key}.stablehlo"]
    second = run(tmp_path)
    assert second["P"] == first["P"] and abs(first["P"] - 0.5770813) < 1e-6
    assert second["loaded"] == first["loaded"] == [key]
    assert sorted(p.name for p in (tmp_path / "programs").iterdir()) == files
    # A program without LAPACK calls is read and run without JAX's LAPACK set-up (scipy.linalg)
    from jax._src.export import _export

    if hasattr(_export, "_ensure_backends_initialized"):
        assert not second["scipy"]


class Ramp(cj.AbstractPulse):
    """A user's own pulse: its code is not chiraljax's, so no program of it is kept."""

    slope: jnp.ndarray

    def __call__(self, t):
        return self.slope * t


def test_user_pulse_classes_take_the_ordinary_path():
    assert not _program_cache._own_classes((cj.SechEmission(1.0), Ramp(jnp.asarray(0.1))))
    assert _program_cache._own_classes((cj.SechEmission(1.0), cj.Halted(cj.Constant(1.0), 2.0)))
