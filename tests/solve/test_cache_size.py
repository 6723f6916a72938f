"""The cache folder stays below its size limit: the limit's setting, least-recently-used
pruning of the cache's own files only, the once-a-day background check at import, and the
`chiraljax cache` command."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest import run_cli

from chiraljax._errors import ValidationError
from chiraljax.solve import _cache
from chiraljax.solve._cache import (
    DEFAULT_SIZE_LIMIT,
    PRUNE_INTERVAL_S,
    cache_entries,
    cache_size_limit,
    clear_cache,
    prune_cache,
    prune_in_background,
)

KIB = 1024


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", DEFAULT_SIZE_LIMIT),
        ("123", 123),
        ("500M", 500 * KIB**2),
        ("2G", 2 * KIB**3),
        ("1.5GiB", int(1.5 * KIB**3)),
        ("64 kb", 64 * KIB),
        ("off", None),
        ("unlimited", None),
    ],
)
def test_size_limit_setting(value, expected):
    assert cache_size_limit({"CHIRALJAX_CACHE_SIZE": value}) == expected


@pytest.mark.parametrize("value", ["lots", "-1G", "0", "2X", "1e9"])
def test_bad_size_limit_is_refused_by_name(value):
    with pytest.raises(ValidationError, match="CHIRALJAX_CACHE_SIZE"):
        cache_size_limit({"CHIRALJAX_CACHE_SIZE": value})


def _entry(path: Path, size: int, age_s: float) -> Path:
    """A cache file of `size` bytes last used `age_s` seconds ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    when = time.time() - age_s
    os.utime(path, (when, when))
    return path


@pytest.fixture
def folder(tmp_path) -> Path:
    """A cache folder with JAX entries, kept programs and verdicts of known sizes and ages
    (10 KiB each, the oldest first in `names`), and two files that are not the cache's."""
    root = tmp_path / "cache"
    for i, name in enumerate(
        ["jit_a-1-cache", "programs/k1.stablehlo", "jit_b-2-cache", "validated/v1", "jit_c-3-cache"]
    ):
        _entry(root / name, 10 * KIB, age_s=1000.0 - 100.0 * i)
    _entry(root / "notes.txt", 50 * KIB, age_s=5000.0)  # the user's own file in the folder
    _entry(root / "sub" / "data.bin", 50 * KIB, age_s=5000.0)
    return root


def test_entries_are_the_cache_files_only_oldest_first(folder):
    names = [e.path.relative_to(folder).as_posix() for e in cache_entries(folder)]
    assert names == ["jit_a-1-cache", "programs/k1.stablehlo", "jit_b-2-cache", "validated/v1", "jit_c-3-cache"]
    assert cache_entries(folder / "missing") == []


def test_prune_deletes_least_recently_used_down_to_the_kept_fraction(folder):
    # 50 KiB of entries, limit 40 KiB: keep at most 0.8 * 40 = 32 KiB -> the two oldest go
    removed, freed = prune_cache(folder, 40 * KIB)
    assert (removed, freed) == (2, 20 * KIB)
    left = {e.path.relative_to(folder).as_posix() for e in cache_entries(folder)}
    assert left == {"jit_b-2-cache", "validated/v1", "jit_c-3-cache"}
    assert (folder / "notes.txt").exists() and (folder / "sub" / "data.bin").exists()
    # within the limit now: nothing more goes
    assert prune_cache(folder, 40 * KIB) == (0, 0)


def test_a_used_entry_is_kept_longer(folder):
    _cache.touch(folder / "jit_a-1-cache")  # the oldest, used again now
    prune_cache(folder, 40 * KIB)
    left = {e.path.name for e in cache_entries(folder)}
    assert "jit_a-1-cache" in left and "k1.stablehlo" not in left and "jit_b-2-cache" not in left


def test_an_entry_goes_with_its_access_time_and_an_access_time_never_alone(folder):
    (folder / "jit_a-1-atime").write_bytes(bytes(8))  # kept by JAX's own LRU eviction
    (folder / "jit_c-3-atime").write_bytes(bytes(8))
    prune_cache(folder, 40 * KIB)
    assert not (folder / "jit_a-1-cache").exists() and not (folder / "jit_a-1-atime").exists()
    assert (folder / "jit_c-3-cache").exists() and (folder / "jit_c-3-atime").exists()


def test_clear_deletes_every_cache_file_and_nothing_else(folder):
    assert clear_cache(folder) == (5, 50 * KIB)
    assert cache_entries(folder) == []
    assert (folder / "notes.txt").exists() and (folder / "sub" / "data.bin").exists()


def test_prune_refuses_bad_arguments(folder):
    with pytest.raises(ValidationError, match="limit"):
        prune_cache(folder, -1)
    with pytest.raises(ValidationError, match="keep"):
        prune_cache(folder, 10, keep=1.5)


def test_background_prune_runs_at_most_once_per_interval(folder, monkeypatch):
    monkeypatch.setenv("CHIRALJAX_CACHE_SIZE", "40K")
    now = time.time()
    thread = prune_in_background(folder, now=now)
    assert thread is not None
    thread.join(timeout=30)
    assert sum(e.size for e in cache_entries(folder)) <= 0.8 * 40 * KIB
    assert prune_in_background(folder, now=now + 60.0) is None  # looked at a minute ago
    assert prune_in_background(folder, now=now + PRUNE_INTERVAL_S + 1.0) is not None
    monkeypatch.setenv("CHIRALJAX_CACHE_SIZE", "off")
    assert prune_in_background(folder, now=now + 3 * PRUNE_INTERVAL_S) is None


def test_the_cache_command_reports_the_folder_after_the_imports_prune(folder, monkeypatch, capsys):
    monkeypatch.setattr(_cache, "compilation_cache_dir", lambda: str(folder))
    monkeypatch.setenv("CHIRALJAX_CACHE_SIZE", "40K")
    assert prune_in_background(folder) is not None  # as an import that found the folder due
    code, out, err = run_cli(monkeypatch, capsys, "cache")
    assert code == 0, err
    assert "30.0 KiB in 3 entries" in out


def test_background_prune_warns_about_a_bad_setting(folder, monkeypatch):
    monkeypatch.setenv("CHIRALJAX_CACHE_SIZE", "lots")
    with pytest.warns(UserWarning, match="CHIRALJAX_CACHE_SIZE='lots'"):
        assert prune_in_background(folder) is None
    assert len(cache_entries(folder)) == 5


def test_cache_command_shows_prunes_and_clears(folder, monkeypatch, capsys):
    monkeypatch.setattr(_cache, "compilation_cache_dir", lambda: str(folder))
    monkeypatch.setenv("CHIRALJAX_CACHE_SIZE", "40K")
    code, out, err = run_cli(monkeypatch, capsys, "cache")
    assert code == 0, err
    assert str(folder) in out and "50.0 KiB in 5 entries" in out and "limit:  40.0 KiB" in out
    code, out, _ = run_cli(monkeypatch, capsys, "cache", "--prune")
    assert code == 0 and "deleted 2 entries (20.0 KiB)" in out and "30.0 KiB in 3 entries" in out
    code, out, _ = run_cli(monkeypatch, capsys, "cache", "--clear")
    assert code == 0 and "deleted 3 entries" in out and "0 B in 0 entries" in out
    assert (folder / "notes.txt").exists()
    code, _, err = run_cli(monkeypatch, capsys, "cache", "--prune", "--clear")
    assert code == 2 and "not both" in err
    monkeypatch.setenv("CHIRALJAX_CACHE_SIZE", "lots")
    code, _, err = run_cli(monkeypatch, capsys, "cache")
    assert code == 2 and "CHIRALJAX_CACHE_SIZE" in err and len(err.strip().splitlines()) == 1


def test_cache_command_when_the_cache_is_off(monkeypatch, capsys):
    monkeypatch.setattr(_cache, "compilation_cache_dir", lambda: None)
    code, out, _ = run_cli(monkeypatch, capsys, "cache")
    assert code == 0 and "is off" in out
