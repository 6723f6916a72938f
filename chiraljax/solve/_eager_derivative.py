"""An eager derivative in one real number, through a kept program.

A physicist's first gradient is usually `jax.value_and_grad(f)(x)` with f a function that
builds a network from x and calls `simulate`, run eagerly (no `jax.jit` around it). JAX then
linearizes the kernel's call on every evaluation (~60 argument leaves, 3-5 ms of Python at two
modules), and it compiles the differentiated kernel afresh in every process (about 1 s).

When exactly one kernel argument is traced, that argument is one real number, and its tracer
belongs to an eager `jax.grad` / `jax.vjp` (a linearize tracer) or `jax.jvp` / `jax.jacfwd` (a
JVP tracer) whose primal value is concrete, the derivative has one column,

    dy/dx = the tangent of the solve y(x) in the direction dx = 1,

which forward mode through the solver computes alongside y (`adjoint="forward"`; about 1.7
forward solves). That computation is a function of concrete numbers, so it runs as a kept
program (`chiraljax.solve._program_cache`: traced once per argument layout and kept on disk,
compiled quick first and optimized once it is called again). JAX only sees the result: under
`jax.grad` a `custom_vjp` whose backward pass contracts the cotangent with dy/dx
(`kernels._adjoint.contract`), under `jax.jvp` a `custom_jvp` whose tangent is dy/dx times the
incoming dx. Nothing of the solver is linearized or transposed per call.

An eager `jax.grad` in several numbers (any number of traced arguments of one linearize trace,
with concrete primals) goes through two kept programs instead (`reverse_pullback`): the solve
linearized, which returns the value and the residuals of its vector-Jacobian product (the
discrete adjoint's tape among them), and then, once the cotangent is known, the product
vjp(ct) from those residuals, which stay on the device in between. The solve runs once, as
under `jax.jit`, and none of the solver is linearized or transposed in Python per call (an
eager value-and-gradient in three numbers at two modules: 12 -> 5 ms; the kernel's share at
four modules 4.7 -> 3.8 ms, its first call in a new process 2.8 -> 2.5 s).

Anything else (a jit, vmap or a second derivative around the call, forward mode in several
numbers, the caches switched off) takes the ordinary path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from chiraljax._checks import derivative_tracer
from chiraljax.kernels._adjoint import contract
from chiraljax.solve._program_cache import bind_cached


def _eager_number(x: Any) -> Any:
    """The concrete primal of `x` when `x` is the tracer of an eager forward- or reverse-mode
    derivative in one real number (a float scalar); None otherwise."""
    if derivative_tracer(x) is None or np.shape(x) != ():
        return None
    if not jnp.issubdtype(x.dtype, jnp.floating):
        return None
    return _concrete_primal(x)


def _concrete_primal(x: Any) -> Any:
    """The primal value of the derivative tracer `x` as a NumPy array, or None when it is
    itself traced (a derivative inside another transformation)."""
    primal = getattr(x, "primal", None)
    if primal is None or isinstance(primal, jax.core.Tracer):
        return None
    return np.asarray(primal, dtype=x.dtype)


def forward_column(name: str, solve: Callable, args: tuple, statics: Any) -> list | None:
    """The leaves of `solve(*args)`, differentiable in the one traced number of `args` by a
    kept program that computes the solve and its derivative column together; None when the
    call does not qualify (see the module docstring) and must take the ordinary path.

    **Arguments:**

    - `name`: the kernel's name (part of the kept program's key).
    - `solve`: args -> the list of the solution's leaves, differentiable by `jax.jvp` (the
      kernel with its forward-mode adjoint); fixed by `name` and `statics`.
    - `args`: its arguments, one of them traced.
    - `statics`: everything else `solve` depends on (hashable, with a repr that names it).
    """
    leaves, treedef = jax.tree.flatten(args)
    traced = [i for i, x in enumerate(leaves) if isinstance(x, jax.core.Tracer)]
    if len(traced) != 1:
        return None
    index = traced[0]
    value = _eager_number(leaves[index])
    if value is None:
        return None

    def at(v, leaves_):
        substituted = list(leaves_)
        substituted[index] = v
        return solve(*jax.tree.unflatten(treedef, substituted))

    def column(*arguments):
        """The solve's leaves, then dy/dx for each of its inexact leaves."""
        values = jax.tree.leaves(arguments)
        out, tangents = jax.jvp(lambda v: at(v, values), (values[index],), (jnp.ones_like(values[index]),))
        return out + [t for o, t in zip(out, tangents) if _inexact(o)]

    concrete = list(leaves)
    concrete[index] = value
    run = bind_cached(f"{name}-forward-column", column, jax.tree.unflatten(treedef, concrete), (statics, index))
    out = None if run is None else run()
    if out is None:
        return None
    values, columns = _split(out)
    x = leaves[index]
    if derivative_tracer(x) == "linearize":  # reverse mode: contract the cotangent with the column
        return _pulled_back(values, columns, x)
    return _pushed_forward(values, columns, lambda v: at(v, leaves))(x)


def _inexact(x) -> bool:
    return bool(jnp.issubdtype(x.dtype, jnp.inexact))


def _scaled(column, dx):
    """column * dx with lax's multiply (a jnp operator would stage a nested jit per leaf)."""
    return jax.lax.mul(column, jax.lax.broadcast(jax.lax.convert_element_type(dx, column.dtype), column.shape))


def _no_tangent(value):
    return np.zeros(np.shape(value), jax.dtypes.float0)


def _split(out: list) -> tuple[list, list]:
    """(the solve's leaves, the columns of its inexact ones) from the kept program's output,
    which lists the m leaves and then one column per inexact leaf."""
    m = next(m for m in range(len(out) + 1) if m + sum(map(_inexact, out[:m])) == len(out))
    return out[:m], out[m:]


def _pushed_forward(values: list, columns: list, forward: Callable) -> Callable:
    """x -> the solve's leaves: `values` at the concrete x the caller traces, with the tangent
    dx times `columns` (one per inexact leaf); `forward` is the solve without the kept program,
    for a call that turns out not to be eager."""

    @jax.custom_jvp
    def solve(x):
        return forward(x)

    @solve.defjvp
    def solve_jvp(primals, tangents):
        (x,), (dx,) = primals, tangents
        if isinstance(x, jax.core.Tracer):
            return jax.jvp(forward, (x,), (dx,))
        column = iter(columns)
        return values, [_scaled(next(column), dx) if _inexact(v) else _no_tangent(v) for v in values]

    return solve


def _pulled_back(values: list, columns: list, x) -> list:
    """The solve's leaves `values` as a function of x whose vector-Jacobian product is the
    contraction of the cotangent with `columns` (`kernels._adjoint.contract`: unread outputs
    and zero entries of the cotangent skipped)."""
    kept = tuple(i for i, v in enumerate(values) if _inexact(v))
    theta = (np.shape(x), jnp.result_type(x))

    @jax.custom_vjp
    def solve(x_):
        return values

    def solve_fwd(x_):
        return values, None

    def solve_bwd(_, cotangent):
        return tuple(contract(theta, kept, columns, cotangent))

    solve.defvjp(solve_fwd, solve_bwd, symbolic_zeros=True)
    return solve(x)


def _eager_primals(xs: list) -> list | None:
    """The concrete primals of `xs` when they are all tracers of one eager `jax.grad` / `jax.vjp`
    (one linearize trace) with concrete, inexact primal values; None otherwise."""
    trace = getattr(xs[0], "_trace", None)
    if trace is None or any(getattr(x, "_trace", None) is not trace for x in xs):
        return None
    if any(derivative_tracer(x) != "linearize" or not jnp.issubdtype(x.dtype, jnp.inexact) for x in xs):
        return None
    primals = [_concrete_primal(x) for x in xs]
    return None if any(p is None for p in primals) else primals


def reverse_pullback(name: str, reverse: Callable, reverse_statics: Any, args: tuple) -> list | None:
    """The leaves of `reverse(*args)`, differentiable in the traced arguments of `args` (all of
    one eager `jax.grad`, see the module docstring) by two kept programs: the solve linearized
    (its leaves, and the residuals of its vector-Jacobian product: the discrete adjoint's tape
    among them), then, once the cotangent is known, the vector-Jacobian product from those
    residuals; None when the call does not qualify and must take the ordinary path.

    The solve runs once: its residuals stay on the device between the two programs. The
    second program needs the residuals' tree structure: from the first program's trace when
    this call traced it, else (the first program kept on disk) from linearizing the solve
    again in its trace, of which nothing is left to compile or run.

    **Arguments:**

    - `name`: the kernel's name (part of the kept programs' keys).
    - `reverse`, `reverse_statics`: args -> the solve's leaves, differentiable by `jax.vjp` (the
      kernel with its reverse-mode adjoint), and everything else it depends on.
    - `args`: the kernel's arguments, some of them traced.
    """
    leaves, treedef = jax.tree.flatten(args)
    traced = tuple(i for i, x in enumerate(leaves) if isinstance(x, jax.core.Tracer))
    if not traced:
        return None
    xs = [leaves[i] for i in traced]
    primals = _eager_primals(xs)
    if primals is None:
        return None
    concrete = list(leaves)
    for i, v in zip(traced, primals):
        concrete[i] = v
    numbers = jax.tree.unflatten(treedef, concrete)

    def linearized(arguments):
        """(the solve's leaves, its vector-Jacobian product) at `arguments`, in the traced
        arguments."""
        given = jax.tree.leaves(arguments)

        def at(*vs):
            substituted = list(given)
            for i, v in zip(traced, vs):
                substituted[i] = v
            return list(reverse(*jax.tree.unflatten(treedef, substituted)))

        return jax.vjp(at, *[given[i] for i in traced])

    structure: list = []  # the residuals' tree structure, once this call has traced the solve

    def taped(arguments):
        """How many leaves the solve has, its leaves, then its residuals' leaves."""
        out, vjp = linearized(arguments)
        residual_leaves, tree = jax.tree.flatten(vjp)
        structure.append(tree)
        return [np.int32(len(out)), *out, *residual_leaves]

    run = bind_cached(f"{name}-taped", taped, (numbers,), (reverse_statics, traced))
    out = None if run is None else run()
    if out is None:
        return None
    n_values = int(out[0])
    values, residuals = out[1 : 1 + n_values], out[1 + n_values :]
    read = tuple(i for i, v in enumerate(values) if _inexact(v))  # the leaves with cotangents
    shapes = [np.shape(v) for v in values]

    def pullback(arguments, residuals_, cotangents):
        """The cotangents of the traced arguments: the vector-Jacobian product of the solve at
        `arguments` from its residuals (None: from its own, run eagerly), given the
        cotangents of its inexact leaves (float0 zeros for the others)."""
        if residuals_ is not None and structure:  # traced just now: no need to trace it again
            vjp = jax.tree.unflatten(structure[0], residuals_)
        else:
            _, vjp = linearized(arguments)
            if residuals_ is not None:
                vjp = jax.tree.unflatten(jax.tree.structure(vjp), residuals_)
        full = [np.zeros(shape, jax.dtypes.float0) for shape in shapes]
        for i, c in zip(read, cotangents):
            full[i] = c
        return list(vjp(full))

    @jax.custom_vjp
    def solved(*xs_):
        return values

    def solved_fwd(*xs_):
        return values, None

    def solved_bwd(_, cotangent):
        if all(_is_zero(cotangent[i]) for i in read):
            return tuple(np.zeros(np.shape(x), x.dtype) for x in xs)
        # (NumPy zeros: a `jnp.zeros` is an operation of its own, dispatched one at a time here)
        cts = [np.zeros(shapes[i], values[i].dtype) if _is_zero(cotangent[i]) else cotangent[i] for i in read]
        pulled = bind_cached(f"{name}-taped-pullback", pullback, (numbers, residuals, cts), (reverse_statics, traced))
        out = None if pulled is None else pulled()
        if out is None:  # the kept program failed: the same product by JAX's reverse mode here
            out = pullback(numbers, None, cts)
        return tuple(out)

    solved.defvjp(solved_fwd, solved_bwd, symbolic_zeros=True)
    return solved(*xs)


def eager_derivative(
    name: str, adjoint: str, kernel: Callable[[str], tuple[Callable, Any]], args: tuple
) -> list | None:
    """The leaves of a solve whose arguments an eager derivative traces, through kept programs
    as the method's `adjoint` allows: forward mode in one real number (`forward_column`), else
    the kept pullback (`reverse_pullback`); None when neither applies (the ordinary path).

    **Arguments:**

    - `name`: the kernel's name (part of the kept programs' keys).
    - `adjoint`: the method's adjoint ('auto', 'forward' or 'reverse').
    - `kernel`: adjoint -> (args -> the solve's leaves with that adjoint, its statics).
    - `args`: the kernel's arguments.
    """
    out = None
    if adjoint in ("auto", "forward"):
        solve, statics = kernel("forward")
        out = forward_column(name, solve, args, statics)
    if out is None and adjoint in ("auto", "reverse"):
        out = reverse_pullback(name, *kernel("reverse"), args)
    return out


def _is_zero(x) -> bool:
    return isinstance(x, jax.custom_derivatives.SymbolicZero)
