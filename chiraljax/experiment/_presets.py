"""Presets: documented device reconstructions loaded by name (`chiraljax/presets/*.toml`) or
from a TOML file.

A preset file has the tables `[preset]` (name, description, sender, receiver, the list of
parameters tuned to the measured numbers), `[line]` (carrier, idle_detuning, representation),
`[defaults]` (fields shared by every module), `[[modules]]` (name, position, `variant` =
"data" or "tunable", and the fields of `DataModule` / `TunableModule`), `[[interconnects]]`
(delay, transmission, phase, joints), `[pulses]` (the fields of `PulsePlan`), `[shaping]` (how the
receiver's drive may be shaped: `knots` of the residual spline, `max_drive` the coupler's largest
exchange in rad/ns, `steps` of the fixed-step solver, `correction_knots` and `max_correction` of
an optional frequency correction; see `chiraljax.optimize._receiver`) and `[measured]` (the
experiment's numbers, for comparison). Units are ns and rad/ns. The comments of each file
say which numbers come from the paper, which are assumptions and which were tuned.

| name | what |
|---|---|
| `paper` | Almanakly et al. 2025: two four-qubit modules, lossy reflecting link |
| `ideal` | the same geometry with perfect parts |
| `kannan2023` | Kannan et al. 2023: one two-qubit module, directional emission |
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from chiraljax._errors import ValidationError, require
from chiraljax.experiment._modules import ChiralLine, DataModule, Interconnect, TunableModule
from chiraljax.experiment._protocols import PulsePlan

_MODULE_FIELDS = {
    "data": (
        {"gamma", "design_frequency"},
        {"detuning", "imbalance", "shift", "decay", "dephasing", "exchange_error", "cancellation"},
    ),
    "tunable": (
        {"design_frequency"},
        {"detuning", "imbalance", "shift", "decay", "dephasing", "exchange_error", "max_rate", "cancellation"},
    ),
}
_VARIANTS = {"data": DataModule, "tunable": TunableModule}
# The [shaping] table: field -> (default, type, lowest allowed value).
_SHAPING = {
    "knots": (12, int, 2),
    "max_drive": (None, float, 0.0),
    "steps": (64, int, 1),
    "correction_knots": (0, int, 0),
    "max_correction": (0.0, float, 0.0),
}


@dataclass(frozen=True)
class Preset:
    """A loaded preset.

    **Fields:** `name`, `description`, `line` (a `ChiralLine`), `plan` (a `PulsePlan`),
    `sender`, `receiver` (None for an emission-only preset), `measured` (the experiment's
    numbers), `tuned` (parameters tuned to them), `source` (the file), `shaping` (the
    `[shaping]` table with its defaults).
    """

    name: str
    description: str
    line: ChiralLine
    plan: PulsePlan
    sender: str
    receiver: str | None
    measured: dict[str, Any] = field(default_factory=dict)
    tuned: tuple[str, ...] = ()
    source: str = ""
    shaping: dict[str, Any] = field(default_factory=dict)


def available_presets() -> tuple[str, ...]:
    """Names of the embedded presets."""
    files = resources.files("chiraljax.presets")
    return tuple(sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml")))


def _module(spec: dict, defaults: dict, k: int):
    merged = {**defaults, **spec}
    where = f"preset: modules[{k}]"
    for key in ("name", "position"):
        require(key in merged, f"{where}: missing {key!r}")
    variant = merged.pop("variant", "data")
    require(variant in _VARIANTS, f"{where}: variant must be 'data' or 'tunable', got {variant!r}")
    needed, optional = _MODULE_FIELDS[variant]
    name, position = merged.pop("name"), merged.pop("position")
    missing = needed - set(merged)
    require(not missing, f"{where} ({name!r}): missing {', '.join(sorted(missing))}")
    unknown = set(merged) - needed - optional
    require(
        not unknown,
        f"{where} ({name!r}): unknown field(s) {', '.join(sorted(unknown))} for variant "
        f"{variant!r}; allowed: {', '.join(sorted(needed | optional))}",
    )
    return _VARIANTS[variant](name, float(position), **merged)


def _interconnect(spec: dict, k: int) -> Interconnect:
    allowed = {"delay", "transmission", "phase", "joints"}
    unknown = set(spec) - allowed
    require(
        not unknown,
        f"preset: interconnects[{k}]: unknown field(s) {', '.join(sorted(unknown))}; "
        f"allowed: {', '.join(sorted(allowed))}",
    )
    joints = [complex(j[0], j[1]) if isinstance(j, list) else complex(j) for j in spec.get("joints", [])]
    return Interconnect(spec.get("delay", 0.0), spec.get("transmission", 1.0), spec.get("phase", 0.0), joints)


def _shaping(spec: dict) -> dict[str, Any]:
    unknown = set(spec) - set(_SHAPING)
    require(
        not unknown, f"preset: [shaping]: unknown field(s) {', '.join(sorted(unknown))}; allowed: {', '.join(_SHAPING)}"
    )
    out = {}
    for key, (default, kind, low) in _SHAPING.items():
        value = spec.get(key, default)
        if value is not None:
            require(
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and value >= low
                and (kind is float or float(value).is_integer()),
                f"preset: [shaping]: {key} must be {'an integer' if kind is int else 'a number'} >= {low}, "
                f"got {value!r}",
            )
            value = kind(value)
        out[key] = value
    return out


def preset_from_dict(data: dict, source: str = "") -> Preset:
    """Build a `Preset` from the parsed tables of a preset file (module docstring)."""
    for table in ("preset", "line", "modules", "pulses"):
        require(table in data, f"preset {source or ''}: missing table [{table}]")
    meta, line_spec = data["preset"], data["line"]
    defaults = data.get("defaults", {})
    modules = [_module(m, defaults, k) for k, m in enumerate(data["modules"])]
    ics = [_interconnect(ic, k) for k, ic in enumerate(data.get("interconnects", []))]
    require("carrier" in line_spec, "preset: [line] needs 'carrier' (rad/ns)")
    line = ChiralLine(
        modules,
        ics or None,
        carrier=line_spec["carrier"],
        idle_detuning=line_spec.get("idle_detuning", 0.0),
        representation=line_spec.get("representation", "markov"),
    )
    pulses = dict(data["pulses"])
    require("kappa" in pulses, "preset: [pulses] needs 'kappa' (rad/ns)")
    try:
        plan = PulsePlan(**pulses)
    except TypeError as err:
        raise ValidationError(
            f"preset: [pulses]: {err}; allowed: kappa, t0, receiver_kappa, receiver_timing, lead, window, n_save"
        ) from None
    sender = meta.get("sender", line.names[0])
    receiver = meta.get("receiver")
    line.index(sender)
    if receiver is not None:
        line.index(receiver)
    return Preset(
        meta.get("name", source),
        meta.get("description", ""),
        line,
        plan,
        sender,
        receiver,
        dict(data.get("measured", {})),
        tuple(meta.get("tuned", ())),
        source,
        _shaping(dict(data.get("shaping", {}))),
    )


def load_preset(name_or_path: str | Path) -> Preset:
    """Load an embedded preset by name (`available_presets()`) or a preset TOML file by path.

    **Returns:** a `Preset`.
    """
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        text, source = path.read_text(), str(path)
    else:
        names = available_presets()
        require(
            str(name_or_path) in names,
            f"preset {str(name_or_path)!r} not found; embedded presets: {', '.join(names)} "
            "(or give the path of a .toml file)",
        )
        text = resources.files("chiraljax.presets").joinpath(f"{name_or_path}.toml").read_text()
        source = f"chiraljax/presets/{name_or_path}.toml"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValidationError(f"preset {source}: not valid TOML ({err})") from None
    return preset_from_dict(data, source)
