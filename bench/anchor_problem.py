"""Peer benchmark: M chiral modules on one waveguide (../shared/bench/ANCHOR_PROBLEM.md).

chiraljax (excitation-sector and full-space Lindblad), QuTiP (sparse, hand-built Liouvillian,
vern7, one BLAS thread) and dynamiqs (dense and dia, jitted) solve the same problem in one run;
the script reports the transfer probability of each, its deviation from the converged reference
0.577081321870, the time of a single solve after compilation, the first-call (compile) time, the
cost of a value-and-gradient relative to a forward solve, and the throughput of a vmapped batch.

    python bench/anchor_problem.py [--modules 2 3 4] [--peers qutip dynamiqs] [--out bench/results/anchor_problem.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp

import chiraljax as cj

REFERENCE = 0.577081321870
T_SPAN = (-12.0, 12.0)


def anchor_network(M: int, eta: float = 0.6, t1_rate: float = 1e-3, gamma_phi: float = 1e-3) -> cj.Network:
    """The anchor problem as a chiraljax Network: module 0 emits, module 1 absorbs, the rest idle
    (`chiraljax.experiment._references.chiral_transfer_network`)."""
    from chiraljax.experiment._references import chiral_transfer_network

    return chiral_transfer_network(M, eta, t1_rate, gamma_phi)


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_chiraljax(M: int, representation: str, repeats: int, batch: int, steps: int | None = None) -> dict:
    """Forward, value-and-gradient and vmapped throughput of chiraljax on the anchor problem
    (adaptive stepping, or `steps` fixed 8th-order steps)."""
    net = anchor_network(M)

    def transfer(eta):
        res = cj.simulate(
            net.with_parameters({"links.1.transmission": eta}),
            T_SPAN,
            n_save=2,
            representation=representation,
            steps=steps,
        )
        return res.final_population("A1", "B1")

    forward = jax.jit(transfer)
    eta0 = jnp.asarray(0.6)
    start = time.perf_counter()
    value = float(jax.block_until_ready(forward(eta0)))
    first = time.perf_counter() - start
    t_forward = _median_time(lambda: forward(eta0), repeats)

    vg = jax.jit(jax.value_and_grad(transfer))
    start = time.perf_counter()
    jax.block_until_ready(vg(eta0))
    first_grad = time.perf_counter() - start
    t_grad = _median_time(lambda: vg(eta0), repeats)

    out = {
        "P": value,
        "error": value - REFERENCE,
        "first_call_s": first,
        "median_s": t_forward,
        "value_and_grad_first_s": first_grad,
        "value_and_grad_median_s": t_grad,
        "grad_over_forward": t_grad / t_forward,
    }
    if batch:
        batched = jax.jit(jax.vmap(transfer))
        etas = jnp.linspace(0.3, 1.0, batch)
        jax.block_until_ready(batched(etas))
        t_batch = _median_time(lambda: batched(etas), max(1, repeats // 3))
        out.update({"batch": batch, "batch_s": t_batch, "points_per_second": batch / t_batch})
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--peers", nargs="*", default=["qutip", "dynamiqs"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=48, help="fixed 8th-order steps of the fast variant")
    parser.add_argument(
        "--dynamiqs-max-modules",
        type=int,
        default=3,
        help="dynamiqs dense at M = 4 takes minutes per solve; raise to include it",
    )
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "anchor_problem.json"))
    args = parser.parse_args(argv)

    sys.path.insert(0, os.path.dirname(__file__))
    import peers  # the peer solvers, built independently from the physics

    rows = []
    for M in args.modules:
        variants = [("sector", None), ("sector", args.steps)] + ([("full", None)] if M <= 2 else [])
        for representation, steps in variants:
            r = bench_chiraljax(M, representation, args.repeats, args.batch if representation == "sector" else 0, steps)
            label = f"chiraljax {representation}" + (f" fixed {steps} steps" if steps else " adaptive")
            rows.append({"M": M, "solver": label, **r})
            print(json.dumps(rows[-1]), flush=True)
        if "qutip" in args.peers:
            P, first, med = peers.qutip_fair(M, repeats=3)
            rows.append(
                {
                    "M": M,
                    "solver": "qutip fair (CSR, vern7, 1 thread)",
                    "P": P,
                    "error": P - REFERENCE,
                    "first_call_s": first,
                    "median_s": med,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
        if "dynamiqs" in args.peers and M <= args.dynamiqs_max_modules:
            for layout in ("dense", "dia"):
                P, first, med = peers.dynamiqs_solve(M, layout=layout, repeats=3)
                rows.append(
                    {
                        "M": M,
                        "solver": f"dynamiqs {layout} (jit)",
                        "P": P,
                        "error": P - REFERENCE,
                        "first_call_s": first,
                        "median_s": med,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)

    by = {(r["M"], r["solver"]): r for r in rows}
    ratios = []
    for M in args.modules:
        ours = min(
            (r for (m, s), r in by.items() if m == M and s.startswith("chiraljax sector")),
            key=lambda r: r["median_s"],
            default=None,
        )
        for (m, solver), r in by.items():
            if m == M and not solver.startswith("chiraljax") and ours:
                ratios.append(
                    {
                        "M": M,
                        "peer": solver,
                        "peer_over_chiraljax": r["median_s"] / ours["median_s"],
                        "agreement": abs(r["P"] - ours["P"]),
                    }
                )
    result = {
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "loadavg": os.getloadavg(),
        "command": "python bench/anchor_problem.py " + " ".join(argv or sys.argv[1:]),
        "rows": rows,
        "ratios": ratios,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(result, fh, indent=1)
    os.replace(tmp, args.out)
    for r in ratios:
        print(
            f"M={r['M']}: {r['peer']} takes {r['peer_over_chiraljax']:.1f}x chiraljax's time; "
            f"|dP| = {r['agreement']:.1e}"
        )
    return result


if __name__ == "__main__":
    main()
