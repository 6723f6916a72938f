"""The sector kernel's block form of the Lindblad equation (`kernels._lindblad._ground_blocks`):
when every jump lands in the ground state and H leaves it alone, rho = [[g, c], [c^dag, X]]
evolves block by block, with H_eff's excited block and the jump vectors l_k. It must equal the
whole-matrix equation for any Hermitian rho (the ground coherences c included, which a
network's initial state never excites) and any dephasing rates."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import chiraljax as cj
from chiraljax.kernels._lindblad import _ground_blocks, _lindblad_given
from chiraljax.solve._simulate import markov_plan

SECTOR = cj.Sector(rtol=1e-10, atol=1e-12)


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


def _modulated_chain(values, phase: complex) -> cj.Network:
    """Four emitters on a chiral waveguide, A and B exchange-coupled with strength 0.3 phase
    times a sampled modulation (real or complex values)."""
    names = ("A", "B", "C", "D")
    return cj.Network(
        [cj.Emitter(n, detuning=0.1 * k) for k, n in enumerate(names)],
        [cj.Port(f"p{n}", n, k, 0.5 + 0.1 * k, right_fraction=1.0) for k, n in enumerate(names)],
        links=[cj.Link(phase=0.3 * k) for k in range(3)],
        couplings=[cj.Coupling("A", "B", 0.3 * phase, control="mod")],
        controls={"mod": cj.Sampled(np.linspace(0.0, 6.0, 7), values)},
        initial={"A": 1.0},
    )


def test_real_and_complex_time_factors_give_the_same_solve():
    """A network whose pulses are all real builds H(t) from real coefficients and the half of
    its matrices' block form that they need; one whose pulse is complex takes the whole
    block form. A modulation u(t) e^{i phi} moved from the pulse into the coupling strength is
    the same physics, so the two paths must agree, in the populations and in a gradient (by
    forward mode and by the discrete adjoint, whose reverse pass goes through the block form
    too)."""
    u = np.array([0.2, 1.0, 0.6, 1.3, 0.4, 0.9, 0.1])
    phase = np.exp(0.7j)
    real_net, complex_net = _modulated_chain(u, phase), _modulated_chain(u * phase, 1.0)
    for net, real in ((real_net, True), (complex_net, False)):
        plan = markov_plan(net, 1)
        assert plan.layout.time_factors.real(plan.model.time_pulses(net, (0.0, 6.0))) is real

    def populations(net, rate, method=SECTOR):
        res = cj.simulate(net.with_parameters({"ports.pA.rate": rate}), (0.0, 6.0), n_save=5, method=method)
        return jnp.stack([res.population(n) for n in ("A", "B", "C", "D")])

    np.testing.assert_allclose(populations(real_net, 0.5), populations(complex_net, 0.5), rtol=0, atol=1e-9)
    reverse = cj.Sector(rtol=1e-10, atol=1e-12, adjoint="reverse")
    grads = [
        jax.grad(lambda r, n=net, m=method: populations(n, r, m)[1, -1])(0.5)
        for net in (real_net, complex_net)
        for method in (SECTOR, reverse)
    ]
    assert abs(grads[0]) > 1e-3
    np.testing.assert_allclose(grads, grads[0], rtol=1e-7)
