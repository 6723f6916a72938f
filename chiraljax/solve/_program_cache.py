"""Traced kernels kept on disk, so that a new process skips tracing as well as compiling.

JAX's persistent compilation cache (`chiraljax.solve._cache`) stores compiled XLA programs, but a new
process still traces and lowers the Python kernel before it can look one up (0.3-0.5 s for the
Lindblad kernel). For a call on concrete numbers (no jit, vmap or grad around it) the kernel is
exported once with `jax.export` for its argument shapes and kept as serialized StableHLO in
`<compilation cache>/programs/`; a later process deserializes it and calls it, and the compiled
program then comes from the compilation cache.

The key of a program is everything its code depends on: the static arguments, the argument
tree and shapes, the JAX version and platform, and a hash of chiraljax's own source files. User
code cannot change under a key: calls whose pulses are classes defined outside chiraljax take
the ordinary path. Any failure (an unsupported construct, an unwritable folder, a damaged file)
falls back to the ordinary path too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import math
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from chiraljax._files import write_atomic
from chiraljax.solve._cache import compilation_cache_dir, touch
from chiraljax.solve._tiers import TieredProgram

_PACKAGE_ROOTS = ("chiraljax",)
_LOADED: dict[str, Any] = {}  # key -> its `TieredProgram`, or None after a failure (not tried again)
_LOWERED: set[str] = set()  # keys whose call has been lowered (its first call is behind it)
_LAPACK_FREE: set[str] = set()  # keys whose program calls no LAPACK routine
_PATCHING = threading.RLock()  # one thread at a time swaps JAX's LAPACK hook (`_lapack_setup_skipped`)
_PACKINGS: dict = {}  # (treedef, avals) -> how the leaves travel (`_packing`)
_EXPORTING = threading.local()  # .depth: kept programs being traced for export in this thread


def exporting() -> bool:
    """True while this thread traces a kept program for export: a kernel called then is traced
    whole into it and may be traced inline (a jitted call inside would be traced a second time
    when the program differentiates it); anywhere else it should run as its own jitted call."""
    return getattr(_EXPORTING, "depth", 0) > 0


@functools.cache
def _source_hash() -> str:
    """A hash of every Python file of chiraljax and its kernels (a new version or a local edit
    gives new keys)."""
    import chiraljax
    import chiraljax.kernels

    digest = hashlib.sha256()
    for package in (chiraljax, chiraljax.kernels):
        for path in sorted(Path(package.__file__).parent.rglob("*.py")):
            digest.update(path.read_bytes())
    return digest.hexdigest()


_OWN: dict = {}


def _own_tree(treedef, tree: Any) -> bool:
    """`_own_classes`, once per tree structure (the classes are part of the structure)."""
    if treedef not in _OWN:
        _OWN[treedef] = _own_classes(tree)
    return _OWN[treedef]


def _own_classes(tree: Any) -> bool:
    """True when every object in `tree` that is not an array or number is defined in chiraljax."""
    stack = [tree]
    while stack:
        x = stack.pop()
        if isinstance(x, (tuple, list)):
            stack.extend(x)
        elif dataclasses.is_dataclass(x) and not isinstance(x, type):
            if not type(x).__module__.startswith(_PACKAGE_ROOTS):
                return False
            stack.extend(getattr(x, f.name) for f in dataclasses.fields(x))
    return True


def _aval(x) -> tuple:
    return (getattr(x, "shape", ()), getattr(x, "dtype", type(x)), getattr(x, "weak_type", False))


@functools.lru_cache(maxsize=256)
def _key(name: str, statics: Any, treedef, avals: tuple, packing: tuple) -> str:
    text = repr(
        (
            name,
            statics,
            str(treedef),
            [(tuple(s), str(d), bool(w)) for s, d, w in avals],
            packing,  # which leaves travel packed: the exported program's signature
            jax.__version__,
            jax.default_backend(),
            _source_hash(),
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def _packing(leaves: list) -> tuple:
    """How the host leaves of a call travel: one flat vector per dtype (a jitted call pays a
    host-to-device transfer per argument, about 8 us each, and a network has a hundred scalar
    leaves), and device arrays as they are. Returns (dtypes of the vectors, per leaf either
    ("device", index) or ("host", vector index, offset, shape))."""
    dtypes: list[str] = []
    sizes: list[int] = []
    places: list[tuple] = []
    n_device = 0
    for x in leaves:
        if isinstance(x, jax.Array):
            places.append(("device", n_device))
            n_device += 1
            continue
        dtype = str(jax.numpy.result_type(x))
        if dtype not in dtypes:
            dtypes.append(dtype)
            sizes.append(0)
        group = dtypes.index(dtype)
        shape = tuple(np.shape(x))
        places.append(("host", group, sizes[group], shape))
        sizes[group] += math.prod(shape)
    return tuple(dtypes), tuple(places)


def _pack(leaves: list, dtypes: tuple, places: tuple) -> list:
    """The call's arguments under `_packing`: the host vectors, then the device arrays."""
    groups: list[list] = [[] for _ in dtypes]
    device = []
    for x, place in zip(leaves, places):
        if place[0] == "device":
            device.append(x)
        else:
            groups[place[1]].append(np.ravel(np.asarray(x, dtype=dtypes[place[1]])))
    vectors = [np.concatenate(g) if g else np.zeros(0, d) for g, d in zip(groups, dtypes)]
    return vectors + device


def _unpack(arguments: tuple, dtypes: tuple, places: tuple) -> list:
    """The leaves again, inside the traced program (static slices of the vectors)."""
    vectors, device = arguments[: len(dtypes)], arguments[len(dtypes) :]
    leaves = []
    for place in places:
        if place[0] == "device":
            leaves.append(device[place[1]])
        else:
            _, group, offset, shape = place
            leaves.append(vectors[group][offset : offset + math.prod(shape)].reshape(shape))
    return leaves


def _flags_digest() -> str:
    """A digest of `XLA_FLAGS`: the compiled builds depend on them, so an optimized build kept
    under other flags (the test suite compiles with LLVM's optimiser off) is not taken for this
    process's."""
    return hashlib.sha256(os.environ.get("XLA_FLAGS", "").encode()).hexdigest()[:12]


def _load_or_export(key: str, folder: Path, fn: Callable, treedef, leaves: list, packing: tuple) -> Callable:
    """The call of the exported program (deserialized from `folder`, or exported now), compiled
    quick first and optimized later (`TieredProgram`)."""
    if key in _LOADED:
        return _LOADED[key]
    path = folder / f"{key}.stablehlo"
    if path.exists():
        serialized = path.read_bytes()
        exported = jax.export.deserialize(bytearray(serialized))
        touch(path)  # recently used: the last a pruned cache folder gives up
    else:

        def flat(*arguments):
            return jax.tree.leaves(fn(*jax.tree.unflatten(treedef, _unpack(arguments, *packing))))

        specs = [jax.ShapeDtypeStruct(jax.numpy.shape(x), jax.numpy.result_type(x)) for x in _pack(leaves, *packing)]
        _EXPORTING.depth = getattr(_EXPORTING, "depth", 0) + 1
        try:
            exported = jax.export.export(jax.jit(flat))(*specs)
        finally:
            _EXPORTING.depth -= 1
        folder.mkdir(parents=True, exist_ok=True)
        serialized = exported.serialize()
        write_atomic(path, lambda handle: handle.write(serialized))
    if b"lapack" not in bytes(serialized):
        _LAPACK_FREE.add(key)
    _LOADED[key] = TieredProgram(jax.jit(exported.call), folder / f"{key}.{_flags_digest()}.optimized")
    return _LOADED[key]


@contextlib.contextmanager
def _lapack_setup_skipped(key: str):
    """Around the first call of a loaded program that calls no LAPACK routine: skip the LAPACK
    set-up JAX runs when it lowers any call of an exported program on the CPU. That set-up
    imports scipy.linalg, 0.1-0.2 s of a new process's first answer; a program that does use
    LAPACK (and any later LAPACK call: JAX sets it up when it lowers one) is not affected. Only
    this thread skips it, and only while the context is open. Where JAX's hook is not found
    (another JAX version), nothing changes."""
    module = sys.modules.get("jax._src.export._export")
    if key in _LOWERED or key not in _LAPACK_FREE or getattr(module, "_ensure_backends_initialized", None) is None:
        yield
        return
    with _PATCHING:
        original = module._ensure_backends_initialized
        ours = threading.get_ident()

        def ensure_backends(platforms):
            if threading.get_ident() != ours:
                original(platforms)

        module._ensure_backends_initialized = ensure_backends
        try:
            yield
        finally:
            module._ensure_backends_initialized = original
            _LOWERED.add(key)


def bind_cached(name: str, fn: Callable, args: tuple, statics: Any) -> Callable[[], list | None] | None:
    """fn(*args) through a program kept on disk, as a call with its arguments packed once (it
    returns the result's leaves, or None when the program failed: take the ordinary path); None
    when this call must take the ordinary path (traced arguments, foreign classes, no cache
    folder, any failure). A caller that runs the same arguments again keeps the call.

    **Arguments:**

    - `name`: the kernel's name (part of the key).
    - `fn`: the kernel with its static arguments bound.
    - `args`: its array arguments (a pytree).
    - `statics`: the static arguments (hashable, with a repr that names their values).
    """
    folder = compilation_cache_dir()
    if folder is None:
        return None
    leaves, treedef = jax.tree.flatten(args)
    if any(isinstance(x, jax.core.Tracer) for x in leaves) or not _own_tree(treedef, args):
        return None
    avals = tuple(_aval(x) for x in leaves)
    packing = _PACKINGS.get((treedef, avals))
    if packing is None:
        packing = _PACKINGS[(treedef, avals)] = _packing(leaves)
    key = _key(name, statics, treedef, avals, packing)
    try:
        call = _load_or_export(key, Path(folder) / "programs", fn, treedef, leaves, packing)
        if call is None:
            return None
        packed = _pack(leaves, *packing)
    except Exception:  # the ordinary path computes the same thing; this key is not tried again
        _LOADED[key] = None
        return None

    def run() -> list | None:
        if _LOADED.get(key) is None:
            return None
        try:
            with _lapack_setup_skipped(key):
                return call(*packed)
        except Exception:
            _LOADED[key] = None
            return None

    return run
