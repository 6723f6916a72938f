"""How a solve is differentiated in reverse mode when the caller says 'auto': by forward mode
when one real number is differentiated, by the solve's own reverse mode otherwise (the discrete
adjoint of a Lindblad solve, JAX's reverse mode through the delay kernel's scan).

`jax.grad` of a solve wants the vector-Jacobian product ct . J of its outputs y(theta). With p
real numbers theta perturbed (JAX says which: a `custom_vjp` with symbolic zeros), forward mode
builds the Jacobian J = dy/dtheta column by column alongside the solve, and the backward pass is
only the contraction ct . J; the discrete adjoint instead records the accepted steps and walks
them back. A jitted value-and-gradient of the anchor problem at two and four modules costs
1.8 and 2.4 forward solves by forward mode in one number, 2.4 by the discrete adjoint (in
three numbers); forward mode in three numbers (three tangents, batched) costs 3.3 and 6.9, so
it is taken for a single number only. Both differentiate the computed solution with the step
sizes held fixed: the two agree to rounding.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def differentiated(reverse: Callable, forward: Callable, args: tuple):
    """reverse(*args), whose vector-Jacobian product is forward mode's (one tangent through
    `forward`, the same computation differentiable by `jax.jvp`) when a single real number of
    `args` is perturbed, and `reverse`'s own otherwise. Leaves of `args` that are not arrays
    (functions, Python numbers of static fields) go along as they are."""
    arrays, others = eqx.partition(args, eqx.is_array)
    leaves, treedef = jax.tree.flatten(arrays)

    def rebuilt(fn):
        return functools.partial(_with_others, fn, others)

    return _choose(rebuilt(reverse), rebuilt(forward), treedef, *leaves)


def _with_others(fn: Callable, others, *arrays):
    return fn(*eqx.combine(arrays, others))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _choose(reverse, forward, treedef, *leaves):
    return reverse(*jax.tree.unflatten(treedef, leaves))


def _choose_fwd(reverse, forward, treedef, *primals):
    values = [p.value for p in primals]
    chosen = [i for i, p in enumerate(primals) if p.perturbed]

    def at(fn, *diff):
        full = list(values)
        for i, d in zip(chosen, diff):
            full[i] = d
        return fn(*jax.tree.unflatten(treedef, full))

    diff = [values[i] for i in chosen]
    if len(diff) == 1 and np.size(diff[0]) == 1 and jnp.issubdtype(jnp.result_type(diff[0]), jnp.floating):
        # dy/dtheta by one tangent; the backward pass is the contraction ct . dy/dtheta
        x = diff[0]
        out, column = jax.jvp(functools.partial(at, forward), diff, [jnp.ones_like(x)])
        columns = jax.tree.leaves(column)
        kept = tuple(i for i, c in enumerate(columns) if jnp.issubdtype(c.dtype, jnp.inexact))
        theta = (np.shape(x), jnp.result_type(x))
        pull = jax.tree_util.Partial(functools.partial(contract, theta, kept), [columns[i] for i in kept])
    else:
        out, vjp = jax.vjp(functools.partial(at, reverse), *diff)
        pull = jax.tree_util.Partial(_pull_reverse, vjp)
    return out, (pull, tuple(chosen), len(values))


def _choose_bwd(reverse, forward, treedef, residuals, cotangent):
    pull, chosen, n_leaves = residuals
    pulled = pull(cotangent)
    out: list = [None] * n_leaves
    for i, c in zip(chosen, pulled):
        out[i] = c
    return tuple(out)


_choose.defvjp(_choose_fwd, _choose_bwd, symbolic_zeros=True)


def contract(theta: tuple, kept: tuple, columns: list, cotangent) -> list:
    """[ct . dy/dtheta] for the derivative's floating and complex outputs `kept` (`columns`), as
    the cotangent of theta (`theta`: its shape and dtype): sum Re(ct dy/dtheta), JAX's
    convention for complex outputs (the transpose of s -> s dy/dtheta). Outputs the caller does
    not differentiate (symbolic zeros) are skipped, and so are entries whose cotangent is zero:
    forward mode also differentiates what no one reads, and an infinite slope there must not
    spoil the rest."""
    shape, dtype = theta
    leaves = jax.tree.leaves(cotangent, is_leaf=is_symbolic_zero)
    g = jnp.zeros((), dtype)
    for i, column in zip(kept, columns):
        ct = leaves[i]
        if is_symbolic_zero(ct):
            continue
        terms = jnp.where(ct != 0, ct * column, 0)
        g = g + jnp.sum(jnp.real(terms)).astype(dtype)
    return [jnp.reshape(g, shape)]


def is_symbolic_zero(x) -> bool:
    return isinstance(x, jax.custom_derivatives.SymbolicZero)


def _pull_reverse(vjp: Callable, cotangent) -> list:
    """The reverse-mode pullback, given the cotangent with its symbolic zeros as zeros."""
    return list(vjp(jax.tree.map(instantiate, cotangent, is_leaf=is_symbolic_zero)))


def instantiate(x):
    """A symbolic zero cotangent as an array of zeros (its aval says the shape and dtype)."""
    if is_symbolic_zero(x):
        return jnp.zeros(x.aval.shape, x.aval.dtype)
    return x
