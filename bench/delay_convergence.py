"""Accuracy and speed of the delay-equation kernel (kernels/_delay.py).

Three measurements, written to bench/results/delay_convergence.json with a plot
bench/results/delay_convergence.png:

1. Convergence order. (a) An atom before a mirror off resonance (Gamma = 1, round trip 1.2,
   phase 0.3 per pass, 10 % link loss): the trace c(t) against the closed-form series of
   docs/theory.md section 3. (b) The two-module sech transfer below: the received population against
   a run with a four times smaller step. The order is the slope of log(error) over log(dt).
2. The delay peer of bench/ANCHOR_PROBLEM.md: one atom, Gamma = 1, mirror at round trip
   tau = 1, on resonance; the trapped population against (1 + Gamma tau / 2)^-2 and the time
   per solve after compilation. The peer numbers (QwaveMPS) are quoted from that file.
3. Two chiral modules (4 waveguide-coupled qubits) exchanging a sech photon (kappa = 1,
   window 20 / kappa) through a reflecting joint (r = 0.2) splitting a link of total delay
   0.5 / kappa, receiver control late by the delay: time per single solve at the largest step
   with error <= 1e-6, and points per second of a vmapped batch of 10,000 parameter points
   (joint reflection, link phase, link transmission), evaluated in chunks.

Usage:  python bench/delay_convergence.py [--batch 10000] [--chunk 500]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from math import factorial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import chiraljax  # noqa: F401  (float64)
from chiraljax.kernels import DelayProblem, scatterer_matrix, solve_delay

RESULTS = Path(__file__).resolve().parent / "results"

# Peer values quoted from bench/ANCHOR_PROBLEM.md ('Delay peer'); QwaveMPS is not installed here.
PEER_QWAVEMPS = {
    "source": "bench/ANCHOR_PROBLEM.md (quoted, not rerun)",
    "dt_0.01": {"trapped_population": 0.443950, "error": -4.9e-4, "seconds": 176.0},
    "dt_0.02": {"trapped_population": 0.443456, "seconds": 50.0},
}


def series(a: complex, b: complex, tau: float, t: np.ndarray) -> np.ndarray:
    """c(t) of dc/dt = -a c + b c(t - tau) with c(0) = 1 and c(t < 0) = 0."""
    out = np.zeros(t.shape, complex)
    for n in range(int(t.max() / tau) + 1):
        s = np.maximum(t - n * tau, 0.0)
        out += np.where(t >= n * tau, (b * s) ** n / factorial(n) * np.exp(-a * s), 0.0)
    return out


def seconds_per_call(fn, *args, repeats: int = 20) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def order_fit(dts, errors) -> float:
    return float(np.polyfit(np.log(dts), np.log(errors), 1)[0])


# ---------------------------------------------------------------------------------------------
# mirror


def mirror_problem(tau, phi, eta):
    return DelayProblem(
        [0],
        jnp.stack([tau / 2, 0.0]),
        rates=[[0.5, 0.5]],
        transmission=jnp.stack([eta, 1.0]),
        phase=jnp.stack([phi, 0.0]),
        end_reflection=[-1.0, 0.0],
        instantaneous=(False, True),
    )


def mirror_convergence():
    tau, phi, eta, t_end = 1.2, 0.3, 0.9, 12.0
    dts = [0.2, 0.1, 0.05, 0.025, 0.0125]
    errors, conservation = [], []
    for dt in dts:
        sol = solve_delay(mirror_problem(tau, phi, eta), jnp.array([1.0 + 0j]), dt=dt, n_steps=int(round(t_end / dt)))
        ref = series(0.5, 0.5 * eta * np.exp(2j * phi), tau, np.asarray(sol.ts))
        errors.append(float(np.max(np.abs(np.asarray(sol.c[:, 0]) - ref))))
        conservation.append(float(sol.conservation_error.max()))
    return {
        "dt": dts,
        "max_trace_error": errors,
        "max_conservation_error": conservation,
        "order_trace": order_fit(dts, errors),
        "order_conservation": order_fit(dts, conservation),
    }


def mirror_peer():
    tau, dt, t_end = 1.0, 0.1, 30.0

    @jax.jit
    def trapped(tau):
        sol = solve_delay(
            mirror_problem(tau, 0.0, 1.0),
            jnp.array([1.0 + 0j]),
            dt=dt,
            n_steps=int(round(t_end / dt)),
            max_delay=0.5,
            save_trace=False,
        )
        return sol.populations[-1, 0]

    start = time.perf_counter()
    pop = float(trapped(tau))
    compile_s = time.perf_counter() - start
    exact = (1 + tau / 2) ** -2
    # The whole trace at the same step, against the series (the transient is not exact).
    sol = solve_delay(mirror_problem(tau, 0.0, 1.0), jnp.array([1.0 + 0j]), dt=dt, n_steps=int(round(t_end / dt)))
    ref = series(0.5, 0.5, tau, np.asarray(sol.ts))
    trace_error = np.max(np.abs(np.asarray(sol.c[:, 0]) - ref))
    return {
        "tau": tau,
        "dt": dt,
        "t_end": t_end,
        "trapped_population": pop,
        "exact": exact,
        "error": pop - exact,
        "max_trace_error": float(trace_error),
        "seconds_per_solve": seconds_per_call(trapped, tau),
        "compile_seconds": compile_s,
        "target": "error <= 1e-8 in < 20 ms",
        "peer_qwavemps": PEER_QWAVEMPS,
    }


# ---------------------------------------------------------------------------------------------
# two chiral modules through a reflecting joint

KAPPA, DELAY, T0, WINDOW = 1.0, 0.5, -10.0, 20.0
C_PLUS = jnp.array([1.0, 1.0j, 0.0, 0.0]) / np.sqrt(2)


def module_problem(reflection, phase, eta):
    def couplings(t):
        ge = KAPPA / 2 * (1 + jnp.tanh(KAPPA * t / 2))
        ga = KAPPA / 2 * (1 - jnp.tanh(KAPPA * (t - DELAY) / 2))
        return ge, ga

    def rates(t):
        ge, ga = couplings(t)
        return jnp.stack([ge, ge, ge, ge, ga, ga, ga, ga]).reshape(4, 2) / 2

    def hamiltonian(t):
        # Cancels the waveguide exchange J_wg = gamma/2 of each quarter-wave module.
        ge, ga = couplings(t)
        x = jnp.array([[0.0, 1.0], [1.0, 0.0]])
        return jax.scipy.linalg.block_diag(-ge / 2 * x, -ga / 2 * x).astype(complex)

    quarter = np.pi / 2
    return DelayProblem(
        [0, 1, None, 2, 3],
        jnp.array([0.0, 0.0, DELAY / 2, DELAY / 2, 0.0, 0.0]),
        rates=rates,
        hamiltonian=hamiltonian,
        transmission=jnp.stack([1.0, 1.0, eta, 1.0, 1.0, 1.0]),
        phase=jnp.stack([0.0, quarter, phase, 0.0, quarter, 0.0]),
        scattering=scatterer_matrix(reflection)[None],
        instantaneous=(True, True, False, False, True, True),
    )


def transfer_fn(dt: float):
    n_steps = int(round((WINDOW + DELAY) / dt))

    def received(reflection, phase, eta):
        sol = solve_delay(
            module_problem(reflection, phase, eta),
            C_PLUS,
            dt=dt,
            n_steps=n_steps,
            t0=T0,
            max_delay=DELAY,
            save_trace=False,
        )
        return sol.populations[-1, 2:].sum()

    return received


def transfer(batch: int, chunk: int):
    point = (0.2, 0.3, 0.9)
    dts = [0.25, 0.125, 0.0625]
    reference = float(jax.jit(transfer_fn(dts[-1] / 4))(*point))
    errors = [abs(float(jax.jit(transfer_fn(dt))(*point)) - reference) for dt in dts]
    dt = max(d for d, e in zip(dts, errors) if e <= 1e-6)

    single = jax.jit(transfer_fn(dt))
    start = time.perf_counter()
    value = float(single(*point))
    compile_s = time.perf_counter() - start
    per_solve = seconds_per_call(single, *point)

    rng = np.random.default_rng(0)
    params = (
        jnp.asarray(rng.uniform(0.0, 0.5, batch)),
        jnp.asarray(rng.uniform(0.0, 2 * np.pi, batch)),
        jnp.asarray(rng.uniform(0.5, 1.0, batch)),
    )
    one = transfer_fn(dt)
    sweep = jax.jit(lambda r, p, e: jax.lax.map(lambda x: one(*x), (r, p, e), batch_size=chunk))
    start = time.perf_counter()
    jax.block_until_ready(sweep(*params))
    batch_compile_s = time.perf_counter() - start
    start = time.perf_counter()
    values = jax.block_until_ready(sweep(*params))
    batch_s = time.perf_counter() - start
    return {
        "kappa": KAPPA,
        "delay": DELAY,
        "window": WINDOW,
        "joint_reflection": point[0],
        "convergence": {"dt": dts, "error": errors, "reference_dt": dts[-1] / 4, "order": order_fit(dts, errors)},
        "dt": dt,
        "n_steps": int(round((WINDOW + DELAY) / dt)),
        "received_population": value,
        "error_estimate": errors[dts.index(dt)],
        "seconds_per_solve": per_solve,
        "compile_seconds": compile_s,
        "target_seconds_per_solve": 0.02,
        "batch": batch,
        "chunk": chunk,
        "batch_seconds": batch_s,
        "batch_compile_seconds": batch_compile_s,
        "points_per_second": batch / batch_s,
        "target_points_per_second": 2000,
        "batch_received_range": [float(values.min()), float(values.max())],
    }


def plot(results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    m, t = results["mirror_convergence"], results["transfer"]["convergence"]
    ax.loglog(m["dt"], m["max_trace_error"], "o-", label="mirror: max |c - series|")
    ax.loglog(m["dt"], m["max_conservation_error"], "s--", label="mirror: conservation error")
    ax.loglog(t["dt"], t["error"], "^-", label="two modules + joint: transfer error")
    dts = np.array(m["dt"])
    ax.loglog(dts, m["max_trace_error"][0] * (dts / dts[0]) ** 4, "k:", label="slope 4")
    ticks = [0.0125, 0.025, 0.05, 0.1, 0.25]
    ax.set_xticks(ticks, [f"{d:g}" for d in ticks], minor=False)
    ax.set_xticks([], minor=True)
    ax.set_xlabel("dt (1 / Gamma, 1 / kappa)")
    ax.set_ylabel("error")
    ax.set_title("Delay kernel convergence")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=500)
    args = parser.parse_args()
    started = time.perf_counter()
    results = {
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "device": str(jax.devices()[0]),
            "jax": jax.__version__,
        },
        "mirror_convergence": mirror_convergence(),
        "mirror_peer": mirror_peer(),
        "transfer": transfer(args.batch, args.chunk),
    }
    results["bench_seconds"] = time.perf_counter() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "delay_convergence.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, RESULTS / "delay_convergence.png")
    m, p, t = results["mirror_convergence"], results["mirror_peer"], results["transfer"]
    print(
        f"order: mirror trace {m['order_trace']:.2f}, conservation "
        f"{m['order_conservation']:.2f}, transfer {t['convergence']['order']:.2f}"
    )
    print(
        f"mirror tau=1: trapped error {p['error']:.2e} (trace {p['max_trace_error']:.1e}), "
        f"{1e3 * p['seconds_per_solve']:.2f} ms/solve"
    )
    print(
        f"transfer: dt={t['dt']}, error {t['error_estimate']:.1e}, "
        f"{1e3 * t['seconds_per_solve']:.2f} ms/solve, {t['points_per_second']:.0f} points/s "
        f"(batch {t['batch']})"
    )
    print(f"bench took {results['bench_seconds']:.0f} s")


if __name__ == "__main__":
    main()
