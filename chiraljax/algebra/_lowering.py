"""A symbolic `LindbladModel` as the arrays a Lindblad kernel takes.

Every term of H or of a channel's L_k is a constant matrix A_t weighted by a product of
parameter atoms a (numbers of the network) and time factors f(t) (pulses). The kernel assembles

    H(t)   = sum_m  f_m(t) H_m,      H_m   = sum_{t in m} (prod_{i in t} a_i) A_t,
    L_k(t) = sum_w  f_kw(t) L_kw,    L_kw  = sum_{t in kw} (prod_{i in t} a_i) A_t,

from flat tables: the nonzero entries of the A_t (term, slot, row, column, value), the atom
indices of each term and the time-factor indices of each slot (a slot is an operator and a time
monomial). The tables are integer and complex arrays whose shapes depend on the network's
sizes, rounded up to buckets, so networks of different topology but similar size give arrays of
equal shapes and share one compiled kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
from jaxtyping import ArrayLike, Complex, Float, Int

from chiraljax.algebra._markov import LindbladModel, ParameterAtoms, TimeFactors
from chiraljax.algebra._operator import Operator, Symbol, factor_parts


class MarkovArrays(NamedTuple):
    """The numeric tables of a model (see the module docstring).

    - `term_atoms`: (T, wa) indices into (a, a^*, 1) of each term's atoms.
    - `entry_term`, `entry_slot`, `entry_row`, `entry_col`, `entry_value`: (E,) the nonzero
      matrix elements of all terms.
    - `slot_time`: (S, wt) indices into (f, f^*, 1) of each slot's time monomial: the
      Hamiltonian's slots, then the channels' (K W), then the L^dag L pairs' whose time
      monomial no Hamiltonian slot has.
    - `pair_index`: (K, W, W) the slot of H_eff that L_kw^dag L_kw' joins (a Hamiltonian slot
      with its time monomial f_kw^* f_kw', or one of the pair slots after them); used when
      every jump lands in the ground state.
    - `initial_index`: basis indices of the initial state's components.
    - `numbers`: (D, n_sub) occupation of each subsystem in each basis state.
    - `carries`: (K,) 1 for channels that carry an excitation away, 0 for dephasing.
    """

    term_atoms: Int[ArrayLike, "T wa"]
    entry_term: Int[ArrayLike, " E"]
    entry_slot: Int[ArrayLike, " E"]
    entry_row: Int[ArrayLike, " E"]
    entry_col: Int[ArrayLike, " E"]
    entry_value: Complex[ArrayLike, " E"]
    slot_time: Int[ArrayLike, "S wt"]
    pair_index: Int[ArrayLike, "K W W"]
    initial_index: Int[ArrayLike, " c"]
    numbers: Float[ArrayLike, "D n_sub"]
    carries: Float[ArrayLike, " K"]


class MarkovLayout(NamedTuple):
    """The static sizes of the tables: state dimension, Hamiltonian slots, channels, slots per
    channel, slots of L^dag L pairs whose time monomial no Hamiltonian slot has, whether every
    jump lands in the ground state, which the Hamiltonian leaves alone (L_k = |G><l_k|,
    H |G> = 0), and whether pure dephasing acts elementwise (sector) instead of through
    operators (full); `time_factors` says how the time factors follow from the pulses, `atoms`
    how the parameter atoms follow from the network's numbers."""

    dim: int
    n_h: int
    n_channels: int
    width: int
    n_pairs: int
    to_ground: bool
    sector: bool
    time_factors: TimeFactors
    atoms: Callable


def _bucket(n: int, quantum: int) -> int:
    return max(quantum, -(-n // quantum) * quantum)


def _split(fns: tuple) -> tuple[list[tuple[Symbol, bool]], list[tuple[Symbol, bool]]]:
    """A term's factors as (parameter atoms, time factors), each (symbol, conjugated)."""
    params, times = [], []
    for f in fns:
        s, conj = factor_parts(f)
        (params if s.kind == "param" else times).append((s, conj))
    return params, times


def lower(model: LindbladModel, sector: bool) -> tuple[MarkovArrays, MarkovLayout, tuple]:
    """The kernel tables of `model`: with `sector` the dephasing channels are left out (the
    kernel applies them elementwise); otherwise every channel is an operator.

    **Returns:** (arrays as NumPy, layout, the channels in kernel order)."""
    channels = model.photon_channels if sector else model.channels
    n_atoms, n_times = model.atoms.size, len(model.time_recipes)
    operators: list[Operator] = [model.hamiltonian] + [c.operator for c in channels]

    # time monomials of each operator -> slots
    monomials: list[list[tuple]] = []
    for op in operators:
        seen: list[tuple] = []
        for term in op.terms:
            key = tuple(sorted((s.index, c) for s, c in _split(term.fns)[1]))
            if key not in seen:
                seen.append(key)
        monomials.append(seen)
    n_h = _bucket(len(monomials[0]), 4)
    width = max([len(m) for m in monomials[1:]] + [1])
    n_slots = n_h + len(channels) * width

    def slot(op_index: int, w: int) -> int:
        return w if op_index == 0 else n_h + (op_index - 1) * width + w

    slot_keys = [()] * n_slots
    for i, keys in enumerate(monomials):
        for w, key in enumerate(keys):
            slot_keys[slot(i, w)] = key
    # Every jump lands in the ground state |G> = basis state 0 (L_k = |G><l_k|, l_k without a
    # |G> component) and the Hamiltonian leaves |G> alone: then the kernel works with the
    # vectors l_k and on the excited block of rho (`kernels._lindblad`).
    to_ground = (
        bool(sector)
        and all(not t.pattern[1:].any() and not t.pattern[:, 0].any() for c in channels for t in c.operator.terms)
        and all(not t.pattern[0].any() and not t.pattern[:, 0].any() for t in model.hamiltonian.terms)
    )
    # L_k^dag L_k = sum_{w, w'} f_kw^* f_kw' L_kw^dag L_kw' joins H_eff: each pair goes to the
    # Hamiltonian's slot of its time monomial, or to a slot of its own when H has none.
    pair_index = np.zeros((len(channels), width, width), dtype=np.int32)
    pairs: list[tuple] = []
    if to_ground:
        for k, keys in enumerate(monomials[1:]):
            for w, kw in enumerate(keys):
                for v, kv in enumerate(keys):
                    key = tuple(sorted([(i, not c) for i, c in kw] + list(kv)))
                    if key in monomials[0]:
                        pair_index[k, w, v] = monomials[0].index(key)
                        continue
                    if key not in pairs:
                        pairs.append(key)
                    pair_index[k, w, v] = n_h + pairs.index(key)
        n_pairs = _bucket(len(pairs), 4) if pairs else 0
        slot_keys += pairs + [()] * (n_pairs - len(pairs))
    else:
        n_pairs = 0
    wt = _bucket(max([len(k) for k in slot_keys] + [1]), 2)
    slot_time = np.full((len(slot_keys), wt), 2 * n_times, dtype=np.int32)
    for s, key in enumerate(slot_keys):
        for j, (index, conj) in enumerate(key):
            slot_time[s, j] = index + n_times * conj

    term_atoms, entries = [], []
    for i, op in enumerate(operators):
        for term in op.terms:
            params, times = _split(term.fns)
            key = tuple(sorted((s.index, c) for s, c in times))
            s = slot(i, monomials[i].index(key))
            rows, cols = np.nonzero(term.pattern)
            t = len(term_atoms)
            term_atoms.append([sym.index + n_atoms * conj for sym, conj in params])
            entries.extend((t, s, r, c, complex(term.matrix[r, c])) for r, c in zip(rows, cols))
    n_terms = _bucket(len(term_atoms), 16)
    wa = _bucket(max([len(a) for a in term_atoms] + [1]), 4)
    atoms_table = np.full((n_terms, wa), 2 * n_atoms, dtype=np.int32)
    for t, idx in enumerate(term_atoms):
        atoms_table[t, : len(idx)] = idx
    n_entries = _bucket(len(entries), 32)
    table = np.zeros((n_entries, 4), dtype=np.int32)
    values = np.zeros(n_entries, dtype=complex)
    if entries:
        table[: len(entries)] = np.array([e[:4] for e in entries], dtype=np.int32)
        values[: len(entries)] = [e[4] for e in entries]

    carries = np.array([c.kind != "dephasing" for c in channels], dtype=float)
    arrays = MarkovArrays(
        atoms_table,
        table[:, 0],
        table[:, 1],
        table[:, 2],
        table[:, 3],
        values,
        slot_time,
        pair_index,
        model.initial_index.astype(np.int32),
        model.space.basis.astype(float),
        carries,
    )
    layout = MarkovLayout(
        model.space.dim,
        n_h,
        len(channels),
        width,
        n_pairs,
        to_ground,
        bool(sector),
        model.time_roles,
        ParameterAtoms.evaluate,
    )
    return arrays, layout, tuple(channels)


def to_device(arrays: MarkovArrays) -> MarkovArrays:
    """The tables as JAX arrays (placed once, so a warm call transfers nothing; concrete even
    when the plan is made inside a trace)."""
    with jax.ensure_compile_time_eval():  # placed, not converted: no compilation per table
        return MarkovArrays(*(jax.device_put(np.asarray(a)) for a in arrays))
