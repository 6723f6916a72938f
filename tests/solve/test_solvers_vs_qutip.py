"""The sector and full-space Lindblad solvers against each other and against QuTiP.

Random cascaded networks of three qubits on a bidirectional waveguide: a giant atom (q0, ports
at both ends), random rates, direction splits, link transmissions and phases, detunings, T1,
pure dephasing, a complex direct coupling, a time-dependent port rate and a time-dependent
coupling, and a random single-excitation initial state. One seed decouples q2 (a two-qubit
network). The QuTiP reference is built here from the physics (docs/theory.md sections 0-2), not from
chiraljax's SLH code:

    right-moving output  L_R = sum_p sqrt(f_p gamma_p) T(p -> right end) s_e(p)
    left-moving output   L_L = sum_p sqrt((1 - f_p) gamma_p) T(p -> left end) s_e(p)
    cascade Hamiltonian  (1/2i) sum_{p upstream of q} (A_pq s_e(q)^dag s_e(p) - h.c.),
                         A_pq = sqrt(g_p g_q) T(p -> q), T a product of sqrt(eta_l) e^{i phi_l}
    link loss            sqrt(1 - eta_l) x (the field arriving at link l), each direction
    T1, dephasing        sqrt(gamma') s_j,  sqrt(gamma_phi/2) sigma_z,j

Populations, output fluxes at 13 times and the final density matrix agree to 1e-6 (measured:
<= 2e-9). Four seeds run by default, twelve more with -m slow.
"""

from __future__ import annotations

import numpy as np
import pytest
import qutip

import chiraljax as cj

N_QUBITS = 3
PORT_EMITTER = (0, 1, 2, 0)  # ports left to right; q0 is a giant atom
WINDOW = (0.0, 6.0)
TS = np.linspace(*WINDOW, 13)
TOL = 1e-6


def draw(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    amps = rng.normal(size=N_QUBITS) + 1j * rng.normal(size=N_QUBITS)
    p = {
        "rate": rng.uniform(0.3, 1.5, size=len(PORT_EMITTER)),
        "right_fraction": rng.uniform(0.0, 1.0, size=len(PORT_EMITTER)),
        "eta": rng.uniform(0.3, 1.0, size=len(PORT_EMITTER) - 1),
        "phase": rng.uniform(-np.pi, np.pi, size=len(PORT_EMITTER) - 1),
        "detuning": rng.uniform(-0.5, 0.5, size=N_QUBITS),
        "decay": rng.uniform(0.0, 0.1, size=N_QUBITS),
        "dephasing": rng.uniform(0.0, 0.1, size=N_QUBITS),
        "coupling": complex(rng.normal(scale=0.3), rng.normal(scale=0.3)),
        "drive": (rng.uniform(1.0, 3.0), rng.uniform(0.5, 1.5)),  # port p1's rate profile (t0, sigma)
        "mod": (rng.uniform(1.0, 5.0), rng.uniform(0.8, 2.0)),  # the coupling's profile
        "initial": amps,
    }
    if seed == 3:  # q2 decoupled: a two-qubit network
        p["rate"][2], p["coupling"], p["initial"][2] = 0.0, 0.0, 0.0
    p["initial"] = p["initial"] / np.linalg.norm(p["initial"])
    return p


def gaussian(t, t0, sigma):
    return np.exp(-0.5 * ((t - t0) / sigma) ** 2)


def network(p: dict) -> cj.Network:
    names = [f"q{j}" for j in range(N_QUBITS)]
    emitters = [
        cj.Emitter(n, detuning=p["detuning"][j], decay=p["decay"][j], dephasing=p["dephasing"][j])
        for j, n in enumerate(names)
    ]
    ports = [
        cj.Port(
            f"p{k}",
            names[e],
            k,
            p["rate"][k],
            right_fraction=p["right_fraction"][k],
            control="drive" if k == 1 else None,
        )
        for k, e in enumerate(PORT_EMITTER)
    ]
    links = [cj.Link(transmission=p["eta"][l], phase=p["phase"][l]) for l in range(len(PORT_EMITTER) - 1)]
    controls = {"drive": cj.Gaussian(1.0, *p["drive"]), "mod": cj.Gaussian(1.0, *p["mod"])}
    return cj.Network(
        emitters,
        ports,
        links=links,
        controls=controls,
        couplings=[cj.Coupling("q1", "q2", p["coupling"], control="mod")],
        initial={n: p["initial"][j] for j, n in enumerate(names)},
    )


class Reference:
    """The master equation of `draw(seed)` in QuTiP, from the formulas in the module docstring."""

    def __init__(self, p: dict):
        self.p = p
        eye = [qutip.qeye(2)] * N_QUBITS
        self.s = [
            qutip.tensor(*(qutip.destroy(2) if i == j else eye[i] for i in range(N_QUBITS))).full()
            for j in range(N_QUBITS)
        ]
        self.n = [s.conj().T @ s for s in self.s]

    def transport(self, a: int, b: int) -> complex:
        """Amplitude factor of the links between ports a < b."""
        return np.prod([np.sqrt(self.p["eta"][l]) * np.exp(1j * self.p["phase"][l]) for l in range(a, b)])

    def profiles(self, t) -> tuple[float, float]:
        """(sqrt of port p1's rate profile, the coupling's profile) at time t."""
        return np.sqrt(gaussian(t, *self.p["drive"])), gaussian(t, *self.p["mod"])

    def operators(self, root: float, mod: float) -> tuple[np.ndarray, dict]:
        """H and the Lindblad operators when port p1's rate profile is root^2 and the coupling's
        profile is mod."""
        p, s, P = self.p, self.s, len(PORT_EMITTER)
        scale = np.where(np.arange(P) == 1, root, 1.0)  # sqrt(gamma_p(t) / rate_p)
        rR = np.sqrt(p["rate"] * p["right_fraction"]) * scale  # sqrt(gamma_R)
        rL = np.sqrt(p["rate"] * (1 - p["right_fraction"])) * scale
        ops = {
            "right": sum(rR[k] * self.transport(k, P - 1) * s[e] for k, e in enumerate(PORT_EMITTER)),
            "left": sum(rL[k] * self.transport(0, k) * s[e] for k, e in enumerate(PORT_EMITTER)),
        }
        H = sum(p["detuning"][j] * self.n[j] for j in range(N_QUBITS))
        g = p["coupling"] * mod
        H = H + g * s[1].conj().T @ s[2] + np.conj(g) * s[2].conj().T @ s[1]
        for up in range(P):
            for down in range(up + 1, P):
                eu, ed = PORT_EMITTER[up], PORT_EMITTER[down]
                T = self.transport(up, down)
                for A, a, b in ((rR[up] * rR[down] * T, eu, ed), (rL[up] * rL[down] * T, ed, eu)):
                    term = A * s[b].conj().T @ s[a]  # a emits, b receives downstream
                    H = H + (term - term.conj().T) / 2j
        for l in range(P - 1):
            arriving_r = sum(rR[k] * self.transport(k, l) * s[PORT_EMITTER[k]] for k in range(l + 1))
            arriving_l = sum(rL[k] * self.transport(l + 1, k) * s[PORT_EMITTER[k]] for k in range(l + 1, P))
            ops[f"loss:link{l}:R"] = np.sqrt(1 - p["eta"][l]) * arriving_r
            ops[f"loss:link{l}:L"] = np.sqrt(1 - p["eta"][l]) * arriving_l
        for j in range(N_QUBITS):
            ops[f"decay:q{j}"] = np.sqrt(p["decay"][j]) * s[j]
            ops[f"dephasing:q{j}"] = np.sqrt(p["dephasing"][j] / 2) * (2 * self.n[j] - np.eye(2**N_QUBITS))
        return H, ops

    def solve(self):
        """mesolve with the generator written as L0 + r(t) L1 + r(t)^2 L2 + m(t) L3 (r the square
        root of the rate profile, m the coupling profile): exact, since H and the L_k are
        polynomials of that degree in r and m, and fast, as no Python builds a matrix per step."""
        dims = [[2] * N_QUBITS, [2] * N_QUBITS]

        def generator(root, mod):
            H, ops = self.operators(root, mod)
            return qutip.liouvillian(qutip.Qobj(H, dims=dims), [qutip.Qobj(L, dims=dims) for L in ops.values()])

        L0, plus, minus = generator(0.0, 0.0), generator(1.0, 0.0), generator(-1.0, 0.0)
        L1, L2, L3 = (plus - minus) / 2, (plus + minus) / 2 - L0, generator(0.0, 1.0) - L0
        liouvillian = qutip.QobjEvo(
            [
                L0,
                [L1, lambda t: self.profiles(t)[0]],
                [L2, lambda t: self.profiles(t)[0] ** 2],
                [L3, lambda t: self.profiles(t)[1]],
            ]
        )
        at = TS[1]
        assert np.abs((liouvillian(at) - generator(*self.profiles(at))).full()).max() < 1e-12
        psi = sum(c * s.conj().T[:, 0] for c, s in zip(self.p["initial"], self.s))
        rho0 = qutip.Qobj(np.outer(psi, psi.conj()), dims=dims)
        result = qutip.mesolve(liouvillian, rho0, TS, options={"atol": 1e-12, "rtol": 1e-10, "nsteps": 100_000})
        states = [st.full() for st in result.states]
        pops = np.array([[np.trace(n @ r).real for n in self.n] for r in states])
        fluxes = {name: np.zeros(len(TS)) for name in ("right", "left", "loss:link1:R", "decay:q0")}
        for i, (r, t) in enumerate(zip(states, TS)):
            ops = self.operators(*self.profiles(t))[1]
            for name in fluxes:
                fluxes[name][i] = np.trace(ops[name] @ r @ ops[name].conj().T).real
        return pops, fluxes, states[-1]


def chiraljax_solve(p: dict, representation: str):
    return cj.simulate(network(p), WINDOW, ts=TS, representation=representation)


SEEDS = [0, 1, 2, 3] + [pytest.param(seed, marks=pytest.mark.slow) for seed in range(4, 16)]


@pytest.fixture(scope="module", params=SEEDS)
def case(request):
    p = draw(request.param)
    return p, Reference(p).solve(), chiraljax_solve(p, "sector"), chiraljax_solve(p, "full")


def test_sector_equals_full_space(case):
    _, _, sector, full = case
    np.testing.assert_allclose(np.asarray(sector.populations), np.asarray(full.populations), atol=TOL, rtol=0)
    for name in ("right", "left", "loss:link0:L", "decay:q1"):
        np.testing.assert_allclose(np.asarray(sector.flux(name)), np.asarray(full.flux(name)), atol=TOL, rtol=0)
        assert abs(float(sector.emitted(name)) - float(full.emitted(name))) < TOL
    assert float(sector.conservation_error) < TOL and float(full.conservation_error) < TOL


def test_both_solvers_equal_qutip(case):
    _, (pops, fluxes, final), sector, full = case
    for result in (sector, full):
        np.testing.assert_allclose(np.asarray(result.populations), pops, atol=TOL, rtol=0)
        for name, flux in fluxes.items():
            np.testing.assert_allclose(np.asarray(result.flux(name)), flux, atol=TOL, rtol=0)
    np.testing.assert_allclose(np.asarray(full.final_state), final, atol=TOL, rtol=0)
    # the sector state is the full one on |G>, |q0>, |q1>, |q2> (qubit 0 most significant)
    rows = [0] + [1 << (N_QUBITS - 1 - j) for j in range(N_QUBITS)]
    np.testing.assert_allclose(np.asarray(sector.final_state), final[np.ix_(rows, rows)], atol=TOL, rtol=0)


def test_cases_are_nontrivial(case):
    """The random networks do move excitation around (not a vacuous comparison)."""
    _, (pops, fluxes, _), _, _ = case
    assert pops[-1].sum() < 0.9 * pops[0].sum()
    assert max(np.abs(f).max() for f in fluxes.values()) > 1e-2
