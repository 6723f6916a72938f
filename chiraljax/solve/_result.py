"""The result of a simulation: named time traces, outputs, final state and a conservation check."""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex, Float

from chiraljax._errors import require
from chiraljax._types import State

if TYPE_CHECKING:
    from chiraljax.algebra._space import Space


def _read(x):
    """A computed array as NumPy (indexing it then costs microseconds, not a dispatch per
    operation); a traced one (under jit, vmap, grad) as it is."""
    return x if isinstance(x, jax.core.Tracer) else np.asarray(x)


@functools.partial(jax.jit, static_argnums=1)
def _final_sum(values, columns: tuple[int, ...]):
    """sum_c values[..., -1, c] of a traced array, as one compiled call: under an eager `jax.grad`
    that is one program to compile and differentiate instead of a slice, a squeeze and an add
    per column (each compiled on first use, forward and backward)."""
    return values[..., -1, jnp.asarray(columns)].sum(-1)


def _index(known: tuple[str, ...], name: str, what: str) -> int:
    """The position of `name` among the `known` subsystem or channel names."""
    if name not in known:
        require(False, f"Result: no {what} {name!r}; known: {', '.join(known)}")
    return known.index(name)


_STATIC = {"static": True}


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Result:
    """What `simulate` returns: an immutable pytree (it comes out of jit, vmap and grad).

    A frozen dataclass registered with JAX rather than an `eqx.Module`: a warm `simulate`
    builds one per call, and a Module's construction and bound methods cost about 100 us of
    it (a third of the Python work around a small solve).

    **Fields:**

    - `representation`: 'sector', 'full' or 'delay'.
    - `ts`: (T,) save times.
    - `names`: subsystem names (emitters, then virtual cavities).
    - `populations`: (T, n) excitation number <n_j>(t) of each subsystem.
    - `channel_names`, `channel_kinds`: output channels ('end', 'loss', 'decay', 'dephasing',
      'in_flight' where relevant).
    - `fluxes`: (T, K) photon flux <L_k^dag L_k>(t) leaving through each channel.
    - `outputs`: (T, K) cumulative output int_{t0}^t flux dt.
    - `final_state`: the final density matrix (Lindblad) or amplitudes (delay).
    - `in_flight`: (T,) excitation still travelling on delayed links (0 in the Markov limit).
    - `conservation_error`: |emitters + outputs + in flight + lost - initial| at the end.
    - `amplitudes`: (T, n) single-excitation amplitudes when the representation has them.
    - `populations_stderr`: (T, n) standard error of `populations` when they are a mean over
      noise trajectories (the delay representation with dephasing), else None.
    - `space`: the simulation's `Space` (Lindblad representations; None for 'delay'): its
      basis is the basis of `final_state` and `states` (`basis_labels`, `dims`).
    - `expect`: expectation values Tr(O rho(t)) of `simulate`'s `e_ops`, (T, E) for a list
      or {name: (T,)} for a dict; None when none were asked for.
    - `states`: (T, D, D) density matrices at the save times with `save_states=True`, else
      None.
    """

    representation: str = dataclasses.field(metadata=_STATIC)
    ts: Float[Array, "*batch T"]
    names: tuple[str, ...] = dataclasses.field(metadata=_STATIC)
    populations: Float[Array, "*batch T n"]
    channel_names: tuple[str, ...] = dataclasses.field(metadata=_STATIC)
    channel_kinds: tuple[str, ...] = dataclasses.field(metadata=_STATIC)
    fluxes: Float[Array, "*batch T K"]
    outputs: Float[Array, "*batch T K"]
    final_state: State
    in_flight: Float[Array, "*batch T"]
    conservation_error: Float[Array, "*batch"]
    amplitudes: Complex[Array, "*batch n"] | None = None
    populations_stderr: Float[Array, "*batch T n"] | None = None
    space: Space | None = dataclasses.field(default=None, metadata=_STATIC)
    expect: Complex[Array, "*batch T E"] | dict[str, Complex[Array, "*batch T"]] | None = None
    states: Complex[Array, "*batch T D D"] | None = None

    @property
    def dims(self) -> tuple[int, ...]:
        """The levels of each subsystem (`names` order): QuTiP's dims of the full space."""
        require(self.space is not None, "Result: the delay representation has no state space")
        return tuple(self.space.dims)

    @property
    def basis_labels(self) -> tuple[str, ...]:
        """One label per basis state of `final_state` and `states`: the occupations in `names`
        order, e.g. '0100'."""
        from chiraljax.solve._qutip import basis_labels

        require(self.space is not None, "Result: the delay representation has no state space")
        return basis_labels(self.space)

    def to_qobj(self, index: int = -1, *, full: bool = True):
        """The state at save time `ts[index]` as a `qutip.Qobj` density matrix, on the full
        space of `names` (dims `dims`, zeros outside a sector) or, with `full=False`, on the
        simulation's basis. The last state is `final_state`; others need `save_states=True`."""
        from chiraljax.solve._qutip import to_qobj

        require(self.space is not None, "Result: the delay representation has no density matrix")
        if index in (-1, len(np.asarray(self.ts)) - 1) and self.states is None:
            matrix = np.asarray(self.final_state)
        else:
            require(
                self.states is not None,
                "Result: only the final state was kept; simulate with save_states=True for the others",
            )
            matrix = np.asarray(self.states)[index]
        return to_qobj(matrix, self.space, full)

    def plot(
        self, kind: str = "populations", *, names: list[str] | None = None, ax: Any = None, out: str | None = None
    ):
        """Draw time traces: kind "populations", "fluxes" or "outputs" (`chiraljax._plots.
        plot_result`); with `out`, also write the figure there (format by suffix). Returns the
        matplotlib Figure."""
        from chiraljax._plots import plot_result

        fig = plot_result(self, kind, names=names, ax=ax)
        if out is not None:
            from chiraljax._files import save_figure

            save_figure(fig, out, dpi=150)
        return fig

    def _fields_text(self) -> str:
        """Every field by name, arrays by dtype and shape: the view of a traced Result."""
        import equinox as eqx

        return eqx.tree_pformat(self)

    def _concrete(self) -> bool:
        return not any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(self))

    def __repr__(self) -> str:
        if not self._concrete():
            return self._fields_text()
        from chiraljax._display import result_text

        return result_text(self)

    def _repr_html_(self) -> str:
        if not self._concrete():
            return f"<pre>{self._fields_text()}</pre>"
        from chiraljax._display import result_html

        return result_html(self)

    def population(self, name: str):
        """<n>(t) of one subsystem."""
        return _read(self.populations)[..., _index(self.names, name, "subsystem")]

    def final_population(self, *names: str):
        """Summed excitation of the given subsystems at the last time."""
        columns = tuple(_index(self.names, n, "subsystem") for n in names)
        populations = _read(self.populations)
        if isinstance(populations, jax.core.Tracer):
            return _final_sum(populations, columns)
        return sum(populations[..., -1, c] for c in columns)

    def flux(self, channel: str):
        """Photon flux out of one channel over time."""
        return _read(self.fluxes)[..., _index(self.channel_names, channel, "channel")]

    def emitted(self, channel: str):
        """Total photon number that left through one channel by the end."""
        column = _index(self.channel_names, channel, "channel")
        outputs = _read(self.outputs)
        return _final_sum(outputs, (column,)) if isinstance(outputs, jax.core.Tracer) else outputs[..., -1, column]

    def total_output(self, kinds: tuple[str, ...] = ("end",)):
        """Summed final output of all channels of the given kinds."""
        idx = tuple(k for k, kind in enumerate(self.channel_kinds) if kind in kinds)
        outputs = _read(self.outputs)
        if not idx:
            return np.zeros(np.shape(outputs)[:-2])
        if isinstance(outputs, jax.core.Tracer):
            return _final_sum(outputs, idx)
        return outputs[..., -1, list(idx)].sum(-1)

    def scalars(self) -> dict[str, float]:
        """Final populations, total outputs per channel and the conservation error, as floats."""
        out: dict[str, float] = {}
        populations, outputs = np.asarray(self.populations), np.asarray(self.outputs)  # NumPy: no device op
        for j, n in enumerate(self.names):
            out[f"population:{n}"] = float(populations[-1, j])
        for k, c in enumerate(self.channel_names):
            if self.channel_kinds[k] != "dephasing":
                out[f"output:{c}"] = float(outputs[-1, k])
        out["in_flight"] = float(np.asarray(self.in_flight)[-1])
        out["conservation_error"] = float(np.asarray(self.conservation_error))
        return out

    def traces(self) -> dict[str, list[float]]:
        """Time traces as lists (for JSON)."""
        out: dict[str, list[float]] = {"t": np.asarray(self.ts).tolist()}
        for j, n in enumerate(self.names):
            out[f"population:{n}"] = np.asarray(self.populations)[:, j].tolist()
        for k, c in enumerate(self.channel_names):
            if self.channel_kinds[k] != "dephasing":
                out[f"flux:{c}"] = np.asarray(self.fluxes)[:, k].tolist()
        return out
