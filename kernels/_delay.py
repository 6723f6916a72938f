r"""Exact single-excitation dynamics of emitters on a time-delayed bidirectional waveguide.

The waveguide is a line of `K` nodes sorted left to right, joined by `K + 1` links: link `0`
runs from the left end to node `0`, link `k` from node `k - 1` to node `k`, link `K` from node
`K - 1` to the right end. Every link carries a right-moving (R) and a left-moving (L) field. A
field entering link `l` at time `t` as `e_l(t)` arrives at the far end as

$$a_l(t) = \sqrt{\eta_l}\, e^{i \phi_l}\, e_l(t - \tau_l).$$

A node maps its incoming amplitudes (R arriving from the left, L arriving from the right) to its
outgoing ones (R leaving to the right, L leaving to the left):

- a port of emitter `j` with rates `gR(t), gL(t)`:
  $f^R_{out} = f^R_{in} + \sqrt{g_R} c_j$, $f^L_{out} = f^L_{in} + \sqrt{g_L} c_j$;
- a scatterer with a c-number matrix `S`:
  $(f^R_{out}, f^L_{out}) = S (f^R_{in}, f^L_{in})$, so `S[0, 0]` is the transmission left to
  right, `S[1, 1]` right to left, `S[1, 0]` the reflection seen from the left and `S[0, 1]` the
  reflection seen from the right;
- each end with reflection amplitude `r` and transmission `t = sqrt(1 - |r|^2)`: the field
  re-entering the waveguide is `r a + t u` and the field leaving it (the output) is
  `t a - conj(r) u`, with `a` the field arriving at the end and `u` the input envelope.

The emitters (docs/theory.md section 3) obey

$$\dot c = -i H(t) c - \tfrac{\gamma'}{2} c - \sum_{p \in j}\Big[\tfrac{g_R + g_L}{2} c_j
   + \sqrt{g_R} f^R_{in,p} + \sqrt{g_L} f^L_{in,p}\Big].$$

Links flagged instantaneous (delay exactly zero) pass the field at the same time; the fields of
all nodes then solve the linear system `(1 - P W) e = P a + s + U u` once per solve.

Numerics: fixed-step RK4 in `jax.lax.scan`. The field entering every delayed link is stored
per step as a cubic Hermite piece (one-sided values and time derivatives at both ends of the
step, the derivatives obtained by forward-mode differentiation of the node equations, controls
included), so the delayed arguments at the stage times `t_n, t_n + dt/2, t_n + dt` are read to
fourth order. Jumps in the controls and in the history (the first arrival of a signal) are kept
exact when they sit on grid points: controls are evaluated one-sidedly inside each step and the
pieces store one-sided values. Time integrals use the end-corrected trapezoidal rule
`h/2 (q0 + q1) + h^2/12 (q0' - q1')`, also fourth order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex, Float, PRNGKeyArray, PyTree

from chiraljax._checks import is_traced, require, safe_sqrt
from chiraljax._precision import complex_dtype, full_precision_products, real_dtype

__all__ = ["DelayProblem", "DelaySolution", "DephasingAverage", "scatterer_matrix", "solve_delay", "dephasing_average"]

# Controls are evaluated this fraction of a step inside each step, which gives one-sided values
# at jumps placed on grid points while changing smooth controls by a negligible amount.
_ONE_SIDED = 1e-9
# Tolerance when a delay is an integer number of steps.
_GRID_TOL = 1e-9
# Unitarity tolerance for lossless scatterers and the smallest admissible singular value of the
# instantaneous-link system.
_UNITARY_TOL = 1e-9
_SINGULAR_TOL = 1e-9

TimeFunction = Callable[[Any], Array]


def scatterer_matrix(reflection: Array, transmission: Array | None = None) -> Array:
    r"""The 2 x 2 matrix of a joint, impedance step or mirror.

    With reflection `r` seen from the left and real transmission `t = sqrt(1 - |r|^2)` (the
    default) the lossless matrix is

    $$S = \begin{pmatrix} t & -r^* \\ r & t \end{pmatrix},$$

    an impedance step for real `r` (reflection `r` from the left, `-r` from the right). A given
    `transmission` with `|r|^2 + |t|^2 < 1` describes a lossy element (flag it `lossy`).

    **Arguments:**

    - `reflection`: complex reflection amplitude seen from the left.
    - `transmission`: optional transmission amplitude.

    **Returns:** the complex (2, 2) matrix mapping (R in, L in) to (R out, L out).
    """
    r = jnp.asarray(reflection, complex_dtype())
    if transmission is None:
        t = safe_sqrt(1.0 - jnp.abs(r) ** 2).astype(complex_dtype())
    else:
        t = jnp.asarray(transmission, complex_dtype())
    return jnp.stack([jnp.stack([t, -jnp.conj(r)]), jnp.stack([r, t])])


def _as_time_function(value: Any, shape: tuple[int, ...], dtype: Any) -> TimeFunction:
    if callable(value):
        return value
    arr = jnp.zeros(shape, dtype) if value is None else jnp.asarray(value, dtype)
    return lambda t: arr


class DelayProblem(eqx.Module):
    r"""Array description of a single-excitation waveguide network with delays.

    Static structure (changing it recompiles): the node kinds, the emitter of each port, which
    links are instantaneous and which scatterers are lossy. Everything else is an array leaf
    that `jit`, `vmap` and `grad` trace.

    **Arguments:**

    - `nodes`: one entry per node, left to right: an emitter index for a port, `None` for a
      scatterer (its matrix is the next row of `scattering`).
    - `delay`: (K + 1,) link delays `tau_l >= 0`.
    - `transmission`: (K + 1,) power transmissions `eta_l` in [0, 1] (default 1).
    - `phase`: (K + 1,) propagation phases `phi_l` (default 0).
    - `rates`: (P, 2) rates `(gR, gL)` of the ports in node order, or a function of `t`
      returning them.
    - `hamiltonian`: (N, N) Hermitian emitter Hamiltonian (detunings on the diagonal, direct
      couplings off it), or a function of `t` returning it (default 0).
    - `scattering`: (S, 2, 2) scatterer matrices (see `scatterer_matrix`).
    - `end_reflection`: (2,) reflection amplitudes of the left and right ends (0 matched,
      -1 mirror).
    - `intrinsic_decay`: (N,) intrinsic decay rates `gamma'` (default 0).
    - `inputs`: optional function of `t` returning the (2,) single-photon envelopes entering at
      the left end (right-moving) and at the right end (left-moving).
    - `detectors`: optional function of `t` returning the (2,) envelopes v(t) of the output
      modes read at the left and right ends (0 where none): the solution carries the overlap
      integrals A(t) = int_{t0}^t v^*(s) out(s) ds of each end's output field with its mode and
      the mode norms int_{t0}^t |v|^2 ds.
    - `n_emitters`: number of emitters (default: one more than the largest port emitter).
    - `instantaneous`: (K + 1,) static flags of zero-delay links; by default the links whose
      concrete delay is exactly zero. Required when `delay` is traced.
    - `lossy`: (S,) static flags; a lossless scatterer must be unitary, a lossy one passive.

    Concrete arrays are validated here and the error names the field; traced ones are not.
    """

    node_emitter: tuple[int, ...] = eqx.field(static=True)
    instantaneous: tuple[bool, ...] = eqx.field(static=True)
    lossy: tuple[bool, ...] = eqx.field(static=True)
    n_emitters: int = eqx.field(static=True)
    delay: Float[Array, " links"]
    transmission: Float[Array, " links"]
    phase: Float[Array, " links"]
    scattering: Complex[Array, "scatterers 2 2"]
    end_reflection: Complex[Array, 2]
    intrinsic_decay: Float[Array, " emitters"]
    rates: Float[Array, "P 2"] | Callable[[Any], Float[Array, "P 2"]]
    hamiltonian: Complex[Array, "N N"] | Callable[[Any], Complex[Array, "N N"]] | None
    inputs: Callable[[Any], Complex[Array, " 2"]] | None
    detectors: Callable[[Any], Complex[Array, " 2"]] | None

    def __init__(
        self,
        nodes: tuple[int | None, ...] | list[int | None],
        delay: Any,
        *,
        rates: Any,
        transmission: Any = None,
        phase: Any = None,
        hamiltonian: Any = None,
        scattering: Any = None,
        end_reflection: Any = (0.0, 0.0),
        intrinsic_decay: Any = None,
        inputs: TimeFunction | None = None,
        detectors: TimeFunction | None = None,
        n_emitters: int | None = None,
        instantaneous: tuple[bool, ...] | list[bool] | None = None,
        lossy: tuple[bool, ...] | list[bool] | None = None,
    ):
        nodes = tuple(nodes)
        require(len(nodes) > 0, "nodes: the waveguide needs at least one node")
        for k, node in enumerate(nodes):
            require(
                node is None or (isinstance(node, (int, np.integer)) and node >= 0),
                f"nodes[{k}] = {node!r}: use a non-negative emitter index for a port or None for a scatterer",
            )
        self.node_emitter = tuple(-1 if node is None else int(node) for node in nodes)
        ports = [j for j in self.node_emitter if j >= 0]
        require(len(ports) > 0, "nodes: at least one node must be a port of an emitter")
        n = max(ports) + 1 if n_emitters is None else int(n_emitters)
        require(n > max(ports), f"n_emitters = {n} is smaller than the largest port emitter + 1")
        self.n_emitters = n
        n_links, n_scat = len(nodes) + 1, sum(j < 0 for j in self.node_emitter)

        rdt, cdt = real_dtype(), complex_dtype()
        self.delay = jnp.broadcast_to(jnp.asarray(delay, rdt), (n_links,))
        self.transmission = jnp.broadcast_to(
            jnp.asarray(1.0 if transmission is None else transmission, rdt), (n_links,)
        )
        self.phase = jnp.broadcast_to(jnp.asarray(0.0 if phase is None else phase, rdt), (n_links,))
        if scattering is None:
            scattering = jnp.zeros((0, 2, 2), cdt)
        self.scattering = jnp.asarray(scattering, cdt).reshape(-1, 2, 2)
        self.end_reflection = jnp.broadcast_to(jnp.asarray(end_reflection, cdt), (2,))
        self.intrinsic_decay = jnp.broadcast_to(
            jnp.asarray(0.0 if intrinsic_decay is None else intrinsic_decay, rdt), (n,)
        )
        self.rates = rates if callable(rates) else jnp.asarray(rates, rdt)
        self.hamiltonian = (
            hamiltonian if callable(hamiltonian) or hamiltonian is None else jnp.asarray(hamiltonian, cdt)
        )
        self.inputs = inputs
        self.detectors = detectors

        if instantaneous is None:
            require(
                not is_traced(self.delay),
                "instantaneous: the delays are traced, so say which links have zero delay "
                "(a tuple of booleans, one per link)",
            )
            instantaneous = tuple(bool(d == 0.0) for d in np.asarray(self.delay))
        self.instantaneous = tuple(bool(x) for x in instantaneous)
        self.lossy = (False,) * n_scat if lossy is None else tuple(bool(x) for x in lossy)

        require(
            len(self.instantaneous) == n_links,
            f"instantaneous: give one flag per link ({n_links}), got {len(self.instantaneous)}",
        )
        require(
            self.scattering.shape[0] == n_scat,
            f"scattering: give one 2 x 2 matrix per scatterer node ({n_scat}), got {self.scattering.shape[0]}",
        )
        require(len(self.lossy) == n_scat, f"lossy: give one flag per scatterer ({n_scat})")
        if not callable(self.rates):
            require(
                self.rates.shape == (len(ports), 2),
                f"rates: expected shape ({len(ports)}, 2) (gR, gL per port), got {self.rates.shape}",
            )
        if self.hamiltonian is not None and not callable(self.hamiltonian):
            require(
                self.hamiltonian.shape == (n, n),
                f"hamiltonian: expected shape ({n}, {n}), got {self.hamiltonian.shape}",
            )
        self._validate_concrete()

    @property
    def n_links(self) -> int:
        return len(self.node_emitter) + 1

    @property
    def n_ports(self) -> int:
        return sum(j >= 0 for j in self.node_emitter)

    @property
    def n_scatterers(self) -> int:
        return sum(j < 0 for j in self.node_emitter)

    def _validate_concrete(self) -> None:
        if not is_traced(self.delay):
            d = np.asarray(self.delay)
            require(np.all(np.isfinite(d)) and np.all(d >= 0), f"delay: must be >= 0, got {d}")
            for l, inst in enumerate(self.instantaneous):
                require(
                    not inst or d[l] == 0.0,
                    f"delay[{l}] = {d[l]}: link {l} is flagged instantaneous, so its delay must be exactly 0",
                )
        if not is_traced(self.transmission):
            eta = np.asarray(self.transmission)
            require(np.all((eta >= 0) & (eta <= 1)), f"transmission: power transmissions must lie in [0, 1], got {eta}")
        if not is_traced(self.phase):
            require(np.all(np.isfinite(np.asarray(self.phase))), "phase: must be finite")
        if not is_traced(self.end_reflection):
            r = np.abs(np.asarray(self.end_reflection))
            require(np.all(r <= 1 + _UNITARY_TOL), f"end_reflection: |r| must be <= 1, got {r}")
        if not is_traced(self.intrinsic_decay):
            g = np.asarray(self.intrinsic_decay)
            require(np.all(g >= 0), f"intrinsic_decay: rates must be >= 0, got {g}")
        if not callable(self.rates) and not is_traced(self.rates):
            g = np.asarray(self.rates)
            require(np.all(np.isfinite(g)) and np.all(g >= 0), "rates: must be finite and >= 0")
        if self.hamiltonian is not None and not callable(self.hamiltonian) and not is_traced(self.hamiltonian):
            h = np.asarray(self.hamiltonian)
            require(np.allclose(h, h.conj().T, atol=1e-12), "hamiltonian: must be Hermitian (H = H^dag)")
        if not is_traced(self.scattering):
            for s, (mat, lossy) in enumerate(zip(np.asarray(self.scattering), self.lossy)):
                gram = mat.conj().T @ mat
                if lossy:
                    worst = np.linalg.eigvalsh(gram).max()
                    require(
                        worst <= 1 + _UNITARY_TOL,
                        f"scattering[{s}]: a lossy scatterer must be passive (S^dag S <= 1), "
                        f"largest eigenvalue {worst:.3g}",
                    )
                else:
                    dev = np.abs(gram - np.eye(2)).max()
                    require(
                        dev <= _UNITARY_TOL,
                        f"scattering[{s}]: a lossless scatterer must be unitary "
                        f"(|S^dag S - 1| = {dev:.3g}); fix the matrix or flag it lossy",
                    )
        if any(self.instantaneous) and not is_traced(
            self.scattering, self.end_reflection, self.transmission, self.phase
        ):
            smin = np.linalg.svd(np.asarray(_Structure(self).loop_matrix()), compute_uv=False).min()
            require(
                smin > _SINGULAR_TOL,
                "instantaneous: the zero-delay links close a lossless loop of reflectors "
                "(1 - P W is singular); give one of the loop's links a delay of at least one step",
            )


class _Structure:
    """Index bookkeeping and the linear node maps of a `DelayProblem` (built at trace time)."""

    def __init__(self, problem: DelayProblem):
        self.problem = problem
        K = len(problem.node_emitter)
        L = K + 1
        self.L = L
        R = lambda l: l  # noqa: E731
        Lf = lambda l: L + l  # noqa: E731
        self.R, self.Lf = R, Lf
        port_nodes = [k for k, j in enumerate(problem.node_emitter) if j >= 0]
        self.scat_nodes = [k for k, j in enumerate(problem.node_emitter) if j < 0]
        self.port_emitter = np.array([problem.node_emitter[k] for k in port_nodes], int)
        # Positions (in the 2L field vector) of each port's incoming and outgoing amplitudes.
        self.port_in_R = np.array([R(k) for k in port_nodes], int)
        self.port_in_L = np.array([Lf(k + 1) for k in port_nodes], int)
        self.port_out_R = np.array([R(k + 1) for k in port_nodes], int)
        self.port_out_L = np.array([Lf(k) for k in port_nodes], int)
        self.scat_in = np.array([[R(k), Lf(k + 1)] for k in self.scat_nodes], int).reshape(-1, 2)
        self.scat_out = np.array([[R(k + 1), Lf(k)] for k in self.scat_nodes], int).reshape(-1, 2)
        inst = np.array(problem.instantaneous, bool)
        self.inst2 = np.concatenate([inst, inst])
        self.any_inst = bool(inst.any())
        self.any_delayed = bool((~inst).any())
        self.lanes_delayed = np.flatnonzero(~self.inst2)
        self.lanes_inst = np.flatnonzero(self.inst2)
        one_hot = np.zeros((problem.n_emitters, len(port_nodes)))
        one_hot[self.port_emitter, np.arange(len(port_nodes))] = 1.0
        self.emitter_of_port = one_hot
        # Ports in emitter order, one per emitter: no index map needed.
        self.trivial_ports = np.array_equal(self.port_emitter, np.arange(problem.n_emitters))

    def link_factor(self) -> Array:
        """`sqrt(eta) e^{i phi}` per link and direction, shape (2L,)."""
        p = self.problem
        w = safe_sqrt(p.transmission) * jnp.exp(1j * p.phase)
        return jnp.concatenate([w, w]).astype(complex_dtype())

    def end_transmission(self) -> Array:
        return safe_sqrt(1.0 - jnp.abs(self.problem.end_reflection) ** 2).astype(complex_dtype())

    def node_matrix(self) -> tuple[Array, Array]:
        """`P` (2L, 2L) and `U` (2L, 2) of `e = P arr + src + U u`."""
        p, L, R, Lf = self.problem, self.L, self.R, self.Lf
        cdt = complex_dtype()
        P = jnp.zeros((2 * L, 2 * L), cdt)
        r = p.end_reflection
        t = self.end_transmission()
        P = P.at[R(0), Lf(0)].set(r[0]).at[Lf(L - 1), R(L - 1)].set(r[1])
        U = jnp.zeros((2 * L, 2), cdt).at[R(0), 0].set(t[0]).at[Lf(L - 1), 1].set(t[1])
        P = P.at[self.port_out_R, self.port_in_R].set(1.0)
        P = P.at[self.port_out_L, self.port_in_L].set(1.0)
        if self.scat_nodes:
            S = p.scattering
            for a in range(2):
                for b in range(2):
                    P = P.at[self.scat_out[:, a], self.scat_in[:, b]].set(S[:, a, b])
        return P, U

    def field_maps(self) -> tuple[Array, Array]:
        """Linear maps from `x = (raw delayed fields, port sources, inputs)` to the fields `e`
        entering every link lane and the fields `arr` arriving at every lane's far end."""
        L2, D = 2 * self.L, self.lanes_delayed
        w = self.link_factor()
        P, U = self.node_matrix()
        src_cols = jnp.zeros((L2, 2 * len(self.port_emitter)), P.dtype)
        ports = np.arange(len(self.port_emitter))
        src_cols = src_cols.at[self.port_out_R, ports].set(1.0)
        src_cols = src_cols.at[self.port_out_L, len(ports) + ports].set(1.0)
        drive = jnp.concatenate([P[:, D] * w[D][None, :], src_cols, U], axis=1)
        arrive = jnp.zeros((L2, drive.shape[1]), P.dtype).at[D, np.arange(len(D))].set(w[D])
        if self.any_inst:
            E = jnp.linalg.solve(self.loop_matrix(), drive)
            w_inst = jnp.where(self.inst2, w, 0.0)
            arrive = arrive + w_inst[:, None] * E
        else:
            E = drive
        return E, arrive

    def loop_matrix(self) -> Array:
        P, _ = self.node_matrix()
        w_inst = jnp.where(self.inst2, self.link_factor(), 0.0)
        return jnp.eye(2 * self.L, dtype=P.dtype) - P * w_inst[None, :]


class DelaySolution(eqx.Module):
    """Result of `solve_delay`, saved at `ts` (every step, or the first and last time).

    Fluxes at a grid point are left limits (right limits at the first time); the cumulative
    integrals start at zero.

    - `ts`: (T,) times.
    - `c`: (T, N) complex amplitudes; `populations`: (T, N) `|c|^2`.
    - `output_flux`: (T, 2) flux leaving the left and right ends; `emitted`: its integral.
    - `loss_flux`: (T, K+1) flux lost in each link (`(1 - eta)` times what arrives, both
      directions); `lost`: its integral.
    - `absorbed_flux`, `absorbed`: (T, S) flux absorbed by each scatterer and its integral.
    - `intrinsic`: (T, N) population lost to the intrinsic decay `gamma'`.
    - `in_flight`: (T, K+1) photon probability on each link now (integral of `|e|^2` over
      the link's last `tau` window).
    - `injected`: (T,) integral of the input fluxes.
    - `conservation_error`: (T,) `|sum |c|^2 + emitted + lost + absorbed + intrinsic +
      in flight - |c(0)|^2 - injected|`.
    - `detected`: (T, 2) overlaps A(t) = int v^* out dt of the left and right ends' output
      fields with the problem's detector modes (zeros without detectors); the probability that
      the photon left an end in its mode v is |A(t1)|^2 / `detector_norm`.
    - `detector_norm`: (T, 2) int_{t0}^t |v|^2 dt of each detector mode.
    - `output_field`: (T, 2) the output field amplitudes at the left and right ends (with
      detectors; zeros without).
    """

    ts: Float[Array, " T"]
    c: Complex[Array, "T N"]
    populations: Float[Array, "T N"]
    output_flux: Float[Array, "T 2"]
    emitted: Float[Array, "T 2"]
    loss_flux: Float[Array, "T links"]
    lost: Float[Array, "T links"]
    absorbed_flux: Float[Array, "T scatterers"]
    absorbed: Float[Array, "T scatterers"]
    intrinsic: Float[Array, "T N"]
    in_flight: Float[Array, "T links"]
    injected: Float[Array, " T"]
    conservation_error: Float[Array, " T"]
    detected: Complex[Array, "T 2"]
    detector_norm: Float[Array, "T 2"]
    output_field: Complex[Array, "T 2"]


def _hermite(s: Array) -> tuple[Array, Array]:
    """Cubic Hermite basis at `s` in [0, 1] for (e0, h e0', e1, h e1'), and its s-derivative."""
    s2, s3 = s * s, s * s * s
    val = jnp.stack([2 * s3 - 3 * s2 + 1, s3 - 2 * s2 + s, -2 * s3 + 3 * s2, s3 - s2])
    der = jnp.stack([6 * s2 - 6 * s, 3 * s2 - 4 * s + 1, -6 * s2 + 6 * s, 3 * s2 - 2 * s])
    return val, der


def _buffer_steps(problem: DelayProblem, dt: float, max_delay: float | None) -> int:
    """Number of history pieces kept: room for the longest delay plus one straddled step."""
    delayed = [l for l, inst in enumerate(problem.instantaneous) if not inst]
    if not delayed:
        return 1
    if max_delay is None:
        require(
            not is_traced(problem.delay),
            "max_delay: the delays are traced, so give the largest delay the solve must hold",
        )
        max_delay = float(np.asarray(problem.delay)[delayed].max())
    return int(np.floor(max_delay / dt + _GRID_TOL)) + 2


def _validate_solve(problem: DelayProblem, dt: float, n_steps: int, max_delay: float | None):
    require(isinstance(n_steps, (int, np.integer)) and n_steps >= 1, "n_steps: must be an int >= 1")
    require(float(dt) > 0, f"dt: the step must be positive, got {dt}")
    if not not is_traced(problem.delay):
        return
    d = np.asarray(problem.delay)
    for l, inst in enumerate(problem.instantaneous):
        if inst:
            continue
        require(
            d[l] >= dt * (1 - _GRID_TOL),
            f"delay[{l}] = {d[l]:.6g} is shorter than the step dt = {dt:.6g}: reduce dt to at "
            "most the delay, or flag the link instantaneous with delay 0",
        )
        if max_delay is not None:
            require(d[l] <= max_delay * (1 + _GRID_TOL), f"delay[{l}] = {d[l]:.6g} exceeds max_delay = {max_delay:.6g}")


class _Layout:
    """Named slices of a stacked vector."""

    def __init__(self, **sizes: int):
        self.slices, start = {}, 0
        for name, size in sizes.items():
            self.slices[name] = slice(start, start + size)
            start += size
        self.size = start

    def __call__(self, v: Array, name: str) -> Array:
        return v[..., self.slices[name]]


def _matvec(M: Array, x: Array) -> Array:
    # Broadcast-and-sum instead of a dot: for these tiny matrices, and batched under vmap, it
    # fuses into one loop on CPU where a batched dot would call a small GEMM per element.
    return jnp.sum(M * x[..., None, :], axis=-1)


def _make_kernel(problem: DelayProblem, dt: float, n_buffer: int):
    """Closures for the node algebra and one RK4 step, with the per-solve precomputations."""
    st = _Structure(problem)
    N, n_ports = problem.n_emitters, len(st.port_emitter)
    nD, nI, nS = len(st.lanes_delayed), len(st.lanes_inst), problem.n_scatterers
    cdt, rdt = complex_dtype(), real_dtype()
    has_inputs = problem.inputs is not None
    has_detectors = problem.detectors is not None
    # q: the fluxes whose time integrals are accumulated (and, with detectors, the real and
    # imaginary parts of v^* out and |v|^2 at each end).
    layout = _Layout(
        out=2,
        inj=1,
        enter=nD,
        arrive_delayed=nD,
        arrive_inst=nI,
        absorb=nS,
        intr=N,
        det_re=2 * has_detectors,
        det_im=2 * has_detectors,
        det_norm=2 * has_detectors,
        out_re=2 * has_detectors,
        out_im=2 * has_detectors,
    )

    # One matrix maps x = (raw delayed fields, port sources, inputs) to every amplitude needed.
    E, A = st.field_maps()
    if not has_inputs:
        E, A = E[:, :-2], A[:, :-2]
    t_end = st.end_transmission()
    out_rows = jnp.stack([t_end[0] * A[st.Lf(0)], t_end[1] * A[st.R(st.L - 1)]])
    if has_inputs:
        out_rows = out_rows.at[:, -2:].add(-jnp.diag(jnp.conj(problem.end_reflection)))
    rows = _Layout(fin=2 * n_ports, e_delayed=nD, e_inst=nI, out=2, scat_in=2 * nS, scat_out=2 * nS)
    M_full = jnp.concatenate(
        [
            A[st.port_in_R],
            A[st.port_in_L],
            E[st.lanes_delayed],
            E[st.lanes_inst],
            out_rows,
            A[st.scat_in.reshape(-1)],
            E[st.scat_out.reshape(-1)],
        ]
    )
    M_fin = M_full[rows.slices["fin"]]
    emitter_of_port = jnp.asarray(st.emitter_of_port, rdt)

    rates_fn = _as_time_function(problem.rates, (n_ports, 2), rdt)
    ham_fn = _as_time_function(problem.hamiltonian, (N, N), cdt)
    inputs_fn = _as_time_function(problem.inputs, (2,), cdt)
    detectors_fn = _as_time_function(problem.detectors, (2,), cdt)
    gamma_int = problem.intrinsic_decay

    # Delayed reads: a stage at t_n + c dt reads t_n + c dt - tau, which lies in piece n - m
    # (at s = c - theta) or in piece n - m - 1 (at s = 1 + c - theta).
    delay_lanes = jnp.concatenate([problem.delay, problem.delay])[st.lanes_delayed] / dt
    m = jnp.clip(jnp.floor(delay_lanes + _GRID_TOL), 1, n_buffer - 2)
    theta = delay_lanes - m
    x = jnp.array([0.0, 0.5, 1.0], rdt)[:, None] - theta[None, :]
    in_first = x >= 0
    offset = (m[None, :] + jnp.where(in_first, 0, 1)).astype(jnp.int32)  # (3, nD)
    hv, hd = _hermite(jnp.where(in_first, x, 1.0 + x))  # (4, 3, nD)
    hv, hd = jnp.moveaxis(hv, 0, -1), jnp.moveaxis(hd, 0, -1) / dt  # (3, nD, 4)
    lanes = jnp.arange(nD)

    def to_ports(c):
        return c if st.trivial_ports else c[st.port_emitter]

    def to_emitters(v):
        return v if st.trivial_ports else _matvec(emitter_of_port, v)

    def controls(t, c):
        g = rates_fn(t)
        sq = safe_sqrt(g).astype(cdt)
        cp = to_ports(c)
        u = inputs_fn(t).astype(cdt) if has_inputs else None
        return g, sq, cp, u

    def emitter_rhs(t, c, g, sq, cp, fin):
        drive = 0.5 * (g[:, 0] + g[:, 1]) * cp + sq[:, 0] * fin[:n_ports] + sq[:, 1] * fin[n_ports:]
        dc = -0.5 * gamma_int * c - to_emitters(drive)
        return dc if problem.hamiltonian is None else dc - 1j * _matvec(ham_fn(t), c)

    def stack_x(raw, sq, cp, u):
        parts = [raw, sq[:, 0] * cp, sq[:, 1] * cp]
        return jnp.concatenate(parts + ([u] if has_inputs else []))

    def rhs(t, c, raw):
        g, sq, cp, u = controls(t, c)
        return emitter_rhs(t, c, g, sq, cp, _matvec(M_fin, stack_x(raw, sq, cp, u)))

    def fields(t, c, raw):
        """Node algebra at time t: the delayed-lane fields entering the links and the fluxes."""
        g, sq, cp, u = controls(t, c)
        y = _matvec(M_full, stack_x(raw, sq, cp, u))
        absorb = jnp.zeros((0,), rdt)
        if nS:
            a_in = jnp.abs(rows(y, "scat_in").reshape(nS, 2)) ** 2
            a_out = jnp.abs(rows(y, "scat_out").reshape(nS, 2)) ** 2
            absorb = a_in.sum(1) - a_out.sum(1)
        inj = jnp.sum(jnp.abs(u) ** 2, keepdims=True) if has_inputs else jnp.zeros((1,), rdt)
        e_delayed = rows(y, "e_delayed")
        out = rows(y, "out")
        detected = []
        if has_detectors:
            v = detectors_fn(t).astype(cdt)
            overlap = jnp.conj(v) * out
            detected = [jnp.real(overlap), jnp.imag(overlap), jnp.abs(v) ** 2, jnp.real(out), jnp.imag(out)]
        q = jnp.concatenate(
            [
                jnp.abs(out) ** 2,
                inj,
                jnp.abs(e_delayed) ** 2,
                jnp.abs(raw) ** 2,
                jnp.abs(rows(y, "e_inst")) ** 2,
                absorb,
                gamma_int * jnp.abs(c) ** 2,
                *detected,
            ]
        )
        return e_delayed, q

    def with_derivative(t, c, dc, raw, draw):
        (e, q), (de, dq) = jax.jvp(fields, (t, c, raw), (jnp.ones_like(t), dc, draw))
        return e, de, q, dq

    def read(buf, n):
        """Delayed raw fields and their derivatives at the three stage times of step n."""
        if not nD:
            z = jnp.zeros((3, 0), cdt)
            return z, z
        slot = jnp.mod(n - offset, n_buffer)  # (3, nD)
        pieces = buf[slot, lanes[None, :]]  # (3, nD, 4)
        return jnp.sum(hv * pieces, -1), jnp.sum(hd * pieces, -1)

    def step(carry, n, t0, noise):
        """One RK4 step; with frequency noise `noise` (N,), constant over the step, the
        integrating-factor (Lawson) form treats the noise phase exactly."""
        c, buf, Q, _ = carry
        tn = t0 + n * dt
        ta, tm, tb = tn + _ONE_SIDED * dt, tn + 0.5 * dt, tn + (1 - _ONE_SIDED) * dt
        raw, draw = read(buf, n)
        if noise is None:
            half = full = jnp.ones((), cdt)
        else:
            half = jnp.exp(-0.5j * dt * noise)
            full = half * half
        k1 = rhs(ta, c, raw[0])
        k2 = rhs(tm, half * (c + 0.5 * dt * k1), raw[1])
        k3 = rhs(tm, half * c + 0.5 * dt * k2, raw[1])
        k4 = rhs(tb, full * c + dt * half * k3, raw[2])
        c1 = full * c + (dt / 6.0) * (full * k1 + 2 * half * (k2 + k3) + k4)
        f1 = rhs(tb, c1, raw[2])
        if noise is not None:
            k1 = k1 - 1j * noise * c
            f1 = f1 - 1j * noise * c1
        e0, de0, q0, dq0 = with_derivative(ta, c, k1, raw[0], draw[0])
        e1, de1, q1, dq1 = with_derivative(tb, c1, f1, raw[2], draw[2])
        if nD:
            piece = jnp.stack([e0, dt * de0, e1, dt * de1], axis=-1)  # (nD, 4)
            buf = jax.lax.dynamic_update_index_in_dim(buf, piece, jnp.mod(n, n_buffer), 0)
        Q = Q + 0.5 * dt * (q0 + q1) + (dt * dt / 12.0) * (dq0 - dq1)
        return (c1, buf, Q, q1), (c1, q1, Q)

    def initial_flux(t0, c0):
        return fields(t0 + _ONE_SIDED * dt, c0, jnp.zeros((nD,), cdt))[1]

    return st, layout, step, initial_flux


def _run(problem, c0, dt, n_steps, t0, n_buffer, chunk, save_trace, noise_key, noise_scale):
    st, layout, step, initial_flux = _make_kernel(problem, dt, n_buffer)
    cdt, rdt = complex_dtype(), real_dtype()
    N = problem.n_emitters
    c0 = jnp.asarray(c0, cdt)
    buf = jnp.zeros((n_buffer, len(st.lanes_delayed), 4), cdt)
    Q = jnp.zeros((layout.size,), rdt)

    # Equal chunks covering n_steps; the few padding steps (fewer than n_chunks) leave the
    # state unchanged, so one chunk body is compiled whatever n_steps is.
    n_chunks = -(-n_steps // chunk)
    length = -(-n_steps // n_chunks)

    @jax.checkpoint
    def chunk_fn(carry, idx):
        start = idx * length
        if noise_key is None:
            noise = None
        else:
            key = jax.random.fold_in(noise_key, idx)
            noise = noise_scale * jax.random.normal(key, (length, N), rdt)

        def body(cr, i):
            nz = None if noise is None else noise[i]
            new, rec = step(cr, start + i, t0, nz)
            if n_chunks * length > n_steps:
                active = start + i < n_steps
                new = jax.tree.map(lambda a, b: jnp.where(active, a, b), new, cr)
            return new, (rec if save_trace else None)

        return jax.lax.scan(body, carry, jnp.arange(length))

    q_init = initial_flux(jnp.asarray(t0, rdt), c0)
    carry, rec = jax.lax.scan(chunk_fn, (c0, buf, Q, q_init), jnp.arange(n_chunks))
    if save_trace:
        cs, qs, Qs = (a.reshape((-1,) + a.shape[2:])[:n_steps] for a in rec)
        cs = jnp.concatenate([c0[None], cs])
        qs = jnp.concatenate([q_init[None], qs])
        Qs = jnp.concatenate([jnp.zeros_like(Q)[None], Qs])
        ts = t0 + dt * jnp.arange(n_steps + 1, dtype=rdt)
    else:
        c_end, _, Q_end, q_end = carry
        cs = jnp.stack([c0, c_end])
        qs = jnp.stack([q_init, q_end])
        Qs = jnp.stack([jnp.zeros_like(Q), Q_end])
        ts = jnp.array([t0, t0 + n_steps * dt], rdt)
    return _assemble(problem, st, layout, c0, ts, cs, qs, Qs)


def _assemble(problem, st, layout, c0, ts, cs, qs, Qs) -> DelaySolution:
    L = st.L
    # Lane -> link maps (both directions of a link add up).
    to_link_d = np.zeros((len(st.lanes_delayed), L))
    to_link_d[np.arange(len(st.lanes_delayed)), st.lanes_delayed % L] = 1.0
    to_link_i = np.zeros((len(st.lanes_inst), L))
    to_link_i[np.arange(len(st.lanes_inst)), st.lanes_inst % L] = 1.0
    loss = 1.0 - problem.transmission

    def lost_of(v):
        arrived = layout(v, "arrive_delayed") @ to_link_d + layout(v, "arrive_inst") @ to_link_i
        return arrived * loss

    loss_flux, lost = lost_of(qs), lost_of(Qs)
    in_flight = (layout(Qs, "enter") - layout(Qs, "arrive_delayed")) @ to_link_d
    pops = jnp.abs(cs) ** 2
    emitted = layout(Qs, "out")
    absorbed = layout(Qs, "absorb")
    intrinsic = layout(Qs, "intr")
    injected = layout(Qs, "inj")[..., 0]
    total = pops.sum(-1) + emitted.sum(-1) + lost.sum(-1) + in_flight.sum(-1) + absorbed.sum(-1) + intrinsic.sum(-1)
    err = jnp.abs(total - jnp.sum(jnp.abs(c0) ** 2) - injected)
    if problem.detectors is not None:
        detected = layout(Qs, "det_re") + 1j * layout(Qs, "det_im")
        detector_norm = layout(Qs, "det_norm")
        output_field = layout(qs, "out_re") + 1j * layout(qs, "out_im")
    else:
        detector_norm = jnp.zeros(Qs.shape[:-1] + (2,), Qs.dtype)
        detected = output_field = detector_norm.astype(cs.dtype)
    return DelaySolution(
        ts=ts,
        c=cs,
        populations=pops,
        output_flux=layout(qs, "out"),
        emitted=emitted,
        loss_flux=loss_flux,
        lost=lost,
        absorbed_flux=layout(qs, "absorb"),
        absorbed=absorbed,
        intrinsic=intrinsic,
        in_flight=in_flight,
        injected=injected,
        conservation_error=err,
        detected=detected,
        detector_norm=detector_norm,
        output_field=output_field,
    )


_run_traced = full_precision_products(_run)
_run_jit = eqx.filter_jit(_run_traced)


def solve_delay(
    problem: DelayProblem,
    c0: Complex[Array, " N"],
    *,
    dt: float,
    n_steps: int,
    t0: float = 0.0,
    max_delay: float | None = None,
    chunk: int = 256,
    save_trace: bool = True,
    noise_key: PRNGKeyArray | None = None,
    noise_scale: Float[Array, " N"] | None = None,
    inline: bool = False,
) -> DelaySolution:
    r"""Integrate the single-excitation delay equations from `t0` to `t0 + n_steps dt`.

    The links are empty at `t0` (`e_l(t) = 0` for `t < t0`). The scheme is RK4 with a cubic
    Hermite history (see the module docstring): fourth order when every delay is a multiple of
    `dt` and every jump of a control lies on a grid point. Other delays are read by
    interpolation, which keeps `grad` with respect to them smooth; that is fourth order where
    the history is smooth but first order near a jump of the history (e.g. the first arrival
    of a field switched on abruptly). At a delay that is an exact multiple of `dt` the
    derivative with respect to it is one-sided where the history jumps. Reverse-mode memory is
    bounded by checkpointing chunks of `chunk` steps.

    Traced delays are clamped to `[dt, max_delay]`; concrete ones are checked. Rates returned
    by a function must be >= 0 (they are not checked).

    **Arguments:**

    - `problem`: the `DelayProblem`.
    - `c0`: (N,) initial amplitudes.
    - `dt`: the step (a Python float).
    - `n_steps`: number of steps (static).
    - `t0`: initial time.
    - `max_delay`: the longest delay the history must hold; required if the delays are traced.
    - `chunk`: steps per checkpointed chunk.
    - `save_trace`: save every step (True) or only the first and last time (False).
    - `noise_key`, `noise_scale`: one phase-noise trajectory (see `dephasing_average`): white
      frequency noise of standard deviation `noise_scale` (N,) per step, drawn from the key.
    - `inline`: trace the kernel into the caller's own trace instead of calling it as a jitted
      function: for callers that are traced whole anyway (a kept program), where a derivative
      of the jitted call would first trace the kernel's undifferentiated program as well.

    **Returns:** a `DelaySolution`.
    """
    dt = float(dt)
    _validate_solve(problem, dt, n_steps, max_delay)
    require(isinstance(chunk, int) and chunk >= 1, "chunk: must be an int >= 1")
    n_buffer = _buffer_steps(problem, dt, max_delay)
    c0 = jnp.asarray(c0, complex_dtype())
    require(c0.shape == (problem.n_emitters,), f"c0: expected shape ({problem.n_emitters},), got {c0.shape}")
    require((noise_key is None) == (noise_scale is None), "noise_key and noise_scale: give both or neither")
    return (_run_traced if inline else _run_jit)(
        problem,
        c0,
        dt,
        int(n_steps),
        float(t0),
        n_buffer,
        min(chunk, int(n_steps)),
        bool(save_trace),
        noise_key,
        noise_scale,
    )


class DephasingAverage(eqx.Module):
    """Trajectory average of `dephasing_average`.

    - `ts`: (T,) times; `populations`: (T, N) mean populations; `standard_error`: (T, N)
      standard error of the mean over the trajectories.
    """

    ts: Float[Array, " T"]
    populations: Float[Array, "T N"]
    standard_error: Float[Array, "T N"]


def dephasing_average(
    problem: DelayProblem,
    c0: Complex[Array, " N"],
    gamma_phi: Float[Array, " N"] | float,
    key: PRNGKeyArray,
    *,
    n_trajectories: int,
    dt: float,
    n_steps: int,
    t0: float = 0.0,
    max_delay: float | None = None,
    batch: int = 256,
    chunk: int = 256,
) -> DephasingAverage:
    r"""Populations under pure dephasing, averaged over classical phase-noise trajectories.

    Pure dephasing `D[sqrt(gamma_phi/2) sigma_z]` (coherence decay `gamma_phi`) equals white
    frequency noise `H -> H + diag(xi(t))` with `<xi_j(t) xi_k(t')> = 2 gamma_phi_j delta_jk
    delta(t - t')`, exact in distribution also with delays. Each trajectory holds the noise
    constant over a step, `xi_n ~ N(0, 2 gamma_phi / dt)`, so the accumulated phase has the
    exact variance at grid points (weak error O(dt) in between). Trajectories are vmapped in
    batches of `batch`; the same `key` gives the same result.

    **Arguments:**

    - `problem`, `c0`, `dt`, `n_steps`, `t0`, `max_delay`, `chunk`: as in `solve_delay`.
    - `gamma_phi`: (N,) or scalar dephasing rates.
    - `key`: a JAX PRNG key.
    - `n_trajectories`: number of trajectories (a multiple of `batch` is fastest).
    - `batch`: trajectories per vmapped batch.

    **Returns:** a `DephasingAverage` with the mean populations at every step and their
    standard error.
    """
    dt = float(dt)
    _validate_solve(problem, dt, n_steps, max_delay)
    require(n_trajectories >= 2, "n_trajectories: need at least 2 for a standard error")
    if not is_traced(gamma_phi):
        require(np.all(np.asarray(gamma_phi) >= 0), "gamma_phi: dephasing rates must be >= 0")
    n_buffer = _buffer_steps(problem, dt, max_delay)
    batch = min(int(batch), int(n_trajectories))
    c0 = jnp.asarray(c0, complex_dtype())
    return _dephasing_jit(
        problem,
        c0,
        jnp.asarray(gamma_phi, real_dtype()),
        key,
        int(n_trajectories),
        dt,
        int(n_steps),
        float(t0),
        n_buffer,
        batch,
        min(int(chunk), int(n_steps)),
    )


class TrajectoryAverage(NamedTuple):
    """Statistics over independent runs (`trajectory_average`): the mean, the standard error
    of the mean and the maximum of every leaf (for complex leaves the standard error and the
    maximum are those of the modulus)."""

    mean: PyTree[Array]
    standard_error: PyTree[Array]
    maximum: PyTree[Array]


def trajectory_average(
    run_one: Callable[[Any], Any], key: PRNGKeyArray, n_trajectories: int, batch: int = 256
) -> TrajectoryAverage:
    """Mean, standard error and maximum of `run_one(k)` (a pytree of arrays) over
    `n_trajectories` keys split from `key`, vmapped in batches of `batch` inside a scan, so the
    memory holds one batch and the running sums (not every run). Pure: call it inside `jit`.
    The same `key` gives the same result."""
    n = int(n_trajectories)
    batch = min(int(batch), n)
    n_batches = -(-n // batch)
    keys = jax.random.split(key, n_batches * batch)
    keys = keys.reshape((n_batches, batch) + keys.shape[1:])
    valid = (jnp.arange(n_batches * batch) < n).reshape(n_batches, batch)
    shapes = jax.eval_shape(run_one, keys[0, 0])

    def zeros(s, dtype=None):
        return jnp.zeros(s.shape, dtype or s.dtype)

    def size(x):
        return jnp.abs(x) if jnp.iscomplexobj(x) else x

    init = (
        jax.tree.map(zeros, shapes),
        jax.tree.map(lambda s: zeros(s, real_dtype()), shapes),
        jax.tree.map(lambda s: jnp.full(s.shape, -jnp.inf, real_dtype()), shapes),
    )

    def accumulate(acc, xs):
        ks, ok = xs
        out = jax.vmap(run_one)(ks)

        def mask(x, fill=0.0):
            return jnp.where(ok.reshape((-1,) + (1,) * (x.ndim - 1)), x, fill)

        s1 = jax.tree.map(lambda a, x: a + mask(x).sum(0), acc[0], out)
        s2 = jax.tree.map(lambda a, x: a + (mask(size(x)) ** 2).sum(0), acc[1], out)
        top = jax.tree.map(lambda a, x: jnp.maximum(a, mask(size(x), -jnp.inf).max(0)), acc[2], out)
        return (s1, s2, top), None

    (s1, s2, top), _ = jax.lax.scan(accumulate, init, (keys, valid))
    mean = jax.tree.map(lambda x: x / n, s1)
    stderr = jax.tree.map(lambda m, q: jnp.sqrt(jnp.maximum(q / n - size(m) ** 2, 0.0) / (n - 1)), mean, s2)
    return TrajectoryAverage(mean, stderr, top)


def _dephasing(problem, c0, gamma_phi, key, n_traj, dt, n_steps, t0, n_buffer, batch, chunk):
    N = problem.n_emitters
    scale = jnp.broadcast_to(jnp.sqrt(2.0 * gamma_phi / dt), (N,))

    def one(k):
        return _run(problem, c0, dt, n_steps, t0, n_buffer, chunk, True, k, scale).populations

    stats = trajectory_average(one, key, n_traj, batch)
    ts = t0 + dt * jnp.arange(n_steps + 1, dtype=real_dtype())
    return DephasingAverage(ts=ts, populations=stats.mean, standard_error=stats.standard_error)


_dephasing_jit = eqx.filter_jit(full_precision_products(_dephasing))
