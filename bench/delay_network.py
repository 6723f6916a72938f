"""Speed of the delay representation through `cj.simulate` (the Network front end).

Two chiral modules (4 waveguide-coupled qubits, quarter-wave pairs with the exchange cancelled)
exchange a sech photon (kappa = 1, window 20.5 / kappa) through a reflecting joint that splits
a link of total delay 0.5 / kappa; the receiver's control is late by the delay. Measured:

- the received population at the default step and at dt = 0.25, against a run at dt / 4
  (the accuracy of each step);
- the time per single solve after compilation (jit of `cj.simulate`, only the end points
  saved);
- points per second of a vmapped batch of 10,000 parameter points (joint reflection, link
  phase, link transmission), evaluated in chunks with `jax.lax.map`.

Writes bench/results/delay_network.json.

Usage:  python bench/delay_network.py [--batch 10000] [--chunk 500]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import chiraljax as cj
from chiraljax.algebra._delay_model import plan_delay

RESULTS = Path(__file__).resolve().parent / "results"
KAPPA, DELAY, WINDOW = 1.0, 0.5, (-10.0, 10.5)
POINT = (0.2, 0.3, 0.9)  # joint reflection, link phase, link transmission
RECEIVER = ("A1", "B1")


def network() -> cj.Network:
    """Module 0 (A0, B0) -- delay/2 -- joint -- delay/2 -- module 1 (A1, B1)."""
    controls = {"emit": cj.SechEmission(KAPPA, 0.0), "absorb": cj.Shifted(cj.SechAbsorption(KAPPA, 0.0), DELAY)}
    emitters = [cj.Emitter(n) for n in ("A0", "B0", "A1", "B1")]
    ports = [
        cj.Port("pA0", "A0", 0.0, KAPPA, control="emit"),
        cj.Port("pB0", "B0", 1.0, KAPPA, control="emit"),
        cj.Port("pA1", "A1", 3.0, KAPPA, control="absorb"),
        cj.Port("pB1", "B1", 4.0, KAPPA, control="absorb"),
    ]
    links = [
        cj.Link(phase=np.pi / 2),
        cj.Link(delay=DELAY / 2, phase=POINT[1], transmission=POINT[2]),
        cj.Link(delay=DELAY / 2),
        cj.Link(phase=np.pi / 2),
    ]
    couplings = [cj.Coupling("A0", "B0", -0.5, control="emit"), cj.Coupling("A1", "B1", -0.5, control="absorb")]
    return cj.Network(
        emitters,
        ports,
        links=links,
        scatterers=[cj.Scatterer("joint", 2.0, POINT[0])],
        couplings=couplings,
        controls=controls,
        initial={"A0": 1 / np.sqrt(2), "B0": 1j / np.sqrt(2)},
    )


def received_fn(dt: float | None):
    base = network()
    plan = plan_delay(base, *WINDOW, dt=dt)
    ts = np.array([WINDOW[0], WINDOW[0] + plan.n_steps * plan.dt])  # only the end points

    def received(reflection, phase, eta):
        net = base.with_parameters(
            {"scatterers.joint.reflection": reflection, "links.1.phase": phase, "links.1.transmission": eta}
        )
        r = cj.simulate(net, WINDOW, ts=ts, dt=dt)
        return r.final_population(*RECEIVER)

    return received


def seconds_per_call(fn, *args, repeats: int = 30) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=500)
    args = parser.parse_args()
    t_start = time.perf_counter()

    default_dt = plan_delay(network(), *WINDOW).dt
    accuracy = {}
    for label, dt in (("default", default_dt), ("0.25", 0.25)):
        value = float(jax.jit(received_fn(dt))(*POINT))
        reference = float(jax.jit(received_fn(dt / 4))(*POINT))
        accuracy[label] = {"dt": dt, "received": value, "error": abs(value - reference)}

    timings = {}
    for label, dt in (("default", default_dt), ("0.25", 0.25)):
        single = jax.jit(received_fn(dt))
        start = time.perf_counter()
        jax.block_until_ready(single(*POINT))
        compile_s = time.perf_counter() - start
        per_solve = seconds_per_call(single, *POINT)

        rng = np.random.default_rng(0)
        params = (
            jnp.asarray(rng.uniform(0.0, 0.5, args.batch)),
            jnp.asarray(rng.uniform(0.0, 2 * np.pi, args.batch)),
            jnp.asarray(rng.uniform(0.5, 1.0, args.batch)),
        )
        one = received_fn(dt)
        sweep = jax.jit(lambda r, p, e: jax.lax.map(lambda x: one(*x), (r, p, e), batch_size=args.chunk))
        start = time.perf_counter()
        jax.block_until_ready(sweep(*params))
        batch_compile_s = time.perf_counter() - start
        start = time.perf_counter()
        values = jax.block_until_ready(sweep(*params))
        batch_s = time.perf_counter() - start
        timings[label] = {
            "dt": dt,
            "compile_seconds": compile_s,
            "seconds_per_solve": per_solve,
            "batch": args.batch,
            "chunk": args.chunk,
            "batch_compile_seconds": batch_compile_s,
            "batch_seconds": batch_s,
            "points_per_second": args.batch / batch_s,
            "batch_received_range": [float(values.min()), float(values.max())],
        }
        print(
            f"dt={dt:.4g}: error {accuracy[label]['error']:.1e}, {per_solve * 1e3:.2f} ms/solve, "
            f"{args.batch / batch_s:.0f} points/s"
        )

    out = {
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "device": str(jax.devices()[0]),
            "jax": jax.__version__,
            "load_average_1min_at_end": os.getloadavg()[0],
        },
        "problem": {
            "kappa": KAPPA,
            "delay": DELAY,
            "window": WINDOW,
            "point": dict(zip(("joint_reflection", "link_phase", "link_transmission"), POINT)),
        },
        "accuracy": accuracy,
        "timings": timings,
        "targets": {"seconds_per_solve": 0.02, "accuracy": 1e-6, "points_per_second": 2000},
        "bench_seconds": time.perf_counter() - t_start,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "delay_network.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
