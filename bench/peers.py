"""Peer solvers for the anchor problem (bench/ANCHOR_PROBLEM.md).

M chiral two-qubit modules on one bidirectional waveguide, Markov limit, one cascaded SLH
network per direction with a loss port at every inter-module link, T1 and pure dephasing on
every qubit. Module 1 emits a sech photon, module 2 absorbs it, modules 3..M are idle.
Reported value: P_transfer = population of module 2's two qubits at t = t1.

Everything here is built independently of chiraljax, in the full 2^N Hilbert space
(N = 2M qubits), so that the chiraljax numbers can be checked against it and timed beside it.

Construction (docs/theory.md sections 1-2, kappa = 1, hbar = 1):

- Ports along the waveguide: A_1, B_1, A_2, B_2, ..., A_M, B_M. Each port of module m couples
  with amplitude s_m(t) = sqrt(gamma_m(t) / 2) to each direction.
- Right-moving field: visits the ports left to right; phase e^{i phi} from A_m to B_m,
  power transmission eta (no phase) from B_m to A_{m+1}. Left-moving: right to left, phase
  e^{i phi} from B_m to A_m, eta from A_{m+1} to B_m.
- Series products: with F the field arriving at a port p (sum of the earlier ports' jump
  operators times their propagation factors) and L_p = s_m sigma_p, the port adds
  (1/2i)(L_p^dag F - F^dag L_p) to H and then F <- F + L_p. A link splits the field into
  sqrt(eta) F (travels on) and sqrt(1 - eta) F (a loss jump operator). What leaves the far end
  is the direction's output jump operator.
- In-module cancelling coupling g_m(t) (sigma_A^dag sigma_B + h.c.), g_m = -(gamma_m/2) sin(phi).
- T1: sqrt(gamma_1) sigma_j; dephasing: sqrt(gamma_phi / 2) sigma_z,j.

Every time-dependent jump operator is L(t) = sum_m s_m(t) X_m with constant X_m, and every
Hamiltonian term is s_m(t) s_n(t) H_mn, so the Liouvillian is sum_{m<=n} s_m s_n S_mn + S_const:
constant superoperators times scalar coefficients (that is the QuTiP 'fair' setup).

Usage:  python bench/peers.py [--big] [--plain] [--repeats K]
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import scipy.sparse as sp

# --------------------------------------------------------------------------------------
# problem definition
# --------------------------------------------------------------------------------------

P_REFERENCE = 0.577081321870  # converged P_transfer (the same for every M)


def anchor_parameters() -> dict:
    """Numbers of the anchor problem, in units of kappa = 1.

    Rates: module 1 (index 0) gamma_e(t) = (kappa/2)(1 + tanh(kappa t / 2)), module 2 (index 1)
    gamma_a(t) = (kappa/2)(1 - tanh(kappa t / 2)), modules 3..M gamma = 0. Every rate is the
    total of one port (half to each direction); both ports of a module share it.
    """
    return {
        "kappa": 1.0,
        "eta": 0.6,  # power transmission of every inter-module link
        "link_phase": 0.0,  # extra propagation phase on a link (Markov limit, delays shifted out)
        "phi": math.pi / 2,  # phase between A and B of a module (quarter wavelength)
        "gamma_1": 1e-3,  # T1 decay rate of every qubit
        "gamma_phi": 1e-3,  # pure dephasing: D[sqrt(gamma_phi / 2) sigma_z]
        "t0": -12.0,
        "t1": 12.0,
        "emitter_module": 0,
        "absorber_module": 1,
        "rate_emitter": "(kappa/2) * (1 + tanh(kappa t / 2))",
        "rate_absorber": "(kappa/2) * (1 - tanh(kappa t / 2))",
        "rate_idle": 0.0,
        "cancel_coupling": "g_m(t) = -(gamma_m(t) / 2) sin(phi)",
        "initial_state": "module 1: (|eg> + i|ge>)/sqrt2 (A excited, B excited with phase i); rest |g>",
        "observable": "population of module 2's qubits A and B at t1",
        "atol": 1e-10,
        "rtol": 1e-8,
        "P_reference": P_REFERENCE,
        "P_reference_rounded": 0.5770813,
    }


def _rates_np(t: float) -> tuple[float, float]:
    """(gamma_emitter(t), gamma_absorber(t)) for kappa = 1."""
    th = math.tanh(0.5 * t)
    return 0.5 * (1.0 + th), 0.5 * (1.0 - th)


# Coefficient s_m(t) s_n(t) for the active modules (0 = emitter, 1 = absorber).
# s_0 s_1 = sqrt(gamma_e gamma_a) / 2 = sech(t/2) / 4, written without the square root.
def _coef_np(pair: tuple[int, int], t: float) -> float:
    ge, ga = _rates_np(t)
    if pair == (0, 0):
        return 0.5 * ge
    if pair == (1, 1):
        return 0.5 * ga
    return 0.25 / math.cosh(0.5 * t)


# --------------------------------------------------------------------------------------
# operators (scipy CSR, qubit 0 = most significant factor of the Kronecker product)
# --------------------------------------------------------------------------------------

_SM = sp.csr_matrix(np.array([[0.0, 1.0], [0.0, 0.0]], dtype=complex))  # |g><e|, g = 0, e = 1
_SZ = sp.csr_matrix(np.array([[-1.0, 0.0], [0.0, 1.0]], dtype=complex))


def _site_op(op: sp.csr_matrix, j: int, n: int) -> sp.csr_matrix:
    left = sp.identity(2**j, dtype=complex, format="csr")
    right = sp.identity(2 ** (n - j - 1), dtype=complex, format="csr")
    return sp.csr_matrix(sp.kron(sp.kron(left, op, format="csr"), right, format="csr"))


def _add(d: dict, key, op) -> None:
    d[key] = d[key] + op if key in d else op


def build_model(M: int, params: dict | None = None) -> dict:
    """Sparse operators of the anchor problem for M modules.

    Returns a dict with
      'dim', 'N',
      'H': {(m, n): H_mn}   H(t) = sum s_m s_n H_mn (m <= n),
      'channels': [{m: X_m}] time-dependent jump operators L(t) = sum_m s_m X_m,
      'channel_names': description of each channel,
      'const_jumps': constant jump operators (T1, dephasing),
      'rho0': dense initial density matrix, 'n_target': dense population operator of module 2.
    Only the active modules (0 and 1) carry coupling terms: idle modules have s_m = 0.
    """
    if M < 2:
        raise ValueError("the anchor problem needs M >= 2 modules")
    p = anchor_parameters() if params is None else params
    N = 2 * M
    dim = 2**N
    eta, phi, theta = p["eta"], p["phi"], p["link_phase"]
    sig = [_site_op(_SM, j, N) for j in range(N)]
    active = {p["emitter_module"], p["absorber_module"]}

    H: dict = {}
    channels: list = []
    names: list = []

    def port(F: dict, m: int, j: int) -> None:
        # series product of the incoming field F with port j of module m
        for k, Fk in F.items():
            term = (sig[j].getH() @ Fk - Fk.getH() @ sig[j]) / 2j
            _add(H, (min(k, m), max(k, m)), term)
        _add(F, m, sig[j])

    def scale(F: dict, c: complex) -> dict:
        return {k: c * v for k, v in F.items()}

    for direction in ("R", "L"):
        order = range(M) if direction == "R" else range(M - 1, -1, -1)
        F: dict = {}
        for i, m in enumerate(order):
            if i > 0:  # inter-module link: loss port, then transmission
                if F:
                    channels.append(scale(F, math.sqrt(1.0 - eta)))
                    names.append(f"loss {direction} before module {m + 1}")
                F = scale(F, math.sqrt(eta) * np.exp(1j * theta))
            first, second = (2 * m, 2 * m + 1) if direction == "R" else (2 * m + 1, 2 * m)
            if m in active:
                port(F, m, first)
            F = scale(F, np.exp(1j * phi))  # A -> B (R) or B -> A (L) inside the module
            if m in active:
                port(F, m, second)
        if F:
            channels.append(F)
            names.append(f"output {direction}")

    # in-module cancelling coupling: g_m = -(gamma_m/2) sin(phi) = -s_m^2 sin(phi)
    for m in sorted(active):
        a, b = sig[2 * m], sig[2 * m + 1]
        _add(H, (m, m), -math.sin(phi) * (a.getH() @ b + b.getH() @ a))

    const_jumps = [math.sqrt(p["gamma_1"]) * s for s in sig]
    const_jumps += [math.sqrt(p["gamma_phi"] / 2) * _site_op(_SZ, j, N) for j in range(N)]

    # initial state: module 1 in (|e_A g_B> + i |g_A e_B>)/sqrt2, all else |g>
    # basis index: qubit 0 is the most significant bit, e = 1
    psi = np.zeros(dim, dtype=complex)
    psi[1 << (N - 1)] = 1 / math.sqrt(2)  # qubit 0 (A_1) excited
    psi[1 << (N - 2)] = 1j / math.sqrt(2)  # qubit 1 (B_1) excited
    rho0 = np.outer(psi, psi.conj())

    am = p["absorber_module"]
    n_target = sig[2 * am].getH() @ sig[2 * am] + sig[2 * am + 1].getH() @ sig[2 * am + 1]

    for k in list(H):
        H[k] = sp.csr_matrix(H[k])
        H[k].eliminate_zeros()
        if H[k].nnz == 0:  # the in-module coupling cancels J_wg exactly: nothing left
            del H[k]
    return {
        "M": M,
        "N": N,
        "dim": dim,
        "H": H,
        "channels": channels,
        "channel_names": names,
        "const_jumps": const_jumps,
        "rho0": rho0,
        "n_target": n_target.toarray(),
        "params": p,
    }


def _time_repeats(fn, k: int) -> float:
    ts = []
    for _ in range(k):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


# --------------------------------------------------------------------------------------
# QuTiP 5, 'fair' setup
# --------------------------------------------------------------------------------------

_BLAS_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def _qutip_liouvillian(model: dict):
    """QobjEvo Liouvillian: constant CSR superoperators times scalar coefficient functions."""
    import qutip

    dims = [[2] * model["N"]] * 2

    def q(a):
        return qutip.Qobj(sp.csr_matrix(a), dims=dims).to("csr")

    def dissipator_cross(X, Y):
        # X rho Y^dag + Y rho X^dag - (1/2){X^dag Y + Y^dag X, rho}: the s_m s_n (m != n)
        # part of D[s_m X + s_n Y] for real s
        XdY = X.dag() @ Y + Y.dag() @ X
        return qutip.sprepost(X, Y.dag()) + qutip.sprepost(Y, X.dag()) - 0.5 * (qutip.spre(XdY) + qutip.spost(XdY))

    def dissipator(X):
        XdX = X.dag() @ X
        return qutip.sprepost(X, X.dag()) - 0.5 * (qutip.spre(XdX) + qutip.spost(XdX))

    pieces: dict = {}

    def add(key, sop):
        pieces[key] = pieces[key] + sop if key in pieces else sop

    for key, Hk in model["H"].items():
        Hq = q(Hk)
        add(key, -1j * (qutip.spre(Hq) - qutip.spost(Hq)))
    for ch in model["channels"]:
        mods = sorted(ch)
        Xq = {m: q(ch[m]) for m in mods}
        for i, m in enumerate(mods):
            add((m, m), dissipator(Xq[m]))
            for n in mods[i + 1 :]:
                add((m, n), dissipator_cross(Xq[m], Xq[n]))
    L0 = None
    for C in model["const_jumps"]:
        d = dissipator(q(C))
        L0 = d if L0 is None else L0 + d

    def make_coef(key):
        return lambda t: _coef_np(key, t)

    terms = [L0.to("csr")]
    for key in sorted(pieces):
        terms.append([pieces[key].to("csr"), make_coef(key)])
    return qutip.QobjEvo(terms)


def _qutip_run(M: int, repeats: int) -> tuple[float, float, float]:
    import qutip

    p = anchor_parameters()
    opts = {
        "method": "vern7",
        "atol": p["atol"],
        "rtol": p["rtol"],
        "nsteps": 10**6,
        "store_states": False,
        "store_final_state": True,
        "progress_bar": False,
    }
    state = {}

    def build():
        model = build_model(M, p)
        state["L"] = _qutip_liouvillian(model)
        dims = [[2] * model["N"]] * 2
        state["rho0"] = qutip.Qobj(model["rho0"], dims=dims)
        state["n"] = model["n_target"]

    def solve():
        res = qutip.mesolve(state["L"], state["rho0"], [p["t0"], p["t1"]], options=opts)
        rho = res.final_state.full()
        return float(np.real(np.trace(state["n"] @ rho)))

    t = time.perf_counter()
    build()
    P = solve()
    first = time.perf_counter() - t
    med = _time_repeats(solve, repeats)
    return P, first, med


def qutip_fair(M: int, repeats: int = 5) -> tuple[float, float, float]:
    """QuTiP 5 'fair' peer: (P_transfer, seconds of the first call, median seconds of the next).

    CSR operators, Liouvillian = constant superoperators x scalar coefficient functions
    (QobjEvo), vern7, atol 1e-10, rtol 1e-8, one BLAS thread. The first call includes building
    the operators and the Liouvillian; the median is over `repeats` further solves of the
    prebuilt Liouvillian (qutip.mesolve each time). Runs in a subprocess with the BLAS thread
    variables set before numpy is imported unless threadpoolctl is available.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        with threadpool_limits(limits=1):
            return _qutip_run(M, repeats)
    if all(os.environ.get(v) == "1" for v in _BLAS_ENV[:3]):
        return _qutip_run(M, repeats)  # already a single-thread process
    env = dict(os.environ)
    env.update({v: "1" for v in _BLAS_ENV})
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--qutip-worker", str(M), str(repeats)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"QuTiP worker failed for M={M}:\n{out.stderr}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return r["P"], r["first"], r["median"]


# --------------------------------------------------------------------------------------
# dynamiqs 0.3.7
# --------------------------------------------------------------------------------------


def dynamiqs_solve(
    M: int, layout: str = "dense", repeats: int = 3, method: str = "Tsit5", jit: bool = True
) -> tuple[float, float, float]:
    """dynamiqs peer: (P_transfer, compile + first call seconds, median seconds after that).

    Float64, layout 'dense' or 'dia' (dynamiqs sparse diagonal), adaptive `method`
    (Tsit5 by default, the dynamiqs default; Dopri5 or Dopri8 also accepted) with
    atol 1e-10, rtol 1e-8. Hamiltonian and jump operators are sums of dq.modulated terms
    (constant operator x scalar function of t). The first call includes building the
    operators and tracing/compiling; the median is over `repeats` further calls with the same
    arguments, each ended by block_until_ready. With jit=True (default) the solve is one
    jax.jit-compiled function of the time window (operators closed over), which removes the
    Python-side argument checking that dq.mesolve does on every call (about 50 ms here);
    jit=False times plain repeated dq.mesolve calls.
    """
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    import dynamiqs as dq

    dq.set_precision("double")
    if layout not in ("dense", "dia"):
        raise ValueError("layout must be 'dense' or 'dia'")
    lay = dq.dense if layout == "dense" else dq.dia
    p = anchor_parameters()
    state = {}

    def s_fn(m):
        # s_m(t) = sqrt(gamma_m(t)/2); gamma_e = 1/(1 + e^{-t}), gamma_a = 1/(1 + e^{t})
        sign = -1.0 if m == 0 else 1.0
        return lambda t: jnp.sqrt(0.5 * jax.nn.sigmoid(-sign * t))

    def c_fn(key):
        if key == (0, 0):
            return lambda t: 0.25 * (1.0 + jnp.tanh(0.5 * t))
        if key == (1, 1):
            return lambda t: 0.25 * (1.0 - jnp.tanh(0.5 * t))
        return lambda t: 0.25 / jnp.cosh(0.5 * t)

    def build():
        model = build_model(M, p)
        dims = (2,) * model["N"]

        def qa(a):
            return dq.asqarray(jnp.asarray(a.toarray()), dims=dims, layout=lay)

        H = None
        for key in sorted(model["H"]):
            term = dq.modulated(c_fn(key), qa(model["H"][key]))
            H = term if H is None else H + term
        jumps = []
        for ch in model["channels"]:
            L = None
            for m in sorted(ch):
                term = dq.modulated(s_fn(m), qa(ch[m]))
                L = term if L is None else L + term
            jumps.append(L)
        jumps += [qa(C) for C in model["const_jumps"]]
        state.update(
            H=H,
            jumps=jumps,
            rho0=dq.asqarray(jnp.asarray(model["rho0"]), dims=dims, layout=dq.dense),
            n=dq.asqarray(jnp.asarray(model["n_target"]), dims=dims, layout=lay),
            tsave=jnp.array([p["t0"], p["t1"]]),
            method=getattr(dq.method, method)(rtol=p["rtol"], atol=p["atol"], max_steps=1_000_000),
        )

    def run(tsave):
        res = dq.mesolve(
            state["H"],
            state["jumps"],
            state["rho0"],
            tsave,
            exp_ops=[state["n"]],
            method=state["method"],
            save_states=False,
            progress_meter=False,
        )
        return res.expects

    def solve():
        if "fn" not in state:
            state["fn"] = jax.jit(run) if jit else run
        return state["fn"](state["tsave"]).block_until_ready()

    t = time.perf_counter()
    build()
    e = solve()
    first = time.perf_counter() - t
    P = float(np.real(np.asarray(e)[0, -1]))
    med = _time_repeats(solve, repeats)
    return P, first, med


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------


def main(argv: list[str]) -> None:
    if len(argv) >= 1 and argv[0] == "--qutip-worker":
        P, first, med = _qutip_run(int(argv[1]), int(argv[2]))
        print(json.dumps({"P": P, "first": first, "median": med}))
        return
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--big", action="store_true", help="also M = 4 (dynamiqs dense ~1-2 min)")
    ap.add_argument(
        "--plain", action="store_true", help="also time plain dq.mesolve calls without an outer jax.jit (M <= 3)"
    )
    ap.add_argument("--repeats", type=int, default=5, help="timed solves after the first")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "peers.json"))
    args = ap.parse_args(argv)
    Ms = [2, 3] + ([4] if args.big else [])
    load_start = os.getloadavg()
    rows = []
    print(
        f"{'M':>2} {'dim':>5} {'solver':<16} {'P_transfer':>14} {'|P - ref|':>10} {'first [s]':>10} {'median [s]':>11}"
    )
    for M in Ms:
        runs = [
            ("qutip_fair", lambda: qutip_fair(M, args.repeats)),
            ("dynamiqs_dense", lambda: dynamiqs_solve(M, "dense", max(1, min(args.repeats, 3 if M < 4 else 1)))),
            ("dynamiqs_dia", lambda: dynamiqs_solve(M, "dia", args.repeats)),
        ]
        if args.plain and M <= 3:
            runs += [
                ("dynamiqs_dense_nojit", lambda: dynamiqs_solve(M, "dense", min(args.repeats, 3), jit=False)),
                ("dynamiqs_dia_nojit", lambda: dynamiqs_solve(M, "dia", args.repeats, jit=False)),
            ]
        for name, fn in runs:
            P, first, med = fn()
            err = abs(P - P_REFERENCE)
            rows.append(
                {
                    "M": M,
                    "qubits": 2 * M,
                    "dim": 4**M,
                    "solver": name,
                    "P": P,
                    "abs_err_vs_reference": err,
                    "first_s": first,
                    "median_s": med,
                }
            )
            print(f"{M:>2} {4**M:>5} {name:<16} {P:>14.10f} {err:>10.1e} {first:>10.3f} {med:>11.4f}", flush=True)
    import platform

    meta = {
        "parameters": anchor_parameters(),
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "timing": (
            "first_s: build + (compile +) first solve; median_s: median of "
            "further solves; qutip with one BLAS thread; dynamiqs float64 CPU, "
            "Tsit5, outer jax.jit unless the solver name ends in _nojit, "
            "block_until_ready; the other cores may have been busy"
        ),
        "repeats": args.repeats,
        "loadavg_1_5_15min_start": load_start,
        "loadavg_1_5_15min_end": os.getloadavg(),
    }
    try:
        import dynamiqs
        import jax
        import qutip

        meta["versions"] = {
            "qutip": qutip.__version__,
            "dynamiqs": dynamiqs.__version__,
            "jax": jax.__version__,
            "numpy": np.__version__,
        }
    except Exception:  # pragma: no cover
        pass
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
