"""What a photon input costs per step, against a plain emitter of the same size.

A qubit (rate 1) absorbing a Gaussian photon (a virtual source cavity whose coupling carries
the mode's norm integral in the ODE state), against the same qubit decaying from |e> with a
second, idle qubit (the same state dimension without an input). Each is solved warm (compiled
once) on the same window with two fixed step counts; the figure is the marginal time per step
(the difference of the two times over the difference of the steps, so that neither the adaptive
step counts nor what a call costs once enter), and its ratio (target: under 1.5x).

    python bench/photon_input_cost.py [--repeats 50] [--out bench/results/photon_input_cost.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

import chiraljax as cj

WINDOW = (-8.0, 8.0)


def networks() -> dict[str, cj.Network]:
    port = cj.Port("p", "q", 0, 1.0, right_fraction=1.0)
    return {
        "plain emitter": cj.Network(
            [cj.Emitter("q"), cj.Emitter("idle")], [port, cj.Port("pi", "idle", 1, 0.0)], initial={"q": 1.0}
        ),
        "photon input": cj.Network(
            [cj.Emitter("q")], [port], inputs=[cj.PhotonInput("u", cj.GaussianMode(0.0, 1.0), end="left")]
        ),
    }


STEPS = (400, 800)  # two step counts on the same window: their difference is the per-step cost


def warm_wall(network: cj.Network, method, repeats: int) -> tuple[float, float]:
    """Median wall time of a warm solve and the final excitation of the qubit."""

    def run():
        return cj.simulate(network, WINDOW, n_save=2, method=method)

    result = run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.asarray(run().final_state)
        times.append(time.perf_counter() - start)
    return statistics.median(times), float(np.asarray(result.populations)[-1, 0])


def per_step(network: cj.Network, representation: str, repeats: int) -> dict:
    """The marginal cost of a step: two warm solves of the same window with `STEPS` fixed
    steps (8th-order Dormand-Prince for the sector, the delay kernel's RK4 for 'delay'), the
    difference of their times over the difference of their steps, so that what a call costs
    once (validation, planning, the result) does not enter."""
    span = WINDOW[1] - WINDOW[0]
    walls, finals = [], []
    for n in STEPS:
        method = cj.Sector(steps=n) if representation == "sector" else cj.Delay(dt=span / n)
        wall, final = warm_wall(network, method, repeats)
        walls.append(wall)
        finals.append(final)
    return {
        "steps": list(STEPS),
        "wall_s": walls,
        "per_step_us": (walls[1] - walls[0]) / (STEPS[1] - STEPS[0]) * 1e6,
        "final": finals[-1],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "photon_input_cost.json"))
    args = parser.parse_args(argv)
    rows = {}
    for label in ("sector", "delay"):
        rows[label] = {name: per_step(net, label, args.repeats) for name, net in networks().items()}
        rows[label]["ratio_per_step"] = (
            rows[label]["photon input"]["per_step_us"] / rows[label]["plain emitter"]["per_step_us"]
        )
        print(label, json.dumps(rows[label]), flush=True)
    report = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "command": "python bench/photon_input_cost.py",
        "window": WINDOW,
        "results": rows,
    }
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=1)
    return report


if __name__ == "__main__":
    main()
