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

from collections.abc import Sequence

import jax.numpy as jnp

from ._errors import require
from ._result import Result


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
