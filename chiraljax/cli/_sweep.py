"""`chiraljax sweep SPEC --out FILE`: run a sweep-spec file, with progress and resume."""

from pathlib import Path

import typer

_HELP = (
    "Run the parameter sweep described by SPEC and write the result (NetCDF .nc or Zarr .zarr).\n\n"
    "The spec (TOML or JSON, docs/sweep-spec.md) names the network (a network file, a preset or "
    "a Python builder), the axes (parameter names of the network), the metrics and the output. "
    "Everything is checked before any compute. Finished chunks are saved next to the output as "
    "they complete; if the run is interrupted, the same command resumes and recomputes only the "
    "missing chunks. A progress bar shows points per second."
)

_EPILOG = (
    "Exit codes: 0 ok, 2 bad input (spec, network, parameter name or value, metric or output "
    "path, with a one-line reason on stderr), 1 failure during the run (NaN results included: "
    "the file is written, the exit status says it is not to be trusted), 130 interrupted."
)


def sweep_command(
    spec_file: Path = typer.Argument(..., metavar="SPEC", show_default=False, help="Sweep spec, *.toml or *.json."),
    out: Path | None = typer.Option(
        None, "--out", "-o", metavar="FILE", help="Result file (*.nc or *.zarr); overrides output.path in the spec."
    ),
    chunk_size: int | None = typer.Option(
        None, "--chunk-size", min=1, help="Points per compiled batch; overrides sweep.chunk_size."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing result or unfinished sweep of another spec."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
    allow_python: bool = typer.Option(
        False,
        "--allow-python",
        help="Run the spec's network.python builder (a .py file beside the spec). A spec is data: "
        "without this flag no code named in it runs.",
    ),
) -> None:
    """Run a sweep spec and write its result."""
    from rich.console import Console

    from chiraljax._errors import require
    from chiraljax.sweeps._sweep import sweep_cost
    from chiraljax.sweeps._sweep_spec import load_sweep_spec, run_sweep_spec

    spec = load_sweep_spec(spec_file, allow_python=allow_python)
    require(
        out is not None or spec.out is not None,
        f"{spec_file}: no output file; pass --out FILE or set [output] path in the spec",
    )
    console = Console(stderr=True, highlight=False)
    axes = ", ".join(f"{axis.name} ({axis.size})" for axis in spec.axes)
    console.print(f"sweep {spec_file}: {spec.n_points} points over {axes}; metrics {', '.join(spec.metrics)}")
    computed: list[int] = []
    result = run_sweep_spec(
        spec,
        out=out,
        chunk_size=chunk_size,
        overwrite=overwrite,
        progress=progress,
        callback=lambda chunk: computed.append(chunk.stop - chunk.start),
    )
    cost = sweep_cost(result)
    target = out if out is not None else spec.out
    if computed:
        console.print(
            f"{cost.points_computed} points computed in {cost.eval_time_s:.1f} s "
            f"({cost.points_per_second:,.1f} points/s on {cost.n_devices} device(s), "
            f"compile {cost.compile_time_s:.1f} s)"
        )
    else:
        console.print("nothing to compute: the result was already complete")
    console.print(f"result written to {target}")
    failed = _nan_points(result)
    if failed:
        where = ", ".join(f"{name} at {count} of {size} points" for name, (count, size) in failed.items())
        console.print(
            f"chiraljax: error: the solver gave NaN ({where}); use adaptive stepping "
            "(remove simulation.steps) or more steps, or narrow the axes",
            highlight=False,
        )
        raise typer.Exit(1)


def _nan_points(result) -> dict[str, tuple[int, int]]:
    """(NaN points, points) of each metric that has NaN (a failed solve: a step budget run out,
    fixed steps too coarse for the rates)."""
    import numpy as np

    return {
        name: (int(np.isnan(var.values).sum()), int(var.size))
        for name, var in result.data_vars.items()
        if np.issubdtype(var.dtype, np.floating) and np.isnan(var.values).any()
    }


def register(app: typer.Typer) -> None:
    """Add the `sweep` command to the chiraljax app."""
    app.command("sweep", help=_HELP, epilog=_EPILOG)(sweep_command)
