"""IQL, VDN and QMIX: recurrent Q-learning with an optional mixer (PyMARL2's nq_learner).

The GRU agent with parameters shared across agents, and the Q-learning kit
(jlmarl.algos.q_learning): epsilon-greedy acting, double-Q TD(lambda) targets
(argmax from the online network, value from the target network, target mixer on
the next state), Adam with global-norm clipping; hard target copies.

IQL has no mixer: each agent regresses its own Q_i on the shared reward
(per-agent TD(lambda) targets); its "Q_tot" readout for Q tables is sum_i Q_i,
the quantity its independent greedy choices maximise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jlmarl.algos.q_learning import (
    QLearnerState,
    apply_gradients,
    double_q_td_loss,
    epsilon_settings,
    init_recurrent_actor,
    joint_q_table,
    make_optimizer,
    recurrent_act,
)
from jlmarl.core.algo import Algo, UpdateContext
from jlmarl.core.buffer import EpisodeBatch
from jlmarl.envs.base import EnvSpec
from jlmarl.nets.agents import RNNAgent, episode_inputs, input_dim
from jlmarl.nets.mixers import QMixer, VDNMixer
from jlmarl.nets.recurrent import unroll

MIXERS = ("none", "vdn", "qmix")


def build(spec: EnvSpec, cfg: dict, mixer: str, name: str | None = None) -> Algo:
    """cfg: the `algo` config section (see configs/algo/qmix.yaml for every key)."""
    if mixer not in MIXERS:
        raise ValueError(f"mixer must be one of {MIXERS}, got {mixer!r}")
    n, n_actions = spec.n_agents, spec.n_actions
    agent = RNNAgent(hidden_dim=int(cfg["hidden_dim"]), n_actions=n_actions)
    mixer_net = {
        "none": None,
        "vdn": VDNMixer(),
        "qmix": QMixer(n, int(cfg.get("mixing_embed_dim", 32)), int(cfg.get("hypernet_embed", 64))),
    }[mixer]
    gamma, lam = float(cfg["gamma"]), float(cfg["td_lambda"])
    epsilon = epsilon_settings(cfg)
    optimizer = make_optimizer(
        float(cfg["lr"]), float(cfg["grad_norm_clip"]), float(cfg.get("adam_eps", 1e-8))
    )

    def mix(params, qs, state):
        if mixer_net is None:
            return qs  # independent learners keep the agent axis
        return mixer_net.apply(params, qs, state)

    def init(key):
        k_agent, k_mixer = jax.random.split(key)
        h = jnp.zeros((1, agent.hidden_dim))
        x = jnp.zeros((1, input_dim(spec.obs_dim, n_actions, n)))
        params = {"agent": agent.init(k_agent, h, x), "mixer": {}}
        if mixer_net is not None:
            params["mixer"] = mixer_net.init(k_mixer, jnp.zeros((1, n)), jnp.zeros((1, spec.state_dim)))
        return QLearnerState(params, params, optimizer.init(params), jnp.int32(0))

    def init_actor(n_envs):
        return init_recurrent_actor(n_envs, n, agent.hidden_dim)

    def update(ts, batch: EpisodeBatch, key, ctx: UpdateContext):
        del key, ctx  # the update is deterministic given the batch
        inputs = episode_inputs(batch.obs, batch.actions, n_actions)
        q_target_all = unroll(agent, ts.target_params["agent"], inputs)  # [B, T+1, n, A]

        def loss_fn(params):
            q_all = unroll(agent, params["agent"], inputs)
            return double_q_td_loss(
                q_all,
                q_target_all,
                batch,
                batch.state,
                lambda qs, s: mix(params["mixer"], qs, s),
                lambda qs, s: mix(ts.target_params["mixer"], qs, s),
                gamma,
                lam,
            )

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(ts.params)
        params, opt_state = apply_gradients(optimizer, ts.params, ts.opt_state, grads)
        metrics = {"loss": loss, **aux, "grad_norm": optax.tree.norm(grads)}
        return ts.replace(params=params, opt_state=opt_state, updates=ts.updates + 1), metrics

    def target_update(ts):
        return ts.replace(target_params=ts.params)

    def joint_q(ts, batch: EpisodeBatch):
        mix_fn = None if mixer_net is None else (lambda c, s: mix(ts.params["mixer"], c, s))
        return joint_q_table(agent, ts.params["agent"], batch, n_actions, mix_fn)

    return Algo(
        name=name or mixer,
        init=init,
        init_actor=init_actor,
        act=recurrent_act(agent, n_actions, epsilon),
        update=update,
        target_update=target_update,
        joint_q=joint_q,
    )
