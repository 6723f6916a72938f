"""Sweep throughput: the two-module transfer over a 4-parameter grid of 10^4 points.

The network is examples/two_module_transfer.toml (P = 0.5770813 at its nominal values). The
grid crosses, with `--per-axis n` values each (default 10, so 10^4 points):

- `links.1.loss_db` in [0, 3] dB (cable loss between the modules),
- `emitters.*.dephasing` in [0, 1e-2] (every qubit),
- `emitters.?1.detuning` in [0, 0.2] kappa (frequency mismatch of the receiving module),
- `controls.absorb.kappa` in [0.8, 1.2] (bandwidth mismatch of the absorption pulse),

with the metric `population:A1+B1` on the sector solver, adaptive at the network file's
tolerances (rtol 1e-8, atol 1e-10) or with `--steps n` fixed 8th-order steps (the sweep saves
only the end points, so the lean fixed stepper runs). `--host-devices n` splits the CPU into n
XLA host devices (one per core) so that the sweep shards its batch over them; it must be given
before JAX starts, which this script arranges. Reported:

- `single_solve_s`: median wall time of one warm `cj.simulate` of the same network (n_save=2);
- `points_per_second`, `compile_time_s`: of the sweep (one compile, `jit(vmap)` in chunks);
- `cost_per_point_vs_single_solve`: (1 / points_per_second) / single_solve_s;
- `max_abs_error_vs_reference`: the largest difference, over `--check` random grid points, of
  the sweep's values from adaptive solves at rtol 1e-10, atol 1e-12.

The sweep stops after `--budget` seconds past its first finished chunk. Without `--out` every
run measures afresh (its result goes to a temporary folder, removed at the end); with `--out`
the chunks done stay saved in the output's chunk folder, so rerunning the same command resumes
it. A finished run
reports the engine's timings (`points_per_second` over all chunks, compile excluded); a stopped
one measures the throughput between its first and last chunk completions (exactly that many
chunks ran in between) and reports the wait for the first completion (compile included).

Usage:  python bench/sweep_throughput.py [--per-axis 10] [--chunk-size 500] [--budget 1800]
        [--steps n] [--host-devices n] [--check 40]
        [--out RESULT.nc] [--json bench/results/sweep_throughput_steps12.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _host_devices_from_argv() -> None:
    """Apply --host-devices before JAX is imported (XLA reads its flags once, at start-up)."""
    if "--host-devices" in sys.argv:
        n = int(sys.argv[sys.argv.index("--host-devices") + 1])
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()


if __name__ == "__main__":
    _host_devices_from_argv()

import jax  # noqa: E402
import numpy as np  # noqa: E402

import chiraljax as cj  # noqa: E402
from chiraljax.sweeps._sweep_model import _updates, resolve_parameter  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NETWORK_FILE = ROOT / "examples" / "two_module_transfer.toml"
METRIC = {"transfer": "population:A1+B1"}
#: The four swept parameters and their ranges.
RANGES = {
    "links.1.loss_db": (0.0, 3.0),
    "emitters.*.dephasing": (0.0, 1e-2),
    "emitters.?1.detuning": (0.0, 0.2),
    "controls.absorb.kappa": (0.8, 1.2),
}


class _Stop(KeyboardInterrupt):
    """Ends a sweep when the evaluation budget is spent (finished chunks stay saved)."""


def load_transfer() -> tuple[cj.Network, cj.SimulationSettings]:
    """The two-module transfer network and its [simulation] settings."""
    return cj.load_network(NETWORK_FILE)


def grid_axes(per_axis: int) -> list[cj.Grid]:
    """The 4-parameter grid, `per_axis` values per parameter."""
    return [cj.Grid.linspace(name, lo, hi, per_axis) for name, (lo, hi) in RANGES.items()]


def single_solve_seconds(
    network: cj.Network, settings: cj.SimulationSettings, repeats: int = 20, steps: int | None = None
) -> float:
    """Median wall time of one warm solve (compiled beforehand), n_save=2 like the sweep."""
    options = dict(n_save=2, representation="sector", rtol=settings.rtol, atol=settings.atol, steps=steps)

    def solve() -> None:
        result = cj.simulate(network, settings.t_span, **options)
        jax.block_until_ready(result.populations)

    solve()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        solve()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed_sweep(
    network: cj.Network,
    settings: cj.SimulationSettings,
    axes,
    *,
    chunk_size: int | None,
    budget: float,
    out: Path | None,
    rtol: float | None = None,
    atol: float | None = None,
    steps: int | None = None,
) -> dict:
    """Run the sweep until done or until `budget` seconds after the first chunk finished.

    **Returns:** points per second, compile time, points done, chunks, whether it finished,
    and the Dataset (None if stopped early).
    """
    marks: list[tuple[float, int]] = []
    start = time.perf_counter()

    def callback(chunk: cj._sweep.ChunkDone) -> None:
        marks.append((time.perf_counter(), chunk.stop - chunk.start))
        if len(marks) > 1 and marks[-1][0] - marks[0][0] > budget and chunk.index < chunk.n_chunks - 1:
            raise _Stop

    result = None
    try:
        result = cj.sweep(
            network,
            axes,
            metrics=METRIC,
            t_span=settings.t_span,
            representation="sector",
            rtol=rtol or settings.rtol,
            atol=atol or settings.atol,
            steps=steps,
            chunk_size=chunk_size,
            out=out,
            progress=sys.stderr.isatty(),
            callback=callback,
        )
    except _Stop:
        pass
    n_points = int(np.prod([axis.size for axis in axes]))
    record = {
        "n_points": n_points,
        "points_done_this_run": sum(n for _, n in marks),
        "chunks_done_this_run": len(marks),
        "finished": result is not None,
    }
    if len(marks) >= 2 and result is None:
        # Between the first and the last completion of a stopped run exactly len(marks) - 1
        # chunks were evaluated, whether chunks run synchronously (CPU: completion k is
        # reported after chunk k + 1 ran) or asynchronously (after chunk k ran).
        record["points_per_second"] = sum(n for _, n in marks[1:]) / (marks[-1][0] - marks[0][0])
        record["seconds_to_first_chunk"] = marks[0][0] - start
    if result is not None:
        record["points_per_second"] = float(result.attrs["points_per_second"])
        record["compile_time_s"] = float(result.attrs["compile_time_s"])
        record["eval_time_s"] = float(result.attrs["eval_time_s"])
        record["chunk_size"] = int(result.attrs["chunk_size"])
    record["result"] = result
    return record


def reference_error(network: cj.Network, settings: cj.SimulationSettings, axes, result, n: int) -> float:
    """Largest |sweep - adaptive solve at rtol 1e-10, atol 1e-12| over n random grid points."""
    rng = np.random.default_rng(0)
    values = result["transfer"]
    setters = {axis.name: resolve_parameter(axis.name, network) for axis in axes}
    worst = 0.0
    for _ in range(n):
        pick = {axis.name: int(rng.integers(axis.size)) for axis in axes}
        point = values.isel(pick)
        net = network.with_parameters(_updates(setters, {name: float(point[name]) for name in pick}))
        res = cj.simulate(net, settings.t_span, n_save=2, representation="sector", rtol=1e-10, atol=1e-12)
        worst = max(worst, abs(float(res.final_population("A1", "B1")) - float(point)))
    return worst


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "devices": [str(device) for device in jax.devices()],
        "jax": jax.__version__,
        "precision": cj.PRECISION,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-axis", type=int, default=10)
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument(
        "--budget", type=float, default=1800.0, help="seconds of evaluation after the first chunk before stopping"
    )
    parser.add_argument("--rtol", type=float, default=None)
    parser.add_argument("--atol", type=float, default=None)
    parser.add_argument(
        "--steps", type=int, default=None, help="fixed 8th-order steps per solve (lockstep batches) instead of adaptive"
    )
    parser.add_argument(
        "--host-devices", type=int, default=1, help="XLA host devices to shard the batch over on a CPU (one per core)"
    )
    parser.add_argument(
        "--check",
        type=int,
        default=40,
        help="random grid points re-solved adaptively at rtol 1e-10 to measure the error",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="result file, whose chunk folder lets a stopped run resume (default: a fresh temporary one)",
    )
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "sweep_throughput_latest.json")
    args = parser.parse_args()

    network, settings = load_transfer()
    single = single_solve_seconds(network, settings, steps=args.steps)
    axes = grid_axes(args.per_axis)
    with tempfile.TemporaryDirectory() as scratch:
        record = timed_sweep(
            network,
            settings,
            axes,
            chunk_size=args.chunk_size,
            budget=args.budget,
            out=args.out or Path(scratch) / "sweep_throughput.nc",
            rtol=args.rtol,
            atol=args.atol,
            steps=args.steps,
        )
    result = record.pop("result")
    rate = record.get("points_per_second")
    report = {
        "command": "python " + " ".join([os.path.relpath(__file__, ROOT), *sys.argv[1:]]),
        "machine": machine(),
        "network": os.path.relpath(NETWORK_FILE, ROOT),
        "axes": {name: [lo, hi, args.per_axis] for name, (lo, hi) in RANGES.items()},
        "metric": METRIC,
        "rtol": args.rtol or settings.rtol,
        "atol": args.atol or settings.atol,
        "steps": args.steps,
        "single_solve_s": single,
        "single_solve_points_per_second": 1.0 / single,
        **record,
        "cost_per_point_vs_single_solve": None if not rate else (1.0 / rate) / single,
        "target_points_per_second": 2000,
    }
    if result is not None:
        report["transfer_range"] = [float(result["transfer"].min()), float(result["transfer"].max())]
        report["max_abs_error_vs_reference"] = reference_error(network, settings, axes, result, args.check)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
