"""Compile a Network in the Markov limit through the SLH algebra, symbolically, in NumPy.

Each direction of the waveguide is a cascade: the right-moving channel visits the elements left
to right, the left-moving one right to left. A port of emitter j contributes the component
(1, sqrt(gamma_R(t)) a_j, 0) to the right-moving cascade and (1, sqrt(gamma_L(t)) a_j, 0) to the
left-moving one; a link of power transmission eta and phase phi is the scatterer

    S = [[sqrt(eta) e^{i phi}, -sqrt(1 - eta)], [sqrt(1 - eta) e^{i phi}, sqrt(eta)]]

whose second output is a discarded loss channel. The series product G2 <| G1 =
(S2 S1, L2 + S2 L1, H1 + H2 + (1/2i)(L2^dag S2 L1 - L1^dag S2^dag L2)) with a component of S = 1
(a port) adds (1/2i)(L_p^dag L_up - L_up^dag L_p) to H, L_up being the cascade's output so far,
and a link multiplies that output by sqrt(eta) e^{i phi} and sends sqrt(1 - eta) e^{i phi} L_up
into its loss channel. The waveguide-mediated exchange (J_wg = sqrt(gamma_A gamma_B) sin(phi)/2
between a quarter-wave pair) comes out of these products: it is never added by hand. Delays are
shifted out (Markov limit).

The algebra runs on `Operator`s whose coefficients are `Symbol`s, never numbers: a *parameter
atom* (sqrt(f gamma) of a port, sqrt(eta) e^{i phi} of a link, a detuning, a coupling ...) or a
*time factor* (sqrt(u(t)) of a control, a virtual cavity's coupling). The model is therefore a
list of NumPy matrices, each weighted by a product of atoms and time factors; its size and shape
depend on the network's sizes only, and it is built once per network structure, outside any
trace. The numbers enter in the kernel: `ParameterAtoms.values(network)` evaluates the atoms of a
network of that structure (the values may be traced), `time_pulses(network)` the pulses
behind the time factors and `time_roles` how the factors follow from them.

Virtual cavities (Kiilerich and Molmer 2019) carry photon inputs and output modes: a source of
mode u couples to the channel by g_u(t) = u^*(t)/sqrt(1 - int_0^t |u|^2) at the start of the
cascade, a detector of mode v by g_v(t) = -v^*(t)/sqrt(int_0^t |v|^2) at its end.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from chiraljax._checks import as_array, concrete, safe_sqrt
from chiraljax._errors import require
from chiraljax._limits import require_count
from chiraljax._precision import complex_dtype, real_dtype, single_precision
from chiraljax.algebra._operator import Operator, Symbol, factor_parts
from chiraljax.algebra._space import Space, space_dimension
from chiraljax.network._input_cascade import emitted_modes
from chiraljax.network._network import Network, Port
from chiraljax.network._pulses import AbstractPulse

#: Below this much of a photon mode's norm integral a virtual cavity stays uncoupled (its coupling
#: ~ 1/sqrt(norm) would be stiff beyond any step): 1e-10 in float64; 1e-8 in float32, where the
#: couplings of 1e5 just past 1e-10 ran an output mode's solve out of steps.
_MODE_EPS = 1e-8 if single_precision() else 1e-10


@dataclass(frozen=True)
class Channel:
    """A named output channel: `operator` is its L_k(t); `kind` is 'end' (leaves the waveguide
    at an end), 'loss' (link loss), 'decay' (intrinsic T1) or 'dephasing' (carries no photon)."""

    name: str
    kind: str
    operator: Operator


# ---- parameter atoms --------------------------------------------------------------------------

#: The kinds of parameter atom, in the order of the atom vector, with the count that sizes each.
_ATOM_KINDS = (
    ("port_right", "ports"),
    ("port_left", "ports"),
    ("link_through", "links"),
    ("link_loss", "links"),
    ("detuning", "emitters"),
    ("anharmonicity", "emitters"),
    ("decay", "emitters"),
    ("dephasing", "emitters"),
    ("coupling", "couplings"),
)


#: The counts of ports, links, emitters and couplings are rounded up to a multiple of this (the
#: atoms past a network's own are zeros no table reads), so that networks that differ only in
#: these counts (a pair with and without a direct coupling) share one compiled program.
ATOM_COUNT_QUANTUM = 4


def padded_count(n: int) -> int:
    """n rounded up to a multiple of `ATOM_COUNT_QUANTUM` (at least one quantum)."""
    return max(1, -(-n // ATOM_COUNT_QUANTUM)) * ATOM_COUNT_QUANTUM


def _counted(network: Network) -> tuple[tuple[str, tuple], ...]:
    return (
        ("ports", network.ports),
        ("links", network.links),
        ("emitters", network.emitters),
        ("couplings", network.couplings),
    )


@dataclass(frozen=True)
class ParameterAtoms:
    """The layout of the parameter atoms of networks with `counts` ports, links, emitters and
    couplings. The atom vector is, kind after kind,

        sqrt(f_p gamma_p), sqrt((1 - f_p) gamma_p)      (every port p: right, left share),
        sqrt(eta_i) e^{i phi_i}, sqrt(1 - eta_i) e^{i phi_i}   (every link i: through, loss),
        Delta_j, alpha_j, sqrt(gamma'_j), sqrt(2 gamma_phi,j)  (every emitter j),
        g_c                                              (every coupling c).
    """

    counts: tuple[tuple[str, int], ...]

    @classmethod
    def of(cls, network: Network) -> ParameterAtoms:
        """The layout for `network`: each count rounded up to a multiple of `ATOM_COUNT_QUANTUM`
        (`padded_count`)."""
        return cls(tuple((sized_by, padded_count(len(elements))) for sized_by, elements in _counted(network)))

    def offset(self, kind: str) -> int:
        counts = dict(self.counts)
        start = 0
        for k, sized_by in _ATOM_KINDS:
            if k == kind:
                return start
            start += counts[sized_by]
        raise KeyError(kind)

    def symbol(self, kind: str, index: int) -> Symbol:
        return Symbol("param", self.offset(kind) + index)

    @property
    def size(self) -> int:
        counts = dict(self.counts)
        return sum(counts[sized_by] for _, sized_by in _ATOM_KINDS)

    @staticmethod
    def inputs(network: Network) -> tuple:
        """The network's numbers the atoms are made of, as they are (no operation runs):
        (rates, right fractions, transmissions, phases, detunings, anharmonicities, decays,
        dephasings, coupling strengths), each a tuple over its elements."""
        ports, links, emitters = network.ports, network.links, network.emitters

        def padded(values: tuple, dtype=None) -> tuple:
            # zeros of the type the network stores its numbers as (a NumPy scalar in the working
            # precision), so that a padded entry and a network's own have one abstract value
            zero = np.zeros((), real_dtype() if dtype is None else dtype)
            return values + (zero,) * (padded_count(len(values)) - len(values))

        return (
            padded(tuple(p.rate for p in ports)),
            padded(tuple(p.right_fraction for p in ports)),
            padded(tuple(k.transmission for k in links)),
            padded(tuple(k.phase for k in links)),
            padded(tuple(e.detuning for e in emitters)),
            padded(tuple(e.anharmonicity for e in emitters)),
            padded(tuple(e.decay for e in emitters)),
            padded(tuple(e.dephasing for e in emitters)),
            padded(tuple(c.strength for c in network.couplings), complex_dtype()),
        )

    @staticmethod
    def evaluate(inputs: tuple):
        """The atom vector (complex, JAX) from `inputs` (inside the kernel: jit, vmap and grad
        go through)."""
        rate, fraction, eta, phase, detuning, alpha, decay, dephasing, coupling = (
            jnp.stack([jnp.asarray(x) for x in group]) if group else jnp.zeros((0,)) for group in inputs
        )
        shift = jnp.exp(1j * phase)
        parts = [
            safe_sqrt(fraction * rate),
            safe_sqrt((1.0 - fraction) * rate),
            safe_sqrt(eta) * shift,
            safe_sqrt(1.0 - eta) * shift,
            detuning,
            alpha,
            safe_sqrt(decay),
            safe_sqrt(2.0 * dephasing),
            coupling,
        ]
        return jnp.concatenate([jnp.asarray(p, dtype=complex).reshape(-1) for p in parts])

    @classmethod
    def values(cls, network: Network):
        """The atom vector of `network`."""
        return cls.evaluate(cls.inputs(network))


# ---- time factors -----------------------------------------------------------------------------


def _source(mode: AbstractPulse, t, norm):
    """g_u(t) = u^*(t) / sqrt(1 - int_{t0}^t |u|^2): the virtual source cavity's coupling, with
    the integral `norm` carried exactly by the solver (zero once the mode is used up)."""
    left = 1.0 - norm
    on = left > _MODE_EPS
    return jnp.where(on, jnp.conj(mode(t)) / jnp.sqrt(jnp.where(on, left, 1.0)), 0.0)


def _detector(mode: AbstractPulse, t, norm):
    """g_v(t) = -v^*(t) / sqrt(int_{t0}^t |v|^2), zero until the integral exceeds a small epsilon."""
    on = norm > _MODE_EPS
    return jnp.where(on, -jnp.conj(mode(t)) / jnp.sqrt(jnp.where(on, norm, 1.0)), 0.0)


_ROLES = {
    "root": lambda pulse, t, norm: safe_sqrt(pulse(t)),  # sqrt(u(t)): a controlled port rate's amplitude
    "value": lambda pulse, t, norm: pulse(t),  # u(t): a frequency shift or a coupling's modulation
    "source": _source,
    "detector": _detector,
}
_INTEGRATED = ("source", "detector")


@dataclass(frozen=True)
class TimeFactors:
    """How the time factors f_i(t) follow from the network's pulses: `roles[i]` is 'root'
    (sqrt(u(t)) of a control), 'value' (u(t)), 'source' or 'detector' (a virtual cavity's
    coupling, which needs the norm integral int_{t0}^t |u|^2 of its mode). The kernel carries
    those integrals as part of its state, dI_m/dt = |u_m(t)|^2 (`integrands`), so they are as
    exact as the solve and modes with jumps or compact support need no quadrature. Hashable:
    it is part of the compiled kernel's static layout, so the pulses stay traced arguments."""

    roles: tuple[str, ...]

    @property
    def n_integrals(self) -> int:
        """How many norm integrals the state carries (one per virtual cavity)."""
        return sum(r in _INTEGRATED for r in self.roles)

    def integrands(self, pulses: tuple, t, dtype=float):
        """(|u_m(t)|^2 for every virtual cavity's mode m), the derivatives of the integrals."""
        values = [jnp.abs(p(t)) ** 2 for r, p in zip(self.roles, pulses) if r in _INTEGRATED]
        return jnp.stack(values).astype(dtype) if values else jnp.zeros((0,), dtype)

    def real(self, pulses: tuple) -> bool:
        """Whether every time factor is real (the pulses' types say it; nothing is evaluated,
        and the answer is kept per pulse structure and dtypes)."""
        leaves, treedef = jax.tree.flatten(tuple(pulses))
        return _real_factors(
            self, treedef, tuple(jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x)) for x in leaves)
        )

    def __call__(self, pulses: tuple, t, integrals, dtype=complex):
        """(f_1(t), ..., f_F(t)) given the norm integrals, or a (1,) array of ones when there
        are no time factors; in `dtype`, or with `dtype=None` in the type the pulses give
        (real when every one is)."""
        if not self.roles:
            return jnp.ones((1,), dtype)
        out, m = [], 0
        for role, pulse in zip(self.roles, pulses):
            norm = None
            if role in _INTEGRATED:
                norm, m = integrals[m], m + 1
            out.append(jnp.asarray(_ROLES[role](pulse, t, norm), dtype=dtype))
        return jnp.stack(out)


@functools.lru_cache(maxsize=256)
def _real_factors(factors: TimeFactors, treedef, avals: tuple) -> bool:
    """`TimeFactors.real` for pulses of the tree structure `treedef` and leaves `avals`."""
    integrals = jax.ShapeDtypeStruct((factors.n_integrals,), jax.dtypes.canonicalize_dtype(float))
    pulses = jax.tree.unflatten(treedef, avals)
    values = jax.eval_shape(lambda p, i: factors(p, 0.0, i, None), pulses, integrals)
    return not jnp.issubdtype(values.dtype, jnp.complexfloating)


def _time_object(network: Network, recipe: tuple[str, str], window: tuple | None) -> AbstractPulse:
    role, name = recipe
    if role in ("root", "value"):
        return network.controls[name]
    if role == "source":
        end = next(x.end for x in network.inputs if x.name == name)
        group = [x for x in network.inputs if x.end == end]
        if len(group) > 1:  # cascaded sources: the upstream ones emit pre-distorted modes
            require(window is not None, "Markov model: several photon inputs at one end need the time window")
            modes = emitted_modes([x.mode for x in group], *window)
            return modes[[x.name for x in group].index(name)]
    items = network.inputs if role == "source" else network.outputs
    return next(x.mode for x in items if x.name == name)


class _TimeSymbols:
    """Hands out one `Symbol` per distinct time factor, recording how to build it."""

    def __init__(self) -> None:
        self.recipes: list[tuple[str, str]] = []

    def __call__(self, role: str, name: str) -> Symbol:
        recipe = (role, name)
        if recipe not in self.recipes:
            self.recipes.append(recipe)
        return Symbol("time", self.recipes.index(recipe))


@functools.cache
def _complex_scalar(value: float):
    """A complex JAX scalar made once (the network's own amplitudes are JAX arrays too, so the
    kernel sees one kind of argument)."""
    with jax.ensure_compile_time_eval():  # concrete even when first made inside a trace
        return as_array(value, complex)


# ---- the model --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LindbladModel:
    """A Markov model ready for a Lindblad kernel, symbolic in its numbers.

    **Fields:**

    - `space`: emitters first, then virtual source and detector cavities.
    - `hamiltonian`: H(t), an `Operator` whose coefficients are `Symbol`s.
    - `channels`: every Lindblad operator with its name and kind (dephasing ones last).
    - `atoms`: the layout of the parameter atoms the `Symbol`s of kind 'param' index.
    - `time_recipes`: (role, name) of each time factor the `Symbol`s of kind 'time' index.
    - `initial_index`: basis indices of the initial state's components, in the order of
      `network.initial` (one component of amplitude 1 when the network starts in its ground
      state or with input photons only), padded with zeros to a multiple of 4.
    - `emitter_names`, `virtual_names`: subsystem names by role.
    """

    space: Space
    hamiltonian: Operator
    channels: tuple[Channel, ...]
    atoms: ParameterAtoms
    time_recipes: tuple[tuple[str, str], ...]
    initial_index: np.ndarray
    emitter_names: tuple[str, ...]
    virtual_names: tuple[str, ...]

    @property
    def photon_channels(self) -> tuple[Channel, ...]:
        """Channels that carry excitations away (all but dephasing)."""
        return tuple(c for c in self.channels if c.kind != "dephasing")

    @property
    def time_roles(self) -> TimeFactors:
        """How each time factor follows from its pulse."""
        return TimeFactors(tuple(role for role, _ in self.time_recipes))

    def time_pulses(self, network: Network, window: tuple | None = None) -> tuple:
        """The pulse behind each time factor of `network` (a network of this model's
        structure): a pytree whose structure depends on the pulse families only. With several
        photon inputs at one end the upstream sources emit modes computed over `window`
        (t0, t1) (`chiraljax.network._input_cascade`)."""
        return tuple(_time_object(network, r, window) for r in self.time_recipes)

    def initial_amplitudes(self, network: Network) -> tuple:
        """The amplitudes of the initial state's components (at `initial_index`), as they are,
        padded with zeros to the length of `initial_index`."""
        amps = tuple(network.initial.values()) or (_complex_scalar(1.0),)
        return amps + (_complex_scalar(0.0),) * (len(self.initial_index) - len(amps))

    def initial_state(self, network: Network):
        """The initial state vector psi_0 on `space`."""
        amps = jnp.stack([jnp.asarray(a, dtype=complex) for a in self.initial_amplitudes(network)])
        return jnp.zeros(self.space.dim, dtype=complex).at[self.initial_index].add(amps)

    def jump_times(self, network: Network) -> tuple:
        """Where some control, input mode or output mode of `network` jumps (a step boundary
        goes there)."""
        jumps: list = []
        pulses = list(network.controls.values()) + [x.mode for x in network.inputs + network.outputs]
        for pulse in pulses:
            jumps.extend(type(pulse).jump_times(pulse))  # (a plain call: no bound-method wrapper)
        return tuple(jumps)

    def evaluate(self, network: Network, t, integrals=None) -> tuple[Any, dict[str, Any]]:
        """H(t) and every channel's L_k(t) as dense matrices for `network`, given the virtual
        cavities' norm integrals (default 0: the state at the window start); a check of the
        algebra, the kernels never build operators this way."""
        atoms = jnp.asarray(ParameterAtoms.values(network))
        roles = self.time_roles
        integrals = jnp.zeros(roles.n_integrals) if integrals is None else jnp.asarray(integrals)
        factors = roles(self.time_pulses(network), t, integrals)

        def value(symbol, conj: bool):
            v = atoms[symbol.index] if symbol.kind == "param" else factors[symbol.index]
            return jnp.conj(v) if conj else v

        def dense(op: Operator):
            out = jnp.zeros((self.space.dim, self.space.dim), dtype=complex)
            for term in op.terms:
                c = jnp.ones((), complex)
                for f in term.fns:
                    c = c * value(*factor_parts(f))
                out = out + c * jnp.asarray(term.matrix)
            return out

        return dense(self.hamiltonian), {c.name: dense(c.operator) for c in self.channels}


def _cross(l2: Operator, l1: Operator) -> Operator:
    """The series product's exchange term (1/2i)(L2^dag L1 - L1^dag L2)."""
    x = l2.dag() @ l1
    return (x - x.dag()).scale(-0.5j)


def _cascade(
    network: Network,
    space: Space,
    atoms: ParameterAtoms,
    times: _TimeSymbols,
    direction: str,
    start: tuple[Operator | None, Operator],
    end: Operator | None,
) -> tuple[Operator, list[Operator], list[str], Operator]:
    """One direction's cascade of series products, fed by `start` (the photon inputs' L and
    Hamiltonian). Returns the main output's L, the link losses' L with their channel names,
    and the cascade's Hamiltonian."""
    elements = network.elements
    port_index = {p.name: i for i, p in enumerate(network.ports)}
    out = start[0] if start[0] is not None else Operator.zero(space)
    H = start[1]
    losses: list[Operator] = []
    loss_names: list[str] = []
    order = list(range(len(elements)))
    if direction == "L":
        order = order[::-1]
    for step, idx in enumerate(order):
        if step > 0:
            link_idx = idx if direction == "L" else idx - 1
            losses.append(out.scale(atoms.symbol("link_loss", link_idx)))
            loss_names.append(f"loss:link{link_idx}:{direction}")
            out = out.scale(atoms.symbol("link_through", link_idx))
        el = elements[idx]
        if isinstance(el, Port):
            kind = "port_right" if direction == "R" else "port_left"
            op = Operator.constant(space, space.destroy(el.emitter), atoms.symbol(kind, port_index[el.name]))
            if el.control is not None:
                op = op.scale(times("root", el.control))
            H = H + _cross(op, out)
            out = out + op
    if end is not None:
        H = H + _cross(end, out)
        out = out + end
    return out, losses, loss_names, H


def required_excitations(network: Network) -> int:
    """The excitation number the dynamics needs: initial excitations plus input photons."""
    return (1 if network.initial else 0) + sum(x.photons for x in network.inputs)


def check_markov(network: Network, max_excitations: int | None) -> None:
    """Refuse what the Markov model cannot describe (scatterers, reflecting ends, a sector too
    small for the initial state and inputs, two output modes at one end)."""
    require(
        not network.scatterers,
        "Markov model: scatterers (joints, mirrors) make the network non-Markovian; use representation='delay'",
    )
    r_end = concrete(network.end_reflections)
    require(
        r_end is None or not np.any(np.abs(r_end) > 0),
        "Markov model: reflecting waveguide ends make the network non-Markovian; use representation='delay'",
    )
    need = required_excitations(network)
    if max_excitations is not None:
        require(
            max_excitations >= need,
            f"Markov model: the initial state and {need - bool(network.initial)} input photon(s) need "
            f"{need} excitation(s) but the sector allows only {max_excitations}; raise max_excitations",
        )
    for end in ("left", "right"):
        n = sum(1 for x in network.outputs if x.end == end)
        require(n <= 1, f"Markov model: at most one output mode per end, got {n} at the {end} end")


# Dense operations the symbolic build may take (about a minute on one core: 100 ports on a
# 101-state sector take 1e10 and 17 s).
_BUILD_OPERATIONS = 5e10


def _require_buildable(network: Network, dims: list[int], max_excitations: int | None) -> None:
    """Refuse a model whose symbolic build would run for hours: the cascade multiplies each
    port's dense D x D terms with every port before it, about P^2 D^3 operations."""
    dim = space_dimension(tuple(dims), max_excitations)
    ports = len(network.ports) + len(network.inputs) + len(network.outputs)
    require_count(
        f"Markov model: {len(network.emitters)} emitters and {ports} ports on a space of {dim} states "
        "need dense operations to build",
        float(ports) ** 2 * float(dim) ** 3,
        _BUILD_OPERATIONS,
        "use representation='delay' (single excitation, any length), a smaller "
        + ("max_excitations" if max_excitations is not None else "network or an excitation sector"),
    )


def compile_markov(network: Network, *, max_excitations: int | None = 1) -> LindbladModel:
    """Build the symbolic Markov-limit Lindblad model of `network` on a sector
    (k = `max_excitations`) or, with `max_excitations=None`, on the full space.

    **Arguments:**

    - `network`: the device (only its structure is read: names, order, sizes, controls).
    - `max_excitations`: k of the excitation sector, or None for the full space.

    **Returns:** a `LindbladModel`.
    """
    check_markov(network, max_excitations)
    names = [e.name for e in network.emitters]
    dims = [e.levels for e in network.emitters]
    virtual = [x.name for x in network.inputs] + [x.name for x in network.outputs]
    # a source holds its photons and those of the sources upstream of it at its end, which pass
    # through it; a detector can catch every excitation there is
    upstream = [sum(y.photons for y in network.inputs[:i] if y.end == x.end) for i, x in enumerate(network.inputs)]
    virtual_dims = [x.photons + n + 1 for x, n in zip(network.inputs, upstream)]
    virtual_dims += [required_excitations(network) + 1] * len(network.outputs)
    _require_buildable(network, dims + virtual_dims, max_excitations)
    space = Space(tuple(names + virtual), tuple(dims + virtual_dims), max_excitations)
    atoms = ParameterAtoms.of(network)
    times = _TimeSymbols()
    # Time factors in a canonical order (by role, then name), not in the order the cascade meets
    # them, so that the kernel's pytree of pulses does not depend on the topology.
    for role, names_in_role in (
        ("root", {p.control for p in network.ports}),
        ("value", {e.detuning_control for e in network.emitters} | {c.control for c in network.couplings}),
        ("source", {x.name for x in network.inputs}),
        ("detector", {x.name for x in network.outputs}),
    ):
        for name in sorted(n for n in names_in_role if n is not None):
            times(role, name)

    def virtual_cavity(items, end: str, role: str) -> Operator | None:
        x = next((x for x in items if x.end == end), None)
        return None if x is None else Operator.constant(space, space.destroy(x.name), times(role, x.name))

    def sources(end: str) -> tuple[Operator | None, Operator]:
        """The photon inputs at `end` cascaded in the order given (the last next to the
        network): their output L and the cascade's Hamiltonian."""
        out, h = None, Operator.zero(space)
        for x in (x for x in network.inputs if x.end == end):
            op = Operator.constant(space, space.destroy(x.name), times("source", x.name))
            if out is not None:
                h = h + _cross(op, out)
            out = op if out is None else out + op
        return out, h

    # each direction: a photon input enters at the end it travels from, an output mode is
    # read at the end it travels to
    (right, loss_r, names_r, h_r), (left, loss_l, names_l, h_l) = (
        _cascade(
            network, space, atoms, times, direction, sources(start), virtual_cavity(network.outputs, end, "detector")
        )
        for direction, start, end in (("R", "left", "right"), ("L", "right", "left"))
    )

    H = h_r + h_l
    for j, e in enumerate(network.emitters):
        n = space.number(e.name)
        H = H + Operator.constant(space, n, atoms.symbol("detuning", j))
        if e.detuning_control is not None:
            H = H + Operator.constant(space, n, times("value", e.detuning_control))
        if e.levels > 2:
            H = H + Operator.constant(space, 0.5 * n @ (n - np.eye(space.dim)), atoms.symbol("anharmonicity", j))
    for i, c in enumerate(network.couplings):
        op = Operator.constant(space, space.destroy(c.a).conj().T @ space.destroy(c.b), atoms.symbol("coupling", i))
        if c.control is not None:
            op = op.scale(times("value", c.control))
        H = H + op + op.dag()

    channels = [Channel("right", "end", right)]
    channels += [Channel(nm, "loss", op) for nm, op in zip(names_r, loss_r)]
    channels += [Channel("left", "end", left)]
    channels += [Channel(nm, "loss", op) for nm, op in zip(names_l, loss_l)]
    for j, e in enumerate(network.emitters):
        channels.append(
            Channel(
                f"decay:{e.name}", "decay", Operator.constant(space, space.destroy(e.name), atoms.symbol("decay", j))
            )
        )
    for j, e in enumerate(network.emitters):
        channels.append(
            Channel(
                f"dephasing:{e.name}",
                "dephasing",
                Operator.constant(space, space.number(e.name), atoms.symbol("dephasing", j)),
            )
        )

    occupied = {x.name: x.photons for x in network.inputs}
    components = [{**occupied, name: 1} for name in network.initial] or [occupied]
    initial_index = np.array([space.index(tuple(_occupation(space, c))) for c in components], dtype=int)
    # padded (amplitude 0 at index 0) so that initial states of a few components share a kernel
    initial_index = np.concatenate([initial_index, np.zeros(-len(initial_index) % 4, dtype=int)])
    return LindbladModel(
        space, H, tuple(channels), atoms, tuple(times.recipes), initial_index, tuple(names), tuple(virtual)
    )


def _occupation(space: Space, occupied: dict[str, int]) -> list[int]:
    occ = [0] * len(space.names)
    for name, n in occupied.items():
        occ[space.subsystem(name)] = n
    return occ
