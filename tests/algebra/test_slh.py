"""The SLH algebra against independent formulas (docs/theory.md section 1), on random operators.

Every operator is a random dense matrix on a random small `Space`, wrapped with
`Operator.constant`, optionally weighted by a random smooth function of time; generators and
matrices are compared at a few times to 1e-12.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import chiraljax as cj

TOL = 1e-12
TIMES = (0.0, 0.37, 1.9)


def random_space(rng) -> cj.Space:
    """A random composite of qubits and qutrits; all of dimension 6, so that the eager JAX
    kernels compiled for one shape serve every seed."""
    dims = [(2, 3), (3, 2), (6,)][int(rng.integers(3))]
    return cj.Space(tuple(f"s{j}" for j in range(len(dims))), dims)


def random_matrix(rng, dim: int, scale: float = 1.0) -> np.ndarray:
    return scale * (rng.normal(size=(dim, dim)) + 1j * rng.normal(size=(dim, dim)))


def random_hermitian(rng, dim: int) -> np.ndarray:
    m = random_matrix(rng, dim)
    return 0.5 * (m + m.conj().T)


def random_unitary(rng, n: int) -> np.ndarray:
    q, r = np.linalg.qr(random_matrix(rng, n))
    return q * (np.diag(r) / np.abs(np.diag(r)))


class Smooth:
    """A random smooth complex coefficient c(t) = a + b sin(w t + p) (a callable of time)."""

    def __init__(self, rng):
        self.a, self.b = rng.normal(size=2) + 1j * rng.normal(size=2)
        self.w, self.p = rng.uniform(0.5, 3.0), rng.uniform(0, 2 * np.pi)

    def __call__(self, t):
        return self.a + self.b * jnp.sin(self.w * t + self.p)

    def value(self, t) -> complex:
        return complex(self.a + self.b * np.sin(self.w * t + self.p))


class RandomOp:
    """A random operator, time dependent when `timed` (a real coefficient for a Hermitian one):
    `op` is its chiraljax form and `value(t)` its NumPy matrix at time t."""

    def __init__(self, rng, space: cj.Space, *, hermitian: bool = False, timed: bool = False):
        self.matrix = random_hermitian(rng, space.dim) if hermitian else random_matrix(rng, space.dim, 0.5)
        if not timed:
            self.coefficient = None
        elif hermitian:
            w = rng.uniform(0.5, 2.0)
            self.coefficient = lambda t: 1.0 + 0.5 * jnp.cos(w * t)
        else:
            self.coefficient = Smooth(rng)
        self.op = cj.Operator.constant(space, self.matrix, self.coefficient or 1.0)

    def value(self, t) -> np.ndarray:
        if self.coefficient is None:
            return self.matrix
        return complex(self.coefficient(t)) * self.matrix


def random_component(rng, space: cj.Space, channels: int = 1, *, timed: bool = True):
    """A random SLH component with its NumPy (S, [L_k(t)], H(t))."""
    S = random_unitary(rng, channels)
    Ls = [RandomOp(rng, space, timed=timed) for _ in range(channels)]
    H = RandomOp(rng, space, hermitian=True, timed=timed)
    g = cj.SLH(S, [x.op for x in Ls], H.op)
    return g, S, (lambda t: [x.value(t) for x in Ls]), H.value


def dissipator(L: np.ndarray, rho: np.ndarray) -> np.ndarray:
    LdL = L.conj().T @ L
    return L @ rho @ L.conj().T - 0.5 * (LdL @ rho + rho @ LdL)


def random_density(rng, dim: int) -> np.ndarray:
    m = random_matrix(rng, dim)
    rho = m @ m.conj().T
    return rho / np.trace(rho)


def evaluate(build):
    """Run `build()` (chiraljax algebra returning arrays) as one compiled program: cheaper than
    dispatching each small operation eagerly."""
    return jax.tree_util.tree_map(np.asarray, jax.jit(build)())


def sample(g: cj.SLH, times=TIMES) -> dict:
    """S, L_k(t) and H(t) of a component at the given times."""
    return {"S": g.S, "L": [[op(t) for op in g.L] for t in times], "H": [g.H(t) for t in times]}


def assert_same_slh(build) -> None:
    """`build()` returns two SLH components that must be equal at every time in TIMES."""
    a, b = evaluate(lambda: [sample(g) for g in build()])
    assert len(a["L"][0]) == len(b["L"][0])
    jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(x, y, atol=TOL, rtol=0), a, b)


SEEDS = range(4)


@pytest.mark.parametrize("seed", SEEDS)
def test_series_equals_cascaded_master_equation_with_loss_and_phase(seed):
    """A -> link(eta, theta) -> B built from series products equals the Gardiner/Carmichael
    cascaded generator

        -i[H_A + H_B, rho] + D[L_A] rho + D[L_B] rho + c [L_A rho, L_B^dag] + c^* [L_B, rho L_A^dag],

    c = sqrt(eta) e^{i theta}, for random, time-dependent, non-commuting L_A, L_B, H_A, H_B;
    also the outputs L_B + c L_A and sqrt(1 - eta) L_A (loss, up to a phase) and H of
    docs/theory.md section 1."""
    rng = np.random.default_rng(seed)
    space = random_space(rng)
    LA, LB = RandomOp(rng, space, timed=True), RandomOp(rng, space, timed=True)
    HA, HB = RandomOp(rng, space, hermitian=True, timed=True), RandomOp(rng, space, hermitian=True)
    eta, theta = (1.0, 0.0) if seed == 0 else (rng.uniform(0.05, 0.95), rng.uniform(-np.pi, np.pi))
    rhos = [random_density(rng, space.dim) for _ in TIMES]

    def build():
        one = cj.SLH.trivial(space, 1)
        ga = cj.concat(cj.SLH.emitter(space, LA.op, HA.op), one)
        gb = cj.concat(cj.SLH.emitter(space, LB.op, HB.op), one)
        link = cj.beam_splitter(space, eta) << cj.concat(cj.phase_shifter(space, theta), one)
        total = gb << link << ga
        return sample(total), [total.lindblad_rhs(t, rho) for t, rho in zip(TIMES, rhos)]

    got, rhs = evaluate(build)
    c = np.sqrt(eta) * np.exp(1j * theta)
    for i, (t, rho) in enumerate(zip(TIMES, rhos)):
        la, lb, h = LA.value(t), LB.value(t), HA.value(t) + HB.value(t)
        expected = (
            -1j * (h @ rho - rho @ h)
            + dissipator(la, rho)
            + dissipator(lb, rho)
            + c * (la @ rho @ lb.conj().T - lb.conj().T @ la @ rho)
            + np.conj(c) * (lb @ rho @ la.conj().T - rho @ la.conj().T @ lb)
        )
        np.testing.assert_allclose(rhs[i], expected, atol=TOL * max(1.0, np.abs(expected).max()), rtol=0)
        np.testing.assert_allclose(got["L"][i][0], lb + c * la, atol=TOL, rtol=0)
        np.testing.assert_allclose(np.abs(got["L"][i][1]), np.sqrt(1 - eta) * np.abs(la), atol=TOL, rtol=0)
        h_expected = h + (np.sqrt(eta) / 2j) * (
            np.exp(1j * theta) * lb.conj().T @ la - np.exp(-1j * theta) * la.conj().T @ lb
        )
        np.testing.assert_allclose(got["H"][i], h_expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("seed", SEEDS)
def test_series_product_formula(seed):
    """G2 <| G1 = (S2 S1, L2 + S2 L1, H1 + H2 + (1/2i)(L2^dag S2 L1 - L1^dag S2^dag L2)) for
    two-channel components with random unitary S and time-dependent L, H."""
    rng = np.random.default_rng(100 + seed)
    space = random_space(rng)
    g1, S1, L1, H1 = random_component(rng, space, 2)
    g2, S2, L2, H2 = random_component(rng, space, 2)
    got = evaluate(lambda: sample(cj.series(g2, g1)))
    np.testing.assert_allclose(got["S"], S2 @ S1, atol=TOL)
    for i, t in enumerate(TIMES):
        l1, l2 = L1(t), L2(t)
        s2l1 = [sum(S2[k, m] * l1[m] for m in range(2)) for k in range(2)]
        for k in range(2):
            np.testing.assert_allclose(got["L"][i][k], l2[k] + s2l1[k], atol=TOL, rtol=0)
        cross = sum(l2[k].conj().T @ s2l1[k] for k in range(2))
        np.testing.assert_allclose(got["H"][i], H1(t) + H2(t) + (cross - cross.conj().T) / 2j, atol=TOL, rtol=0)


@pytest.mark.parametrize("seed", SEEDS)
def test_feedback_of_concatenation_reproduces_series(seed):
    """Feeding G1's output into G2's input in G1 [+] G2 (output 0 -> input 1), or in G2 [+] G1
    (output 1 -> input 0), gives the series product G2 <| G1."""
    rng = np.random.default_rng(200 + seed)
    space = random_space(rng)
    g1 = random_component(rng, space, 1)[0]
    g2 = random_component(rng, space, 1)[0]
    assert_same_slh(lambda: (cj.feedback(cj.concat(g1, g2), output=0, input=1), cj.series(g2, g1)))
    assert_same_slh(lambda: (cj.feedback(cj.concat(g2, g1), output=1, input=0), cj.series(g2, g1)))


def test_feedback_general_formula():
    """Gough-James reduction of a random 3-channel component against the formula in NumPy;
    the reduced S stays unitary."""
    rng = np.random.default_rng(7)
    space = random_space(rng)
    g, S, Lf, Hf = random_component(rng, space, 3)
    k, l = 2, 0
    red = evaluate(lambda: sample(cj.feedback(g, output=k, input=l)))
    inv = 1.0 / (1.0 - S[k, l])
    rows, cols = [0, 1], [1, 2]
    S_red = S[np.ix_(rows, cols)] + inv * np.outer(S[rows, l], S[k, cols])
    np.testing.assert_allclose(red["S"], S_red, atol=TOL)
    np.testing.assert_allclose(red["S"].conj().T @ red["S"], np.eye(2), atol=1e-10)
    for i, t in enumerate(TIMES):
        L = Lf(t)
        for a, r in enumerate(rows):
            np.testing.assert_allclose(red["L"][i][a], L[r] + S[r, l] * inv * L[k], atol=TOL, rtol=0)
        acc = sum(L[j].conj().T * S[j, l] for j in range(3)) @ L[k] * inv
        np.testing.assert_allclose(red["H"][i], Hf(t) + (acc - acc.conj().T) / 2j, atol=TOL, rtol=0)


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_associativity(seed):
    """(G3 <| G2) <| G1 = G3 <| (G2 <| G1) and (G1 [+] G2) [+] G3 = G1 [+] (G2 [+] G3), for random
    components and for the three factors of a lossy link."""
    rng = np.random.default_rng(300 + seed)
    space = random_space(rng)
    g1, g2, g3 = (random_component(rng, space, 2)[0] for _ in range(3))
    assert_same_slh(lambda: (cj.series(cj.series(g3, g2), g1), cj.series(g3, cj.series(g2, g1))))
    h1, h2, h3 = (random_component(rng, space, n)[0] for n in (1, 2, 1))
    assert_same_slh(lambda: (cj.concat(cj.concat(h1, h2), h3), cj.concat(h1, cj.concat(h2, h3))))
    assert_same_slh(lambda: (cj.concat(h1, h2, h3), cj.concat(h1, cj.concat(h2, h3))))
    a = random_component(rng, space, 1)[0]

    def link_groupings():
        one = cj.SLH.trivial(space, 1)
        a2 = cj.concat(a, one)
        bs, ps = cj.beam_splitter(space, 0.3), cj.concat(cj.phase_shifter(space, 0.8), one)
        return (bs << ps) << a2, bs << (ps << a2)

    assert_same_slh(link_groupings)


def test_beam_splitter_and_phase_shifter():
    """S of the beam splitter, the phase shifter and their series product; all unitary."""
    space = cj.Space.qubits(["q"])
    eta, theta = 0.36, 0.7
    bs = cj.beam_splitter(space, eta)
    np.testing.assert_allclose(np.asarray(bs.S), [[0.6, -0.8], [0.8, 0.6]], atol=TOL)
    ps = cj.phase_shifter(space, theta)
    np.testing.assert_allclose(np.asarray(ps.S), [[np.exp(1j * theta)]], atol=TOL)
    link = bs << cj.concat(ps, cj.SLH.trivial(space, 1))
    expected = np.array([[0.6 * np.exp(1j * theta), -0.8], [0.8 * np.exp(1j * theta), 0.6]])
    s = np.asarray(link.S)
    np.testing.assert_allclose(s, expected, atol=TOL)
    np.testing.assert_allclose(s.conj().T @ s, np.eye(2), atol=TOL)
    assert all(op.is_zero for op in link.L) and link.H.is_zero
    np.testing.assert_allclose(np.asarray(cj.beam_splitter(space, 1.0).S), np.eye(2), atol=TOL)


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_time_dependent_series_is_pointwise(seed):
    """With random callables as coefficients the series product at time t equals the series
    product of the components frozen at t (constant operators), generator included."""
    rng = np.random.default_rng(400 + seed)
    space = random_space(rng)
    LA, LB = RandomOp(rng, space, timed=True), RandomOp(rng, space, timed=True)
    HA = RandomOp(rng, space, hermitian=True, timed=True)
    times = (0.0, 0.61, 2.4, 5.0)
    rhos = [random_density(rng, space.dim) for _ in times]
    values = [(LA.value(t), LB.value(t), HA.value(t)) for t in times]

    def build():
        g = cj.SLH.emitter(space, LB.op) << cj.SLH.emitter(space, LA.op, HA.op)
        out = []
        for t, rho, (la, lb, ha) in zip(times, rhos, values):
            frozen = cj.SLH.emitter(space, cj.Operator.constant(space, lb)) << cj.SLH.emitter(
                space, cj.Operator.constant(space, la), cj.Operator.constant(space, ha)
            )
            out.append(
                (
                    (g.L[0](t), g.H(t), g.lindblad_rhs(t, rho)),
                    (frozen.L[0](0.0), frozen.H(0.0), frozen.lindblad_rhs(0.0, rho)),
                )
            )
        return out

    for timed, frozen in evaluate(build):
        for x, y in zip(timed, frozen):
            np.testing.assert_allclose(x, y, atol=10 * TOL, rtol=0)
