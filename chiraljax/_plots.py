"""Figures of simulation results (time traces, `plot_result`) and of sweep results: a heatmap
of a metric over two parameters, or lines over one (`plot_sweep`, also as
`dataset.chiraljax.plot()`).

`plot_sweep(dataset)` picks what to draw from the result's shape:

- two grid dimensions (or more, the others held at a chosen value): a heatmap of the metric
  over `x` (horizontal) and `y` (vertical), cells centred on the grid values;
- one dimension: the metric against `x`; with `y` naming a second dimension, one line per
  value of `y` (at most `MAX_LINES`, evenly picked);
- random or quasi-random samples (`x` and `y` on the same `sample`/`point` dimension): a
  scatter coloured by the metric.

Dimensions that are not plotted are held at the value given in `at` (nearest grid value) or
at their middle value, and the title says so.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from chiraljax._errors import require
from chiraljax._files import save_figure

#: Image types a figure can be written as (matplotlib's formats, chosen by the suffix).
FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".svgz", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".eps", ".ps")
#: The most lines drawn for a 1-d slice family.
MAX_LINES = 8


def _choose(name: str | None, options: list[str], what: str, default: str | None) -> str | None:
    if name is None:
        return default
    require(name in options, f"{what} = {name!r}: not in the result; choose one of {', '.join(options) or 'none'}")
    return name


def _hold(data: xr.DataArray, keep: set[str], at: Mapping[str, float]) -> tuple[xr.DataArray, list[str]]:
    """Select the dimensions not in `keep` at `at` (nearest) or at their middle index."""
    held = []
    for dim in [d for d in data.dims if d not in keep]:
        if dim in at:
            data = data.sel({dim: at[dim]}, method="nearest")
        else:
            data = data.isel({dim: data.sizes[dim] // 2})
        value = data.coords[dim].item() if dim in data.coords else None
        held.append(f"{dim} = {value:.4g}" if value is not None else dim)
    return data, held


def _edges(values: np.ndarray) -> np.ndarray:
    if values.size == 1:
        return np.array([values[0] - 0.5, values[0] + 0.5])
    middle = 0.5 * (values[1:] + values[:-1])
    return np.concatenate([[2 * values[0] - middle[0]], middle, [2 * values[-1] - middle[-1]]])


def plot_sweep(
    dataset: xr.Dataset,
    *,
    metric: str | None = None,
    x: str | None = None,
    y: str | None = None,
    at: Mapping[str, float] | None = None,
    kind: str = "auto",
    ax: Any = None,
):
    """Draw one metric of a sweep result.

    **Arguments:**

    - `dataset`: the result of `sweep` (or a file read with `xarray.load_dataset`).
    - `metric`: the variable to draw (default: the first metric given to the sweep).
    - `x`, `y`: parameter names for the axes (default: the first one or two dimensions).
    - `at`: values for the dimensions not drawn ({name: value}, nearest grid value).
    - `kind`: `"auto"` (heatmap for two grid parameters, else lines), `"heatmap"` or
      `"lines"` (1-d slices: the metric against `x`, one line per value of `y` if given).
    - `ax`: a matplotlib Axes to draw into (default: a new figure).

    **Returns:**

    The matplotlib Figure.
    """
    import matplotlib

    if ax is None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    require(kind in ("auto", "heatmap", "lines"), f"kind = {kind!r}: use 'auto', 'heatmap' or 'lines'")
    at = dict(at or {})
    metrics = list(dataset.data_vars)
    try:  # the order the metrics were given in, recorded by `sweep`
        given = [name for name in json.loads(dataset.attrs["metrics"]) if name in metrics]
        metrics = given + [name for name in metrics if name not in given]
    except (KeyError, TypeError, ValueError):
        pass
    metric = _choose(metric, metrics, "metric", metrics[0] if metrics else None)
    require(metric is not None, "the result holds no metric to plot")
    data = dataset[metric]
    require(
        not bool(data.isnull().all()),
        f"the metric {metric!r} is NaN at every point: nothing to draw (the solver failed there; "
        "rerun the sweep with adaptive stepping or more steps)",
    )
    names = list(dict.fromkeys([*data.dims, *data.coords]))
    x = _choose(x, names, "x", names[0])
    wants_y = data.ndim >= 2 and len(names) > 1 and kind != "lines"
    y = _choose(y, names, "y", names[1] if wants_y else None)
    require(
        kind != "heatmap" or (y is not None and data.ndim >= 2),
        f"kind = 'heatmap' needs two grid parameters; the metric {metric!r} has dims {', '.join(map(str, data.dims))}",
    )
    require(y is None or y != x, f"x and y are both {x!r}; choose two different parameters")
    for name in at:
        require(
            name in data.dims,
            f"at: {name!r} is not a grid dimension of the result; choose from {', '.join(map(str, data.dims))}",
        )
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.8), constrained_layout=True)
    else:
        fig = ax.figure
    dim_x = data.coords[x].dims[0] if x in data.coords else x
    dim_y = None if y is None else (data.coords[y].dims[0] if y in data.coords else y)

    if y is not None and dim_x == dim_y and kind != "lines":
        data, held = _hold(data, {dim_x}, at)
        points = ax.scatter(data[x].values, data[y].values, c=data.values, cmap="viridis", s=18)
        fig.colorbar(points, ax=ax, label=metric)
        ax.set_ylabel(y)
    elif y is not None and data.ndim >= 2 and kind != "lines":
        data, held = _hold(data, {dim_x, dim_y}, at)
        grid = data.transpose(dim_y, dim_x).values
        mesh = ax.pcolormesh(_edges(data[x].values), _edges(data[y].values), grid, cmap="viridis", shading="flat")
        fig.colorbar(mesh, ax=ax, label=metric)
        ax.set_ylabel(y)
    else:
        keep = {dim_x} | ({dim_y} if dim_y else set())
        data, held = _hold(data, keep, at)
        if dim_y is None:
            ax.plot(data[x].values, data.values, marker="o", ms=3)
        else:
            picks = np.unique(np.linspace(0, data.sizes[dim_y] - 1, MAX_LINES).round().astype(int))
            for index in picks:
                line = data.isel({dim_y: int(index)})
                ax.plot(line[x].values, line.values, marker="o", ms=3, label=f"{y} = {line[y].item():.4g}")
            ax.legend(fontsize="small")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    ax.set_xlabel(x)
    title = metric + (f"  ({', '.join(held)})" if held else "")
    ax.set_title(title, fontsize="medium")
    return fig


def save_sweep_plot(dataset: xr.Dataset, out: str | os.PathLike[str], **options: Any) -> None:
    """`plot_sweep(dataset, **options)` saved as an image (PNG, or any matplotlib format)."""
    import matplotlib.pyplot as plt

    fig = plot_sweep(dataset, **options)
    save_figure(fig, out, dpi=150)
    plt.close(fig)


#: What `plot_result` can draw: the Result field and the y-axis label.
RESULT_PLOTS = {
    "populations": ("populations", "excitation <n>"),
    "fluxes": ("fluxes", "photon flux out"),
    "outputs": ("outputs", "photon number out (cumulative)"),
}


def plot_result(result: Any, kind: str = "populations", *, names: list[str] | None = None, ax: Any = None):
    """Draw time traces of a simulation `Result`.

    **Arguments:**

    - `result`: what `cj.simulate` returned (not batched).
    - `kind`: "populations" (excitation of each emitter and virtual cavity), "fluxes" (photon
      flux out of each channel) or "outputs" (their time integrals).
    - `names`: the subsystems or channels to draw (default: all, except channels that never
      carry more than 1e-12).
    - `ax`: a matplotlib Axes to draw into (default: a new figure).

    **Returns:** the matplotlib Figure.
    """
    require(kind in RESULT_PLOTS, f"plot: kind = {kind!r}; choose one of {', '.join(RESULT_PLOTS)}")
    field, label = RESULT_PLOTS[kind]
    data = np.asarray(getattr(result, field))
    ts = np.asarray(result.ts)
    require(data.ndim == 2, f"plot: the result is batched (shape {data.shape}); plot one point of the batch")
    labels = list(result.names) if kind == "populations" else list(result.channel_names)
    if names is None:
        chosen = [i for i, n in enumerate(labels) if kind == "populations" or np.max(np.abs(data[:, i])) > 1e-12]
    else:
        unknown = [n for n in names if n not in labels]
        require(
            not unknown,
            f"plot: no {'subsystem' if kind == 'populations' else 'channel'} "
            f"{', '.join(map(repr, unknown))}; known: {', '.join(labels)}",
        )
        chosen = [labels.index(n) for n in names]
    if ax is None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.0))
    else:
        fig = ax.figure
    for i in chosen:
        ax.plot(ts, data[:, i], label=labels[i])
    ax.set_xlabel("t")
    ax.set_ylabel(label)
    ax.set_title(f"{kind} ({result.representation})")
    if chosen:
        ax.legend(fontsize="small", ncol=2 if len(chosen) > 6 else 1)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


@xr.register_dataset_accessor("chiraljax")
class SweepAccessor:
    """`dataset.chiraljax.plot(...)` and `.save_plot(path, ...)` on a sweep result (an
    `xarray.Dataset` from `cj.sweep` or read back from its file): `plot_sweep`."""

    def __init__(self, dataset: xr.Dataset):
        self._dataset = dataset

    def plot(self, **options: Any):
        """`plot_sweep(dataset, **options)`: the matplotlib Figure."""
        return plot_sweep(self._dataset, **options)

    def save_plot(self, out: str | os.PathLike[str], **options: Any) -> None:
        """`plot_sweep` written to an image file (atomically; format by suffix)."""
        save_sweep_plot(self._dataset, out, **options)


__all__ = ["RESULT_PLOTS", "SweepAccessor", "plot_result", "plot_sweep", "save_sweep_plot"]
