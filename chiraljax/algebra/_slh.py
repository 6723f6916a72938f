"""The SLH algebra of cascaded open quantum systems (Gough and James 2009).

A component G = (S, L, H) has n input and output channels: S an n x n matrix of c-numbers
(unitary for a lossless component), L a column of n system operators and H a Hermitian
operator; with vacuum inputs the outputs are b_out = S b_in + L and the state obeys

    d rho/dt = -i [H, rho] + sum_k D[L_k] rho,    D[L] rho = L rho L^dag - {L^dag L, rho}/2.

The operators may depend on time (tunable couplers); every rule holds pointwise in t.

- series, G2 <| G1 (outputs of G1 feed G2):
  (S2 S1,  L2 + S2 L1,  H1 + H2 + (1/2i)(L2^dag S2 L1 - L1^dag S2^dag L2))
- concatenation, G1 [+] G2: (S1 (+) S2, (L1; L2), H1 + H2)
- feedback of output k into input l:
  S_red = Sbar + s_l (1 - S_kl)^-1 r_k,  L_red = Lbar + s_l (1 - S_kl)^-1 L_k,
  H_red = H + (1/2i)[(sum_j L_j^dag S_jl)(1 - S_kl)^-1 L_k - h.c.]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from chiraljax._checks import concrete, require
from chiraljax.algebra._operator import Operator
from chiraljax.algebra._space import Space


def is_known(x: Any) -> bool:
    """True when the value of x is known now (not traced)."""
    return concrete(x) is not None


def _as_operator(op: Any, space: Space, what: str) -> Operator:
    """An `Operator` as it is, a matrix or `qutip.Qobj` as a constant one on `space`."""
    if isinstance(op, Operator):
        return op
    from chiraljax.solve._qutip import operator_matrix

    return Operator.constant(space, operator_matrix(op, space, what))


class SLH:
    """An SLH component (S, L, H) on a `Space`.

    **Arguments:**

    - `S`: (n, n) scattering matrix of c-numbers (may hold traced values).
    - `L`: sequence of n operators, the coupling of the system to each channel.
    - `H`: the Hamiltonian.
    - `space`: the system's space; with it, `L` and `H` may also be NumPy arrays or
      `qutip.Qobj`s (constant operators on that space; see `chiraljax.solve._qutip.operator_matrix`),
      else they must be `Operator`s and the space is `H`'s.
    - `check_unitary`: refuse a non-unitary S (when its values are concrete).
    """

    __slots__ = ("S", "L", "H", "space")

    def __init__(
        self, S, L: Sequence[Operator], H: Operator, *, space: Space | None = None, check_unitary: bool = True
    ):
        if space is not None:
            H = _as_operator(H, space, "SLH: H")
            L = [_as_operator(op, space, f"SLH: L[{k}]") for k, op in enumerate(L)]
        S = jnp.asarray(S, dtype=complex)
        if S.ndim == 0:
            S = S.reshape(1, 1)
        L = tuple(L)
        require(S.ndim == 2 and S.shape[0] == S.shape[1], f"SLH: S must be a square matrix, got shape {S.shape}")
        require(
            S.shape[0] == len(L), f"SLH: S is {S.shape[0]} x {S.shape[0]} but L has {len(L)} entries; they must match"
        )
        for k, op in enumerate(L):
            require(isinstance(op, Operator), f"SLH: L[{k}] must be an Operator, got {type(op).__name__}")
            H._check(op)
        if check_unitary and is_known(S):
            s = np.asarray(S)
            require(
                np.allclose(s.conj().T @ s, np.eye(len(s)), atol=1e-9),
                "SLH: S is not unitary (S^dag S != 1); model loss with a beam splitter to a discarded channel",
            )
        self.S, self.L, self.H, self.space = S, L, H, H.space

    @property
    def channels(self) -> int:
        """Number of input/output channels n."""
        return len(self.L)

    @classmethod
    def trivial(cls, space: Space, channels: int = 1) -> SLH:
        """n channels passing through untouched: (1, 0, 0)."""
        zero = Operator.zero(space)
        return cls(jnp.eye(channels, dtype=complex), (zero,) * channels, zero)

    @classmethod
    def scatterer(cls, space: Space, S) -> SLH:
        """A static c-number component (S, 0, 0): beam splitters, phase shifters, circulators."""
        S = jnp.asarray(S, dtype=complex)
        S = S.reshape(1, 1) if S.ndim == 0 else S
        zero = Operator.zero(space)
        return cls(S, (zero,) * S.shape[0], zero)

    @classmethod
    def emitter(cls, space: Space, operator: Operator, hamiltonian: Operator | None = None) -> SLH:
        """A one-channel component (1, L, H)."""
        return cls(jnp.eye(1, dtype=complex), (operator,), hamiltonian or Operator.zero(space))

    def __lshift__(self, other: SLH) -> SLH:
        """`G2 << G1` is the series product G2 <| G1 (G1's outputs feed G2)."""
        return series(self, other)

    def __add__(self, other: SLH) -> SLH:
        """`G1 + G2` is the concatenation G1 [+] G2."""
        return concat(self, other)

    def output_operators(self) -> tuple[Operator, ...]:
        """L, the output fields' operator parts: b_out,k = sum_l S_kl b_in,l + L_k."""
        return self.L

    def jump_operators(self) -> tuple[Operator, ...]:
        """The Lindblad operators for vacuum inputs (one per channel)."""
        return self.L

    def effective_hamiltonian(self) -> Operator:
        """The no-jump generator H_eff = H - (i/2) sum_k L_k^dag L_k."""
        out = self.H
        for op in self.L:
            out = out + (op.dag() @ op).scale(-0.5j)
        return out

    def lindblad_rhs(self, t, rho):
        """d rho/dt at time t for a dense density matrix on this space."""
        heff = self.effective_hamiltonian()(t)
        out = -1j * (heff @ rho - rho @ heff.conj().T)
        for op in self.L:
            l = op(t)
            out = out + l @ rho @ l.conj().T
        return out

    def __repr__(self) -> str:
        return f"SLH(channels={self.channels}, dim={self.space.dim})"


def _combine(ops: Sequence[Operator], weights, space: Space) -> Operator:
    """sum_j w_j ops_j with c-number weights (possibly traced)."""
    out = Operator.zero(space)
    for j, op in enumerate(ops):
        if op.is_zero:
            continue
        w = weights[j]
        if is_known(w) and np.asarray(w) == 0:
            continue
        out = out + op.scale(w)
    return out


def series(g2: SLH, g1: SLH) -> SLH:
    """The series product G2 <| G1: the outputs of G1 feed the inputs of G2.

    (S2 S1, L2 + S2 L1, H1 + H2 + (1/2i)(L2^dag S2 L1 - L1^dag S2^dag L2))."""
    require(
        g1.channels == g2.channels,
        f"series: G1 has {g1.channels} channels and G2 has {g2.channels}; pad with SLH.trivial or concat",
    )
    g1.H._check(g2.H)
    space = g1.space
    n = g1.channels
    s2_l1 = tuple(_combine(g1.L, g2.S[k], space) for k in range(n))
    L = tuple(g2.L[k] + s2_l1[k] for k in range(n))
    cross = Operator.zero(space)
    for k in range(n):
        cross = cross + (g2.L[k].dag() @ s2_l1[k])
    H = g1.H + g2.H + (cross - cross.dag()).scale(-0.5j)
    return SLH(g2.S @ g1.S, L, H, check_unitary=False)


def concat(*components: SLH) -> SLH:
    """Concatenation G1 [+] G2 [+] ...: channels side by side, S block diagonal."""
    require(len(components) >= 1, "concat: give at least one component")
    first = components[0]
    H = first.H
    L = list(first.L)
    for g in components[1:]:
        first.H._check(g.H)
        H = H + g.H
        L.extend(g.L)
    sizes = [g.channels for g in components]
    S = jnp.zeros((sum(sizes), sum(sizes)), dtype=complex)
    offset = 0
    for g, m in zip(components, sizes):
        S = S.at[offset : offset + m, offset : offset + m].set(g.S)
        offset += m
    return SLH(S, L, H, check_unitary=False)


def feedback(g: SLH, output: int, input: int) -> SLH:
    """Feed output channel `output` (k) back into input channel `input` (l).

    Gough and James (2009): with Sbar = S without row k and column l, s_l = column l of S without
    row k, r_k = row k of S without column l and Lbar = L without L_k,

        S_red = Sbar + s_l (1 - S_kl)^-1 r_k,  L_red = Lbar + s_l (1 - S_kl)^-1 L_k,
        H_red = H + (1/2i)[(sum_j L_j^dag S_jl)(1 - S_kl)^-1 L_k - h.c.].
    """
    n = g.channels
    k, l = int(output), int(input)
    require(0 <= k < n and 0 <= l < n, f"feedback: channels must lie in 0..{n - 1}, got output={k}, input={l}")
    require(n >= 2, "feedback: needs a component with at least two channels")
    S = g.S
    if is_known(S[k, l]):
        require(
            abs(complex(np.asarray(S[k, l])) - 1.0) > 1e-12,
            f"feedback: S[{k},{l}] = 1 makes the loop singular (1 - S_kl = 0)",
        )
    inv = 1.0 / (1.0 - S[k, l])
    rows = [i for i in range(n) if i != k]
    cols = [j for j in range(n) if j != l]
    s_l = S[jnp.array(rows), l]
    r_k = S[k, jnp.array(cols)]
    S_red = S[jnp.ix_(jnp.array(rows), jnp.array(cols))] + inv * jnp.outer(s_l, r_k)
    L_red = tuple(g.L[i] + g.L[k].scale(inv * s_l[a]) for a, i in enumerate(rows))
    acc = _combine([op.dag() for op in g.L], S[:, l], g.space)
    term = (acc @ g.L[k]).scale(inv)
    H_red = g.H + (term - term.dag()).scale(-0.5j)
    return SLH(S_red, L_red, H_red, check_unitary=False)


def beam_splitter(space: Space, transmission) -> SLH:
    """A two-channel beam splitter of power transmission eta:

        S = [[sqrt(eta), -sqrt(1 - eta)], [sqrt(1 - eta), sqrt(eta)]].

    Channel 0 carries the signal; channel 1 is the discarded (loss) port."""
    eta = jnp.asarray(transmission, dtype=float)
    if is_known(eta):
        require(
            0.0 <= float(np.asarray(eta)) <= 1.0,
            f"beam_splitter: transmission must lie in [0, 1] (a power ratio), got {float(np.asarray(eta))}",
        )
    a, b = jnp.sqrt(eta), jnp.sqrt(1.0 - eta)
    return SLH.scatterer(space, jnp.array([[a, -b], [b, a]], dtype=complex))


def phase_shifter(space: Space, phase) -> SLH:
    """A one-channel phase shift e^{i phase}."""
    return SLH.scatterer(space, jnp.exp(1j * jnp.asarray(phase, dtype=float)).reshape(1, 1))
