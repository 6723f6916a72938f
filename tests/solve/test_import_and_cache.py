"""`import chiraljax` stays light, every exported name resolves, JAX's persistent compilation
cache is on by default, in the chosen folder, and off when switched off, and the XLA flags
chiraljax adds (`chiraljax._compiler`) yield to the user's.

Each check runs in a fresh interpreter: the import and the cache settings happen once per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import chiraljax as cj

#: Packages that only sweeps, plots, files, the command line, optimisation or the ODE solver need.
HEAVY = (
    "xarray",
    "scipy",
    "matplotlib",
    "rich",
    "jsonschema",
    "typer",
    "tomli_w",
    "pandas",
    "h5py",
    "h5netcdf",
    "optax",
    "diffrax",
)

_CACHE_ENV = (
    "CHIRALJAX_COMPILATION_CACHE",
    "CHIRALJAX_CACHE_SIZE",
    "JAX_COMPILATION_CACHE_DIR",
    "XDG_CACHE_HOME",
    "XLA_FLAGS",
    "CHIRALJAX_XLA_FLAGS",
)


def run_python(code: str, **env: str) -> dict:
    """Run `code` in a fresh interpreter with the cache variables cleared and `env` set; return
    the JSON object it prints last."""
    environment = {k: v for k, v in os.environ.items() if k not in _CACHE_ENV}
    environment.update(env)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=environment, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


_LOADED = f"""
    import json, sys
    import chiraljax
    loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
    print(json.dumps({{"loaded": loaded, "cache": chiraljax.compilation_cache_dir()}}))
"""


def test_import_leaves_heavy_packages_unloaded(tmp_path):
    out = run_python(_LOADED, XDG_CACHE_HOME=str(tmp_path))
    assert out["loaded"] == []
    assert out["cache"] == str(tmp_path / "chiraljax" / "jax")


def test_every_exported_name_resolves():
    for name in cj.__all__:
        assert getattr(cj, name) is not None, name
    assert set(cj.__all__) <= set(dir(cj))
    from chiraljax import Grid, load_preset, sweep  # noqa: F401  (imported on first access)

    with pytest.raises(AttributeError, match="no_such_name"):
        cj.no_such_name  # noqa: B018


_CONFIG = """
    import json
    import jax
    import chiraljax
    print(json.dumps({"cache": chiraljax.compilation_cache_dir(),
                      "jax": jax.config.jax_compilation_cache_dir}))
"""


@pytest.mark.parametrize("value", ["off", "0", "false"])
def test_cache_can_be_switched_off(value):
    out = run_python(_CONFIG, CHIRALJAX_COMPILATION_CACHE=value)
    assert out == {"cache": None, "jax": None}


def test_a_cache_the_user_configured_is_kept(tmp_path):
    mine = str(tmp_path / "mine")
    out = run_python(_CONFIG, JAX_COMPILATION_CACHE_DIR=mine, CHIRALJAX_COMPILATION_CACHE=str(tmp_path / "ours"))
    assert out == {"cache": mine, "jax": mine}
    assert not (tmp_path / "ours").exists()


def test_an_unusable_folder_leaves_the_cache_off(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = run_python(_CONFIG, CHIRALJAX_COMPILATION_CACHE=str(blocker / "cache"))
    assert out == {"cache": None, "jax": None}


_PRUNED = """
    import json, threading
    import chiraljax
    for thread in threading.enumerate():
        if thread.name == "chiraljax-cache-prune":
            thread.join(timeout=60)
    print(json.dumps({"cache": chiraljax.compilation_cache_dir()}))
"""


def test_import_prunes_a_folder_over_its_limit_and_not_a_folder_the_user_configured(tmp_path):
    ours, mine = tmp_path / "ours", tmp_path / "mine"
    for folder in (ours, mine):
        folder.mkdir()
        for i in range(10):  # 10 entries of 10 kB, oldest first
            entry = folder / f"jit_f-{i}-cache"
            entry.write_bytes(bytes(10_000))
            os.utime(entry, (1e9 + i, 1e9 + i))
    run_python(_PRUNED, CHIRALJAX_COMPILATION_CACHE=str(ours), CHIRALJAX_CACHE_SIZE="50000")
    assert sorted(p.name for p in ours.glob("*-cache")) == [f"jit_f-{i}-cache" for i in range(6, 10)]  # 40 kB left
    run_python(_PRUNED, JAX_COMPILATION_CACHE_DIR=str(mine), CHIRALJAX_CACHE_SIZE="50000")
    assert len(list(mine.glob("*-cache"))) == 10


_COMPILE = """
    import json
    import jax
    import jax.numpy as jnp
    import chiraljax
    hits = []
    jax.monitoring.register_event_listener(
        lambda event, **kwargs: hits.append(event) if event.endswith("/cache_hits") else None)
    jax.jit(lambda x: jnp.sin(x) * 2.0 + 1.0)(jnp.arange(3.0)).block_until_ready()
    print(json.dumps({"cache": chiraljax.compilation_cache_dir(), "hits": len(hits)}))
"""


def test_compiled_programs_are_written_to_the_cache_and_reused(tmp_path):
    folder = tmp_path / "cache"
    first = run_python(_COMPILE, CHIRALJAX_COMPILATION_CACHE=str(folder))
    assert first["cache"] == str(folder)
    assert any(path.is_file() for path in Path(folder).rglob("*"))
    second = run_python(_COMPILE, CHIRALJAX_COMPILATION_CACHE=str(folder))
    assert second["hits"] >= 1


def test_default_xla_flags_add_only_what_the_user_left_unset():
    from chiraljax._compiler import SMALL_LOOP_BYTES, default_xla_flags, installed_jaxlib

    emitters = "--xla_cpu_use_fusion_emitters=false"
    loops = f"--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold={SMALL_LOOP_BYTES}"
    no_ynn = "--xla_cpu_experimental_ynn_fusion_type="
    flag = f"{emitters} {loops} {no_ynn}"
    checked = (0, 10, 2)  # a jaxlib whose XLA knows the options
    assert default_xla_flags({}, checked) == flag
    assert default_xla_flags({"XLA_FLAGS": "--xla_dump_to=/tmp/x"}, checked) == f"--xla_dump_to=/tmp/x {flag}"
    # an option the user set is left to them, the other one still added
    mine = "--xla_cpu_use_fusion_emitters=true"
    assert default_xla_flags({"XLA_FLAGS": mine}, checked) == f"{mine} {loops} {no_ynn}"
    theirs = f"{mine} --xla_backend_extra_options=a=1 --xla_cpu_experimental_ynn_fusion_type=individual_dot"
    assert default_xla_flags({"XLA_FLAGS": theirs}, checked) is None
    for off in ("0", "off", "False", " no "):
        assert default_xla_flags({"CHIRALJAX_XLA_FLAGS": off}, checked) is None
    # XLA stops the process on an option it does not know: only the jaxlib versions checked
    assert default_xla_flags({}, (0, 5, 1)) is None
    assert default_xla_flags({}, (0, 5, 3)) == emitters
    assert default_xla_flags({}, (0, 11, 0)) is None
    assert len(installed_jaxlib()) >= 2


_FLAGS = """
    import json, os
    import jax
    if os.environ.get("START_JAX_FIRST"):
        jax.devices()
    import chiraljax
    from chiraljax._compiler import bulk_compiler_options
    assert bulk_compiler_options("gpu") == {}
    value = float(jax.jit(lambda x: x * 2.0 + 1.0)(1.5))
    print(json.dumps({"flags": os.environ.get("XLA_FLAGS"), "bulk": bulk_compiler_options(), "value": value}))
"""


def test_import_sets_the_compiler_flag_before_jax_starts_and_yields_to_the_user():
    """In a fresh process: the flags are set and the sweeps' override offered; when JAX started
    first, or the user set the option, nothing is changed (the other cases of the choice are
    `default_xla_flags`'s, above)."""
    from chiraljax._compiler import default_xla_flags

    ours = run_python(_FLAGS, CHIRALJAX_COMPILATION_CACHE="off")
    if default_xla_flags({}) is None:  # a jaxlib outside the versions checked keeps JAX's defaults
        assert ours == {"flags": None, "bulk": {}, "value": 4.0}
    else:
        assert ours == {"flags": default_xla_flags({}), "bulk": {"xla_cpu_use_fusion_emitters": True}, "value": 4.0}
    late = run_python(_FLAGS, CHIRALJAX_COMPILATION_CACHE="off", START_JAX_FIRST="1")
    assert late == {"flags": None, "bulk": {}, "value": 4.0}
    # the user's own setting of the option (a jaxlib that does not know it aborts on it: there,
    # any flag of the user's stays as it is)
    flag = "--xla_cpu_use_fusion_emitters=true"
    if default_xla_flags({}) is None:
        flag = "--xla_backend_optimization_level=3"
    mine = run_python(_FLAGS, CHIRALJAX_COMPILATION_CACHE="off", XLA_FLAGS=flag)
    # the user's option stays, chiraljax's other one is added, and sweeps keep the user's choice
    assert mine == {"flags": default_xla_flags({"XLA_FLAGS": flag}) or flag, "bulk": {}, "value": 4.0}


_COLLECTOR = """
    import gc, json, os
    if os.environ.get("COLLECTOR_OFF"):
        gc.disable()
    import chiraljax
    print(json.dumps({"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}))
"""


def test_import_freezes_what_it_loaded_and_leaves_the_collector_as_it_was():
    out = run_python(_COLLECTOR, CHIRALJAX_COMPILATION_CACHE="off")
    assert out["enabled"] and out["frozen"] > 10_000
    off = run_python(_COLLECTOR, CHIRALJAX_COMPILATION_CACHE="off", COLLECTOR_OFF="1")
    assert not off["enabled"]
