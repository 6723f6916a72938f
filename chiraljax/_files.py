"""Every file chiraljax writes goes through here: atomically and never through a symlink.

A file is written under a private temporary name in its own folder, flushed, synced and moved
into place with `os.replace`: readers see the old content or the whole new one, an interrupt
leaves no half-written file, and a symbolic link at the target is replaced by the file instead
of being followed (so a planted link cannot make chiraljax overwrite something outside the
output folder). A new file gets the permissions an ordinary new file would get; a replaced
file keeps its own.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from chiraljax._errors import ValidationError, require


def require_writable(path: str | os.PathLike, what: str, suffixes: tuple[str, ...] = ()) -> Path:
    """Refuse, before any computation, an output path chiraljax could not write: a suffix
    not in `suffixes` (when given), a missing folder, a folder where the file should go, a
    folder this user cannot write in (tried by creating a temporary file: `os.access` says
    yes to root on a read-only mount).

    **Arguments:**

    - `path`: the file to be written.
    - `what`: how the user gave it, for the messages ("--out fig.png").
    - `suffixes`: the accepted suffixes (lower case, with the dot).

    **Returns:** the path, absolute.
    """
    path = Path(path).expanduser().absolute()
    if suffixes:
        require(
            path.suffix.lower() in suffixes,
            f"{what}: unsupported file type {path.suffix or '(none)'!r}; use one of {', '.join(suffixes)}",
        )
    require(path.parent.is_dir(), f"{what}: the folder {path.parent} does not exist; create it first")
    require(not path.is_dir() or path.is_symlink(), f"{what}: is a folder; give a file name")
    try:
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as err:
        raise ValidationError(
            f"{what}: cannot write in {path.parent} ({err.strerror}); choose a writable folder"
        ) from None
    return path


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Write the bytes `write(handle)` produces to `path` (see the module docstring)."""
    path = Path(path)
    require(path.parent.is_dir(), f"{path}: cannot write, the folder {path.parent} does not exist")
    require(not path.is_dir() or path.is_symlink(), f"{path}: is a folder; give a file name")
    try:
        existing = os.lstat(path)
        mode = stat.S_IMODE(existing.st_mode) if stat.S_ISREG(existing.st_mode) else 0o644
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a text file (UTF-8) atomically."""
    write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))


def save_figure(fig: Any, path: str | os.PathLike, **options: Any) -> None:
    """`fig.savefig` into `path` atomically; the format follows the suffix, and the file's
    metadata names the chiraljax version that made it (PNG, PDF, SVG, EPS)."""
    from chiraljax._provenance import software

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or None
    if fmt in _FIGURE_METADATA and "metadata" not in options:  # who made the figure, in the file
        options = {**options, "metadata": {_FIGURE_METADATA[fmt]: software()}}
    write_atomic(path, lambda handle: fig.savefig(handle, format=fmt, **options))


# the metadata key each format takes for the writing program (matplotlib's savefig metadata)
_FIGURE_METADATA = {"png": "Software", "pdf": "Creator", "svg": "Creator", "eps": "Creator", "ps": "Creator"}
