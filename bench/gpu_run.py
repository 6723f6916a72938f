"""GPU benchmark run: sweep throughput, memory and the float64-versus-float32 difference.

One script that a machine with an accelerator runs end to end in under 5 minutes, installing
nothing and reaching no network. It sweeps the two-module transfer of bench/sweep_throughput.py
(examples/two_module_transfer.toml; 4-parameter grid, `--per-axis` values each, 10^4 points by
default) on all local devices and writes `<out-dir>/gpu_run.json` with

- the devices, JAX version, precision and the command;
- `single_solve_s`: one warm `cj.simulate` of the nominal network;
- `float64`: points per second, compile time, chunk size and memory (device peak bytes in use
  where the device reports it, else the process's peak resident memory);
- `float32`: the same sweep in a subprocess with `CHIRALJAX_PRECISION=float32` (at rtol 1e-6,
  atol 1e-8, since float32 cannot meet the float64 tolerances), its throughput, and the
  difference of its transfer values from the float64 ones (max and median absolute).

`--small` runs a 2^4-point grid, so that the script can be checked on a CPU in a few minutes.

Usage:  python bench/gpu_run.py --out-dir DIR [--small] [--per-axis 10] [--chunk-size N]
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

import chiraljax as cj
from sweep_throughput import grid_axes, load_transfer, machine, single_solve_seconds

HERE = Path(__file__).resolve().parent
#: Tolerances of the float32 run (float32 resolves about 1e-7 relative).
FLOAT32_TOLERANCES = {"rtol": 1e-6, "atol": 1e-8}
#: The whole script must finish within this; the float32 subprocess gets what is left.
DEADLINE_S = 290.0


def memory_record() -> dict:
    """Peak memory: each device's `peak_bytes_in_use` if it reports one, and the host's."""
    record = {"host_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    stats = [device.memory_stats() or {} for device in jax.local_devices()]
    peaks = [s["peak_bytes_in_use"] for s in stats if "peak_bytes_in_use" in s]
    if peaks:
        record["device_peak_bytes_in_use"] = peaks
        record["device_bytes_limit"] = [s.get("bytes_limit") for s in stats]
    return record


def run_sweep(per_axis: int, chunk_size: int | None, tolerances: dict) -> tuple[np.ndarray, dict]:
    """The grid sweep; returns the transfer values (flat) and the timing record."""
    network, settings = load_transfer()
    result = cj.sweep(network, grid_axes(per_axis), metrics={"transfer": "population:A1+B1"},
                      t_span=settings.t_span, representation="sector", chunk_size=chunk_size,
                      progress=False, **tolerances)
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
        "tolerances": tolerances,
        "memory": memory_record(),
    }
    return np.asarray(result["transfer"].values, dtype=np.float64).ravel(), record


def float32_worker(args: argparse.Namespace) -> None:
    """Run in the float32 subprocess: sweep and save the values and the record."""
    values, record = run_sweep(args.per_axis, args.chunk_size, FLOAT32_TOLERANCES)
    np.save(args.out_dir / "float32_transfer.npy", values)
    (args.out_dir / "float32_record.json").write_text(json.dumps(record))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--small", action="store_true", help="2 values per axis (16 points)")
    parser.add_argument("--per-axis", type=int, default=None)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--float32-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.per_axis = args.per_axis or (2 if args.small else 10)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if args.float32_worker:
        float32_worker(args)
        return

    start = time.perf_counter()
    network, settings = load_transfer()
    report = {
        "command": " ".join(["python", "bench/gpu_run.py", *sys.argv[1:]]),
        "machine": machine(),
        "per_axis": args.per_axis,
        "single_solve_s": single_solve_seconds(network, settings, repeats=5),
    }
    values64, report["float64"] = run_sweep(args.per_axis, args.chunk_size, {})
    report["float64"]["cost_per_point_vs_single_solve"] = (
        1.0 / report["float64"]["points_per_second"] / report["single_solve_s"])

    left = DEADLINE_S - (time.perf_counter() - start)
    command = [sys.executable, str(Path(__file__).resolve()), "--float32-worker",
               "--out-dir", str(args.out_dir), "--per-axis", str(args.per_axis)]
    if args.chunk_size:
        command += ["--chunk-size", str(args.chunk_size)]
    env = dict(os.environ, CHIRALJAX_PRECISION="float32")
    try:
        worker = subprocess.run(command, env=env, capture_output=True, text=True,
                                timeout=max(left, 30.0))
        if worker.returncode == 0:
            values32 = np.load(args.out_dir / "float32_transfer.npy")
            record = json.loads((args.out_dir / "float32_record.json").read_text())
            difference = np.abs(values32 - values64)
            record["max_abs_difference_from_float64"] = float(difference.max())
            record["median_abs_difference_from_float64"] = float(np.median(difference))
            report["float32"] = record
        else:
            report["float32"] = {"error": worker.stderr[-2000:]}
    except subprocess.TimeoutExpired:
        report["float32"] = {"error": f"did not finish within the {DEADLINE_S:.0f} s deadline"}
    report["transfer_range_float64"] = [float(values64.min()), float(values64.max())]
    report["total_wall_s"] = time.perf_counter() - start
    path = args.out_dir / "gpu_run.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
