"""PQN-VDN and PQN-QMIX: parallel Q-learning (Gallici et al. 2024, "Simplifying Deep
Temporal Difference Learning"; purejaxql's SMAX baseline, pqn_vdn_rnn_jaxmarl.py).

No replay buffer and no target network. Every chunk collects a fixed-length segment
from each of many persistent auto-resetting envs (Algo.segment_length: the engine's
segment rollout), computes Q(lambda) targets on it with the current network, and
takes `epochs` passes of `minibatches` gradient steps over it (minibatches split
the envs, so every minibatch keeps whole segments for the recurrent unroll):

    G_t = r_t + gamma (1 - d_t) [lambda G_{t+1} + (1 - lambda) max_a' Q_tot(t + 1)]

with d_t every episode end inside the segment (see jlmarl.core.rollout: a truncation
cannot bootstrap, its next observation is the next episode's), the last step
bootstrapping from the observation after the segment, Q_tot the VDN sum or the QMIX
mixer on the state, max over available actions, and the targets held fixed
(stop-gradient) within the minibatch's loss. The agent is the recurrent trunk with
`layers` layer-normalised Dense blocks before the GRU and a linear Q head; acting is
epsilon-greedy (1 -> 0.01 over the first 10% of the paper's 1e7 steps). The learning
rate decays linearly to 0 over `pqn.lr_decay_steps` env steps (RAdam, global-norm
clipping). The agent's GRU starts each segment from the carry it acted with
(UpdateContext.segment_start) and restarts at every episode start.

Differences from purejaxql's SMAX config, on purpose: layer normalisation (the PQN
paper's choice and the issue's; purejaxql's SMAX config uses batch norm, whose running
statistics would make acting depend on the batch), no input normalisation, and no
"memory window" of earlier segments in the unroll.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jlmarl.algos.q_learning import (
    QLearnerState,
    epsilon_settings,
    init_recurrent_actor,
    joint_q_table,
    make_optimizer,
    recurrent_act,
)
from jlmarl.core.algo import Algo, UpdateContext
from jlmarl.core.buffer import EpisodeBatch
from jlmarl.core.targets import td_lambda_targets
from jlmarl.envs.base import EnvSpec
from jlmarl.nets.agents import RNNAgent, episode_inputs, input_dim, segment_inputs
from jlmarl.nets.mixers import QMixer, VDNMixer
from jlmarl.nets.recurrent import unroll

MIXERS = ("vdn", "qmix")


def check_config(cfg) -> None:
    """Minibatches split the envs of a segment evenly."""
    if cfg.num_envs % cfg.pqn.minibatches:
        raise ValueError(
            f"pqn.minibatches={cfg.pqn.minibatches} must divide num_envs={cfg.num_envs} "
            "(each minibatch is whole segments of num_envs / minibatches envs)"
        )


def q_lambda_loss(q_all, avail, batch: EpisodeBatch, mix_online, mix_next, gamma: float, lam: float):
    """PQN's loss on one minibatch: (Q_tot(chosen) - sg(G))^2 averaged over real steps.

    q_all [B, T+1, n, A] (differentiated); the targets G come from the same values held
    fixed: max over available actions, mixed at every observation by mix_next(q [B, T+1, n])
    -> [B, T+1]; mix_online(chosen [B, T, n]) -> [B, T]."""
    sg = jax.lax.stop_gradient
    q_max = jnp.max(jnp.where(avail, sg(q_all), -jnp.inf), axis=-1)  # [B, T+1, n]
    targets = sg(td_lambda_targets(batch.reward, batch.terminated, batch.mask, mix_next(q_max), gamma, lam))
    chosen = jnp.take_along_axis(q_all[:, :-1], batch.actions[..., None], axis=-1)[..., 0]
    q_tot = mix_online(chosen)
    mask = batch.mask.astype(jnp.float32)
    count = jnp.maximum(mask.sum(), 1.0)
    td = (q_tot - targets) * mask
    aux = {
        "td_error_abs": jnp.abs(td).sum() / count,
        "q_taken_mean": (q_tot * mask).sum() / count,
        "target_mean": (targets * mask).sum() / count,
    }
    return (td**2).sum() / count, aux


def lr_fraction(env_steps: jax.Array, decay_steps: int) -> jax.Array:
    """The linear decay's factor on the learning rate: 1 at env step 0, 0 at decay_steps
    (0 = no decay)."""
    if decay_steps <= 0:
        return jnp.float32(1.0)
    return jnp.clip(1.0 - env_steps / decay_steps, 0.0, 1.0)


def build(spec: EnvSpec, cfg: dict, mixer: str, method: dict, name: str | None = None) -> Algo:
    """cfg: the `algo` section (configs/algo/_pqn.yaml); method: the `pqn` group."""
    if mixer not in MIXERS:
        raise ValueError(f"mixer must be one of {MIXERS}, got {mixer!r}")
    n, n_actions = spec.n_agents, spec.n_actions
    agent = RNNAgent(int(cfg["hidden_dim"]), n_actions, int(method["layers"]), bool(method["layer_norm"]))
    mixer_net = (
        VDNMixer() if mixer == "vdn" else QMixer(n, int(cfg["mixing_embed_dim"]), int(cfg["hypernet_embed"]))
    )
    gamma, lam = float(cfg["gamma"]), float(cfg["td_lambda"])
    epsilon = epsilon_settings(cfg)
    optimizer = make_optimizer(float(cfg["lr"]), float(cfg["grad_norm_clip"]), kind="radam")
    epochs, minibatches = int(method["epochs"]), int(method["minibatches"])
    decay_steps = int(method["lr_decay_steps"])

    def init(key):
        k_agent, k_mixer = jax.random.split(key)
        x = jnp.zeros((1, input_dim(spec.obs_dim, n_actions, n)))
        params = {
            "agent": agent.init(k_agent, jnp.zeros((1, agent.hidden_dim)), x),
            "mixer": mixer_net.init(k_mixer, jnp.zeros((1, n)), jnp.zeros((1, spec.state_dim))),
        }
        return QLearnerState(params, {}, optimizer.init(params), jnp.int32(0))  # no target network

    def minibatch_loss(params, mb: EpisodeBatch, inputs, h0):
        q_all = unroll(agent, params["agent"], inputs, h0=h0, resets=mb.resets)  # [b, T+1, n, A]
        frozen = jax.lax.stop_gradient(params["mixer"])
        return q_lambda_loss(
            q_all,
            mb.avail,
            mb,
            lambda c: mixer_net.apply(params["mixer"], c, mb.state[:, :-1]),
            lambda q: mixer_net.apply(frozen, q, mb.state),
            gamma,
            lam,
        )

    def update(ts, batch: EpisodeBatch, key, ctx: UpdateContext):
        start = ctx.segment_start
        if start is None:  # whole episodes (host envs): every one starts fresh at t = 0
            start = init_recurrent_actor(batch.size, n, agent.hidden_dim)
            batch = batch.replace(resets=jnp.zeros(batch.mask.shape[:1] + (batch.mask.shape[1] + 1,), bool))
            inputs = episode_inputs(batch.obs, batch.actions, n_actions)
        else:
            inputs = segment_inputs(batch.obs, batch.actions, batch.resets, start.last_action, n_actions)
        frac = lr_fraction(ctx.env_steps, decay_steps)
        size = batch.size // minibatches

        def step(carry, idx):
            params, opt_state = carry
            pick = lambda x: x[idx]  # noqa: E731
            mb, mb_inputs, h0 = jax.tree.map(pick, (batch, inputs, start.hidden))
            (loss, aux), grads = jax.value_and_grad(minibatch_loss, has_aux=True)(params, mb, mb_inputs, h0)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            updates = jax.tree.map(lambda u: u * frac, updates)  # the decayed learning rate
            params = optax.apply_updates(params, updates)
            return (params, opt_state), {"loss": loss, **aux, "grad_norm": optax.tree.norm(grads)}

        perms = jax.vmap(lambda k: jax.random.permutation(k, batch.size))(jax.random.split(key, epochs))
        idx = perms[:, : size * minibatches].reshape(epochs * minibatches, size)
        (params, opt_state), metrics = jax.lax.scan(step, (ts.params, ts.opt_state), idx)
        metrics = {k: v.mean() for k, v in metrics.items()}
        metrics["lr_fraction"] = frac
        return ts.replace(params=params, opt_state=opt_state, updates=ts.updates + 1), metrics

    def joint_q(ts, batch: EpisodeBatch):
        mix = lambda c, s: mixer_net.apply(ts.params["mixer"], c, s)  # noqa: E731
        return joint_q_table(agent, ts.params["agent"], batch, n_actions, mix)

    return Algo(
        name=name or f"pqn_{mixer}",
        init=init,
        init_actor=lambda n_envs: init_recurrent_actor(n_envs, n, agent.hidden_dim),
        act=recurrent_act(agent, n_actions, epsilon),
        update=update,
        target_update=lambda ts: ts,  # no target network
        joint_q=joint_q,
        replay=False,
        segment_length=int(method["segment_length"]),
    )
