"""`chiraljax plot FILE.nc --out fig.png`: heatmap or line plot of a sweep result."""

from __future__ import annotations

from pathlib import Path

import typer

_HELP = (
    "Plot a metric of a sweep result (FILE.nc or FILE.zarr from `chiraljax sweep`).\n\n"
    "Two grid parameters give a heatmap (x horizontal, y vertical); one gives a line, and "
    "--kind lines with --y naming a second dimension a family of lines (one per value, at most 8). Random samples "
    "give a scatter coloured by the metric. Dimensions not drawn are held at their middle "
    "value, or at --at NAME=VALUE."
)


def _parse_at(items: list[str]) -> dict[str, float]:
    from chiraljax._errors import require

    at = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        require(bool(sep and name), f"--at {item!r}: expected NAME=VALUE")
        try:
            at[name] = float(value)
        except ValueError:
            raise typer.BadParameter(f"--at {item!r}: VALUE must be a number") from None
    return at


def plot_command(
    result_file: Path = typer.Argument(..., metavar="FILE", show_default=False, help="Sweep result, *.nc or *.zarr."),
    out: Path = typer.Option(..., "--out", "-o", metavar="FIG.png", help="Image to write."),
    metric: str | None = typer.Option(None, "--metric", "-m", help="Metric to draw (default: the first)."),
    x: str | None = typer.Option(None, "--x", help="Parameter on the horizontal axis."),
    y: str | None = typer.Option(None, "--y", help="Second parameter (heatmap rows or line family)."),
    kind: str = typer.Option(
        "auto",
        "--kind",
        metavar="auto|heatmap|lines",
        help="Heatmap for two grid parameters (auto) or 1-d line slices.",
    ),
    at: list[str] = typer.Option(
        [], "--at", metavar="NAME=VALUE", help="Hold a parameter that is not drawn at this value (repeatable)."
    ),
) -> None:
    """Plot a sweep result as a heatmap or lines."""
    from chiraljax._errors import require
    from chiraljax._files import require_writable
    from chiraljax._plots import FIGURE_SUFFIXES, save_sweep_plot
    from chiraljax.sweeps._sweep_store import FORMATS, read_result

    path = result_file.expanduser().absolute()
    require(path.suffix in FORMATS, f"{result_file}: expected a .nc or .zarr sweep result")
    require(path.exists(), f"{result_file} does not exist; check the path")
    dataset = read_result(path)
    require(dataset is not None, f"{result_file}: not a readable sweep result")
    require_writable(out, f"--out {out}", FIGURE_SUFFIXES)
    save_sweep_plot(dataset, out, metric=metric, x=x, y=y, at=_parse_at(at), kind=kind)
    typer.echo(f"figure written to {out}")


def register(app: typer.Typer) -> None:
    """Add the `plot` command to the chiraljax app."""
    app.command("plot", help=_HELP)(plot_command)
