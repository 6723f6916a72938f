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
import numpy as np

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
    key = files[1].removesuffix(".stablehlo")
    assert files[1] == f"{key}.stablehlo"
    assert files[0].startswith(key) and files[0].endswith(".optimized")  # per XLA_FLAGS
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


def mirror(dephasing: float) -> cj.Network:
    """An atom before a mirror (a delay network)."""
    return cj.Network(
        [cj.Emitter("a", dephasing=dephasing)],
        [cj.Port("p", "a", 1.0, 1.0)],
        scatterers=[cj.Scatterer("m", 0.0, -1.0)],
        links=[cj.Link(delay=0.5)],
        initial={"a": 1.0},
    )


def test_a_delay_solve_runs_as_a_kept_program(tmp_path, monkeypatch):
    """Delay solves on concrete numbers go through a kept program too (with and without noise
    trajectories and their key) and give the traced path's numbers."""
    monkeypatch.setattr(_program_cache, "compilation_cache_dir", lambda: str(tmp_path))
    monkeypatch.setattr(_program_cache, "_LOADED", {})
    import jax

    for net, options in ((mirror(0.0), {}), (mirror(0.2), {"n_trajectories": 8, "key": jax.random.key(3)})):
        kept = cj.simulate(net, (0.0, 6.0), n_save=13, dt=0.05, **options)

        def traced(network, options=options):
            return cj.simulate(network, (0.0, 6.0), n_save=13, dt=0.05, **options)

        # traced, the dephasing rate is unknown when planning: the traced path averages
        # trajectories (noise 0 for the first network) and reports rho, not the amplitudes
        ordinary = jax.jit(traced)(net)
        assert kept.representation == ordinary.representation == "delay"
        for name in ("populations", "outputs", "in_flight"):
            np.testing.assert_allclose(np.asarray(getattr(kept, name)), np.asarray(getattr(ordinary, name)), atol=1e-12)
        if options:
            np.testing.assert_allclose(np.asarray(kept.final_state), np.asarray(ordinary.final_state), atol=1e-12)
        else:
            assert kept.amplitudes is not None and abs(float(kept.final_population("a")) - 4 / 9) < 1e-6
    loaded = [k for k, v in _program_cache._LOADED.items() if v is not None]
    assert len(loaded) == 2 and len(list((tmp_path / "programs").glob("*.stablehlo"))) == 2


def test_kernels_are_traced_inline_only_while_a_kept_program_is_exported(tmp_path, monkeypatch):
    """A kernel traced for a kept program is traced into it (`exporting`); called anywhere else
    (the ordinary path, a fallback of an eager derivative) it stays a jitted call."""
    monkeypatch.setattr(_program_cache, "compilation_cache_dir", lambda: str(tmp_path))
    monkeypatch.setattr(_program_cache, "_LOADED", {})
    seen = []

    def kernel(x):
        seen.append(_program_cache.exporting())
        return [x * 2.0]

    run = _program_cache.bind_cached("exporting-probe", kernel, (np.arange(3.0),), ())
    assert run is not None
    np.testing.assert_array_equal(np.asarray(run()[0]), [0.0, 2.0, 4.0])
    kernel(1.0)
    assert seen == [True, False] and not _program_cache.exporting()


GRADIENT = """
import json, sys
import jax, jax.numpy as jnp
import chiraljax as cj
sys.path.insert(0, {tests!r})
from conftest import chiral_link, TRANSFER_WINDOW

def transfer(p):
    net = chiral_link().with_parameters({{"links.1.transmission": p[0], "links.0.phase": p[1]}})
    return cj.simulate(net, TRANSFER_WINDOW, n_save=2).final_population("A1", "B1")

grad = jax.grad(transfer)(jnp.array([0.6, 1.5]))
print(json.dumps([float(g) for g in grad]))
"""


def test_a_backward_program_missing_from_disk_is_made_again(tmp_path):
    """An eager gradient in several numbers keeps two programs: the solve with its adjoint's
    tape, and the backward pass from the tape. A process that finds the first on disk but
    not the second traces the second again (the residuals' structure from the solve
    linearized anew) and gets the same gradient."""
    env = {**os.environ, "CHIRALJAX_COMPILATION_CACHE": str(tmp_path)}
    code = GRADIENT.format(tests=os.fspath(Path(__file__).resolve().parents[1]))

    def gradient() -> list:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    first = gradient()
    programs = sorted((tmp_path / "programs").glob("*.stablehlo"), key=lambda p: p.stat().st_mtime_ns)
    assert len(programs) == 2
    programs[-1].unlink()  # the backward program, exported after the solve's
    second = gradient()
    assert len(list((tmp_path / "programs").glob("*.stablehlo"))) == 2
    np.testing.assert_allclose(second, first, rtol=1e-12, atol=0)
    assert abs(first[0]) > 0.1 and first[1] != 0.0
