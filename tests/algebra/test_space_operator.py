"""Spaces (full and excitation-sector bases) and the `Operator` container.

Pure NumPy checks: sizes of the sector bases, lowering operators built directly in a sector
equal to the full-space ones restricted to the sector states, and the ordering conventions
(|G>, |1_0>, |1_1>, ... for k = 1; QuTiP's tensor order for the full space).
"""

from __future__ import annotations

import itertools
from math import comb

import numpy as np
import pytest
import qutip

import chiraljax as cj
from chiraljax import ValidationError


def sector_rows(sector: cj.Space, full: cj.Space) -> np.ndarray:
    """Index in `full` of each basis state of `sector` (same subsystems)."""
    return np.array([full.index(tuple(occ)) for occ in sector.basis])


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_single_excitation_sector_has_n_plus_one_states(n):
    space = cj.Space.qubits([f"q{j}" for j in range(n)], max_excitations=1)
    assert space.dim == n + 1
    # ordering: |G>, then subsystem j excited at index 1 + j
    assert space.basis[0].sum() == 0
    for j in range(n):
        expected = np.zeros(n, dtype=int)
        expected[j] = 1
        np.testing.assert_array_equal(space.basis[1 + j], expected)
        assert space.index(tuple(expected)) == 1 + j


@pytest.mark.parametrize("n,k", [(3, 0), (3, 2), (4, 2), (5, 3), (6, 6)])
def test_qubit_sector_sizes_are_binomial_sums(n, k):
    space = cj.Space.qubits([f"q{j}" for j in range(n)], max_excitations=k)
    assert space.dim == sum(comb(n, m) for m in range(k + 1))
    counts = np.bincount(space.excitation_numbers(), minlength=k + 1)
    np.testing.assert_array_equal(counts, [comb(n, m) for m in range(k + 1)])
    # ordered by total excitation number
    assert np.all(np.diff(space.excitation_numbers()) >= 0)


@pytest.mark.parametrize("dims,k", [((3, 3), 2), ((3, 2, 4), 3), ((3, 3, 3), 1), ((4, 4), 5)])
def test_transmon_sector_sizes_match_brute_force(dims, k):
    space = cj.Space(tuple(f"t{j}" for j in range(len(dims))), dims, max_excitations=k)
    brute = [occ for occ in itertools.product(*(range(d) for d in dims)) if sum(occ) <= k]
    assert space.dim == len(brute)
    assert sorted(map(tuple, space.basis)) == sorted(brute)


@pytest.mark.parametrize("dims,k", [((2, 2, 2), 1), ((2, 2, 2, 2), 2), ((3, 3), 2), ((3, 2, 3), 2), ((3, 3, 3), 4)])
def test_sector_destroy_equals_restricted_full_operator(dims, k):
    """a_j built in the sector = full-space a_j restricted to the sector states (exact because
    lowering never leaves the sector); same for number operators."""
    names = tuple(f"s{j}" for j in range(len(dims)))
    sector, full = cj.Space(names, dims, max_excitations=k), cj.Space(names, dims)
    rows = sector_rows(sector, full)
    for name in names:
        a_full = full.destroy(name)
        np.testing.assert_array_equal(sector.destroy(name), a_full[np.ix_(rows, rows)])
        np.testing.assert_array_equal(sector.number(name), full.number(name)[np.ix_(rows, rows)])
        # the restricted block is all there is: nothing leaks from the sector to outside
        outside = np.setdiff1d(np.arange(full.dim), rows)
        assert not np.any(a_full[np.ix_(outside, rows)])
        assert sector.conserves_excitations(sector.destroy(name), change=-1)


@pytest.mark.parametrize("dims", [(2, 2, 2), (3, 2), (2, 3, 4)])
def test_full_space_ordering_is_qutip_tensor_order(dims):
    """Full space: first subsystem most significant, as qutip.tensor."""
    names = tuple(f"s{j}" for j in range(len(dims)))
    full = cj.Space(names, dims)
    for j, name in enumerate(names):
        factors = [qutip.destroy(d) if i == j else qutip.qeye(d) for i, d in enumerate(dims)]
        np.testing.assert_allclose(full.destroy(name), qutip.tensor(*factors).full(), atol=0)
    occ = tuple(d - 1 for d in dims)
    ket = qutip.tensor(*(qutip.basis(d, n) for d, n in zip(dims, occ))).full().ravel()
    np.testing.assert_array_equal(full.basis_state(dict(zip(names, occ))), ket)


def test_transmon_matrix_elements():
    """<n-1| a |n> = sqrt(n) on a 3-level transmon, also inside a sector."""
    space = cj.Space(("t", "q"), (3, 2), max_excitations=2)
    a = space.destroy("t")
    for n in (1, 2):
        assert a[space.index((n - 1, 0)), space.index((n, 0))] == pytest.approx(np.sqrt(n))
    assert a[space.index((0, 1)), space.index((1, 1))] == pytest.approx(1.0)


def test_basis_state_and_lookup():
    space = cj.Space.qubits(["a", "b", "c"], max_excitations=1)
    np.testing.assert_array_equal(space.basis_state(), np.eye(4)[0])
    np.testing.assert_array_equal(space.basis_state({"b": 1}), np.eye(4)[2])
    assert space.subsystem("c") == 2 and space.subsystem(1) == 1
    with pytest.raises(ValidationError, match="not in this space"):
        space.index((1, 1, 0))
    with pytest.raises(ValidationError, match="unknown subsystem 'd'"):
        space.destroy("d")


def test_space_refuses_bad_arguments():
    with pytest.raises(ValidationError, match="names but"):
        cj.Space(("a", "b"), (2,))
    with pytest.raises(ValidationError, match="unique"):
        cj.Space(("a", "a"), (2, 2))
    with pytest.raises(ValidationError, match="at least 2 levels"):
        cj.Space(("a",), (1,))
    with pytest.raises(ValidationError, match="max_excitations"):
        cj.Space.qubits(["a"] * 1, max_excitations=-1)
    with pytest.raises(ValidationError, match="excitation sector"):
        cj.Space.qubits([f"q{j}" for j in range(20)])


def test_operator_algebra_matches_numpy():
    """Sums, products, adjoints and scaling of time-dependent operators (NumPy values)."""
    rng = np.random.default_rng(3)
    space = cj.Space.qubits(["a", "b"])
    m1, m2 = (rng.normal(size=(4, 4)) + 1j * rng.normal(size=(4, 4)) for _ in range(2))
    f = lambda t: 2.0 + np.sin(t)  # noqa: E731
    A = cj.Operator.constant(space, m1, f)
    B = cj.Operator.constant(space, m2, 0.5j)
    t = 0.8
    a, b = f(t) * m1, 0.5j * m2
    np.testing.assert_allclose(np.asarray((A + B)(t)), a + b, atol=1e-13)
    np.testing.assert_allclose(np.asarray((A @ B)(t)), a @ b, atol=1e-13)
    np.testing.assert_allclose(np.asarray((A @ B).dag()(t)), (a @ b).conj().T, atol=1e-13)
    np.testing.assert_allclose(np.asarray((A - B).scale(3.0)(t)), 3.0 * (a - b), atol=1e-13)
    # terms with the same monomial merge
    assert len((A + A).terms) == 1
    assert (A.scale(0)).is_zero and not A.is_constant and B.is_constant
