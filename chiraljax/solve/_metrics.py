r"""Protocol metrics as pure functions of a `Result` or of amplitudes (jit-, vmap- and grad-able).

Closed forms (docs/theory.md sections 2 and 5) sit beside the measured metrics so that tests and
reports can compare them:

- directional emission with the exchange cancelled: P_R = (1 + sin(phi) sin(theta)) / 2;
- W state by halted emission at the pulse centre: F = (1 + sqrt(eta eps))^2 / 4;
- with the optimal emitted fraction p = eta eps / (1 + eta eps): F = (1 + eta eps) / 2.

**Local-phase convention of the W fidelity.** The target is

$$|W_\chi\rangle = \big(|d_1\rangle + e^{i\chi} |d_2\rangle\big)/\sqrt{2},\qquad
  |d_m\rangle = (|A_m\rangle + e^{i\theta}|B_m\rangle)/\sqrt{2},$$

with theta = +pi/2 for a photon travelling right and -pi/2 for one travelling left (the state a
photon of that direction drives), A_m, B_m the storage qubits of module m (the data qubits of a
four-qubit module). chi collects the propagation phase and other constants; it is a known
local phase that a single-qubit Z rotation removes. `w_fidelity` maximises over chi by default
(F = (rho_11 + rho_22 + 2 |rho_12|) / 2 in the {d_1, d_2} basis); pass `chi` to include a
fixed value in the target instead. F = <W|rho|W> uses the single-excitation block of the
reduced density matrix of the storage qubits, which for a state whose only jumps are decays is
rho = |c><c| + (1 - ||c||^2)|G><G| (docs/theory.md section 5), so F = |<W|c>|^2 there.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from chiraljax._errors import require
from chiraljax.network._network import Network
from chiraljax.solve._result import Result


def directional_probability(phi, theta):
    """P_R = (1 + sin(phi) sin(theta)) / 2: right-moving share of the photon from
    (|eg> + e^{i theta}|ge>)/sqrt(2) with the exchange cancelled (lossless)."""
    return 0.5 * (1.0 + jnp.sin(phi) * jnp.sin(theta))


def w_fidelity_halted(eta_eps):
    """F = (1 + sqrt(eta eps))^2 / 4: W state from halting at the pulse centre."""
    return 0.25 * (1.0 + jnp.sqrt(eta_eps)) ** 2


def w_fidelity_optimal(eta_eps):
    """F = (1 + eta eps) / 2: W state with the optimal emitted fraction."""
    return 0.5 * (1.0 + eta_eps)


def optimal_fraction(eta_eps):
    """p = eta eps / (1 + eta eps): the emitted fraction that maximises the W fidelity."""
    return eta_eps / (1.0 + eta_eps)


def emitted(result: Result, end: str):
    """Photon probability that left the waveguide at one end ('right' or 'left')."""
    require(end in ("right", "left"), f"emitted: end must be 'right' or 'left', got {end!r}")
    return result.emitted(end)


def directionality(result: Result, direction: str):
    """Share of the photons leaving the waveguide that leave in `direction`:
    P_dir / (P_right + P_left)."""
    p_r, p_l = emitted(result, "right"), emitted(result, "left")
    return (p_r if direction == "right" else p_l) / (p_r + p_l)


def stored_population(result: Result, names: Sequence[str]):
    """Final excitation held by the named emitters (the receiver's storage qubits)."""
    return result.final_population(*names)


def absorption_efficiency(received, incident):
    """eps = received / incident: the share of the photon arriving at a receiver that it keeps."""
    return received / incident


def single_excitation_block(result: Result, names: Sequence[str]):
    """The (n x n) single-excitation block rho_jk = <1_j| rho |1_k> of the final state on the
    named emitters, from a sector density matrix or from delay-kernel amplitudes."""
    idx = jnp.asarray([result.names.index(n) for n in names])
    if result.representation == "delay":
        c = (result.amplitudes[-1] if result.amplitudes is not None else result.final_state)[..., idx]
        return c[..., :, None] * jnp.conj(c[..., None, :])
    require(
        result.representation == "sector",
        "single_excitation_block: needs a 'sector' or 'delay' result; simulate with representation='sector'",
    )
    rho = result.final_state
    return rho[..., 1 + idx[:, None], 1 + idx[None, :]]


def w_fidelity_from_block(rho, theta1, theta2, chi=None):
    """F of the W state (module docstring) from the 4 x 4 single-excitation block on
    (A_1, B_1, A_2, B_2); chi=None maximises over the local phase."""
    d1 = jnp.array([1.0, 0.0, 0.0, 0.0]) + jnp.exp(1j * theta1) * jnp.array([0.0, 1.0, 0.0, 0.0])
    d2 = jnp.array([0.0, 0.0, 1.0, 0.0]) + jnp.exp(1j * theta2) * jnp.array([0.0, 0.0, 0.0, 1.0])
    d1, d2 = d1 / jnp.sqrt(2.0), d2 / jnp.sqrt(2.0)
    r11 = jnp.real(jnp.einsum("i,...ij,j->...", d1.conj(), rho, d1))
    r22 = jnp.real(jnp.einsum("i,...ij,j->...", d2.conj(), rho, d2))
    r12 = jnp.einsum("i,...ij,j->...", d1.conj(), rho, d2)
    if chi is None:
        return 0.5 * (r11 + r22 + 2.0 * jnp.abs(r12))
    return 0.5 * (r11 + r22 + 2.0 * jnp.real(jnp.exp(1j * chi) * r12))


def w_phase(rho, theta1, theta2):
    """The local phase chi that maximises the W fidelity (the argument of the d_1-d_2 coherence)."""
    d1 = (jnp.array([1.0, 0, 0, 0]) + jnp.exp(1j * theta1) * jnp.array([0, 1.0, 0, 0])) / jnp.sqrt(2.0)
    d2 = (jnp.array([0, 0, 1.0, 0]) + jnp.exp(1j * theta2) * jnp.array([0, 0, 0, 1.0])) / jnp.sqrt(2.0)
    return -jnp.angle(jnp.einsum("i,...ij,j->...", d1.conj(), rho, d2))


def w_fidelity(result: Result, first: Sequence[str], second: Sequence[str], direction: str, chi=None):
    """W-state fidelity of the final state (module docstring for the convention).

    **Arguments:**

    - `result`: a 'sector' or 'delay' Result.
    - `first`, `second`: the (A, B) storage qubits of the sending and the receiving module.
    - `direction`: 'right' or 'left', the photon's direction (theta = +- pi/2).
    - `chi`: None to maximise over the local phase, or a fixed value included in the target.

    **Returns:** F in [0, 1].
    """
    theta = 0.5 * jnp.pi if direction == "right" else -0.5 * jnp.pi
    rho = single_excitation_block(result, tuple(first) + tuple(second))
    return w_fidelity_from_block(rho, theta, theta, chi)


# ---- metric objects: what sweep strings parse into and what pulse shaping optimises ----------


class AbstractMetric(eqx.Module):
    """A scalar figure of merit `m(result, network)` of one simulation (larger is better)."""

    @abc.abstractmethod
    def __call__(self, result: Result, network: Network) -> Float[Array, ""]:
        """The figure of merit of one simulation."""

    @property
    def name(self) -> str:
        return type(self).__name__


class Population(AbstractMetric):
    """`m = Σ_{j ∈ names} <n_j>(t_1)`: the final excitation of the named emitters."""

    names: tuple[str, ...] = eqx.field(static=True)

    def __init__(self, *names: str):
        require(len(names) >= 1, "Population: name at least one emitter")
        self.names = tuple(names)

    def __call__(self, result: Result, network: Network) -> Float[Array, ""]:
        return result.final_population(*self.names)


class TransferEfficiency(Population):
    """Transfer efficiency: the final excitation of the receiver's qubits, starting from an
    excited sender (the link limit is the link's power transmission η)."""


class AbsorptionEfficiency(AbstractMetric):
    """`m = Σ_j <n_j>(t_1) / P_in`: the share of the arriving photon that the receiver keeps.

    `P_in` is the probability that a photon reaches the receiver: a number, or the product of
    named network parameters (e.g. `"links.1.transmission"`), read from the network simulated,
    so an ensemble member with more loss is normalised by its own transmission.

    **Arguments:**

    - `receivers`: the receiver's emitter names.
    - `incident`: a number in (0, 1], or parameter name(s) whose product is `P_in`.
    """

    receivers: tuple[str, ...] = eqx.field(static=True)
    incident: float | tuple[str, ...] = eqx.field(static=True)

    def __init__(self, receivers: tuple[str, ...], incident: float | str | tuple[str, ...] = 1.0):
        require(len(receivers) >= 1, "AbsorptionEfficiency: name at least one receiver")
        self.receivers = tuple(receivers)
        if isinstance(incident, str):
            incident = (incident,)
        if not isinstance(incident, tuple):
            incident = float(incident)
            require(0 < incident <= 1, f"AbsorptionEfficiency: incident={incident} must lie in (0, 1]")
        self.incident = incident

    def __call__(self, result: Result, network: Network) -> Float[Array, ""]:
        caught = result.final_population(*self.receivers)
        if isinstance(self.incident, float):
            return caught / self.incident
        values = network.parameters()
        arriving = jnp.prod(jnp.stack([jnp.real(values[n]) for n in self.incident]))
        return caught / arriving


class WFidelity(AbstractMetric):
    r"""Fidelity `F = <W|ρ|W>` of the final single-excitation state with a W target.

    `|W> = Σ_j w_j |1_j>` over the named emitters. With `free_phase` a group of names whose
    common phase `χ` is a known local phase (docs/theory.md section 5), `F` is maximised over it in
    closed form: with `W = W_1 + e^{iχ} W_2`,

        max_χ F = <W_1|ρ|W_1> + <W_2|ρ|W_2> + 2 |<W_1|ρ|W_2>|.

    Needs a representation with a density matrix on the 0/1-excitation sector ('sector') or
    single-excitation amplitudes ('delay').

    **Arguments:**

    - `target`: `{emitter: amplitude}` (normalised to 1 here).
    - `free_phase`: names in `target` whose joint phase is free (empty: fixed target).
    """

    names: tuple[str, ...] = eqx.field(static=True)
    amplitudes: tuple[complex, ...] = eqx.field(static=True)
    free_phase: tuple[str, ...] = eqx.field(static=True)

    def __init__(self, target: Mapping[str, complex], free_phase: tuple[str, ...] = ()):
        require(len(target) >= 1, "WFidelity: target must name at least one emitter")
        amps = np.asarray([complex(a) for a in target.values()])
        norm = float(np.sqrt(np.sum(np.abs(amps) ** 2)))
        require(norm > 0, "WFidelity: target amplitudes are all zero")
        unknown = [n for n in free_phase if n not in target]
        require(not unknown, f"WFidelity: free_phase names {unknown} are not in the target")
        self.names = tuple(target)
        self.amplitudes = tuple(complex(a) for a in amps / norm)
        self.free_phase = tuple(free_phase)

    def __call__(self, result: Result, network: Network) -> Float[Array, ""]:
        n = len(result.names)
        rho = self._reduced_state(result)
        index = [result.names.index(name) for name in self.names]
        w1 = jnp.zeros((n,), complex)
        w2 = jnp.zeros((n,), complex)
        for name, j, a in zip(self.names, index, self.amplitudes):
            if name in self.free_phase:
                w2 = w2.at[j].set(a)
            else:
                w1 = w1.at[j].set(a)
        f11 = jnp.real(jnp.vdot(w1, rho @ w1))
        f22 = jnp.real(jnp.vdot(w2, rho @ w2))
        f12 = jnp.vdot(w1, rho @ w2)
        if self.free_phase:
            return f11 + f22 + 2 * jnp.abs(f12)
        return f11 + f22 + 2 * jnp.real(f12)

    @staticmethod
    def _reduced_state(result: Result):
        n = len(result.names)
        if result.representation == "sector":
            state = result.final_state
            require(
                state.shape == (n + 1, n + 1),
                "WFidelity: the final state is not on the 0/1-excitation sector; simulate with "
                "representation='sector' and max_excitations=1",
            )
            return state[1:, 1:]
        require(
            result.amplitudes is not None,
            f"WFidelity: the {result.representation!r} representation gives no single-excitation "
            "state; use representation='sector' or 'delay'",
        )
        c = result.amplitudes[-1]
        return jnp.outer(c, jnp.conj(c))


class Directionality(AbstractMetric):
    """`m = N_f / (N_f + N_b)`: the share of the emitted photon leaving through the forward end
    (channels `'right'` and `'left'` by default)."""

    forward: str = eqx.field(static=True, default="right")
    backward: str = eqx.field(static=True, default="left")

    def __call__(self, result: Result, network: Network) -> Float[Array, ""]:
        f, b = result.emitted(self.forward), result.emitted(self.backward)
        return f / (f + b)


class Output(AbstractMetric):
    """`m = Σ_k N_k(t_1)`: the photon number that left through the named channels."""

    channels: tuple[str, ...] = eqx.field(static=True)

    def __init__(self, *channels: str):
        require(len(channels) >= 1, "Output: name at least one channel")
        self.channels = tuple(channels)

    def __call__(self, result: Result, network: Network) -> Float[Array, ""]:
        return sum(result.emitted(channel) for channel in self.channels)


class TotalOutput(AbstractMetric):
    """`m`: the photon number that left through every channel of the given kinds ('end',
    'loss', 'decay', ...)."""

    kinds: tuple[str, ...] = eqx.field(static=True, default=("end",))

    def __call__(self, result: Result, network: Network) -> Float[Array, ""]:
        return result.total_output(self.kinds)


class ConservationError(AbstractMetric):
    """`m = |emitters + outputs + in flight - initial|` at the end (a check, not a goal)."""

    def __call__(self, result: Result, network: Network) -> Float[Array, ""]:
        return result.conservation_error


class InFlight(AbstractMetric):
    """`m`: the excitation still travelling on delayed links at the end."""

    def __call__(self, result: Result, network: Network) -> Float[Array, ""]:
        return result.in_flight[-1]


class StorageWFidelity(AbstractMetric):
    """`w_fidelity` of the storage qubits of two modules (`first`, `second`) for a photon
    travelling in `direction`, maximised over the known local phase (module docstring)."""

    first: tuple[str, ...] = eqx.field(static=True)
    second: tuple[str, ...] = eqx.field(static=True)
    direction: str = eqx.field(static=True)

    def __init__(self, first: Sequence[str], second: Sequence[str], direction: str):
        require(direction in ("right", "left"), f"StorageWFidelity: direction {direction!r}; use 'right' or 'left'")
        self.first, self.second, self.direction = tuple(first), tuple(second), direction

    def __call__(self, result: Result, network: Network) -> Float[Array, ""]:
        return w_fidelity(result, self.first, self.second, self.direction)
