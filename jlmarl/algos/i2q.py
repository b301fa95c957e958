"""Belief-I2Q and Rec-I2Q (seed 002): fully decentralised I2Q learners.

Each agent learns alone from its own observation o, its own action a, the shared
reward and a context c: the belief b of a frozen, pre-trained belief model
(`belief_i2q`, see jlmarl.algos.belief_model: the decoder's mean and log-variance)
or the output of its own trained GRU over [o_t, onehot(a_{t-1})] (`rec_i2q`). Three
networks per agent, no parameter sharing, no mixer, no central critic; the global
state is never read (belief_i2q only ever saw it as a label, offline):

    Qss(o, o')     value of moving from o to o'
    f(o, c, a)     predicted ideal next observation
    Q(o, c)[a]     the action values the agent acts on (epsilon-greedy)

Losses per transition (o, c, a, r, o', c', d), averaged over the transitions of each agent:

    L_f   = -lambda_f Qss(o, f(o, c, a)) + mean_k (o' - f(o, c, a))_k^2            (updates f)
    L_Qss = (Qss(o, o') - [r + gamma (1 - d) Qss_tgt(o', f(o', c', a*))])^2,
            a* = argmax over available a' of Q(o', c')[a']                        (updates Qss)
    L_Q   = (Q(o, c)[a] - max(Qss_tgt(o, o'), Qss_tgt(o, f(o, c, a))))^2          (updates Q)

f's squared error is averaged over observation dims, as the public code's
MSELoss(reduction="mean") (`f_error=sum` keeps our earlier sum, obs_dim times
stronger against the optimism term). Qss reads (o, o') as in the paper's code;
`qss_context=true` makes it read Qss(o, c, o') for both methods alike (our extension:
on oracle, Qss(position, next position) averages over the three boxes).

Each update trains on the sampled whole episodes, or (`transitions=K`, the public
code's regime) on K (episode, t) pairs drawn uniformly over the batch's real steps.
The context of a drawn transition is computed exactly as for whole episodes: the
recurrent model is unrolled over each sampled episode from its start and read at t
and t+1 (no cheaper approximation).

Only the network named after a loss moves with it (the others enter through
stop_gradient); rec_i2q's GRU learns from all three losses (through c, except the
-lambda_f Qss term of L_f, which would otherwise teach the GRU to inflate Qss).
Qss_tgt follows Qss by Polyak averaging (tau) inside every update; the losses
read no other target network, so no other is kept. `target_update` is the
identity. Adam on every network with lr, each agent's gradient of each network
clipped to grad_norm_clip separately.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jlmarl.algos.belief_model import load_belief
from jlmarl.algos.q_learning import (
    RecurrentActor,
    apply_gradients,
    epsilon_settings,
    explore_or_exploit,
    init_recurrent_actor,
)
from jlmarl.core.algo import Algo, AlgoConfigError, UpdateContext
from jlmarl.core.buffer import EpisodeBatch
from jlmarl.envs.base import EnvSpec
from jlmarl.nets.agents import RNNAgent, agent_inputs, episode_inputs, input_dim, masked_argmax
from jlmarl.nets.belief import (
    BeliefModel,
    episode_history_inputs,
    history_inputs,
    sample_belief,
    unroll_history,
)
from jlmarl.nets.mlp import MLP
from jlmarl.nets.per_agent import (
    apply_per_agent,
    clip_per_agent,
    init_per_agent,
    soft_update,
    step_rnn_per_agent,
    unroll_per_agent,
)

CONTEXTS = ("belief", "history")
F_ERRORS = ("mean", "sum")


@struct.dataclass
class Transitions:
    """Per-agent transitions; every field has leading axes [...] (episodes [B, T] or
    drawn transitions [K]) then the agent axis n."""

    obs: jax.Array  # [..., n, obs]
    ctx: jax.Array  # [..., n, C]
    actions: jax.Array  # int [..., n]
    reward: jax.Array  # [..., n]
    obs_next: jax.Array  # [..., n, obs]
    ctx_next: jax.Array  # [..., n, C]
    avail_next: jax.Array  # [..., n, A]
    cont: jax.Array  # [..., n] 1 - terminated
    mask: jax.Array  # [..., n] 1 for a real step


def episode_transitions(batch: EpisodeBatch, ctx: jax.Array) -> Transitions:
    """Every step of the batch: fields [B, T, n, ...]. ctx [B, T+1, n, C]."""
    shape = batch.actions.shape  # [B, T, n]
    per_agent = lambda x: jnp.broadcast_to(x[..., None], shape).astype(jnp.float32)  # noqa: E731
    return Transitions(
        obs=batch.obs[:, :-1],
        ctx=ctx[:, :-1],
        actions=batch.actions,
        reward=per_agent(batch.reward),
        obs_next=batch.obs[:, 1:],
        ctx_next=ctx[:, 1:],
        avail_next=batch.avail[:, 1:],
        cont=1.0 - per_agent(batch.terminated),
        mask=per_agent(batch.mask),
    )


def sample_transitions(key: jax.Array, batch: EpisodeBatch, ctx: jax.Array, k: int) -> Transitions:
    """k (episode, t) pairs drawn uniformly, with replacement, over the batch's real
    steps: fields [k, n, ...]. The context is read from ctx [B, T+1, n, C], computed over
    whole episodes, so each drawn transition's context is exact."""
    every = episode_transitions(batch, ctx)
    b, t = batch.mask.shape
    logits = jnp.where(batch.mask.reshape(-1) > 0, 0.0, -jnp.inf)
    idx = jax.random.categorical(key, logits, shape=(k,))
    return jax.tree.map(lambda x: x.reshape(b * t, *x.shape[2:])[idx], every)


@struct.dataclass
class I2QState:
    params: Any  # {"q", "qss", "f", "encoder"}; every leaf [n_agents, ...]
    target_qss: Any
    opt_state: Any
    belief_params: Any  # the frozen belief model (belief_i2q), {} for rec_i2q; never updated
    updates: jax.Array  # int32 [], gradient steps taken


def check_config(cfg) -> None:
    """belief_i2q names a belief model (every key's own range is declared in its YAML)."""
    if cfg.algo.name == "belief_i2q" and not str(cfg.belief_i2q.checkpoint or ""):
        raise ValueError(
            "belief_i2q.checkpoint must name the folder of a belief model (default beliefs/<env>)"
        )


@dataclasses.dataclass(frozen=True)
class I2QNets:
    """The three per-agent networks; params {"q", "qss", "f"}, leaves [n_agents, ...]."""

    obs_dim: int
    n_actions: int
    hidden_dim: int
    qss_context: bool = False  # Qss(o, c, o') rather than the paper's Qss(o, o')

    @property
    def q(self) -> MLP:
        return MLP((self.hidden_dim, self.hidden_dim, self.n_actions))

    @property
    def qss(self) -> MLP:
        return MLP((self.hidden_dim, self.hidden_dim, 1))

    @property
    def f(self) -> MLP:
        return MLP((self.hidden_dim, self.hidden_dim, self.obs_dim))

    def init(self, key: jax.Array, n_agents: int, ctx_dim: int) -> dict:
        k_q, k_qss, k_f = jax.random.split(key, 3)
        o, c, a = jnp.zeros((1, self.obs_dim)), jnp.zeros((1, ctx_dim)), jnp.zeros((1, self.n_actions))
        return {
            "q": init_per_agent(self.q, k_q, n_agents, jnp.concatenate([o, c], -1)),
            "qss": init_per_agent(self.qss, k_qss, n_agents, self._qss_in(o, c, o)),
            "f": init_per_agent(self.f, k_f, n_agents, jnp.concatenate([o, c, a], -1)),
        }

    def q_values(self, q_params, o: jax.Array, c: jax.Array) -> jax.Array:
        """Q(o, c): [..., n, A]."""
        return apply_per_agent(self.q, q_params, jnp.concatenate([o, c], axis=-1))

    def _qss_in(self, o: jax.Array, c: jax.Array, o_next: jax.Array) -> jax.Array:
        return jnp.concatenate([o, c, o_next] if self.qss_context else [o, o_next], axis=-1)

    def qss_value(self, qss_params, o: jax.Array, c: jax.Array, o_next: jax.Array) -> jax.Array:
        """Qss(o, c, o') (c ignored when qss_context is false): [..., n]."""
        return apply_per_agent(self.qss, qss_params, self._qss_in(o, c, o_next))[..., 0]

    def f_predict(self, f_params, o: jax.Array, c: jax.Array, a: jax.Array) -> jax.Array:
        """f(o, c, a): the ideal next observation [..., n, obs_dim]."""
        x = jnp.concatenate([o, c, jax.nn.one_hot(a, self.n_actions, dtype=o.dtype)], axis=-1)
        return apply_per_agent(self.f, f_params, x)


def i2q_losses(
    nets: I2QNets,
    params: dict,
    target_qss,
    tr: Transitions,
    gamma: float,
    lambda_f: float,
    f_error: str = "mean",
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """The three losses of the module docstring, each averaged over every agent's own
    transitions: ({"f", "qss", "q"} each [n_agents], metrics). The contexts in `tr` are
    differentiable for rec_i2q. f_error: "mean" (the paper's code) or "sum" over obs dims."""
    sg = jax.lax.stop_gradient
    o, o_next, c, c_next = tr.obs, tr.obs_next, tr.ctx, tr.ctx_next
    lead = tuple(range(tr.mask.ndim - 1))  # every axis but the agents'
    count = jnp.maximum(tr.mask.sum(axis=lead), 1.0)  # [n]

    def per_agent_mean(x):  # [..., n] -> [n]
        return (x * tr.mask).sum(axis=lead) / count

    f_pred = nets.f_predict(params["f"], o, c, tr.actions)
    sq = (o_next - f_pred) ** 2
    f_err = sq.mean(-1) if f_error == "mean" else sq.sum(-1)
    f_value = nets.qss_value(sg(params["qss"]), o, sg(c), f_pred)
    loss_f = per_agent_mean(-lambda_f * f_value + f_err)

    a_next = masked_argmax(nets.q_values(sg(params["q"]), o_next, sg(c_next)), tr.avail_next)
    f_next = nets.f_predict(sg(params["f"]), o_next, sg(c_next), a_next)
    y_ss = tr.reward + gamma * tr.cont * nets.qss_value(target_qss, o_next, sg(c_next), f_next)
    qss = nets.qss_value(params["qss"], o, c, o_next)
    loss_qss = per_agent_mean((qss - sg(y_ss)) ** 2)

    y_q = jnp.maximum(
        nets.qss_value(target_qss, o, sg(c), o_next), nets.qss_value(target_qss, o, sg(c), sg(f_pred))
    )
    q_taken = jnp.take_along_axis(nets.q_values(params["q"], o, c), tr.actions[..., None], -1)[..., 0]
    loss_q = per_agent_mean((q_taken - sg(y_q)) ** 2)

    metrics = {
        "loss_f": loss_f.mean(),
        "loss_qss": loss_qss.mean(),
        "loss_q": loss_q.mean(),
        "f_error": per_agent_mean(sq.mean(-1)).mean(),  # per obs dim, whatever the loss's reduction
        "qss_mean": per_agent_mean(qss).mean(),
        "q_taken_mean": per_agent_mean(q_taken).mean(),
        "target_mean": per_agent_mean(y_q).mean(),
    }
    return {"f": loss_f, "qss": loss_qss, "q": loss_q}, metrics


def build(
    spec: EnvSpec,
    cfg: dict,
    context: str,
    name: str | None = None,
    method: dict | None = None,
    belief: tuple[BeliefModel, Any] | None = None,
) -> Algo:
    """cfg: the `algo` section (_i2q.yaml); method: belief_i2q's `belief_i2q` group
    (belief_i2q.yaml). belief_i2q loads its frozen belief model from
    method["checkpoint"] unless `belief=(model, params)` is given (tests, benchmarks)."""
    if context not in CONTEXTS:
        raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
    n, n_actions, obs_dim = spec.n_agents, spec.n_actions, spec.obs_dim
    hidden = int(cfg["hidden_dim"])
    gamma, tau, lambda_f = float(cfg["gamma"]), float(cfg["tau"]), float(cfg["lambda_f"])
    epsilon = epsilon_settings(cfg)
    clip = float(cfg["grad_norm_clip"])
    optimizer = optax.adam(float(cfg["lr"]))

    if context == "belief":
        if not spec.hidden_dims:
            raise AlgoConfigError(
                f"env={spec.name} declares no hidden state (EnvSpec.hidden_dims is empty), "
                "so algo=belief_i2q has no belief label; use an env that declares one "
                "(e.g. env=oracle) or algo=rec_i2q"
            )
        if belief is None:
            bmodel, bparams, _ = load_belief(Path(method["checkpoint"]), spec)
        else:
            bmodel, bparams = belief
        samples, temperature = int(method["samples"]), float(method["temperature"])
        ctx_dim, actor_dim = bmodel.belief_dim, bmodel.hidden_dim
        encoder = None
    else:
        encoder = RNNAgent(hidden_dim=hidden, n_actions=hidden)  # its "Q head" is the context projection
        ctx_dim, actor_dim = hidden, hidden

    nets = I2QNets(obs_dim, n_actions, hidden, bool(cfg["qss_context"]))
    f_error, n_transitions = str(cfg["f_error"]), int(cfg["transitions"])
    if f_error not in F_ERRORS:
        raise AlgoConfigError(f"algo.f_error must be one of {F_ERRORS}, got {f_error!r}")

    def init(key):
        k_nets, k_enc = jax.random.split(key)
        params = {**nets.init(k_nets, n, ctx_dim), "encoder": {}}
        if encoder is not None:
            x = jnp.zeros((1, input_dim(obs_dim, n_actions, n)))
            params["encoder"] = init_per_agent(encoder, k_enc, n, jnp.zeros((1, hidden)), x)
        frozen = bparams if context == "belief" else {}
        return I2QState(params, params["qss"], optimizer.init(params), frozen, jnp.int32(0))

    def init_actor(n_envs):
        # hidden: the belief model's history (belief_i2q) or the agent's own GRU (rec_i2q)
        return init_recurrent_actor(n_envs, n, actor_dim)

    def step_context(ts, actor, obs, key):
        """The context of each agent from its own history only: [N, n, ...]."""
        if context == "belief":
            x = history_inputs(obs, actor.last_action, n_actions)
            h = bmodel.apply(ts.belief_params, actor.hidden, x, method=BeliefModel.step)
            return h, sample_belief(bmodel, ts.belief_params, h, key, samples, temperature)
        x = agent_inputs(obs, actor.last_action, n_actions)
        return step_rnn_per_agent(encoder, ts.params["encoder"], actor.hidden, x)

    def act(ts, actor, obs, avail, key, env_steps, greedy):
        k_ctx, k_eps = jax.random.split(key)
        h, c = step_context(ts, actor, obs, k_ctx)
        q = nets.q_values(ts.params["q"], obs, c)
        actions = explore_or_exploit(k_eps, q, avail, greedy, env_steps, epsilon)
        return actions, RecurrentActor(h, actions)

    def episode_context(ts, params, batch: EpisodeBatch, key):
        """Context at every observation of the batch: [B, T+1, n, ctx_dim]."""
        if context == "belief":
            frozen = jax.lax.stop_gradient(ts.belief_params)
            h = unroll_history(bmodel, frozen, episode_history_inputs(batch.obs, batch.actions, n_actions))
            return jax.lax.stop_gradient(sample_belief(bmodel, frozen, h, key, samples, temperature))
        return unroll_per_agent(
            encoder, params["encoder"], episode_inputs(batch.obs, batch.actions, n_actions)
        )

    def update(ts, batch: EpisodeBatch, key, ctx: UpdateContext):
        del ctx  # no clock-dependent schedule
        k_ctx, k_draw = jax.random.split(key)

        def loss_fn(params):
            c = episode_context(ts, params, batch, k_ctx)
            if n_transitions > 0:
                tr = sample_transitions(k_draw, batch, c, n_transitions)
            else:
                tr = episode_transitions(batch, c)
            losses, metrics = i2q_losses(nets, params, ts.target_qss, tr, gamma, lambda_f, f_error)
            # Summed over agents: agent i's parameters get exactly the gradient of its own losses.
            return sum(losses.values()).sum(), metrics

        (total, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(ts.params)
        grad_norm = optax.tree.norm(grads)
        grads = clip_per_agent(grads, clip)
        params, opt_state = apply_gradients(optimizer, ts.params, ts.opt_state, grads)
        ts = ts.replace(
            params=params,
            target_qss=soft_update(ts.target_qss, params["qss"], tau),
            opt_state=opt_state,
            updates=ts.updates + 1,
        )
        return ts, {"loss": total / n, **aux, "grad_norm": grad_norm}

    return Algo(
        name=name or f"i2q_{context}",
        init=init,
        init_actor=init_actor,
        act=act,
        update=update,
        target_update=lambda ts: ts,  # soft targets move inside update()
    )
