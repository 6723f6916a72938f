"""What a photon input costs per step, against a plain emitter of the same size.

A qubit (rate 1) absorbing a Gaussian photon (a virtual source cavity whose coupling carries
the mode's norm integral in the ODE state), against the same qubit decaying from |e> with a
second, idle qubit (the same state dimension without an input). Each is solved warm (compiled
once) on the same window; the figure is the time per step, so that the adaptive step counts
do not enter, and its ratio (target: under 1.5x).

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
from chiraljax.algebra._markov import ParameterAtoms
from chiraljax.kernels._lindblad import solve_markov
from chiraljax.solve._simulate import markov_plan

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


def per_step(network: cj.Network, method, repeats: int) -> dict:
    """Median wall time of a warm solve, its steps and the time per step."""

    def run():
        return cj.simulate(network, WINDOW, n_save=2, method=method)

    result = run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.asarray(run().final_state)
        times.append(time.perf_counter() - start)
    wall = statistics.median(times)
    if isinstance(method, cj.Delay):
        from chiraljax.algebra._delay_model import plan_delay

        steps = plan_delay(network, *WINDOW, n_save=2).n_steps
    else:
        plan = markov_plan(network, 1)
        sol, _, _ = solve_markov(
            plan.arrays,
            ParameterAtoms.inputs(network),
            plan.model.time_pulses(network),
            plan.model.initial_amplitudes(network),
            tuple(e.dephasing for e in network.emitters),
            *WINDOW,
            np.array(WINDOW),
            plan.model.jump_times(network),
            layout=plan.layout,
            stepping=method.stepping(True, False),
        )
        steps = int(sol.steps)
    return {
        "wall_s": wall,
        "steps": steps,
        "per_step_us": wall / steps * 1e6,
        "final": float(np.asarray(result.populations)[-1, 0]),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "photon_input_cost.json"))
    args = parser.parse_args(argv)
    rows = {}
    for label, method in (("sector", cj.Sector()), ("delay", cj.Delay())):
        rows[label] = {name: per_step(net, method, args.repeats) for name, net in networks().items()}
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
