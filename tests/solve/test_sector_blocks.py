"""The sector kernel's block form of the Lindblad equation (`kernels._lindblad._ground_blocks`):
when every jump lands in the ground state and H leaves it alone, rho = [[g, c], [c^dag, X]]
evolves block by block, with H_eff's excited block and the jump vectors l_k. It must equal the
whole-matrix equation for any Hermitian rho (the ground coherences c included, which a
network's initial state never excites) and any dephasing rates."""

from __future__ import annotations

import numpy as np

from chiraljax.kernels._lindblad import _ground_blocks, _lindblad_given


def _random_case(seed: int, dim: int = 5, n_channels: int = 3):
    rng = np.random.default_rng(seed)
    n = dim - 1
    a = rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))
    h1 = a + a.conj().T  # a Hermitian excited-state Hamiltonian
    ls = rng.normal(size=(n_channels, n)) + 1j * rng.normal(size=(n_channels, n))
    psi = rng.normal(size=(2, dim)) + 1j * rng.normal(size=(2, dim))
    rho = sum(np.outer(p, p.conj()) for p in psi)
    rho /= np.trace(rho)
    gamma = rng.uniform(size=(dim, dim))
    gamma = gamma + gamma.T
    np.fill_diagonal(gamma, 0.0)
    return h1, ls, rho, gamma


def test_the_blocks_equal_the_whole_matrix_equation():
    for seed in range(3):
        h1, ls, rho, gamma = _random_case(seed)
        dim = rho.shape[0]
        # the whole matrix: H = 0 (+) H_1, L_k = |G><0 (+) l_k|
        h = np.zeros((dim, dim), complex)
        h[1:, 1:] = h1
        jumps = np.zeros((len(ls), dim, dim), complex)
        jumps[:, 0, 1:] = ls
        drho_ref, flux_ref = _lindblad_given(h, jumps, gamma, rho)
        # the blocks: the excited block of H_eff = H - (i/2) sum_k L_k^dag L_k, and the l_k
        h_eff = h1 - 0.5j * np.einsum("ki,kj->ij", ls.conj(), ls)
        drho, flux = _ground_blocks(h_eff, ls, gamma, rho)
        assert abs(rho[0, 1:]).max() > 0.05  # the coherences take part
        np.testing.assert_allclose(np.asarray(drho), np.asarray(drho_ref), atol=1e-12)
        np.testing.assert_allclose(np.asarray(flux), np.asarray(flux_ref), atol=1e-12)
        # trace preserving: what leaves the excited states arrives in the ground state
        assert abs(complex(np.trace(np.asarray(drho)))) < 1e-12
