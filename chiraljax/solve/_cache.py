"""JAX's persistent compilation cache, switched on when chiraljax is imported.

Every compiled XLA program is written to a per-user folder, so a second process running the
same simulation or sweep loads the executable instead of compiling it again. The folder is

1. the value of `CHIRALJAX_COMPILATION_CACHE` when it is a path;
2. otherwise `$XDG_CACHE_HOME/chiraljax/jax`, or `~/.cache/chiraljax/jax`.

Set `CHIRALJAX_COMPILATION_CACHE=0` (or `off`, `false`) before the first import to leave the
cache off. A cache the user configured already (`JAX_COMPILATION_CACHE_DIR`, or
`jax.config.update("jax_compilation_cache_dir", ...)` before the import) is left as it is. If
the folder cannot be created the cache stays off; importing chiraljax never fails because of it.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

ENV_VAR = "CHIRALJAX_COMPILATION_CACHE"
_OFF = frozenset({"0", "off", "false", "no"})
_ON = frozenset({"", "1", "on", "true", "yes"})


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/chiraljax/jax` (when that is an absolute path), else `~/.cache/chiraljax/jax`."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "chiraljax" / "jax"


def requested_cache_dir() -> Path | None:
    """The folder `CHIRALJAX_COMPILATION_CACHE` asks for, or None when it switches the cache off."""
    value = os.environ.get(ENV_VAR, "").strip()
    if value.lower() in _OFF:
        return None
    if value.lower() in _ON:
        return default_cache_dir()
    return Path(value).expanduser()


def _configured_by_user() -> bool:
    return bool(jax.config.values.get("jax_compilation_cache_dir")) or bool(os.environ.get("JAX_COMPILATION_CACHE_DIR"))


def _update_if_known(name: str, value: object) -> None:
    if name in jax.config.values:
        jax.config.update(name, value)


def enable_compilation_cache() -> None:
    """Point JAX's persistent cache at the chiraljax folder and cache every compile.

    Does nothing when the cache is switched off, when the user configured a cache folder
    already, or when the folder cannot be created or written.
    """
    if _configured_by_user():
        return
    try:
        folder = requested_cache_dir()
        if folder is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            return
        _update_if_known("jax_persistent_cache_min_compile_time_secs", 0.0)
        _update_if_known("jax_persistent_cache_min_entry_size_bytes", 0)
        jax.config.update("jax_compilation_cache_dir", str(folder))
    except Exception:  # an unusable cache folder must never stop the import
        return


def compilation_cache_dir() -> str | None:
    """The folder JAX's persistent compilation cache uses in this process, or None when it is off."""
    return jax.config.values.get("jax_compilation_cache_dir") or None


enable_compilation_cache()
