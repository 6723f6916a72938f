r"""The delay representation: a Network on the exact single-excitation delay kernel.

`simulate_delay` maps the same `Network` the Markov solvers use onto
`kernels._delay.DelayProblem` (docs/theory.md section 3) and returns a `Result`:

- the elements sorted along the line become the kernel's nodes: a port of emitter j is node
  `j`, a scatterer is a `None` node with the matrix `Scatterer.matrix()`;
- `Network.links[i]` (element i to element i + 1) is the kernel's link `i + 1`; the two end
  segments (kernel links 0 and K) have zero delay and transmission 1, so a reflecting end sits
  at the outermost element (put a `Scatterer` further out for a mirror at a distance);
- a port of rate gamma, right fraction f and control u has `gamma_R(t) = f gamma u(t)` and
  `gamma_L(t) = (1 - f) gamma u(t)`;
- `H(t)` holds the detunings (plus detuning controls) on the diagonal and the direct couplings
  `g(t) a^dag b + h.c.` off it; intrinsic decays are exact in the amplitudes;
- a `PhotonInput` at the left (right) end is the envelope of the right- (left-) moving input.

The kernel holds at most one excitation: either an initial single-excitation state or one
input photon. Pure dephasing (`Emitter.dephasing > 0`) is averaged over classical phase-noise
trajectories; `Result.populations_stderr` then holds the standard error of the mean
populations. An `OutputMode` v at an end is read from the outgoing field psi there: the kernel
integrates A(t) = int v^* psi dt and N(t) = int |v|^2 dt alongside the dynamics, and the mode's
population is |A|^2 / N (at t1 the probability that the photon left in mode v), with the end's
flux and output counting what passes it, psi - v A / N, as the virtual detector cavity of the
Markov model does (one output mode per end).

**The step.** Without `dt` the step is chosen from the rates and the delays. The frequency
scale is

$$\Omega = \max_j\Big[\sum_{p \in j} \gamma_p \max_t u_p + \gamma'_j + |\Delta_j|
  + \max_t |u_{\Delta_j}| + \sum_{c \ni j} |g_c| \max_t |u_c|\Big]$$

(and `4 max |u_in|^2` for an input photon; ports joined by instantaneous links count as one
emitter with the sum of their rates, their collective decay rate), with the maxima sampled at 1001 points of the
window (a traced control counts as 1), and `dt_max = min(0.2 / Omega, (t1 - t0) / 20)`, which
keeps the fourth-order error near 1e-6. Then `dt = base / m` with `base` the shortest nonzero
concrete delay (the window if there is none) and the smallest `m >= base / dt_max` that puts
every control jump on the grid `t0 + n dt` and, by preference, makes every delay and every save
time a multiple of the step (the fourth-order case). A jump that no such step reaches is an
error; a delay that is no multiple of the step is read by interpolation (fourth order where
the history is smooth).

**Traced delays.** A link whose delay is traced (inside `vmap`, `grad` or `jit`) is treated as
delayed (its delay is clamped to `[dt, max_delay]`, default `max_delay = t1 - t0`), so a
sweep over delays never recompiles; links with a concrete delay of exactly 0 are
instantaneous. Concrete values are validated before anything runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from chiraljax._checks import concrete, concrete_float
from chiraljax._errors import ValidationError, require
from chiraljax._limits import require_count, require_memory
from chiraljax._precision import complex_dtype, real_dtype
from chiraljax.kernels._delay import DelayProblem, solve_delay, trajectory_average
from chiraljax.network._mode_io import check_modes
from chiraljax.network._network import Network, Port, Scatterer
from chiraljax.solve._result import Result

__all__ = [
    "DelayPlan",
    "plan_delay",
    "simulate_delay",
    "delay_arrays",
    "delay_array_names",
    "delay_result",
    "DEFAULT_TRAJECTORIES",
]

DEFAULT_TRAJECTORIES = 256
# The step is at most this fraction of 1 / Omega (RK4 error ~ (Omega dt)^4 per unit time).
_STEP_FRACTION = 0.2
# At least this many steps per window.
_MIN_STEPS = 20
# Relative tolerance for "lies on the grid".
_GRID_TOL = 1e-9
# Samples of a control when its peak is estimated.
_PEAK_SAMPLES = 1001
# Trajectories per vmapped batch.
_TRAJECTORY_BATCH = 64


def _default_key():
    return jax.random.key(0)


@dataclass(frozen=True)
class DelayPlan:
    """Static decisions of a delay solve, made from concrete values before tracing.

    **Fields:**

    - `t0`, `dt`, `n_steps`: the grid `t0 + n dt`, n = 0..n_steps.
    - `max_delay`: the longest delay the history holds.
    - `instantaneous`: per kernel link (K + 1), whether its delay is exactly zero.
    - `lossy`: per scatterer (line order), whether it may absorb.
    - `ts_index`: grid indices of the save times when they all lie on the grid, else None
      (then the traces are interpolated, cubically).
    - `save_trace`: whether every step is kept (False when only the end points are saved).
    - `n_trajectories`: phase-noise trajectories (0 without dephasing).
    - `adjoint`: how `jax.grad` goes through the solve ('auto': forward mode when one real
      number of the network is differentiated, reverse mode through the kernel's scan
      otherwise, `simulate` decides; 'reverse' and 'forward': JAX's own modes, so `jax.jvp`
      and `jax.jacfwd` work too).
    """

    t0: float
    dt: float
    n_steps: int
    max_delay: float
    instantaneous: tuple[bool, ...]
    lossy: tuple[bool, ...]
    ts_index: tuple[int, ...] | None
    save_trace: bool
    n_trajectories: int
    adjoint: str = "auto"


def _on_grid(offsets: np.ndarray, dt: float) -> np.ndarray:
    k = offsets / dt
    return np.abs(k - np.round(k)) <= _GRID_TOL * np.maximum(1.0, np.abs(k))


@eqx.filter_jit
def _largest_magnitude(pulse, times):
    """max |u(t)| over `times`: one program per pulse class (evaluated eagerly, every
    operation of the pulse compiled a program of its own, 0.2 s on a first call)."""
    return jnp.max(jnp.abs(jax.vmap(pulse)(times)))


def _peak(pulse, t0: float, t1: float) -> float:
    """max |u(t)| over the window (1 for a traced pulse)."""
    try:
        return float(np.asarray(_largest_magnitude(pulse, np.linspace(t0, t1, _PEAK_SAMPLES))))
    except jax.errors.TracerArrayConversionError:
        return 1.0


def _frequency_scale(network: Network, t0: float, t1: float) -> float:
    """Omega of the module docstring (a cluster of ports joined by instantaneous links counts
    with the sum of its rates)."""
    peaks: dict[str, float] = {}

    def peak(control: str | None) -> float:
        if control is None:
            return 1.0
        if control not in peaks:
            peaks[control] = _peak(network.controls[control], t0, t1)
        return peaks[control]

    def value(x) -> float:
        v = concrete(x)
        return 1.0 if v is None else float(np.abs(v))

    scale = {e.name: value(e.decay) + value(e.detuning) for e in network.emitters}
    for e in network.emitters:
        if e.detuning_control is not None:
            scale[e.name] += peak(e.detuning_control)
    for p in network.ports:
        scale[p.emitter] += value(p.rate) * peak(p.control)
    for c in network.couplings:
        g = value(c.strength) * peak(c.control)
        scale[c.a] += g
        scale[c.b] += g
    omega = max(scale.values())
    # Ports joined by instantaneous links act collectively: their rates add up (N ports of
    # rate gamma decay superradiantly at N gamma), so each such cluster counts as one.
    cluster = 0.0
    for i, el in enumerate(network.elements):
        if i > 0:
            delay = concrete_float(network.links[i - 1].delay) if i - 1 < len(network.links) else None
            if delay is None or delay > 0:
                omega, cluster = max(omega, cluster), 0.0
        if isinstance(el, Port):
            cluster += value(el.rate) * peak(el.control)
    omega = max(omega, cluster)
    for x in network.inputs:
        omega = max(omega, 4.0 * _peak(x.mode, t0, t1) ** 2)
    return omega


def _jumps(network: Network, t0: float, t1: float) -> list[tuple[str, float]]:
    """(control or input name, time) of every concrete jump strictly inside the window."""
    out = []
    sources = list(network.controls.items()) + [(x.name, x.mode) for x in network.inputs]
    for name, pulse in sources:
        for j in pulse.jump_times():
            tj = concrete_float(j)
            if tj is not None and t0 < tj < t1:
                out.append((name, tj))
    return out


def _choose_step(base: float, dt_max: float, hard: np.ndarray, delays: np.ndarray, saves: np.ndarray) -> float | None:
    """The largest `base / m <= dt_max` putting the `hard` offsets on the grid, preferring
    steps that also divide the delays and the save offsets (see the module docstring)."""
    m0 = max(1, math.ceil(base / dt_max * (1 - _GRID_TOL)))
    tiers = ((2 * m0, (hard, delays, saves)), (4 * m0, (hard, delays)), (4 * m0, (hard,)))
    for m_max, groups in tiers:
        offsets = np.concatenate(groups)
        for m in range(m0, m_max + 1):
            if np.all(_on_grid(offsets, base / m)):
                return base / m
    return None


def _check_scatterers(network: Network) -> tuple[bool, ...]:
    """Passivity of every scatterer (line order); returns the lossy flags."""
    lossy = []
    for el in network.elements:
        if not isinstance(el, Scatterer):
            continue
        if el.lossless:
            lossy.append(False)
            continue
        power = el.passive_power()  # values may have changed since the Scatterer was made
        lossy.append(power is None or power < 1.0 - _GRID_TOL)
    return tuple(lossy)


_MAX_STEPS = 1e9  # steps of one solve (hours of compute at the kernel's speed)


def _require_history(network: Network, longest: float, dt: float) -> None:
    """Refuse a delay whose history buffer (longest / dt steps of every port's and end's
    amplitudes in both directions) would not fit in memory."""
    steps = longest / dt
    require_memory(
        f"simulate: a link delay of {longest:.6g} kept as {steps:.3g} steps of history",
        steps * 16.0 * 2 * (2 * len(network.ports) + 4),
        "shorten the delay (a delay longer than the window carries nothing across it inside "
        "the window) or give a larger dt (method=cj.Delay(dt=...))",
    )


def plan_delay(
    network: Network,
    t0,
    t1,
    ts=None,
    *,
    n_save: int = 201,
    dt: float | None = None,
    max_delay: float | None = None,
    n_trajectories: int | None = None,
    adjoint: str = "auto",
) -> DelayPlan:
    """Validate a Network for the delay kernel and fix the static parts of the solve.

    Runs on concrete values (before `jit`); traced leaves are accepted and left unchecked.

    **Arguments:**

    - `network`: the device.
    - `t0`, `t1`: the window (concrete).
    - `ts`: the save times (default `n_save` equally spaced times spanning the window).
    - `dt`: the step (default: the rule of the module docstring).
    - `max_delay`: the longest delay when some delay is traced (default `t1 - t0`).
    - `n_trajectories`: phase-noise trajectories when some emitter dephases (default 256).
    - `adjoint`: how `jax.grad` goes through the kernel (see `DelayPlan`).

    **Returns:** a `DelayPlan`.
    """
    t0f, t1f = concrete_float(t0), concrete_float(t1)
    require(
        t0f is not None and t1f is not None,
        "simulate: representation='delay' needs a concrete t_span (Python floats): the number of "
        "steps is fixed at compile time",
    )
    span = t1f - t0f
    n_inputs = sum(x.photons for x in network.inputs)
    require(
        n_inputs + (1 if network.initial else 0) <= 1,
        "Network: the delay representation holds one excitation: give either an initial "
        f"single-excitation state or one input photon, not {n_inputs} input(s)"
        + (" and an initial excitation" if network.initial else "")
        + "; use representation='sector' (Markov) for more",
    )
    require(len(network.ports) >= 1, "Network: the delay representation needs at least one port")
    check_modes(network, t0f, t1f)

    link_delays = [concrete_float(link.delay) for link in network.links]
    for i, d in enumerate(link_delays):
        require(d is None or d >= 0, f"Link {i}: delay must be >= 0, got {d}")
    known_delays = np.array([d for d in link_delays if d is not None and d > 0])
    jumps = _jumps(network, t0f, t1f)
    ts_np = np.linspace(t0f, t1f, int(n_save)) if ts is None else concrete(ts)
    save_offsets = np.zeros(0) if ts_np is None else np.concatenate([np.asarray(ts_np, float) - t0f, [span]])

    if dt is None:
        dt_max = min(_STEP_FRACTION / max(_frequency_scale(network, t0f, t1f), 1e-300), span / _MIN_STEPS)
        base = float(known_delays.min()) if known_delays.size else span
        if known_delays.size:  # before the step search, whose trip count grows with base / dt_max
            _require_history(network, float(known_delays.max()), dt_max)
        hard = np.array([tj - t0f for _, tj in jumps])
        chosen = _choose_step(base, dt_max, hard, known_delays, save_offsets)
        if chosen is None:
            m0 = max(1, math.ceil(base / dt_max))
            name, tj = next((n, tj) for n, tj in jumps if not _on_grid(np.array([tj - t0f]), base / m0)[0])
            raise ValidationError(
                f"control {name!r} jumps at t = {tj:.9g}, which no step up to {dt_max:.3g} puts on the "
                f"time grid t0 + n dt (t0 = {t0f:.9g}) together with the delays; give dt so that "
                f"{tj - t0f:.9g} is a multiple of it, or move the jump"
            )
        dt = chosen
    else:
        dt = float(dt)
        require(dt > 0 and math.isfinite(dt), f"simulate: dt must be positive, got {dt}")
        for name, tj in jumps:
            require(
                bool(_on_grid(np.array([tj - t0f]), dt)[0]),
                f"control {name!r} jumps at t = {tj:.9g}, which is not on the time grid t0 + n dt "
                f"(t0 = {t0f:.9g}, dt = {dt:.9g}); choose dt so that {tj - t0f:.9g} is a multiple "
                "of it, or move the jump onto the grid",
            )
    for i, d in enumerate(link_delays):
        if d is None or d == 0:
            continue
        require(
            d >= dt * (1 - _GRID_TOL),
            f"Link {i}: delay {d:.6g} is shorter than the step dt = {dt:.6g}; reduce dt to at most "
            "the delay, or set the delay to 0 for an instantaneous link",
        )

    n_steps = max(1, math.ceil(span / dt * (1 - _GRID_TOL)))
    require_count(
        f"simulate: the window ({t0f:.6g}, {t1f:.6g}) in steps of dt = {dt:.3g}",
        n_steps,
        _MAX_STEPS,
        "shorten the window or give a larger dt (method=cj.Delay(dt=...))",
    )
    if known_delays.size:
        _require_history(network, float(known_delays.max()), dt)
    t_end = t0f + n_steps * dt
    ts_index, save_trace = None, True
    if ts_np is not None:
        ts_np = np.atleast_1d(np.asarray(ts_np, float))
        require(
            bool(np.all((ts_np >= t0f - _GRID_TOL * abs(dt)) & (ts_np <= t_end + _GRID_TOL * abs(dt)))),
            f"simulate: save times ts must lie in t_span = ({t0f}, {t1f})",
        )
        if np.all(_on_grid(ts_np - t0f, dt)):
            ts_index = tuple(int(k) for k in np.round((ts_np - t0f) / dt))
            save_trace = ts_index != (0, n_steps)
    if any(d is None for d in link_delays):
        max_delay = span if max_delay is None else float(max_delay)
        require(max_delay >= dt, f"simulate: max_delay = {max_delay} must be at least the step dt = {dt}")
    else:
        max_delay = float(known_delays.max()) if known_delays.size else dt
    instantaneous = (True,) + tuple(d is not None and d == 0 for d in link_delays) + (True,)

    dephasing = [concrete(e.dephasing) for e in network.emitters]
    stochastic = any(g is None or float(g) > 0 for g in dephasing)
    if stochastic:
        n_traj = DEFAULT_TRAJECTORIES if n_trajectories is None else int(n_trajectories)
        require(n_traj >= 2, f"simulate: n_trajectories must be >= 2 for a standard error, got {n_traj}")
    else:
        n_traj = 0

    plan = DelayPlan(
        t0f, dt, n_steps, max_delay, instantaneous, _check_scatterers(network), ts_index, save_trace, n_traj, adjoint
    )
    ends = concrete(network.end_reflections)
    reflectors = len(network.scatterers) + (2 if ends is None else int(np.count_nonzero(ends)))
    if reflectors >= 2:  # a loop needs two reflectors joined by zero-delay links
        _check_loops(network, plan)
    return plan


def _check_loops(network: Network, plan: DelayPlan) -> None:
    """Refuse a lossless loop of reflectors closed by zero-delay links (concrete values)."""
    try:
        _problem(network, plan)
    except ValidationError as err:
        if "loop" not in str(err):
            raise
        zero = [i for i, inst in enumerate(plan.instantaneous[1:-1]) if inst]
        raise ValidationError(
            "Network: links with zero delay close a lossless loop of reflectors (the field would "
            "return instantly forever); give one of the links in the loop a delay of at least one "
            f"step (zero-delay links: {zero}; ends reflect {np.asarray(network.end_reflections)})"
        ) from None


def _emitter_index(network: Network) -> dict[str, int]:
    return {name: j for j, name in enumerate(network.emitter_names)}


def _problem(network: Network, plan: DelayPlan) -> DelayProblem:
    """The kernel's description of `network` (leaves may be traced)."""
    rdt, cdt = real_dtype(), complex_dtype()
    index = _emitter_index(network)
    elements = network.elements
    ports = [el for el in elements if isinstance(el, Port)]
    scatterers = [el for el in elements if isinstance(el, Scatterer)]
    nodes = [index[el.emitter] if isinstance(el, Port) else None for el in elements]
    zero, one = jnp.zeros((1,), rdt), jnp.ones((1,), rdt)

    def per_link(field: str, end):
        vals = [jnp.asarray(getattr(link, field), rdt).reshape(1) for link in network.links]
        return jnp.concatenate([end] + vals + [end])

    controls = network.controls

    def rates(t):
        cache: dict = {}

        def u(name):
            if name not in cache:
                cache[name] = jnp.real(controls[name](t))
            return cache[name]

        rows = []
        for p in ports:
            g = p.rate if p.control is None else p.rate * u(p.control)
            rows.append(jnp.stack([p.right_fraction * g, (1.0 - p.right_fraction) * g]))
        return jnp.stack(rows).astype(rdt)

    n = len(network.emitters)
    has_h = bool(network.couplings) or any(
        e.detuning_control is not None or concrete_float(e.detuning) != 0.0 for e in network.emitters
    )

    def hamiltonian(t):
        diag = []
        for e in network.emitters:
            d = e.detuning
            if e.detuning_control is not None:
                d = d + jnp.real(controls[e.detuning_control](t))
            diag.append(jnp.asarray(d, rdt))
        H = jnp.diag(jnp.stack(diag).astype(cdt))
        for c in network.couplings:
            g = c.strength if c.control is None else c.strength * controls[c.control](t)
            a, b = index[c.a], index[c.b]
            H = H.at[a, b].add(g).at[b, a].add(jnp.conj(g))
        return H

    inputs = None
    if network.inputs:
        x = network.inputs[0]
        slot = 0 if x.end == "left" else 1

        def inputs(t):
            return jnp.zeros((2,), cdt).at[slot].set(jnp.asarray(x.mode(t), cdt))

    detectors = None
    if network.outputs:
        slots = [(0 if x.end == "left" else 1, x.mode) for x in network.outputs]

        def detectors(t):
            v = jnp.zeros((2,), cdt)
            for slot, mode in slots:
                v = v.at[slot].set(jnp.asarray(mode(t), cdt))
            return v

    scattering = (
        jnp.stack([jnp.asarray(s.matrix(), cdt) for s in scatterers]) if scatterers else jnp.zeros((0, 2, 2), cdt)
    )
    return DelayProblem(
        nodes,
        per_link("delay", zero),
        rates=rates,
        transmission=per_link("transmission", one),
        phase=per_link("phase", zero),
        hamiltonian=hamiltonian if has_h else None,
        scattering=scattering,
        end_reflection=network.end_reflections,
        intrinsic_decay=jnp.stack([jnp.asarray(e.decay, rdt) for e in network.emitters]),
        inputs=inputs,
        detectors=detectors,
        n_emitters=n,
        instantaneous=plan.instantaneous,
        lossy=plan.lossy,
    )


def _initial(network: Network):
    index = _emitter_index(network)
    c0 = jnp.zeros((len(network.emitters),), complex_dtype())
    for name, amp in network.initial.items():
        c0 = c0.at[index[name]].set(amp)
    return c0


def _channels(network: Network) -> tuple[tuple[str, ...], tuple[str, ...]]:
    scat = [el.name for el in network.elements if isinstance(el, Scatterer)]
    names = (
        ["right", "left"]
        + [f"loss:link{i}" for i in range(len(network.links))]
        + [f"absorbed:{s}" for s in scat]
        + [f"decay:{e}" for e in network.emitter_names]
    )
    kinds = ["end", "end"] + ["loss"] * (len(network.links) + len(scat)) + ["decay"] * len(network.emitters)
    return tuple(names), tuple(kinds)


def _detected(sol, outputs) -> tuple[Any, Any, Any]:
    """What the output-mode detectors see, on the solution's grid: (the probability |A|^2 / N
    of each output mode (T, n_outputs), the end fluxes after the detectors (T, 2), the end
    outputs after them (T, 2)), ends in the kernel's order (left, right).

    A detector of mode v at an end removes the projection of the outgoing field psi on v, as
    the virtual cavity of the Markov model does: with A(t) = int v^* psi and N(t) = int |v|^2,
    the field after it is psi - v A / N, so its flux is |psi - v A / N|^2 and the output after
    it is int |psi|^2 - |A|^2 / N (the photon it caught is its population)."""
    flux, emitted = sol.output_flux, sol.emitted
    caught = []
    for x in outputs:
        slot = 0 if x.end == "left" else 1
        a, norm, psi = sol.detected[:, slot], sol.detector_norm[:, slot], sol.output_field[:, slot]
        safe = jnp.where(norm > 1e-300, norm, 1.0)
        p = jnp.where(norm > 1e-300, jnp.abs(a) ** 2 / safe, 0.0)
        v = jax.vmap(x.mode)(sol.ts).astype(psi.dtype)
        flux = flux.at[:, slot].set(jnp.abs(psi - v * jnp.where(norm > 1e-300, a / safe, 0.0)) ** 2)
        emitted = emitted.at[:, slot].add(-p)
        caught.append(p)
    return jnp.stack(caught, axis=1), flux, emitted


def _traces(sol, decay, plan: DelayPlan, ts, outputs=()) -> dict[str, Any]:
    """The solution's traces on the save times, keyed by Result field (time first).

    Channel order: right end, left end, the links' losses, the scatterers' absorption, the
    intrinsic decays (flux `gamma'_j |c_j|^2`). Output modes (`outputs`) follow the emitters
    in `populations`; the end channels then hold what passes their detectors."""
    inner = slice(1, -1)  # the end segments are lossless
    populations, end_flux, end_out = sol.populations, sol.output_flux, sol.emitted
    if outputs:
        caught, end_flux, end_out = _detected(sol, outputs)
        populations = jnp.concatenate([populations, caught], axis=1)
    out = {
        "populations": populations,
        "fluxes": jnp.concatenate(
            [end_flux[:, ::-1], sol.loss_flux[:, inner], sol.absorbed_flux, decay * sol.populations], axis=1
        ),
        "outputs": jnp.concatenate([end_out[:, ::-1], sol.lost[:, inner], sol.absorbed, sol.intrinsic], axis=1),
        "in_flight": sol.in_flight.sum(-1),
        "c": sol.c,
    }
    if not plan.save_trace:
        return out
    if plan.ts_index is not None:
        idx = jnp.asarray(plan.ts_index)
        return {k: v[idx] for k, v in out.items()}

    # Cubic Lagrange interpolation through the four grid points around each save time (error
    # O(dt^4) where the trace is smooth; linear interpolation was O(dt^2), 4e-5 at the default
    # step): weights of points i-1 .. i+2 at x = (s - t_i) / dt in [0, 1].
    n = sol.ts.shape[0]
    x = (ts - sol.ts[0]) / (sol.ts[1] - sol.ts[0])
    i = jnp.clip(jnp.floor(x).astype(jnp.int32), 1, n - 3) if n >= 4 else None
    if i is not None:
        x = x - i
        weights = jnp.stack(
            [
                -x * (x - 1) * (x - 2) / 6,
                (x + 1) * (x - 1) * (x - 2) / 2,
                -(x + 1) * x * (x - 2) / 2,
                (x + 1) * x * (x - 1) / 6,
            ],
            axis=-1,
        )  # (T, 4)
        rows = i[:, None] + jnp.arange(-1, 3)[None, :]

    def interp(v):
        if i is None:
            flat = v.reshape(v.shape[0], -1)
            cols = jax.vmap(lambda col: jnp.interp(ts, sol.ts, col), in_axes=1, out_axes=1)
            res = cols(flat.real) + (1j * cols(flat.imag) if jnp.iscomplexobj(flat) else 0.0)
            return res.reshape((ts.shape[0],) + v.shape[1:])
        return jnp.einsum("tk,tk...->t...", weights.astype(v.dtype), v[rows])

    return {k: interp(v) for k, v in out.items()}


def _solve(problem: DelayProblem, c0, plan: DelayPlan, key=None, scale=None, inline: bool = False):
    """One run of the kernel on the plan's grid (with phase noise when `key` is given; `inline`:
    see `solve_delay`)."""
    return solve_delay(
        problem,
        c0,
        dt=plan.dt,
        n_steps=plan.n_steps,
        t0=plan.t0,
        max_delay=plan.max_delay,
        save_trace=plan.save_trace,
        noise_key=key,
        noise_scale=scale,
        inline=inline,
    )


def simulate_delay(
    network: Network,
    t0,
    t1,
    ts,
    *,
    dt: float | None = None,
    key=None,
    n_trajectories: int | None = None,
    max_delay: float | None = None,
    plan: DelayPlan | None = None,
) -> Result:
    r"""Simulate `network` exactly in the single-excitation sector, delays and reflections kept.

    See the module docstring for the mapping, the step rule and the treatment of traced delays.
    With pure dephasing the populations, fluxes and outputs are means over `n_trajectories`
    trajectories of white frequency noise `<xi_j(t) xi_j(t')> = 2 gamma_phi_j delta(t - t')`
    (exact in distribution), drawn from `key` (default `jax.random.key(0)`, so a run is
    reproducible); `populations_stderr` is the standard error of the mean populations.

    **Arguments:**

    - `network`: the device (leaves may be traced).
    - `t0`, `t1`: the window (concrete numbers).
    - `ts`: (T,) save times in the window. On grid points the traces are exact samples,
      elsewhere cubic interpolations through the four grid points around them.
    - `dt`: the step (default: chosen from the rates and delays).
    - `key`: PRNG key of the phase noise (used only with dephasing).
    - `n_trajectories`: number of noise trajectories (default 256).
    - `max_delay`: the longest delay when some delay is traced (default `t1 - t0`).
    - `plan`: a `DelayPlan` made beforehand by `plan_delay` (what `simulate` does, so that this
      function may run under `jit`); the other options are then ignored.

    **Returns:** a `Result` with `representation='delay'`, the emitters as `names`, channels
    'right', 'left' (kind 'end'), 'loss:link{i}', 'absorbed:{scatterer}' (kind 'loss') and
    'decay:{emitter}' (kind 'decay'), `in_flight` the photon probability on the links,
    `final_state` the final amplitudes (the trajectory mean of `c c^dag` with dephasing),
    `amplitudes` the amplitude traces (None with dephasing) and `conservation_error` the
    largest violation of `sum |c|^2 + outputs + in flight = initial + injected` at the end.
    """
    if plan is None:
        plan = plan_delay(network, t0, t1, ts, dt=dt, max_delay=max_delay, n_trajectories=n_trajectories)
    return delay_result(network, delay_arrays(network, ts, key=key, plan=plan))


# The traces a delay solve reports at the save times (and `delay_arrays` returns).
_TRACES = ("populations", "fluxes", "outputs", "in_flight")


def delay_array_names(plan: DelayPlan) -> tuple[str, ...]:
    """The keys of `delay_arrays`' dictionary for `plan`, sorted (the order of its leaves)."""
    extra = "populations_stderr" if plan.n_trajectories else "amplitudes"
    return tuple(sorted(("ts", *_TRACES, "final_state", "error", extra)))


def delay_arrays(network: Network, ts, *, key=None, plan: DelayPlan, inline: bool = False) -> dict:
    """The arrays of `simulate_delay`'s `Result` (keys `delay_array_names(plan)`): a function of
    the network's numbers only, so that it can run as one compiled program (`inline`: the
    kernel traced into it, see `solve_delay`)."""
    ts = jnp.asarray(ts, real_dtype())
    problem = _problem(network, plan)
    c0 = _initial(network)
    decay = jnp.stack([jnp.asarray(e.decay, real_dtype()) for e in network.emitters])

    def arrays(traces: dict, final_state, error, **extra) -> dict:
        return {"ts": ts, **{k: traces[k] for k in _TRACES}, "final_state": final_state, "error": error, **extra}

    if not plan.n_trajectories:
        sol = _solve(problem, c0, plan, inline=inline)
        tr = _traces(sol, decay, plan, ts, network.outputs)
        return arrays(tr, sol.c[-1], sol.conservation_error[-1], amplitudes=tr["c"])

    key = _default_key() if key is None else key
    gamma_phi = jnp.stack([jnp.asarray(e.dephasing, real_dtype()) for e in network.emitters])
    scale = jnp.sqrt(2.0 * gamma_phi / plan.dt)

    def one(k):
        sol = _solve(problem, c0, plan, k, scale, inline=inline)
        tr = _traces(sol, decay, plan, ts, network.outputs)
        c_end = sol.c[-1]
        return {
            "populations": tr["populations"],
            "fluxes": tr["fluxes"],
            "outputs": tr["outputs"],
            "in_flight": tr["in_flight"],
            "rho": jnp.outer(c_end, jnp.conj(c_end)),
            "error": sol.conservation_error[-1],
        }

    stats = trajectory_average(one, key, plan.n_trajectories, _TRAJECTORY_BATCH)
    mean = stats.mean
    return arrays(mean, mean["rho"], stats.maximum["error"], populations_stderr=stats.standard_error["populations"])


def delay_result(network: Network, arrays: dict) -> Result:
    """The `Result` of a delay solve from its arrays (`delay_arrays`)."""
    names, kinds = _channels(network)
    extra = {k: arrays[k] for k in ("amplitudes", "populations_stderr") if k in arrays}
    return Result(
        representation="delay",
        ts=arrays["ts"],
        names=network.emitter_names + tuple(x.name for x in network.outputs),
        populations=arrays["populations"],
        channel_names=names,
        channel_kinds=kinds,
        fluxes=arrays["fluxes"],
        outputs=arrays["outputs"],
        final_state=arrays["final_state"],
        in_flight=arrays["in_flight"],
        conservation_error=arrays["error"],
        **extra,
    )
