"""Network files: a `Network` and its simulation settings as a TOML or JSON document.

Both formats hold the same structure (docs/network-format.md describes it field by field;
chiraljax/schema/network.schema.json is its JSON Schema). Reading goes in three steps, each of
which names the offending field on failure:

1. parse the file (TOML by `.toml`, JSON by `.json`);
2. check the document against the JSON Schema (types, required fields, ranges such as
   0 <= transmission <= 1), then check that every number is finite;
3. build the objects, whose constructors and `Network`'s own validation check the physics
   (unknown emitters or controls, unitarity of scatterers, the norm of the initial state).

Two conveniences exist only in files: a link may give its loss in dB, converted to a power
transmission eta = 10^(-loss_db/10), and its phase in degrees (`phase_deg`). Complex numbers
are written as a plain number (real), `{re, im}` or `[re, im]`.
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from chiraljax import _documents as documents
from chiraljax._errors import ValidationError, require
from chiraljax._files import write_text_atomic
from chiraljax._provenance import provenance
from chiraljax.network import _pulses as pulses
from chiraljax.network._network import (
    Coupling,
    Emitter,
    Link,
    Network,
    OutputMode,
    PhotonInput,
    Port,
    Scatterer,
    transmission_from_db,
)
from chiraljax.network._pulses import AbstractPulse

# ---- values: how one field is read from and written to a document -----------------------------


def _scalar(value, where: str) -> np.ndarray:
    arr = np.asarray(value)
    require(
        arr.size == 1,
        f"{where}: holds an array of shape {arr.shape}; a file stores single "
        "values (save one member of a batch at a time)",
    )
    return arr.reshape(())


def _read_complex(value) -> complex | float:
    if isinstance(value, Mapping):
        return complex(value["re"], value["im"])
    if isinstance(value, (list, tuple)):
        return complex(value[0], value[1])
    return float(value)


def _write_complex(value, where: str):
    z = complex(_scalar(value, where))
    return z.real if z.imag == 0 else {"re": z.real, "im": z.imag}


def _write_real(value, where: str) -> float:
    return float(np.real(_scalar(value, where)))


def _write_plain(value, where: str):
    return value


# kind -> (read a document value, write an object's value)
_CODECS: dict[str, tuple[Callable, Callable]] = {
    "plain": (lambda v: v, _write_plain),
    "real": (float, _write_real),
    "complex": (_read_complex, _write_complex),
    "reals": (lambda v: [float(x) for x in v], lambda v, where: [float(x) for x in np.real(np.asarray(v)).ravel()]),
    "complexes": (
        lambda v: np.asarray([_read_complex(x) for x in v]),
        lambda v, where: [_write_complex(x, where) for x in np.asarray(v).ravel()],
    ),
    "pulse": (lambda v: _read_pulse(v), lambda v, where: _write_pulse(v, where)),
    "array": (
        lambda v: jnp.asarray([float(x) for x in v]),
        lambda v, where: [float(x) for x in np.real(np.asarray(v)).ravel()],
    ),
}
#: A kind ending in "?" is optional: a field that is None (or an infinite bound) is left out of
#: the file, and a field left out is read back as this default (None unless listed).
_OPTIONAL_DEFAULTS: dict[str, float] = {"lower": -math.inf, "upper": math.inf}


# ---- pulses: shape name -> class and the kinds of its fields --------------------------------------

PULSE_SHAPES: dict[str, tuple[type[AbstractPulse], dict[str, str]]] = {
    "constant": (pulses.Constant, {"value": "complex"}),
    "sech_emission": (pulses.SechEmission, {"kappa": "real", "t0": "real"}),
    "sech_absorption": (pulses.SechAbsorption, {"kappa": "real", "t0": "real"}),
    "sech_mode": (pulses.SechMode, {"kappa": "real", "t0": "real"}),
    "gaussian": (pulses.Gaussian, {"amplitude": "complex", "t0": "real", "sigma": "real"}),
    "gaussian_mode": (pulses.GaussianMode, {"t0": "real", "sigma": "real"}),
    "scaled": (pulses.Scaled, {"pulse": "pulse", "factor": "complex"}),
    "shifted": (pulses.Shifted, {"pulse": "pulse", "delay": "real"}),
    "halted": (pulses.Halted, {"pulse": "pulse", "t_stop": "real"}),
    "sampled": (pulses.Sampled, {"times": "reals", "values": "complexes", "kind": "plain"}),
    "piecewise_constant": (pulses.PiecewiseConstant, {"t_start": "real", "t_end": "real", "values": "array"}),
    "cubic_spline": (pulses.CubicSpline, {"t_start": "real", "t_end": "real", "values": "array"}),
    "fourier": (pulses.Fourier, {"t_start": "real", "t_end": "real", "coefficients": "array"}),
    "chebyshev": (pulses.Chebyshev, {"t_start": "real", "t_end": "real", "coefficients": "array"}),
    "gaussian_emission": (pulses.GaussianEmission, {"sigma": "real", "t0": "real"}),
    "gaussian_absorption": (pulses.GaussianAbsorption, {"sigma": "real", "t0": "real"}),
    "time_reversed": (pulses.TimeReversed, {"pulse": "pulse", "centre": "real"}),
    "shaped": (
        pulses.Shaped,
        {
            "raw": "pulse",
            "baseline": "pulse?",
            "transform": "plain?",
            "lower": "real?",
            "upper": "real?",
            "start": "real?",
            "end": "real?",
            "t_start": "real",
            "t_end": "real",
            "ramp": "real",
        },
    ),
}
"""File name of each pulse shape, its class in chiraljax.network._pulses and the kinds of its fields
(the constructor's keyword arguments carry the same names)."""

_SHAPE_OF = {cls: name for name, (cls, _) in PULSE_SHAPES.items()}


#: Shapes that files may use but that are written in another form: `measured` (samples read
#: from a data file, written back as `sampled`) and its fields.
READ_ONLY_SHAPES: dict[str, tuple[str, ...]] = {"measured": ("file", "normalise")}

#: The folder of the network file being read: relative `measured` mode files are found there.
_DOCUMENT_FOLDER: contextvars.ContextVar[Path] = contextvars.ContextVar("document_folder", default=Path("."))


def _read_pulse(doc: Mapping) -> AbstractPulse:
    if doc["shape"] == "measured":  # samples from a data file (never code)
        from chiraljax.network._mode_io import load_mode

        path = Path(doc["file"]).expanduser()
        return load_mode(
            path if path.is_absolute() else _DOCUMENT_FOLDER.get() / path, normalise=bool(doc.get("normalise", False))
        )
    cls, fields = PULSE_SHAPES[doc["shape"]]
    values = {}
    for f, kind in fields.items():
        if f in doc:
            values[f] = _CODECS[kind.rstrip("?")][0](doc[f])
        elif kind.endswith("?"):
            values[f] = _OPTIONAL_DEFAULTS.get(f)
    return cls(**values)


def _write_pulse(pulse: AbstractPulse, where: str) -> dict:
    require(
        type(pulse) in _SHAPE_OF,
        f"{where}: a {type(pulse).__name__} pulse has no file form; files know the shapes {', '.join(PULSE_SHAPES)}",
    )
    name = _SHAPE_OF[type(pulse)]
    doc: dict[str, Any] = {"shape": name}
    for f, kind in PULSE_SHAPES[name][1].items():
        value = getattr(pulse, f)
        if kind.endswith("?") and (value is None or (isinstance(value, float) and math.isinf(value))):
            continue
        doc[f] = _CODECS[kind.rstrip("?")][1](value, f"{where}.{f}")
    return doc


# ---- sections: list name -> class and the kinds of its fields -------------------------------------

_SECTIONS: dict[str, tuple[type, dict[str, str]]] = {
    "emitters": (
        Emitter,
        {
            "name": "plain",
            "detuning": "real",
            "decay": "real",
            "dephasing": "real",
            "levels": "plain",
            "anharmonicity": "real",
            "detuning_control": "plain",
        },
    ),
    "ports": (
        Port,
        {
            "name": "plain",
            "emitter": "plain",
            "position": "plain",
            "rate": "real",
            "right_fraction": "real",
            "control": "plain",
        },
    ),
    "scatterers": (
        Scatterer,
        {"name": "plain", "position": "plain", "reflection": "complex", "transmission": "complex"},
    ),
    "links": (Link, {"delay": "real", "transmission": "real", "phase": "real"}),
    "couplings": (Coupling, {"a": "plain", "b": "plain", "strength": "complex", "control": "plain"}),
    "inputs": (PhotonInput, {"name": "plain", "end": "plain", "mode": "pulse", "photons": "plain"}),
    "outputs": (OutputMode, {"name": "plain", "end": "plain", "mode": "pulse"}),
}
"""Each list of a network document, the class of its items and the kinds of their fields
(the names of the `Network` attribute, the constructor's arguments and the file's keys)."""

# file-only alternative units: key -> (canonical key, conversion)
_LINK_ALTERNATIVES: dict[str, tuple[str, Callable[[float], float]]] = {
    "loss_db": ("transmission", transmission_from_db),
    "phase_deg": ("phase", math.radians),
}


def _canonical_link(item: Mapping, where: str) -> dict:
    out = dict(item)
    for key, (canonical, convert) in _LINK_ALTERNATIVES.items():
        if key in out:
            require(canonical not in out, f"{where}: give either {canonical} or {key}, not both")
            out[canonical] = convert(out.pop(key))
    return out


# ---- settings ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SimulationSettings:
    """The `[simulation]` table of a network file: arguments for `cj.simulate`.

    A field left as None falls back to `simulate`'s default (`t_span` has none: it must come
    from the file or the caller).

    **Arguments:**

    - `t_span`: (t0, t1), the time window.
    - `n_save`: number of equally spaced save times.
    - `representation`: 'auto', 'sector', 'full' or 'delay'.
    - `rtol`, `atol`: adaptive-step tolerances; `max_steps`: step budget.
    """

    t_span: tuple[float, float] | None = None
    n_save: int | None = None
    representation: str | None = None
    rtol: float | None = None
    atol: float | None = None
    max_steps: int | None = None

    def simulate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `cj.simulate` other than `t_span` (the fields that are set)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "t_span" and getattr(self, f.name) is not None
        }

    def to_dict(self) -> dict[str, Any]:
        """The `[simulation]` table (fields that are set)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}
        if self.t_span is not None:
            out["t_span"] = [float(x) for x in self.t_span]
        return out


# ---- document checks ----------------------------------------------------------------------------------


@cache
def _schema_text() -> str:
    return resources.files("chiraljax").joinpath("schema/network.schema.json").read_text()


def _validator():
    import jsonschema

    return jsonschema.Draft202012Validator(json.loads(_schema_text()))


def _verdict_path(doc: Any) -> Path | None:
    """Where the verdict "valid" of `doc` is kept (`validate_document`): a file named by the hash
    of the schema and of the document, in the compilation cache's folder; None when there is no
    cache folder or the document has no JSON form."""
    from chiraljax.solve._cache import compilation_cache_dir

    folder = compilation_cache_dir()
    if folder is None:
        return None
    try:
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return None
    digest = hashlib.sha256(_schema_text().encode() + b"\0" + text.encode()).hexdigest()[:40]
    return Path(folder) / "validated" / digest


def _where(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _check_finite(value, path: tuple = ()) -> None:
    if isinstance(value, float):
        require(math.isfinite(value), f"{_where(path)}: {value} is not a finite number; give a finite value")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _check_finite(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_finite(v, path + (i,))


def validate_document(doc: Any) -> None:
    """Check a network document against the JSON Schema, then that its numbers are finite.

    **Arguments:**

    - `doc`: the parsed TOML or JSON document.

    **Raises:** `ValidationError` naming the field path, e.g.
    `ports[2].rate: -1 is less than the minimum of 0`.

    A document found valid is remembered (an empty file named by the hash of the schema and
    of the document, beside the compilation cache), so that running the same file again skips
    the schema check and the import of jsonschema (0.07 s of a command-line run).
    """
    verdict = _verdict_path(doc)
    if verdict is None or not verdict.exists():
        import jsonschema

        errors = list(_validator().iter_errors(doc))
        if errors:
            err = jsonschema.exceptions.best_match(errors)
            raise ValidationError(f"{_where(err.absolute_path)}: {err.message}")
        if verdict is not None:
            try:
                verdict.parent.mkdir(parents=True, exist_ok=True)
                verdict.touch()
            except OSError:  # an unwritable cache folder only costs the check next time
                pass
    _check_finite(doc)


# ---- document <-> Network ------------------------------------------------------------------------------


def _build(where: str, make: Callable[[], Any]):
    """Build one item, prefixing a ValidationError with the document path of the item."""
    try:
        return make()
    except ValidationError as err:
        raise ValidationError(f"{where}: {err}") from None


def network_from_dict(doc: Mapping) -> tuple[Network, SimulationSettings]:
    """Build a Network and its simulation settings from a parsed network document.

    **Arguments:**

    - `doc`: a mapping with the structure of docs/network-format.md.

    **Returns:** `(network, settings)`.

    **Raises:** `ValidationError` (schema, finiteness, then the Network's own checks).
    """
    validate_document(doc)
    parts: dict[str, Any] = {}
    for section, (cls, fields) in _SECTIONS.items():
        items = []
        for i, item in enumerate(doc.get(section, ())):
            where = f"{section}[{i}]"
            if cls is Link:
                item = _canonical_link(item, where)
            items.append(_build(where, lambda: cls(**{f: _CODECS[fields[f]][0](v) for f, v in item.items()})))
        parts[section] = items
    controls = {
        name: _build(f"controls.{name}", lambda p=p: _read_pulse(p)) for name, p in doc.get("controls", {}).items()
    }
    initial = {name: _read_complex(c) for name, c in doc.get("initial", {}).items()}
    end_reflections = [_read_complex(r) for r in doc.get("end_reflections", (0.0, 0.0))]
    network = Network(
        parts.pop("emitters"),
        parts.pop("ports"),
        links=parts.pop("links") or None,
        controls=controls,
        initial=initial,
        end_reflections=end_reflections,
        **parts,
    )
    simulation = dict(doc.get("simulation", {}))
    if "t_span" in simulation:
        simulation["t_span"] = tuple(float(x) for x in simulation["t_span"])
    return network, SimulationSettings(**simulation)


def network_to_dict(network: Network, settings: SimulationSettings | None = None) -> dict[str, Any]:
    """The document form of a Network (and optionally its simulation settings).

    `network_from_dict(network_to_dict(n))` rebuilds a Network with the same structure and
    parameter values. Links are written with `transmission` and `phase` (radians).

    **Arguments:**

    - `network`: a Network whose parameters are concrete scalars (not traced, not batched).
    - `settings`: written as the `simulation` table when given.

    **Returns:** a dict of plain Python values (str, float, int, list, dict).
    """
    require(isinstance(network, Network), f"network_to_dict: expected a Network, got {type(network).__name__}")
    doc: dict[str, Any] = {}
    for section, (_, fields) in _SECTIONS.items():
        items = []
        for i, obj in enumerate(getattr(network, section)):
            item = {}
            for f, kind in fields.items():
                value = getattr(obj, f)
                if value is not None:
                    item[f] = _CODECS[kind][1](value, f"{section}[{i}].{f}")
            items.append(item)
        if items:
            doc[section] = items
    if network.controls:
        doc["controls"] = {name: _write_pulse(p, f"controls.{name}") for name, p in network.controls.items()}
    if network.initial:
        doc["initial"] = {name: _write_complex(c, f"initial.{name}") for name, c in network.initial.items()}
    r = np.asarray(network.end_reflections)
    if np.any(r != 0):
        doc["end_reflections"] = [_write_complex(x, "end_reflections") for x in r]
    if settings is not None and settings.to_dict():
        doc["simulation"] = settings.to_dict()
    doc["written_by"] = provenance()
    return doc


# ---- files ------------------------------------------------------------------------------------------------


def _dump_json(doc) -> str:
    return json.dumps(doc, indent=2) + "\n"


def _dump_toml(doc) -> str:
    import tomli_w

    return tomli_w.dumps(doc)


# suffix -> how a document is written
_DUMPS: dict[str, Callable] = {".toml": _dump_toml, ".json": _dump_json}


def read_document(path: str | os.PathLike) -> Any:
    """Parse a network file (TOML or JSON, by suffix) into plain Python values.

    **Raises:** `ValidationError` for a missing or unreadable file and for a syntax error.
    """
    return documents.read_document(path, "network file")


def load_network(path: str | os.PathLike) -> tuple[Network, SimulationSettings]:
    """Read a network file (TOML or JSON).

    **Arguments:**

    - `path`: a `.toml` or `.json` file in the format of docs/network-format.md.

    **Returns:** `(network, settings)`: the Network and the file's `[simulation]` table.

    **Raises:** `ValidationError` whose one-line message starts with the file name and names the
    field, e.g. `net.toml: links[0].transmission: 1.2 is greater than the maximum of 1`.
    """
    doc = read_document(path)
    token = _DOCUMENT_FOLDER.set(Path(path).parent)
    try:
        return network_from_dict(doc)
    except ValidationError as err:
        raise ValidationError(f"{path}: {err}") from None
    finally:
        _DOCUMENT_FOLDER.reset(token)


def save_network(network: Network, path: str | os.PathLike, settings: SimulationSettings | None = None) -> None:
    """Write a Network (and optionally its simulation settings) as TOML or JSON, by suffix.

    **Arguments:**

    - `network`: a Network with concrete scalar parameters.
    - `path`: the target `.toml` or `.json` file (written atomically).
    - `settings`: written as the `[simulation]` table when given.
    """
    path = Path(path)
    require(
        path.suffix.lower() in _DUMPS, f"{path}: unknown file type {path.suffix!r}; name network files *.toml or *.json"
    )
    write_text_atomic(path, _DUMPS[path.suffix.lower()](network_to_dict(network, settings)))
