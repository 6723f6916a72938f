"""The paper problem with and without a frequency correction on the receiver's data qubits.

Shapes the receiver's drive alone (the preset's setting) and the drive together with a
frequency-correction flux pulse (a 6-knot spline from zero, bounded by 2 pi x 5 MHz) by L-BFGS
from the scripted drive, and writes the absorption efficiencies to the JSON file given as the
only argument. It shows how much of the shaped drive's limit is the coupler-induced chirp.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from chiraljax.optimize import GradientConfig, get_problem, gradient_optimize, write_json


def main(path: str) -> None:
    config = GradientConfig(method="lbfgs", max_steps=400, patience=40)
    report = {"config": {"method": "lbfgs", "max_steps": 400, "patience": 40}, "runs": {}}
    incident = None
    for name, options in (
        ("drive", {}),
        ("drive and frequency correction", {"correction_knots": 6, "max_correction": 2 * np.pi * 5e-3}),
    ):
        problem = get_problem("paper", incident=incident, **options)
        incident = float(problem.objective.incident)
        start = time.perf_counter()
        result = gradient_optimize(problem.objective, np.asarray(problem.x0), config)
        report["runs"][name] = {
            "parameters": int(problem.objective.size),
            "start": float(result.history.score[0]),
            "best": float(result.best_value),
            "evaluations": int(result.evaluations),
            "seconds": time.perf_counter() - start,
            "fixed_vs_adaptive_at_best": problem.objective.check_steps(result.best_x),
            "best_x": np.asarray(result.best_x).tolist(),
        }
        print(name, report["runs"][name]["best"], report["runs"][name]["evaluations"], flush=True)
    report["incident"] = incident
    write_json(report, path)


if __name__ == "__main__":
    main(sys.argv[1])
