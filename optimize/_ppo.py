"""Model-free pulse shaping: proximal policy optimisation with single-step episodes.

This is the reinforcement-learning baseline of Sivak et al., PRX 12, 011059 (2022), written
against the simulator as a black box; `PPOConfig.tutorial()` and `PPOConfig.hardware()` name
the two sets of settings taken from their library, quantum-control-rl. Each episode is a
single step with a constant observation (a contextual bandit), so the policy is a Gaussian
over actions `a ∈ R^P`,

    a ~ N(μ_θ, diag σ_θ²),    x = x0 + scale ⊙ a,

where `x0` is a scripted baseline pulse and `scale` the size of one action unit per parameter.
The mean `μ_θ` is an MLP of the constant observation, `log σ_θ` a free vector; a second MLP (the
critic) estimates the expected reward `V_φ`. Each epoch draws a batch of candidates, measures
their rewards `r_i` (optionally from finite shots), forms advantages `A_i = r_i - V_φ` and takes
several Adam steps on the clipped surrogate

    L(θ, φ) = -mean_i min(ρ_i Â_i, clip(ρ_i, 1 - ε, 1 + ε) Â_i) + mean_i (V_φ - r_i)²,
    ρ_i = π_θ(a_i) / π_θ_old(a_i),

with `Â_i` the advantages standardised over the batch (optional). No gradient ever flows
through the reward function: it is called on concrete arrays once per epoch, and every row it
receives counts as one simulator evaluation.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, Int, PRNGKeyArray

from chiraljax._checks import require_budget
from chiraljax._errors import ChiralJaxError, ValidationError, require
from chiraljax._precision import real_dtype

from ._checkpoint import checkpointed_loop, read_checkpoint, write_checkpoint
from ._results import OptimizeResult, older_name

_CHECKPOINT_FORMAT = "chiraljax-ppo-checkpoint"
_CHECKPOINT_VERSION = 1
# Tolerance for rewards that leave [0, 1] by rounding before they are read as probabilities.
_PROBABILITY_SLACK = 1e-9


class RewardError(ChiralJaxError, ValueError):
    """The reward function returned something unusable (NaN, wrong shape, out of range)."""


class PPOConfig(eqx.Module):
    """Hyperparameters of the PPO baseline.

    The defaults are the `tutorial` settings (`PPOConfig.tutorial()`): those of the simulated
    pi-pulse example of quantum-control-rl, the library of Sivak et al., PRX 12, 011059 (2022).
    They are not the settings of the paper's experiments; `PPOConfig.hardware()` gives those of
    the library's single-step hardware script. `PPOConfig.named(name)` builds either by name
    (`PPO_SETTINGS`), and `with_budget(n)` sizes `epochs` so that a budget of `n` simulator
    evaluations is spent in full.

    **Arguments:**

    - `epochs`: number of epochs (one batch of candidates and one policy update each).
    - `batch_size`: candidates evaluated per epoch (at least 2).
    - `learning_rate`: Adam learning rate shared by actor and critic.
    - `updates_per_epoch`: Adam steps on the clipped surrogate per epoch.
    - `minibatch_size`: candidates per Adam step, drawn without replacement; `None` uses the
      full batch every step.
    - `clip`: PPO clipping `ε` of the probability ratio.
    - `init_std`: initial policy spread `σ` in action units (the same for every parameter).
    - `actor_layers`, `critic_layers`: hidden-layer widths of the two MLPs (tanh activations).
    - `n_shots`: if given, the agent sees rewards measured from this many shots,
      `Binomial(n_shots, r) / n_shots`, with the reward `r ∈ [0, 1]` read as a probability.
    - `normalize_advantages`: rescale the advantages of each batch to zero mean and unit
      variance (makes the step size independent of the reward's scale).
    - `evaluate_mean`: evaluate the policy mean once per epoch as well (one more simulator
      evaluation per epoch, counted against the budget) to record its reward.
    - `target_kl`: if given, skip the remaining Adam steps of an epoch once the sample estimate
      of `KL(π_old ‖ π_θ)` over the batch exceeds `1.5 target_kl` (not part of the named
      settings; it stops Adam from carrying a converged policy away on noise).

    Each epoch costs `evaluations_per_epoch = batch_size + evaluate_mean` simulator
    evaluations, so a run spends at most `max_evaluations = epochs x evaluations_per_epoch`.
    """

    epochs: int = eqx.field(default=100, static=True)
    batch_size: int = eqx.field(default=50, static=True)
    learning_rate: float = eqx.field(default=2.5e-3, static=True)
    updates_per_epoch: int = eqx.field(default=20, static=True)
    minibatch_size: int | None = eqx.field(default=None, static=True)
    clip: float = eqx.field(default=0.1, static=True)
    init_std: float = eqx.field(default=0.08, static=True)
    actor_layers: tuple[int, ...] = eqx.field(default=(50, 20), static=True)
    critic_layers: tuple[int, ...] = eqx.field(default=(50, 20), static=True)
    n_shots: int | None = eqx.field(default=None, static=True)
    normalize_advantages: bool = eqx.field(default=True, static=True)
    evaluate_mean: bool = eqx.field(default=True, static=True)
    target_kl: float | None = eqx.field(default=None, static=True)

    def __check_init__(self) -> None:
        def positive_int(name: str, value: Any, minimum: int = 1) -> None:
            require(
                isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= minimum,
                f"PPOConfig.{name}={value!r}: must be an integer >= {minimum}",
            )

        def positive_float(name: str, value: Any) -> None:
            require(
                isinstance(value, (int, float, np.floating)) and math.isfinite(value) and value > 0,
                f"PPOConfig.{name}={value!r}: must be a finite number > 0",
            )

        positive_int("epochs", self.epochs)
        positive_int("batch_size", self.batch_size, 2)
        positive_int("updates_per_epoch", self.updates_per_epoch)
        positive_float("learning_rate", self.learning_rate)
        positive_float("clip", self.clip)
        positive_float("init_std", self.init_std)
        require(self.clip < 1, f"PPOConfig.clip={self.clip!r}: must be below 1")
        if self.minibatch_size is not None:
            positive_int("minibatch_size", self.minibatch_size, 2)
            require(
                self.minibatch_size <= self.batch_size,
                f"PPOConfig.minibatch_size={self.minibatch_size}: must not exceed batch_size={self.batch_size}",
            )
        if self.n_shots is not None:
            positive_int("n_shots", self.n_shots)
        if self.target_kl is not None:
            positive_float("target_kl", self.target_kl)
        for name in ("actor_layers", "critic_layers"):
            layers = getattr(self, name)
            require(
                isinstance(layers, tuple) and all(isinstance(w, (int, np.integer)) and w >= 1 for w in layers),
                f"PPOConfig.{name}={layers!r}: must be a tuple of positive integer widths",
            )

    @classmethod
    def tutorial(cls, **fields: Any) -> PPOConfig:
        """The settings of the quantum-control-rl tutorial (the defaults of `PPOConfig`).

        From `examples/pi_pulse/pi_pulse_training_server.py` of quantum-control-rl (Sivak et
        al.): 100 epochs of a batch of 50 candidates, Adam learning rate 2.5e-3, 20 policy
        updates per epoch on the whole batch, clipping `ε = 0.1`, initial spread `σ = 0.08`
        action units, actor layers (50, 20). Assumed here, not taken from the tutorial: the
        critic has the actor's layers (50, 20) (the tutorial's value network has none), the
        advantages are standardised per batch, and the tutorial's gradient clipping (norm 1)
        is not applied.

        **Arguments:**

        - `fields`: `PPOConfig` fields to set differently, e.g. `n_shots=1000` or `epochs=20`.

        **Returns:** a `PPOConfig`.
        """
        return cls(**{**_TUTORIAL, **fields})

    @classmethod
    def hardware(cls, **fields: Any) -> PPOConfig:
        """The settings of quantum-control-rl's single-step hardware script.

        From `experiment/rl_server_SBS_paulis.py` of quantum-control-rl (Sivak et al., the
        version of 3 Nov 2021: single-step episodes, as here): a batch of 10 candidates, Adam
        learning rate 1e-3, 20 policy updates per epoch on the whole batch, clipping
        `ε = 0.1`, actor and critic without hidden layers (both linear in the constant
        observation). Assumed here, not taken from the script: the initial spread
        `σ = 0.08` action units of the tutorial (the script's 0.2 is in its own action units;
        the problems' action units here were tuned with 0.08), 100 epochs (the script runs
        2000; `with_budget` sizes them), standardised advantages and no gradient clipping.
        The script measured each training candidate with 40 shots; pass `n_shots` to model
        shot noise.

        **Arguments:**

        - `fields`: `PPOConfig` fields to set differently, e.g. `n_shots=40`.

        **Returns:** a `PPOConfig`.
        """
        return cls(**{**_HARDWARE, **fields})

    @classmethod
    def named(cls, name: str, **fields: Any) -> PPOConfig:
        """The named settings `name` (one of `PPO_SETTINGS`: `"tutorial"`, `"hardware"`).

        **Arguments:**

        - `name`: the settings' name.
        - `fields`: `PPOConfig` fields to set differently.

        **Returns:** a `PPOConfig`. Raises `ValidationError` for an unknown name.
        """
        require(
            isinstance(name, str) and name in PPO_SETTINGS,
            f"PPO settings {name!r}: choose one of {', '.join(PPO_SETTINGS)}",
        )
        return cls(**{**PPO_SETTINGS[name], **fields})

    def settings_name(self) -> str:
        """`"tutorial"` or `"hardware"` if this config equals those settings apart from `epochs`
        and `n_shots` (which a run sets for itself), `"custom"` otherwise."""
        own = {f: getattr(self, f) for f in _SETTINGS_FIELDS}
        for name, values in PPO_SETTINGS.items():
            if own == {f: values.get(f, _FIELD_DEFAULTS[f]) for f in _SETTINGS_FIELDS}:
                return name
        return "custom"

    @property
    def evaluations_per_epoch(self) -> int:
        """Simulator evaluations of one full epoch: `batch_size` candidates plus the policy
        mean if `evaluate_mean`."""
        return int(self.batch_size) + int(self.evaluate_mean)

    @property
    def max_evaluations(self) -> int:
        """The most simulator evaluations a run can spend: `epochs x evaluations_per_epoch`."""
        return int(self.epochs) * self.evaluations_per_epoch

    def evaluations_within(self, budget: int) -> int:
        """The simulator evaluations `ppo_optimize` spends with this config and `budget`.

        Full epochs of `E = evaluations_per_epoch` evaluations, then a last epoch shortened
        to the `r` evaluations left if they hold at least two candidates (plus the policy
        mean): `min(budget, epochs E)` less `r` when `r` is too small, at most `epochs E`.

        **Arguments:**

        - `budget`: the evaluation budget (a positive integer).

        **Returns:** the number of evaluations spent.
        """
        _check_budget(budget)
        per_epoch = self.evaluations_per_epoch
        if budget >= self.max_evaluations:
            return self.max_evaluations
        full, rest = divmod(int(budget), per_epoch)
        return full * per_epoch + (rest if rest >= 2 + int(self.evaluate_mean) else 0)

    def with_budget(self, budget: int) -> PPOConfig:
        """This config with `epochs = ceil(budget / evaluations_per_epoch)`, so that a run given
        `budget` spends it in full, the last epoch shortened to fit.

        **Arguments:**

        - `budget`: simulator evaluations the run is to spend.

        **Returns:** a `PPOConfig`. Raises `ValidationError` if the last, shortened epoch
        would hold fewer than two candidates (plus the policy mean), naming the nearest
        budgets that are spent in full.
        """
        _check_budget(budget)
        per_epoch = self.evaluations_per_epoch
        smallest = 2 + int(self.evaluate_mean)
        epochs = -(-int(budget) // per_epoch)
        rest = int(budget) - (epochs - 1) * per_epoch
        if rest < smallest:
            lower = (epochs - 1) * per_epoch
            upper = lower + smallest
            mean = " and the policy mean" if self.evaluate_mean else ""
            nearest = f"{lower} or {upper}" if lower >= smallest else f"{upper}"
            raise ValidationError(
                f"budget={budget}: PPO with batch_size={self.batch_size} spends {per_epoch} evaluations an epoch "
                f"({self.batch_size} candidates{mean}) and a shortened last epoch needs at least {smallest}, "
                f"so {rest} would stay unused; use {nearest}"
            )
        return dataclasses.replace(self, epochs=epochs)

    def fingerprint(self) -> dict[str, Any]:
        """Every field except `epochs`, as JSON-ready values (a resumed run may extend `epochs`).

        **Returns:**

        A dictionary that identifies the optimisation a checkpoint belongs to.
        """
        return {
            "batch_size": int(self.batch_size),
            "learning_rate": float(self.learning_rate),
            "updates_per_epoch": int(self.updates_per_epoch),
            "minibatch_size": None if self.minibatch_size is None else int(self.minibatch_size),
            "clip": float(self.clip),
            "init_std": float(self.init_std),
            "actor_layers": [int(w) for w in self.actor_layers],
            "critic_layers": [int(w) for w in self.critic_layers],
            "n_shots": None if self.n_shots is None else int(self.n_shots),
            "normalize_advantages": bool(self.normalize_advantages),
            "evaluate_mean": bool(self.evaluate_mean),
            "target_kl": None if self.target_kl is None else float(self.target_kl),
        }

    def _update_settings(self) -> _UpdateSettings:
        """The fields the compiled policy update depends on (so `epochs` never recompiles)."""
        return _UpdateSettings(
            float(self.learning_rate),
            int(self.updates_per_epoch),
            None if self.minibatch_size is None else int(self.minibatch_size),
            float(self.clip),
            bool(self.normalize_advantages),
            None if self.target_kl is None else float(self.target_kl),
        )


_TUTORIAL: dict[str, Any] = {
    "epochs": 100,
    "batch_size": 50,
    "learning_rate": 2.5e-3,
    "updates_per_epoch": 20,
    "clip": 0.1,
    "init_std": 0.08,
    "actor_layers": (50, 20),
    "critic_layers": (50, 20),
}
_HARDWARE: dict[str, Any] = {
    **_TUTORIAL,
    "batch_size": 10,
    "learning_rate": 1e-3,
    "actor_layers": (),
    "critic_layers": (),
}
#: The named PPO settings, `{name: {field: value}}`: build them with `PPOConfig.named(name)`.
PPO_SETTINGS: dict[str, dict[str, Any]] = {"tutorial": _TUTORIAL, "hardware": _HARDWARE}
# Fields a run sets for itself: the named settings are recognised whatever these are.
_RUN_FIELDS = ("epochs", "n_shots")
_FIELD_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(PPOConfig)}
_SETTINGS_FIELDS = tuple(f for f in _FIELD_DEFAULTS if f not in _RUN_FIELDS)


def _check_budget(budget: Any) -> None:
    require(
        isinstance(budget, (int, np.integer)) and not isinstance(budget, bool) and budget >= 1,
        f"budget={budget!r}: must be a positive integer number of simulator evaluations",
    )


class _UpdateSettings(NamedTuple):
    learning_rate: float
    updates_per_epoch: int
    minibatch_size: int | None
    clip: float
    normalize_advantages: bool
    target_kl: float | None


class _MLP(eqx.Module):
    """Fully connected network `y = W_n tanh(... tanh(W_1 x + b_1) ...) + b_n`.

    Weights and biases start uniform in `±1/sqrt(fan_in)` (the usual default), drawn in a
    single call to the random generator: every separate draw adds to the compile time.
    """

    weights: tuple[Float[Array, "out in"], ...]
    biases: tuple[Float[Array, " out"], ...]

    def __init__(self, in_size: int, hidden: tuple[int, ...], out_size: int, *, key: PRNGKeyArray):
        sizes = (in_size, *hidden, out_size)
        shapes = list(zip(sizes[1:], sizes[:-1]))
        total = sum(n_out * (n_in + 1) for n_out, n_in in shapes)
        draws = jax.random.uniform(key, (total,), real_dtype(), -1.0, 1.0)
        weights, biases, start = [], [], 0
        for n_out, n_in in shapes:
            block = draws[start : start + n_out * (n_in + 1)].reshape(n_out, n_in + 1)
            weights.append(block[:, :n_in] / math.sqrt(n_in))
            biases.append(block[:, n_in] / math.sqrt(n_in))
            start += n_out * (n_in + 1)
        self.weights, self.biases = tuple(weights), tuple(biases)

    def __call__(self, x: Float[Array, " n"]) -> Float[Array, " m"]:
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            x = jnp.tanh(w @ x + b)
        return self.weights[-1] @ x + self.biases[-1]


def _observation() -> Float[Array, " 1"]:
    # Single-step episodes see the same observation every time.
    return jnp.ones((1,), dtype=real_dtype())


class PPOPolicy(eqx.Module):
    """Gaussian policy over the action residuals, with its value baseline.

    `mean() = μ_θ(o)`, `std() = exp(log σ)` and `value() = V_φ(o)` for the constant
    observation `o`.

    **Arguments:**

    - `num_params`: the dimension `P` of the action (number of pulse parameters).
    - `actor_layers`, `critic_layers`: hidden-layer widths of the two MLPs.
    - `init_std`: initial spread `σ` of every action component.
    - `key`: JAX random key for the initial weights.

    The last actor layer starts at zero so that the initial mean is exactly the baseline pulse.
    """

    actor: _MLP
    critic: _MLP
    log_std: Float[Array, " P"]

    def __init__(
        self,
        num_params: int,
        *,
        actor_layers: tuple[int, ...] = (50, 20),
        critic_layers: tuple[int, ...] = (50, 20),
        init_std: float = 0.08,
        key: PRNGKeyArray,
    ):
        k_actor, k_critic = jax.random.split(key)
        actor = _MLP(1, actor_layers, num_params, key=k_actor)
        self.actor = eqx.tree_at(
            lambda m: (m.weights[-1], m.biases[-1]),
            actor,
            (jnp.zeros_like(actor.weights[-1]), jnp.zeros_like(actor.biases[-1])),
        )
        self.critic = _MLP(1, critic_layers, 1, key=k_critic)
        self.log_std = jnp.full((num_params,), math.log(init_std), dtype=real_dtype())

    def mean(self) -> Float[Array, " P"]:
        """The mean action `μ_θ` (action units)."""
        return self.actor(_observation())

    def std(self) -> Float[Array, " P"]:
        """The spread `σ_θ` per parameter (action units)."""
        return jnp.exp(self.log_std)

    def value(self) -> Float[Array, ""]:
        """The critic's estimate `V_φ` of the expected reward."""
        return self.critic(_observation())[0]


def _log_prob(
    actions: Float[Array, "B P"], mean: Float[Array, " P"], log_std: Float[Array, " P"]
) -> Float[Array, " B"]:
    z = (actions - mean) * jnp.exp(-log_std)
    return -0.5 * jnp.sum(z**2, axis=-1) - jnp.sum(log_std) - 0.5 * mean.size * math.log(2 * math.pi)


def _optimiser(config: PPOConfig | _UpdateSettings) -> optax.GradientTransformation:
    return optax.adam(config.learning_rate)


@eqx.filter_jit
def _init_arrays(
    num_params: int, actor_layers: tuple[int, ...], critic_layers: tuple[int, ...], init_std: float, key: PRNGKeyArray
) -> tuple[PPOPolicy, optax.OptState, PRNGKeyArray]:
    key, init_key = jax.random.split(key)
    policy = PPOPolicy(
        num_params, actor_layers=actor_layers, critic_layers=critic_layers, init_std=init_std, key=init_key
    )
    # Adam's state does not depend on the learning rate.
    return policy, optax.adam(1.0).init(ravel_pytree(policy)[0]), key


@eqx.filter_jit
def _propose(
    policy: PPOPolicy,
    key: PRNGKeyArray,
    x0: Float[Array, " P"],
    scale: Float[Array, " P"],
    batch_size: int,
    evaluate_mean: bool,
) -> tuple[
    PRNGKeyArray,
    PRNGKeyArray,
    PRNGKeyArray,
    Float[Array, "B P"],
    Float[Array, " B"],
    Float[Array, "M P"],
    Float[Array, " P"],
]:
    """Draw a batch; the parameters to evaluate have the policy mean first if requested."""
    key, k_sample, k_shots, k_update = jax.random.split(key, 4)
    mean, std = policy.mean(), policy.std()
    actions = mean + std * jax.random.normal(k_sample, (batch_size, mean.size), mean.dtype)
    logp = _log_prob(actions, mean, policy.log_std)
    points = jnp.concatenate([mean[None], actions]) if evaluate_mean else actions
    return key, k_shots, k_update, actions, logp, x0 + scale * points, std


@eqx.filter_jit
def _policy_mean(policy: PPOPolicy) -> Float[Array, " P"]:
    return policy.mean()


def _ppo_loss(
    policy: PPOPolicy,
    actions: Float[Array, "B P"],
    logp_old: Float[Array, " B"],
    advantages: Float[Array, " B"],
    returns: Float[Array, " B"],
    weights: Float[Array, " B"],
    clip: float,
) -> Float[Array, ""]:
    ratio = jnp.exp(_log_prob(actions, policy.mean(), policy.log_std) - logp_old)
    surrogate = jnp.minimum(ratio * advantages, jnp.clip(ratio, 1 - clip, 1 + clip) * advantages)
    norm = jnp.maximum(jnp.sum(weights), 1.0)
    actor_loss = -jnp.sum(weights * surrogate) / norm
    # Actor and critic share no weights and Adam is invariant to a loss's scale per weight,
    # so a value-loss coefficient would change nothing.
    critic_loss = jnp.sum(weights * (policy.value() - returns) ** 2) / norm
    return actor_loss + critic_loss


@eqx.filter_jit
def _update(
    policy: PPOPolicy,
    opt_state: optax.OptState,
    actions: Float[Array, "B P"],
    logp_old: Float[Array, " B"],
    rewards: Float[Array, " B"],
    n_valid: Int[Array, ""],
    key: PRNGKeyArray,
    settings: _UpdateSettings,
) -> tuple[PPOPolicy, optax.OptState]:
    """Take the epoch's Adam steps on the measured rewards.

    Only the first `n_valid` candidates were evaluated (a budget-shortened epoch); the others
    are masked out, so the shapes, and the compiled code, never change.
    """
    optimiser = _optimiser(settings)
    mask = (jnp.arange(rewards.size) < n_valid).astype(rewards.dtype)
    count = jnp.sum(mask)
    advantages = (rewards - policy.value()) * mask
    if settings.normalize_advantages:
        centre = jnp.sum(advantages) / count
        spread = jnp.sqrt(jnp.sum(mask * (advantages - centre) ** 2) / count)
        advantages = mask * (advantages - centre) / (spread + 1e-8)

    # Adam acts on one flat vector: one set of optimiser ops instead of one per weight array,
    # which keeps the compile time down.
    flat, unravel = ravel_pytree(policy)

    def loss(flat, *batch):
        return _ppo_loss(unravel(flat), *batch, settings.clip)

    def step(carry, step_key):
        flat, opt_state, active = carry
        if step_key is None:
            batch = (actions, logp_old, advantages, rewards, mask)
        else:
            idx = jax.random.permutation(step_key, mask.size)[: settings.minibatch_size]
            batch = tuple(a[idx] for a in (actions, logp_old, advantages, rewards, mask))
        updates, new_opt_state = optimiser.update(jax.grad(loss)(flat, *batch), opt_state, flat)
        new_flat = flat + updates
        if settings.target_kl is not None:
            new_policy = unravel(new_flat)
            logp = _log_prob(actions, new_policy.mean(), new_policy.log_std)
            kl = jnp.sum(mask * (logp_old - logp)) / count
            keep = lambda new, old: jnp.where(active, new, old)
            new_flat = keep(new_flat, flat)
            new_opt_state = jax.tree.map(keep, new_opt_state, opt_state)
            active = active & (kl <= 1.5 * settings.target_kl)
        return (new_flat, new_opt_state, active), None

    # Keys only for minibatches: every random draw adds to the compile time.
    keys = None if settings.minibatch_size is None else jax.random.split(key, settings.updates_per_epoch)
    (flat, opt_state, _), _ = jax.lax.scan(
        step, (flat, opt_state, jnp.array(True)), keys, length=settings.updates_per_epoch
    )
    return unravel(flat), opt_state


@eqx.filter_jit
def _measure(key: PRNGKeyArray, probabilities: Float[Array, " B"], n_shots: int) -> Float[Array, " B"]:
    """Shot-noise estimate `Binomial(n_shots, p) / n_shots` of each probability `p`."""
    hits = jax.random.binomial(key, n_shots, probabilities)
    return hits.astype(probabilities.dtype) / n_shots


class PPOHistory(eqx.Module):
    """Per-epoch record of a PPO run (E epochs completed).

    - `evaluations`: simulator evaluations so far, shape (E,).
    - `best_reward`: best noiseless reward seen so far, shape (E,).
    - `batch_reward`: mean noiseless reward of the epoch's candidates, shape (E,).
    - `measured_reward`: mean reward the agent saw (with shot noise if any), shape (E,).
    - `mean_reward`: noiseless reward of the policy mean drawn from at that epoch (NaN when
      `evaluate_mean` is off), shape (E,).
    - `std`: policy spread per parameter at the start of the epoch (action units), shape (E, P).
    """

    evaluations: np.ndarray
    best_reward: np.ndarray
    batch_reward: np.ndarray
    measured_reward: np.ndarray
    mean_reward: np.ndarray
    std: np.ndarray

    @staticmethod
    def empty(num_params: int) -> PPOHistory:
        """A history with no epochs, for `P = num_params` parameters."""
        scalar = np.zeros((0,), dtype=np.float64)
        return PPOHistory(
            np.zeros((0,), dtype=np.int64), scalar, scalar, scalar, scalar, np.zeros((0, num_params), dtype=np.float64)
        )

    def append(self, **row: Any) -> PPOHistory:
        """Return a new history with one more epoch given as keyword arguments per field."""
        return PPOHistory(
            **{name: np.concatenate([getattr(self, name), np.asarray(row[name])[None]]) for name in _HISTORY_FIELDS}
        )

    def to_json(self) -> dict[str, list]:
        """The history as JSON-ready lists (floats round-trip exactly)."""
        return {name: getattr(self, name).tolist() for name in _HISTORY_FIELDS}

    @staticmethod
    def from_json(data: dict[str, list], num_params: int) -> PPOHistory:
        """Inverse of `to_json`."""
        empty = PPOHistory.empty(num_params)
        return PPOHistory(
            **{
                name: np.asarray(data[name], dtype=getattr(empty, name).dtype).reshape(
                    (-1, *getattr(empty, name).shape[1:])
                )
                for name in _HISTORY_FIELDS
            }
        )


_HISTORY_FIELDS = ("evaluations", "best_reward", "batch_reward", "measured_reward", "mean_reward", "std")


class PPOState(eqx.Module):
    """Everything needed to continue a PPO run exactly where it stopped.

    - `policy`, `opt_state`: the policy and its Adam state.
    - `key`: the random key for the next epoch (a typed JAX key).
    - `best_x`, `best_reward`: best candidate seen (parameters, noiseless reward; `-inf`
      before any evaluation).
    - `epoch`, `evaluations`: epochs completed and simulator evaluations spent.
    - `history`: the `PPOHistory` so far.
    """

    policy: PPOPolicy
    opt_state: optax.OptState
    key: PRNGKeyArray
    best_x: Float[Array, " P"]
    best_reward: float
    epoch: int
    evaluations: int
    history: PPOHistory


class PPOResult(OptimizeResult):
    """Outcome of `ppo_optimize` (the names of `OptimizeResult`).

    - `best_x`: parameters of the best candidate seen, shape (P,).
    - `best_value`: its noiseless reward.
    - `final_x`: parameters at the final policy mean, `x0 + scale ⊙ μ_θ`, shape (P,).
    - `history`: the per-epoch `PPOHistory`.
    - `evaluations`: simulator evaluations spent in total.
    - `iterations`: epochs completed.
    - `stop_reason`: `"epochs"`, `"budget"` or `"callback"`.
    - `policy`: the final `PPOPolicy`.

    The older names `best_reward`, `mean_x` and `epochs` read `best_value`, `final_x` and
    `iterations`.
    """

    history: PPOHistory
    policy: PPOPolicy

    best_reward = older_name("best_value")
    mean_x = older_name("final_x")
    epochs = older_name("iterations")


class PPOEpoch(NamedTuple):
    """What a callback receives after each epoch (rewards are noiseless)."""

    epoch: int
    evaluations: int
    best_reward: float
    batch_reward: float
    mean_reward: float
    std: np.ndarray


def _typed_key(key: Any) -> PRNGKeyArray:
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        require(key.shape == (), f"key: expected a single key, got shape {key.shape}")
        return key
    raw = np.asarray(key) if isinstance(key, (jax.Array, np.ndarray)) else None
    require(
        raw is not None and raw.dtype == np.uint32 and raw.shape == (2,),
        "key: expected a JAX random key, e.g. jax.random.key(0) or jax.random.PRNGKey(0)",
    )
    return jax.random.wrap_key_data(jnp.asarray(raw), impl="threefry2x32")


def _as_vector(name: str, value: Any, size: int | None) -> np.ndarray:
    try:
        array = np.asarray(value)
        require(not np.iscomplexobj(array), f"{name}: expected real numbers, got complex")
        array = array.astype(np.float64)
    except (TypeError, ValueError) as err:
        if isinstance(err, ValidationError):
            raise
        raise ValidationError(f"{name}: expected a real vector of numbers ({err})") from None
    if size is None:
        require(
            array.ndim == 1 and array.size >= 1,
            f"{name}: expected a 1-D vector of pulse parameters, got shape {array.shape}",
        )
    else:
        require(
            array.shape in ((), (size,)),
            f"{name}: expected a scalar or shape ({size},) to match x0, got shape {array.shape}",
        )
        array = np.broadcast_to(array, (size,))
    require(bool(np.all(np.isfinite(array))), f"{name}: contains NaN or infinite entries")
    return array.astype(real_dtype())


def ppo_init(num_params: int, config: PPOConfig, key: PRNGKeyArray) -> PPOState:
    """The state of a PPO run before its first epoch.

    **Arguments:**

    - `num_params`: number of pulse parameters `P`.
    - `config`: the `PPOConfig`.
    - `key`: JAX random key (typed or legacy `uint32[2]`); the run is a pure function of it.

    **Returns:**

    A `PPOState` with epoch 0, no evaluations and best reward `-inf`.
    """
    policy, opt_state, key = _init_arrays(
        int(num_params),
        tuple(int(w) for w in config.actor_layers),
        tuple(int(w) for w in config.critic_layers),
        float(config.init_std),
        _typed_key(key),
    )
    return PPOState(
        policy=policy,
        opt_state=opt_state,
        key=key,
        best_x=np.full((num_params,), np.nan),
        best_reward=-math.inf,
        epoch=0,
        evaluations=0,
        history=PPOHistory.empty(num_params),
    )


def _run_identity(
    x0: Float[Array, " P"], scale: Float[Array, " P"], config: PPOConfig, key: PRNGKeyArray
) -> dict[str, Any]:
    return {
        "config": config.fingerprint(),
        "x0": np.asarray(x0).tolist(),
        "scale": np.asarray(scale).tolist(),
        "key_impl": str(jax.random.key_impl(key)),
        "key": np.asarray(jax.random.key_data(key)).tolist(),
    }


def save_ppo_state(path: str | os.PathLike, state: PPOState, identity: dict[str, Any] | None = None) -> None:
    """Write a PPO state to `path` atomically (temporary file, then `os.replace`).

    The file is one line of JSON (format, counters, history, `identity`) followed by the arrays
    serialised with `eqx.tree_serialise_leaves`.

    **Arguments:**

    - `path`: destination file.
    - `state`: the `PPOState` to save.
    - `identity`: optional JSON-ready description of the run, checked again when loading
      (`ppo_optimize` stores its config, `x0`, `scale` and key here).
    """
    path = os.fspath(path)
    header = {
        "format": _CHECKPOINT_FORMAT,
        "version": _CHECKPOINT_VERSION,
        "identity": identity,
        "epoch": int(state.epoch),
        "evaluations": int(state.evaluations),
        "best_reward": float(state.best_reward),
        "history": state.history.to_json(),
    }
    arrays = (state.policy, state.opt_state, jax.random.key_data(state.key), state.best_x)
    write_checkpoint(path, header, arrays)


def load_ppo_state(path: str | os.PathLike, like: PPOState, identity: dict[str, Any] | None = None) -> PPOState:
    """Read a PPO state written by `save_ppo_state`.

    **Arguments:**

    - `path`: the checkpoint file.
    - `like`: a state of the same structure (e.g. from `ppo_init`), giving shapes and dtypes.
    - `identity`: the description of the run being resumed; if given, it must equal the
      saved one.

    **Returns:**

    The saved `PPOState`. Raises `ValidationError` if the file is not a PPO checkpoint or
    belongs to a different run (other config, x0, scale or key).
    """

    def check(header: dict[str, Any]) -> None:
        saved = header.get("identity") or {}
        changed = sorted(k for k in (identity or {}) if saved.get(k) != identity[k])
        if "config" in changed:
            changed.remove("config")
            changed += [
                f"config.{k}" for k in identity["config"] if (saved.get("config") or {}).get(k) != identity["config"][k]
            ]
        require(
            not changed,
            f"checkpoint: {os.fspath(path)!r} belongs to a different run (differs in "
            f"{', '.join(changed)}); use the original arguments or a new checkpoint path",
        )

    template = (like.policy, like.opt_state, jax.random.key_data(like.key), like.best_x)
    header, (policy, opt_state, key_data, best_x) = read_checkpoint(
        path, template, format=_CHECKPOINT_FORMAT, version=_CHECKPOINT_VERSION, kind="PPO", check_header=check
    )
    return PPOState(
        policy=policy,
        opt_state=opt_state,
        key=jax.random.wrap_key_data(key_data, impl=str(jax.random.key_impl(like.key))),
        best_x=best_x,
        best_reward=float(header["best_reward"]),
        epoch=int(header["epoch"]),
        evaluations=int(header["evaluations"]),
        history=PPOHistory.from_json(header["history"], like.best_x.size),
    )


def _evaluate(
    reward_fn: Callable[[Float[Array, "B P"]], Float[Array, " B"]],
    xs: Float[Array, "B P"],
    epoch: int,
    probability: bool,
) -> np.ndarray:
    rewards = np.asarray(reward_fn(xs), dtype=np.float64)
    if rewards.shape != (xs.shape[0],):
        raise RewardError(
            f"reward_fn: at epoch {epoch} returned shape {rewards.shape} for {xs.shape[0]} "
            f"candidates; it must map a (B, P) batch to B rewards"
        )
    bad = np.flatnonzero(~np.isfinite(rewards))
    if bad.size:
        raise RewardError(
            f"reward_fn: returned a non-finite reward ({rewards[bad[0]]}) at epoch {epoch} "
            f"(counting from 0) for row {bad[0]} of the batch, "
            f"x = {np.asarray(xs[bad[0]]).tolist()}; check the "
            "simulation at these parameters or narrow `scale`"
        )
    if probability:
        outside = np.flatnonzero((rewards < -_PROBABILITY_SLACK) | (rewards > 1 + _PROBABILITY_SLACK))
        if outside.size:
            raise RewardError(
                f"reward_fn: returned {rewards[outside[0]]} at epoch {epoch}, but with n_shots "
                "set rewards are probabilities and must lie in [0, 1]"
            )
        rewards = np.clip(rewards, 0.0, 1.0)
    return rewards


def ppo_optimize(
    reward_fn: Callable[[Float[Array, "B P"]], Float[Array, " B"]],
    x0: Float[Array, " P"],
    scale: Float[Array, " P"] | float,
    config: PPOConfig = PPOConfig(),
    key: PRNGKeyArray | None = None,
    *,
    budget: int | None = None,
    callback: Callable[[PPOEpoch], bool | None] | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> PPOResult:
    """Maximise a black-box reward over pulse parameters with single-step PPO.

    Each epoch samples `a_i ~ N(μ_θ, σ_θ²)` for `i = 1..batch_size`, evaluates
    `r_i = reward_fn(x0 + scale ⊙ a_i)` on concrete arrays (no gradient through it), optionally
    replaces `r_i` by `Binomial(n_shots, r_i) / n_shots`, and takes `updates_per_epoch` Adam
    steps on the clipped surrogate with advantages `r_i - V_φ`. With `evaluate_mean`, the policy
    mean `x0 + scale ⊙ μ_θ` is evaluated in the same call (noiseless, for the record; it can
    become the best candidate). Each row of the batch passed to `reward_fn` is one simulator
    evaluation.

    **Arguments:**

    - `reward_fn`: maps parameters of shape (B, P) to rewards of shape (B,); larger is better.
      With `config.n_shots` the rewards must be probabilities in [0, 1].
    - `x0`: the scripted baseline pulse parameters, shape (P,).
    - `scale`: the size of one action unit per parameter, shape (P,) or a scalar, > 0.
    - `config`: a `PPOConfig` (default: the tutorial settings, `PPOConfig.tutorial()`).
    - `key`: JAX random key; the same key gives the same run. Required.
    - `budget`: maximum number of simulator evaluations over the whole run (including epochs
      before a resume). The last epoch is shortened to fit; the run stops when fewer than two
      candidates fit. The run also stops after `config.epochs` epochs, whatever is left of
      the budget (`stop_reason` says which); `config.with_budget(budget)` sizes the epochs so
      that the budget is spent in full, and `config.evaluations_within(budget)` says what a
      run will spend.
    - `callback`: called after every epoch with a `PPOEpoch`; returning `True` stops the run.
    - `checkpoint`: file to resume from if it exists and to save the state to after every
      epoch, at the end, and on `KeyboardInterrupt` (before re-raising). An epoch interrupted
      half-way is repeated on resume, with the same random numbers.

    **Returns:**

    A `PPOResult`. Raises `ValidationError` for bad arguments and `RewardError` if `reward_fn`
    returns a NaN, infinite, misshaped or (with shots) out-of-range reward, naming the epoch.
    """
    require(isinstance(config, PPOConfig), f"config: expected a PPOConfig, got {type(config).__name__}")
    require(key is not None, "key: a JAX random key is required, e.g. jax.random.key(0)")
    require(callable(reward_fn), "reward_fn: must be callable, mapping (B, P) to (B,)")
    x0 = _as_vector("x0", x0, None)
    scale = _as_vector("scale", scale, x0.size)
    require(bool(np.all(scale > 0)), "scale: every entry must be > 0")
    min_cost = 2 + int(config.evaluate_mean)
    if budget is not None:
        require_budget(
            "budget",
            budget,
            min_cost,
            "evaluations",
            "an epoch needs 2 candidates"
            + (" plus the policy mean" if config.evaluate_mean else "")
            + " (None: no limit)",
        )

    if checkpoint is not None:
        directory = os.path.dirname(os.path.abspath(checkpoint))
        require(
            os.path.isdir(directory),
            f"checkpoint: folder {directory!r} does not exist; create it or choose another path",
        )
    key = _typed_key(key)
    identity = _run_identity(x0, scale, config, key)
    state = ppo_init(x0.size, config, key)
    if checkpoint is not None and os.path.exists(checkpoint):
        state = load_ppo_state(checkpoint, state, identity)

    def advance(state: PPOState) -> tuple[PPOState, str | None]:
        if state.epoch >= config.epochs:
            return state, "epochs"
        return _epoch(state, reward_fn, x0, scale, config, budget, callback)

    save = None if checkpoint is None else (lambda state: save_ppo_state(checkpoint, state, identity))
    state, stop_reason = checkpointed_loop(state, advance, save)

    return PPOResult(
        best_x=jnp.asarray(state.best_x),
        best_value=state.best_reward,
        final_x=jnp.asarray(x0 + scale * np.asarray(_policy_mean(state.policy))),
        history=state.history,
        evaluations=state.evaluations,
        iterations=state.epoch,
        stop_reason=stop_reason,
        policy=state.policy,
    )


def _epoch(
    state: PPOState,
    reward_fn: Callable[[Float[Array, "B P"]], Float[Array, " B"]],
    x0: Float[Array, " P"],
    scale: Float[Array, " P"],
    config: PPOConfig,
    budget: int | None,
    callback: Callable[[PPOEpoch], bool | None] | None,
) -> tuple[PPOState, str | None]:
    """One epoch; returns the new state (the old one if nothing was done) and a stop reason."""
    n_mean = int(config.evaluate_mean)
    n_cand = config.batch_size
    if budget is not None:
        n_cand = min(n_cand, budget - state.evaluations - n_mean)
        if n_cand < 2:
            return state, "budget"

    key, k_shots, k_update, actions, logp, points, std = _propose(
        state.policy, state.key, x0, scale, config.batch_size, config.evaluate_mean
    )
    xs = np.asarray(points)[: n_cand + n_mean]
    rewards = _evaluate(reward_fn, jnp.asarray(xs), state.epoch, config.n_shots is not None)
    mean_reward = float(rewards[0]) if n_mean else math.nan
    true = rewards[n_mean:]
    padded = np.zeros(config.batch_size, dtype=real_dtype())
    padded[:n_cand] = true
    measured = padded
    if config.n_shots is not None:
        measured = np.asarray(_measure(k_shots, jnp.asarray(padded), int(config.n_shots)))
    policy, opt_state = _update(
        state.policy,
        state.opt_state,
        actions,
        logp,
        jnp.asarray(measured),
        jnp.asarray(n_cand),
        k_update,
        config._update_settings(),
    )

    best = int(np.argmax(rewards))
    best_x, best_reward = state.best_x, state.best_reward
    if rewards[best] > best_reward:
        best_x, best_reward = xs[best], float(rewards[best])
    evaluations = state.evaluations + n_cand + n_mean
    std = np.asarray(std)
    history = state.history.append(
        evaluations=evaluations,
        best_reward=best_reward,
        batch_reward=float(np.mean(true)),
        measured_reward=float(np.mean(measured[:n_cand])),
        mean_reward=mean_reward,
        std=std,
    )
    state = PPOState(
        policy=policy,
        opt_state=opt_state,
        key=key,
        best_x=best_x,
        best_reward=best_reward,
        epoch=state.epoch + 1,
        evaluations=evaluations,
        history=history,
    )
    if callback is not None and callback(
        PPOEpoch(
            epoch=state.epoch - 1,
            evaluations=evaluations,
            best_reward=best_reward,
            batch_reward=float(np.mean(true)),
            mean_reward=float(mean_reward),
            std=std,
        )
    ):
        return state, "callback"
    return state, None
