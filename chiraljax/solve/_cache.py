"""JAX's persistent compilation cache, switched on when chiraljax is imported.

Every compiled XLA program is written to a per-user folder, so a second process running the
same simulation or sweep loads the executable instead of compiling it again. The folder is

1. the value of `CHIRALJAX_COMPILATION_CACHE` when it is a path;
2. otherwise `$XDG_CACHE_HOME/chiraljax/jax`, or `~/.cache/chiraljax/jax`.

Set `CHIRALJAX_COMPILATION_CACHE=0` (or `off`, `false`) before the first import to leave the
cache off. A cache the user configured already (`JAX_COMPILATION_CACHE_DIR`, or
`jax.config.update("jax_compilation_cache_dir", ...)` before the import) is left as it is. If
the folder cannot be created the cache stays off; importing chiraljax never fails because of it.

The folder chiraljax chose is kept below a size (`CHIRALJAX_CACHE_SIZE`, default 2 GiB; `off`
for no limit): at most once a day an import looks at it in a background thread and, when it
is larger, deletes the least recently used entries until it holds 80 % of the limit. Every new
version of chiraljax or JAX keys its programs anew, so without a limit the folder only grows.
Only files of the cache's own kinds are deleted (JAX's entries, `programs/`, `validated/`);
`chiraljax cache` shows the folder's size and prunes or clears it on request.
"""

from __future__ import annotations

import os
import re
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import jax

from chiraljax._errors import require

ENV_VAR = "CHIRALJAX_COMPILATION_CACHE"
SIZE_ENV_VAR = "CHIRALJAX_CACHE_SIZE"
DEFAULT_SIZE_LIMIT = 2 * 1024**3  # bytes
PRUNE_INTERVAL_S = 24 * 3600  # an import looks at the folder's size at most this often
KEEP_FRACTION = 0.8  # a pruned folder holds this fraction of the limit
_OFF = frozenset({"0", "off", "false", "no"})
_ON = frozenset({"", "1", "on", "true", "yes"})
_UNLIMITED = frozenset({"off", "none", "unlimited", "no"})
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_OWN_FOLDERS = ("programs", "validated")  # the cache's own sub-folders (`chiraljax.solve._program_cache`, files)
_ENTRY_SUFFIX = "-cache"  # JAX's entries
_ATIME_SUFFIX = "-atime"  # the access time JAX's own LRU eviction keeps beside an entry
_STAMP = ".last-pruned"


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


def cache_size_limit(environ: dict | None = None) -> int | None:
    """The size limit of the cache folder in bytes from `CHIRALJAX_CACHE_SIZE` (a number of
    bytes with an optional binary unit: `500M`, `2G`, `1.5GiB`; `off` for none), or the
    default 2 GiB when it is not set; None: no limit."""
    environ = os.environ if environ is None else environ
    value = environ.get(SIZE_ENV_VAR, "").strip()
    if not value:
        return DEFAULT_SIZE_LIMIT
    if value.lower() in _UNLIMITED:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d*)?)\s*([kmgt]?)(?:i?b)?", value.lower())
    require(
        match is not None and float(match.group(1)) > 0,
        f"{SIZE_ENV_VAR}={value!r}: give a positive size such as 500M, 2G or 1.5GiB, or 'off' for no limit",
    )
    return int(float(match.group(1)) * _UNITS[match.group(2)])


@dataclass(frozen=True)
class CacheEntry:
    """One file of the cache: its path, size in bytes and last use (the later of its access
    and modification times, seconds since the epoch)."""

    path: Path
    size: int
    last_use: float


def cache_entries(folder: str | os.PathLike) -> list[CacheEntry]:
    """The files of the cache's own kinds in `folder` (JAX's entries at its top level, and
    everything under `programs/` and `validated/`), least recently used first. Other files
    in the folder are not the cache's and are never listed."""
    root = Path(folder)
    paths: list[Path] = []
    try:
        with os.scandir(root) as top:
            for item in top:
                if item.is_file(follow_symlinks=False) and item.name.endswith(_ENTRY_SUFFIX):
                    paths.append(Path(item.path))
    except OSError:
        return []
    for name in _OWN_FOLDERS:
        for base, _, files in os.walk(root / name):
            paths.extend(Path(base) / f for f in files)
    entries = []
    for path in paths:
        try:
            stat = path.stat()
        except OSError:  # deleted meanwhile
            continue
        entries.append(CacheEntry(path, stat.st_size, max(stat.st_atime, stat.st_mtime)))
    return sorted(entries, key=lambda e: e.last_use)


def prune_cache(folder: str | os.PathLike, limit: int, keep: float = KEEP_FRACTION) -> tuple[int, int]:
    """When the cache's files in `folder` (`cache_entries`) take more than `limit` bytes,
    delete the least recently used until they take at most `keep` * `limit`. Returns (files
    deleted, bytes freed). A deleted entry is compiled again when it is next needed."""
    require(int(limit) >= 0, f"prune_cache: limit must be >= 0 bytes, got {limit}")
    require(0.0 <= float(keep) <= 1.0, f"prune_cache: keep must be in [0, 1], got {keep}")
    entries = cache_entries(folder)
    total = sum(e.size for e in entries)
    if total <= limit:
        return 0, 0
    target = keep * limit
    removed = freed = 0
    for entry in entries:
        if total <= target:
            break
        try:
            entry.path.unlink()
        except OSError:  # gone already, or not ours to delete
            continue
        if entry.path.name.endswith(_ENTRY_SUFFIX):  # its access time goes with it, never alone
            entry.path.with_name(entry.path.name[: -len(_ENTRY_SUFFIX)] + _ATIME_SUFFIX).unlink(missing_ok=True)
        total -= entry.size
        removed, freed = removed + 1, freed + entry.size
    return removed, freed


def clear_cache(folder: str | os.PathLike) -> tuple[int, int]:
    """Delete every file of the cache's own kinds in `folder` (`cache_entries`); (files, bytes)."""
    return prune_cache(folder, 0, keep=0.0)


def touch(path: Path) -> None:
    """Mark a cache file as used now (its access and modification times), for the pruning's
    least-recently-used order where the file system does not record reads."""
    try:
        os.utime(path)
    except OSError:
        pass


def prune_in_background(folder: Path, now: float | None = None) -> threading.Thread | None:
    """Start `prune_cache` on `folder` at the configured limit in a daemon thread, unless the
    folder was looked at less than `PRUNE_INTERVAL_S` ago or there is no limit; the started
    thread, or None. A size setting that cannot be read is reported as a warning."""
    try:
        limit = cache_size_limit()
    except Exception as err:
        warnings.warn(f"chiraljax: the cache folder is not pruned: {err}", stacklevel=2)
        return None
    if limit is None:
        return None
    stamp = Path(folder) / _STAMP
    now = time.time() if now is None else now
    try:
        if now - stamp.stat().st_mtime < PRUNE_INTERVAL_S:
            return None
    except OSError:
        pass
    try:
        stamp.touch()
        os.utime(stamp, (now, now))
    except OSError:
        return None

    def prune() -> None:
        try:
            prune_cache(folder, limit)
        except Exception:  # pruning is housekeeping: it never disturbs the process
            pass

    thread = threading.Thread(target=prune, name="chiraljax-cache-prune", daemon=True)
    thread.start()
    _PRUNING.append(thread)
    return thread


_PRUNING: list[threading.Thread] = []  # the background prunes this process started


def wait_for_pruning(timeout: float | None = None) -> None:
    """Wait for the background prunes this process started (the `cache` command reports the
    folder after them)."""
    for thread in list(_PRUNING):
        thread.join(timeout)


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
    prune_in_background(folder)


def compilation_cache_dir() -> str | None:
    """The folder JAX's persistent compilation cache uses in this process, or None when it is off."""
    return jax.config.values.get("jax_compilation_cache_dir") or None


enable_compilation_cache()
