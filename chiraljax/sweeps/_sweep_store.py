"""On-disk store of a sweep: finished chunks in a sidecar folder, the result written atomically.

For `out = results/scan.nc` the store keeps, while the sweep runs,

```
results/scan.nc.chunks/manifest.json       spec hash, chunk size, number of points, metrics
results/scan.nc.chunks/chunk_000003.npz    metrics of points [3 c, min(4 c, n)), c = chunk size
```

and at the end writes `results/scan.nc` and removes the folder. Every file goes to a temporary
name in its final folder first and is moved into place with `os.replace`, which is atomic: a
kill at any instant leaves either the old state or the complete new file, never a torn one
(a stray temporary file may remain; it is ignored and removed with the folder). A rerun reads
the manifest: the same spec hash resumes, a different one is refused unless `overwrite`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from chiraljax._errors import require
from chiraljax._files import require_writable, write_atomic

#: Output suffix -> (xarray engine, module that must be importable).
FORMATS: dict[str, tuple[str, str]] = {".nc": ("h5netcdf", "h5netcdf"), ".zarr": ("zarr", "zarr")}

_MANIFEST = "manifest.json"
_STORE_VERSION = 1


def sidecar_path(out: Path) -> Path:
    """The chunk folder that belongs to the output file `out` (`<out>.chunks`)."""
    return out.with_name(out.name + ".chunks")


def discard_sidecar(out: Path) -> None:
    """Delete the chunk folder of `out` and everything in it, if there is one and chiraljax
    made it (it holds a manifest): a folder of that name made by anybody else is left alone."""
    folder = sidecar_path(out)
    if folder.is_dir() and not folder.is_symlink() and (folder / _MANIFEST).exists():
        shutil.rmtree(folder, ignore_errors=True)


def _temp_name(path: Path, folder: bool = False) -> Path:
    """A new, unpredictable name beside `path`, created empty (a file, or a folder) with
    O_EXCL by `tempfile`, so that nothing planted there can be written through."""
    if folder:
        return Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return Path(name)


def check_output(out: str | os.PathLike[str]) -> Path:
    """Refuse an output path that cannot be written, before any computation starts.

    **Arguments:**

    - `out`: the result file, ending in `.nc` (NetCDF through h5netcdf) or `.zarr` (needs the
      optional `zarr` package).

    **Returns:**

    The path as an absolute `Path`.
    """
    path = Path(out).expanduser().absolute()
    require(
        path.suffix in FORMATS, f"out={str(out)!r}: unsupported suffix {path.suffix!r}; use one of {', '.join(FORMATS)}"
    )
    engine, module = FORMATS[path.suffix]
    require(
        importlib.util.find_spec(module) is not None,
        f"out={str(out)!r}: writing {path.suffix} needs the '{module}' package; install it or use a .nc path",
    )
    if path.suffix == ".zarr" and path.is_dir():
        return path  # a Zarr store is a folder
    require_writable(path, f"out={str(out)!r}")
    return path


@dataclasses.dataclass(frozen=True)
class ChunkStore:
    """The sidecar folder of one sweep.

    **Arguments:**

    - `folder`: the `<out>.chunks` folder.
    - `chunk_size`: points per chunk (the last chunk may hold fewer).
    - `n_points`: points in the whole sweep.
    """

    folder: Path
    chunk_size: int
    n_points: int

    @property
    def n_chunks(self) -> int:
        return -(-self.n_points // self.chunk_size)

    def _chunk_path(self, index: int) -> Path:
        return self.folder / f"chunk_{index:06d}.npz"

    def done(self, metrics: Sequence[str]) -> np.ndarray:
        """A boolean mask over chunks: True where a whole chunk file with every metric is on
        disk. A damaged or foreign chunk file (truncated by a crash of the disk, edited, of
        other metrics) is removed and counts as not done, so it is computed again."""
        mask = np.zeros(self.n_chunks, bool)
        for i in range(self.n_chunks):
            path = self._chunk_path(i)
            if not path.is_file():
                continue
            arrays = self._read(i)
            length = min(self.chunk_size, self.n_points - i * self.chunk_size)
            if (
                arrays is not None
                and sorted(arrays) == sorted(metrics)
                and all(a.shape == (length,) for a in arrays.values())
            ):
                mask[i] = True
            else:
                path.unlink(missing_ok=True)
        return mask

    def _read(self, index: int) -> dict[str, np.ndarray] | None:
        try:
            return self.load(index)
        except Exception:  # noqa: BLE001 - any unreadable chunk is computed again
            return None

    def save(self, index: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Write chunk `index` atomically."""
        write_atomic(self._chunk_path(index), lambda handle: np.savez(handle, **arrays))

    def load(self, index: int) -> dict[str, np.ndarray]:
        """Read chunk `index` back."""
        with np.load(self._chunk_path(index), allow_pickle=False) as data:
            return {name: data[name] for name in data.files}


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / _MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def open_chunk_store(
    out: Path,
    *,
    spec_hash: str,
    n_points: int,
    metrics: Sequence[str],
    chunk_size: int | None,
    default_chunk_size: int,
    overwrite: bool,
) -> ChunkStore:
    """Open the sidecar of `out`, resuming it when it belongs to the same sweep.

    An existing sidecar with the same spec hash is resumed with the chunk size it was started
    with (so that the saved chunks line up); a different spec hash, or an explicit
    `chunk_size` that differs from the saved one, is refused unless `overwrite`, which starts
    afresh.

    **Arguments:**

    - `out`: the result path (already checked by `check_output`).
    - `spec_hash`: fingerprint of the points, fixed values and metric function.
    - `n_points`: points in the sweep.
    - `metrics`: names of the metrics (recorded in the manifest).
    - `chunk_size`: the chunk size the caller asked for, or None.
    - `default_chunk_size`: the size to use for a new sidecar when `chunk_size` is None.
    - `overwrite`: discard a sidecar that does not match instead of refusing it.

    **Returns:**

    The `ChunkStore`, its folder created and its manifest written.
    """
    folder = sidecar_path(out)
    manifest = _read_manifest(folder) if folder.exists() else None
    if manifest is not None and not overwrite:
        require(
            manifest.get("spec_hash") == spec_hash,
            f"out={str(out)!r}: the unfinished sweep in {str(folder)!r} was started with a "
            "different spec (axes, fixed values or metric function); rerun that sweep to "
            "finish it, delete the folder, or pass overwrite=True to discard it",
        )
        saved = int(manifest["chunk_size"])
        require(
            chunk_size is None or chunk_size == saved,
            f"chunk_size={chunk_size}: the unfinished sweep in {str(folder)!r} uses "
            f"chunk_size={saved}; pass chunk_size={saved} (or None) to resume it, or "
            "overwrite=True to start again",
        )
        return ChunkStore(folder, saved, n_points)
    # A folder chiraljax did not make (no manifest) is never deleted, overwrite or not.
    require(
        not folder.is_symlink() and (manifest is not None or not folder.exists() or not any(folder.iterdir())),
        f"out={str(out)!r}: {str(folder)!r} exists but is not a sweep chunk folder of chiraljax; "
        "move it away or choose another output path",
    )
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    store = ChunkStore(folder, chunk_size or default_chunk_size, n_points)
    record = {
        "version": _STORE_VERSION,
        "spec_hash": spec_hash,
        "chunk_size": store.chunk_size,
        "n_points": n_points,
        "metrics": list(metrics),
    }
    write_atomic(folder / _MANIFEST, lambda handle: handle.write(json.dumps(record).encode()))
    return store


def read_result(out: Path) -> xr.Dataset | None:
    """Load a finished result from `out`, or None when there is none (or it is unreadable)."""
    if not out.exists():
        return None
    try:
        return xr.load_dataset(out, engine=FORMATS[out.suffix][0])
    except Exception:  # noqa: BLE001 - any unreadable file is treated as absent by the caller
        return None


def write_result(dataset: xr.Dataset, out: Path) -> None:
    """Write `dataset` to `out` atomically (temporary name, then `os.replace`).

    A `.zarr` store is a folder, which `os.replace` cannot move onto an existing non-empty one:
    an old store is first moved aside, so a kill in between leaves it under a temporary name.
    """
    temp = _temp_name(out, folder=out.suffix == ".zarr")
    if out.suffix == ".zarr":
        dataset.to_zarr(temp, mode="w")
        if out.exists():
            old = _temp_name(out, folder=True)
            old.rmdir()
            os.replace(out, old)
            os.replace(temp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temp, out)
        return
    try:
        dataset.to_netcdf(temp, engine=FORMATS[out.suffix][0])
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, out)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
