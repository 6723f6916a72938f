"""GPU benchmark run: sweep throughput, memory and the float64-versus-float32 difference.

One script that a machine with an accelerator runs end to end in under 5 minutes, installing
nothing and reaching no network. It sweeps the two-module transfer of bench/sweep_throughput.py
(examples/two_module_transfer.toml; the 4-parameter grid, `--per-axis` values each) on all local
devices and writes `<out-dir>/gpu_run.json` after every stage (a stopped run keeps what it did):

- the devices, JAX version, precision and the command;
- `single_solve_s`: one warm `cj.simulate` of the nominal network (fixed 48 steps);
- `float64`: one record per configuration, each with points per second, compile time, chunk
  size and memory (device peak bytes in use where the device reports it, else the process's
  peak resident memory), and its largest difference from the adaptive float64 sweep:
  `fixed48` (48 steps of the 8th-order method, 10^4 points), `fixed48_large` (the same at
  `--large-per-axis` values per axis, 18^4 = 104,976 points by default: a GPU needs a large
  batch), `fixed16` and `fixed16_large` (16 steps), `adaptive` (rtol 1e-8, atol 1e-10, the
  reference); the fixed-step sweeps save only the end points, so the lean fixed stepper runs;
- `float32`: the fixed48 sweep in a subprocess with `CHIRALJAX_PRECISION=float32`, its
  throughput, and the difference of its transfer values from the float64 ones (max and median
  absolute).

Stages run in that order while the 290 s budget lasts. `--small` runs 2^4-point grids (3^4 for
the large one), so that the script can be checked on a CPU in a few minutes.

Usage:  python bench/gpu_run.py --out-dir DIR [--small] [--per-axis 10] [--large-per-axis 18]
        [--chunk-size N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
from sweep_throughput import grid_axes, load_transfer, machine, single_solve_seconds

import chiraljax as cj

HERE = Path(__file__).resolve().parent
#: Tolerances of the float32 run (float32 resolves about 1e-7 relative).
FLOAT32_TOLERANCES = {"rtol": 1e-6, "atol": 1e-8}
#: The whole script must finish within this; the float32 subprocess gets what is left.
DEADLINE_S = 290.0
#: Fixed steps of the throughput runs (8th-order method; 1e-13 from the adaptive values here).
FIXED_STEPS = 48


def memory_record() -> dict:
    """Peak memory: each device's `peak_bytes_in_use` if it reports one, and the host's."""
    record = {"host_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    stats = [device.memory_stats() or {} for device in jax.local_devices()]
    peaks = [s["peak_bytes_in_use"] for s in stats if "peak_bytes_in_use" in s]
    if peaks:
        record["device_peak_bytes_in_use"] = peaks
        record["device_bytes_limit"] = [s.get("bytes_limit") for s in stats]
    return record


def run_sweep(
    per_axis: int, chunk_size: int | None, tolerances: dict, steps: int | None = None
) -> tuple[np.ndarray, dict]:
    """The grid sweep (fixed `steps` or adaptive at `tolerances`); returns the transfer values
    (flat) and the timing record."""
    network, settings = load_transfer()
    result = cj.sweep(
        network,
        grid_axes(per_axis),
        metrics={"transfer": "population:A1+B1"},
        t_span=settings.t_span,
        representation="sector",
        chunk_size=chunk_size,
        progress=False,
        steps=steps,
        **tolerances,
    )
    attrs = result.attrs
    record = {
        "n_points": int(attrs["n_points"]),
        "points_per_second": float(attrs["points_per_second"]),
        "compile_time_s": float(attrs["compile_time_s"]),
        "eval_time_s": float(attrs["eval_time_s"]),
        "chunk_size": int(attrs["chunk_size"]),
        "n_devices": int(attrs["n_devices"]),
        "compiled_temp_bytes": int(attrs["compiled_temp_bytes"]),
        "precision": str(attrs["precision"]),
        "steps": steps,
        "tolerances": tolerances,
        "memory": memory_record(),
    }
    return np.asarray(result["transfer"].values, dtype=np.float64).ravel(), record


def float32_worker(args: argparse.Namespace) -> None:
    """Run in the float32 subprocess: sweep and save the values and the record."""
    values, record = run_sweep(args.per_axis, args.chunk_size, FLOAT32_TOLERANCES, FIXED_STEPS)
    np.save(args.out_dir / "float32_transfer.npy", values)
    (args.out_dir / "float32_record.json").write_text(json.dumps(record))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--small", action="store_true", help="2 values per axis (16 points), 3 for the large grid")
    parser.add_argument("--per-axis", type=int, default=None)
    parser.add_argument("--large-per-axis", type=int, default=None)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--float32-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.per_axis = args.per_axis or (2 if args.small else 10)
    args.large_per_axis = args.large_per_axis or (3 if args.small else 18)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if args.float32_worker:
        float32_worker(args)
        return

    start = time.perf_counter()
    path = args.out_dir / "gpu_run.json"
    network, settings = load_transfer()
    report = {
        "command": " ".join(["python", "bench/gpu_run.py", *sys.argv[1:]]),
        "machine": machine(),
        "per_axis": args.per_axis,
        "large_per_axis": args.large_per_axis,
        "single_solve_s": single_solve_seconds(network, settings, repeats=5, steps=FIXED_STEPS),
        "float64": {},
    }

    def save() -> None:
        report["total_wall_s"] = time.perf_counter() - start
        path.write_text(json.dumps(report, indent=1) + "\n")
        print(json.dumps(report, indent=1), flush=True)

    def left() -> float:
        return DEADLINE_S - (time.perf_counter() - start)

    values: dict[str, np.ndarray] = {}

    def stage(name: str, per_axis: int, steps: int | None) -> None:
        if left() < 20.0:
            report["float64"][name] = {"skipped": "time budget spent"}
            return
        values[name], record = run_sweep(per_axis, args.chunk_size, {}, steps)
        record["cost_per_point_vs_single_solve"] = 1.0 / record["points_per_second"] / report["single_solve_s"]
        report["float64"][name] = record
        save()

    stage("fixed48", args.per_axis, FIXED_STEPS)
    stage("fixed48_large", args.large_per_axis, FIXED_STEPS)
    if left() > 30.0:
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--float32-worker",
            "--out-dir",
            str(args.out_dir),
            "--per-axis",
            str(args.per_axis),
        ]
        if args.chunk_size:
            command += ["--chunk-size", str(args.chunk_size)]
        env = dict(os.environ, CHIRALJAX_PRECISION="float32")
        try:
            worker = subprocess.run(command, env=env, capture_output=True, text=True, timeout=max(left() - 60.0, 30.0))
            if worker.returncode == 0:
                values32 = np.load(args.out_dir / "float32_transfer.npy")
                record = json.loads((args.out_dir / "float32_record.json").read_text())
                difference = np.abs(values32 - values["fixed48"])
                record["max_abs_difference_from_float64"] = float(difference.max())
                record["median_abs_difference_from_float64"] = float(np.median(difference))
                report["float32"] = record
            else:
                report["float32"] = {"error": worker.stderr[-2000:]}
        except subprocess.TimeoutExpired:
            report["float32"] = {"error": f"did not finish within the {DEADLINE_S:.0f} s budget"}
        save()
    stage("adaptive", args.per_axis, None)
    stage("fixed16", args.per_axis, 16)
    stage("fixed16_large", args.large_per_axis, 16)
    if "adaptive" in values:
        for name in ("fixed48", "fixed16"):
            if name in values:
                report["float64"][name]["max_abs_difference_from_adaptive"] = float(
                    np.abs(values[name] - values["adaptive"]).max()
                )
    report["transfer_range_float64"] = [float(values["fixed48"].min()), float(values["fixed48"].max())]
    save()


if __name__ == "__main__":
    main()
