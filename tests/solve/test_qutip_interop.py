"""QuTiP in and out: states and expectation values of a small cascaded network against
`qutip.mesolve` on the same physics written independently in QuTiP, operators and SLH
components from NumPy arrays and `Qobj`s, basis labels.

The network: two qubits on a chiral line (all emission to the right, rates g_a and g_b, no
delay, no phase), each with T1 decay gd and pure dephasing D[sqrt(gphi/2) sigma_z]. Its master
equation is the cascade (Gough and James): L = sqrt(g_a) a + sqrt(g_b) b,
H = -(i/2) sqrt(g_a g_b) (b^dag a - a^dag b). Both solvers at tight tolerances agree to 1e-8.
"""

from __future__ import annotations

import numpy as np
import pytest

import chiraljax as cj

qutip = pytest.importorskip("qutip")

GA, GB, GD, GPHI = 1.0, 0.7, 0.02, 0.05
TS = np.linspace(0.0, 6.0, 13)


def _network() -> cj.Network:
    emitters = [cj.Emitter("a", decay=GD, dephasing=GPHI), cj.Emitter("b", decay=GD, dephasing=GPHI)]
    ports = [cj.Port("pa", "a", 0, GA, right_fraction=1.0), cj.Port("pb", "b", 1, GB, right_fraction=1.0)]
    return cj.Network(emitters, ports, initial={"a": 0.8, "b": 0.6j})


def _qutip_reference(e_ops):
    a = qutip.tensor(qutip.destroy(2), qutip.qeye(2))
    b = qutip.tensor(qutip.qeye(2), qutip.destroy(2))
    H = -0.5j * np.sqrt(GA * GB) * (b.dag() * a - a.dag() * b)
    c_ops = [
        np.sqrt(GA) * a + np.sqrt(GB) * b,
        np.sqrt(GD) * a,
        np.sqrt(GD) * b,
        np.sqrt(GPHI / 2) * (2 * a.dag() * a - 1),
        np.sqrt(GPHI / 2) * (2 * b.dag() * b - 1),
    ]
    psi0 = 0.8 * qutip.tensor(qutip.basis(2, 1), qutip.basis(2, 0)) + 0.6j * qutip.tensor(
        qutip.basis(2, 0), qutip.basis(2, 1)
    )
    options = {"atol": 1e-12, "rtol": 1e-10, "store_states": True}
    return qutip.mesolve(H, psi0 * psi0.dag(), TS, c_ops, e_ops=e_ops, options=options)


E_OPS = {
    "sz_a": qutip.tensor(qutip.sigmaz(), qutip.qeye(2)),
    "coherence": qutip.tensor(qutip.create(2), qutip.destroy(2)),
    "n_b": qutip.tensor(qutip.qeye(2), qutip.num(2)),
}


@pytest.fixture(scope="module")
def reference():
    return _qutip_reference(list(E_OPS.values()))


@pytest.mark.parametrize(
    "method", [cj.Sector(rtol=1e-10, atol=1e-12), cj.Full(rtol=1e-10, atol=1e-12)], ids=["sector", "full"]
)
def test_states_and_expectations_match_mesolve(method, reference):
    result = cj.simulate(_network(), (0.0, 6.0), ts=TS, method=method, e_ops=E_OPS, save_states=True)
    for k, t in enumerate(TS):
        state = result.to_qobj(k)
        assert state.dims == [[2, 2], [2, 2]]
        np.testing.assert_allclose(state.full(), reference.states[k].full(), atol=1e-8, err_msg=f"t = {t}")
    for (name, values), expected in zip(result.expect.items(), reference.expect):
        np.testing.assert_allclose(np.asarray(values), expected, atol=1e-8, err_msg=name)
    # e_ops agree with the populations the solver reports
    np.testing.assert_allclose(np.real(result.expect["n_b"]), result.population("b"), atol=1e-12)
    np.testing.assert_allclose(result.to_qobj().full(), result.to_qobj(len(TS) - 1).full(), atol=1e-12)


def test_operators_in_the_simulation_basis_and_labels():
    result = cj.simulate(
        _network(), (0.0, 2.0), n_save=5, representation="sector", e_ops=[np.diag([0.0, 1.0, 0.0])]
    )  # |10><10|: a excited, in the sector basis
    assert result.basis_labels == ("00", "10", "01")
    np.testing.assert_allclose(np.real(result.expect[:, 0]), result.population("a"), atol=1e-12)
    sector = result.to_qobj(full=False)
    assert sector.dims == [[3], [3]] and abs(sector.tr() - 1.0) < 1e-9
    with pytest.raises(cj.ValidationError, match="only the final state was kept"):
        result.to_qobj(0)
    with pytest.raises(cj.ValidationError, match="dims \\[\\[2\\], \\[2\\]\\] does not act on"):
        cj.simulate(_network(), (0.0, 1.0), e_ops=[qutip.sigmaz()])
    with pytest.raises(cj.ValidationError, match="fits neither"):
        cj.simulate(_network(), (0.0, 1.0), e_ops=[np.eye(5)])
    with pytest.raises(cj.ValidationError, match="delay representation"):
        cj.simulate(_network(), (0.0, 1.0), representation="delay", save_states=True)


def test_slh_components_from_qobj_and_arrays():
    """A cavity-free SLH component given as Qobj and NumPy matrices equals the one built from
    Operators."""
    space = cj.Space.qubits(["q"])
    sm = space.destroy("q")
    from_operators = cj.SLH(
        [[1.0]], [cj.Operator.constant(space, np.sqrt(0.5) * sm)], cj.Operator.constant(space, 0.3 * sm.conj().T @ sm)
    )
    from_qobj = cj.SLH([[1.0]], [np.sqrt(0.5) * qutip.destroy(2)], 0.3 * qutip.num(2), space=space)
    from_numpy = cj.SLH([[1.0]], [np.sqrt(0.5) * sm], 0.3 * sm.conj().T @ sm, space=space)
    for other in (from_qobj, from_numpy):
        for mine, theirs in zip([from_operators.H, *from_operators.L], [other.H, *other.L]):
            np.testing.assert_allclose(sum(t.matrix for t in mine.terms), sum(t.matrix for t in theirs.terms))
