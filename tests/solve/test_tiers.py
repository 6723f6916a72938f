"""Kept programs compile a quick build for their first answer and the optimized build once they
are called again (`chiraljax.solve._tiers`): the two give the same numbers, the optimized one
takes over without a pause, and a later process loads it directly."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import chiraljax as cj
from chiraljax.solve import _program_cache, _tiers


@jax.jit
def damped_sum(x):
    """A small loop with a few fused operations (something for LLVM to optimise)."""
    return jax.lax.fori_loop(0, 50, lambda i, y: 0.99 * y + jnp.sin(y) * x, x)


@pytest.fixture
def quick(monkeypatch):
    monkeypatch.setenv(_tiers.ENV_VAR, "1")


def test_the_quick_build_answers_first_and_the_optimized_one_takes_over(quick, monkeypatch, tmp_path):
    monkeypatch.setattr(_tiers, "QUICK_BUDGET_S", 3600.0)
    marker = tmp_path / "program.optimized"
    x = np.linspace(0.1, 1.0, 16)
    program = _tiers.TieredProgram(damped_sum, marker)
    first = np.asarray(program(x))
    assert program.quick and not marker.exists()  # the quick build served it
    monkeypatch.setattr(_tiers, "QUICK_BUDGET_S", 0.0)  # the next call spends the budget
    np.testing.assert_allclose(np.asarray(program(x)), first, rtol=1e-14)
    program.wait()
    assert not program.quick and marker.exists()
    np.testing.assert_allclose(np.asarray(program(x)), first, rtol=1e-14)
    np.testing.assert_allclose(first, np.asarray(damped_sum(x)), rtol=1e-14)
    # a later process (a new program with the marker on disk) compiles the optimized build at once
    again = _tiers.TieredProgram(damped_sum, marker)
    np.testing.assert_allclose(np.asarray(again(x)), first, rtol=1e-14)
    assert not again.quick


def test_the_quick_build_serves_until_its_budget_is_spent(quick, monkeypatch, tmp_path):
    monkeypatch.setattr(_tiers, "QUICK_BUDGET_S", 3600.0)
    program = _tiers.TieredProgram(damped_sum, tmp_path / "program.optimized")
    for _ in range(3):
        program(np.ones(4))
    assert program.quick and program._upgrade is None


def test_switched_off_it_compiles_the_optimized_build_at_once(monkeypatch, tmp_path):
    monkeypatch.setenv(_tiers.ENV_VAR, "off")
    program = _tiers.TieredProgram(damped_sum, tmp_path / "program.optimized")
    program(np.ones(4))
    assert not program.quick and (tmp_path / "program.optimized").exists()


def test_simulate_answers_from_the_quick_build_then_from_the_optimized_one(quick, monkeypatch, tmp_path):
    """Through `simulate`: the kept program of a concrete call starts quick, and the optimized
    build that takes over gives the same populations to rounding."""
    monkeypatch.setattr(_program_cache, "compilation_cache_dir", lambda: str(tmp_path))
    monkeypatch.setattr(_program_cache, "_LOADED", {})
    monkeypatch.setattr(_tiers, "QUICK_BUDGET_S", 0.0)
    net = cj.Network([cj.Emitter("A")], [cj.Port("p", "A", 0.0, 1.0, right_fraction=1.0)], initial={"A": 1.0})
    first = cj.simulate(net, (0.0, 2.0), n_save=11)
    (program,) = _program_cache._LOADED.values()
    program.wait()
    assert not program.quick
    again = cj.simulate(net, (0.0, 2.0), n_save=11)
    np.testing.assert_allclose(np.asarray(again.populations), np.asarray(first.populations), rtol=0, atol=1e-14)
    np.testing.assert_allclose(np.asarray(first.populations)[-1, 0], np.exp(-2.0), rtol=1e-8)
    assert [p.suffix for p in sorted((tmp_path / "programs").iterdir())] == [".optimized", ".stablehlo"]
