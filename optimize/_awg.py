r"""The drive as the hardware sees it: an arbitrary-waveform generator (AWG) and the line to the coupler.

A shaped drive `u_x(t)` (rad/ns, the coupler's exchange) reaches the device in three steps:

1. **AWG** (`AWG`): samples at the sample rate `f_s` (GS/s = samples per ns) on the grid
   `t_k = t_start + k / f_s`, in units of the full scale `u_fs` (the exchange one full-scale
   output gives on the nominal device), clipped to `[-1, 1]` and quantised to `2^(b-1) - 1`
   levels per polarity for a `b`-bit converter:

   $$v_k = \mathrm{round}\big(L\,\mathrm{clip}(u_x(t_k)/u_{fs}, -1, 1)\big)/L,\qquad L = 2^{b-1} - 1.$$

   The rounding passes gradients straight through (the derivative of the unrounded value), so
   gradient shaping optimises the pulse the AWG will actually play.
2. **Drive line** (`DriveLine`): a gain `g` (the real exchange per unit of nominal full scale:
   an unknown coupling), a single-pole low-pass of time constant `τ` (bias tees, filters, the
   coupler's flux response) and a delay `d`. For the zero-order-hold output of the AWG the
   low-pass is exact at the sample instants,

   $$y_{k+1} = a\,y_k + (1 - a)\,v_k,\qquad a = e^{-\Delta/\tau},\quad y_0 = 0,\ \Delta = 1/f_s,$$

   (the line starts at rest), and the drive at the coupler is the linear interpolation
   $u(t) = g\,u_{fs}\,y(t - d)$, zero before the first sample arrives.
3. The device uses `u(t)` as the receiver's exchange; its coupler shift follows it.

`save_waveform` writes the AWG's samples (signed integer codes) with their sample rate, start
time, full scale and channel as NPZ or CSV (format in docs/howto-device.md), for an AWG
toolchain to load; `load_waveform` reads them back.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from chiraljax._checks import concrete
from chiraljax._errors import ValidationError, require
from chiraljax._files import write_atomic, write_text_atomic
from chiraljax._precision import real_dtype
from chiraljax.network._pulses import AbstractPulse

__all__ = ["AWG", "DriveLine", "LineOutput", "Waveform", "load_waveform", "save_waveform"]

WAVEFORM_FORMAT = "chiraljax-awg-waveform"
WAVEFORM_VERSION = 1


def _positive(owner: str, name: str, value: float, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    ok = ok and math.isfinite(float(value)) and (float(value) >= 0 if allow_zero else float(value) > 0)
    require(ok, f"{owner}: {name}={value!r} must be a finite number {'>= 0' if allow_zero else '> 0'}")
    return float(value)


class AWG(eqx.Module):
    """An arbitrary-waveform generator channel (module docstring, step 1).

    **Arguments:**

    - `full_scale`: exchange (rad/ns) of a full-scale output on the nominal device.
    - `sample_rate`: samples per ns (GS/s), default 1.
    - `bits`: converter resolution, 2 to 24 (default 14).
    - `channel`: the channel's name, written into exported files.
    """

    full_scale: float = eqx.field(static=True)
    sample_rate: float = eqx.field(static=True, default=1.0)
    bits: int = eqx.field(static=True, default=14)
    channel: str = eqx.field(static=True, default="coupler")

    def __check_init__(self) -> None:
        _positive("AWG", "full_scale", self.full_scale)
        _positive("AWG", "sample_rate", self.sample_rate)
        require(
            isinstance(self.bits, (int, np.integer)) and 2 <= self.bits <= 24,
            f"AWG: bits={self.bits!r} must be an integer from 2 to 24",
        )
        require(isinstance(self.channel, str) and self.channel != "", "AWG: channel must be a non-empty name")

    @property
    def levels(self) -> int:
        """L = 2^(b-1) - 1, the largest code."""
        return 2 ** (self.bits - 1) - 1

    def times(self, start: float, stop: float) -> np.ndarray:
        """The sample grid t_k = start + k / f_s covering [start, stop]."""
        require(math.isfinite(start) and math.isfinite(stop) and stop > start, f"AWG: bad window ({start}, {stop})")
        n = int(math.floor((stop - start) * self.sample_rate + 1e-9)) + 1
        require(n >= 2, f"AWG: the window ({start}, {stop}) holds fewer than 2 samples at {self.sample_rate} GS/s")
        return start + np.arange(n) / self.sample_rate

    def render(self, pulse: AbstractPulse, start: float, stop: float) -> Float[Array, " n"]:
        """The played samples v_k (fractions of full scale, quantised, straight-through gradient)."""
        require(isinstance(pulse, AbstractPulse), f"AWG.render: pulse must be a pulse, got {type(pulse).__name__}")
        ts = jnp.asarray(self.times(start, stop), real_dtype())
        v = jnp.clip(jnp.real(jax.vmap(pulse)(ts)) / self.full_scale, -1.0, 1.0)
        q = jnp.round(v * self.levels) / self.levels
        return v + jax.lax.stop_gradient(q - v)

    def codes(self, samples) -> np.ndarray:
        """The integer codes of played samples (what the converter receives)."""
        return np.rint(np.asarray(samples, dtype=float) * self.levels).astype(np.int32)


class DriveLine(eqx.Module):
    """The line from the AWG to the coupler (module docstring, step 2).

    **Arguments:** `gain` (dimensionless, > 0), `tau` (low-pass time constant in ns, 0: none),
    `delay` (ns, >= 0). Fields may be traced (fitted by gradient).
    """

    gain: Float[Array, ""]
    tau: Float[Array, ""]
    delay: Float[Array, ""]

    def __init__(self, gain=1.0, tau=0.0, delay=0.0):
        for name, value, zero in (("gain", gain, False), ("tau", tau, True), ("delay", delay, True)):
            v = concrete(value)
            if v is not None:
                _positive("DriveLine", name, float(v), allow_zero=zero)
        self.gain, self.tau, self.delay = (jnp.asarray(v, real_dtype()) for v in (gain, tau, delay))

    def respond(self, samples: Float[Array, " n"], sample_rate: float) -> Float[Array, " n"]:
        """y_k: the low-passed samples at the sample instants (line at rest before the first)."""
        a = jnp.exp(-1.0 / (sample_rate * jnp.maximum(self.tau, 1e-12)))

        def step(y, v):
            return a * y + (1.0 - a) * v, y

        _, ys = jax.lax.scan(step, jnp.zeros((), samples.dtype), samples)
        return ys

    def pulse(self, samples: Float[Array, " n"], awg: AWG, start: float) -> AbstractPulse:
        """u(t) = g u_fs y(t - d) at the coupler (rad/ns), for samples played from `start`."""
        ys = self.respond(samples, awg.sample_rate)
        return LineOutput(start + self.delay, 1.0 / awg.sample_rate, self.gain * awg.full_scale * ys)


class LineOutput(AbstractPulse):
    """The drive at the coupler: samples `values` at `start + k dt`, linearly interpolated, zero
    before `start` and held after the last sample. Continuous (the line starts at rest, y_0 = 0),
    so it declares no jumps: fixed-step solvers may integrate across it."""

    start: Float[Array, ""]
    dt: float = eqx.field(static=True)
    values: Float[Array, " n"]

    def __call__(self, t):
        u = (t - self.start) / self.dt
        k = jnp.clip(jnp.floor(u), 0, self.values.shape[0] - 2)
        w = jnp.clip(u - k, 0.0, 1.0)
        i = k.astype(jnp.int32)
        value = (1.0 - w) * self.values[i] + w * self.values[i + 1]
        return jnp.where(u < 0, 0.0, value)


@dataclass(frozen=True, eq=False)
class Waveform:
    """Samples an AWG plays: integer `codes`, the `awg` that plays them, and the `start` time (ns)."""

    codes: np.ndarray
    awg: AWG
    start: float

    def __post_init__(self) -> None:
        codes = np.asarray(self.codes)
        require(
            codes.ndim == 1 and codes.size >= 2 and np.issubdtype(codes.dtype, np.integer),
            "Waveform: codes must be a 1-D integer array of at least 2 samples",
        )
        require(bool(np.all(np.abs(codes) <= self.awg.levels)), f"Waveform: codes beyond the {self.awg.bits}-bit range")
        object.__setattr__(self, "codes", codes)

    @property
    def samples(self) -> np.ndarray:
        """Fractions of full scale."""
        return np.asarray(self.codes, dtype=float) / self.awg.levels

    @property
    def times(self) -> np.ndarray:
        """Sample times (ns)."""
        return self.start + np.arange(len(self.codes)) / self.awg.sample_rate


def save_waveform(path: str | os.PathLike, waveform: Waveform) -> Path:
    """Write a waveform as `.npz` (arrays and metadata) or `.csv` (commented header + columns
    `time_ns,code,fraction`). Written atomically. **Returns:** the path."""
    path = Path(path)
    require(path.suffix in (".npz", ".csv"), f"save_waveform: {path} must end in .npz or .csv")
    awg = waveform.awg
    meta = {
        "format": WAVEFORM_FORMAT,
        "version": WAVEFORM_VERSION,
        "channel": awg.channel,
        "sample_rate_gsps": awg.sample_rate,
        "bits": awg.bits,
        "full_scale_rad_per_ns": awg.full_scale,
        "start_ns": waveform.start,
    }
    if path.suffix == ".npz":

        def write(f) -> None:
            np.savez(f, codes=np.asarray(waveform.codes, np.int32), **{k: np.asarray(v) for k, v in meta.items()})

        write_atomic(path, write)
    else:
        buf = io.StringIO()
        for k, v in meta.items():
            buf.write(f"# {k} = {v}\n")
        buf.write("time_ns,code,fraction\n")
        for t, c, s in zip(waveform.times, waveform.codes, waveform.samples):
            buf.write(f"{t:.6f},{int(c)},{s:.9f}\n")
        write_text_atomic(path, buf.getvalue())
    return path


def load_waveform(path: str | os.PathLike) -> Waveform:
    """Read a file written by `save_waveform`; a foreign or damaged file raises `ValidationError`
    with a one-line reason."""
    path = Path(path)
    require(path.is_file(), f"waveform {path}: no such file")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                meta = {k: data[k].item() for k in data.files if k != "codes"}
                codes = np.asarray(data["codes"])
        else:
            meta, rows = {}, []
            for line in path.read_text().splitlines():
                if line.startswith("#"):
                    key, _, value = line[1:].partition("=")
                    meta[key.strip()] = value.strip()
                elif line and not line.startswith("time_ns"):
                    rows.append(int(line.split(",")[1]))
            codes = np.asarray(rows)
        require(str(meta.get("format")) == WAVEFORM_FORMAT, f"waveform {path}: not a {WAVEFORM_FORMAT} file")
        awg = AWG(
            full_scale=float(meta["full_scale_rad_per_ns"]),
            sample_rate=float(meta["sample_rate_gsps"]),
            bits=int(meta["bits"]),
            channel=str(meta["channel"]),
        )
        return Waveform(codes.astype(np.int32), awg, float(meta["start_ns"]))
    except ValidationError as err:
        raise ValidationError(f"waveform {path}: {err}") from None
    except (KeyError, ValueError, IndexError, OSError) as err:
        raise ValidationError(f"waveform {path}: unreadable ({type(err).__name__}: {err})") from None
