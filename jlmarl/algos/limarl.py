"""LIMARL: latent inference for MARL (seed 000, sections 4-5, appendices B, D-G).

Modules (jlmarl.nets.gaussian, jlmarl.nets.mlp, jlmarl.nets.latent):
  SRM    a VAE over the global state: f_theta(s) -> (mu, log sigma^2), g_psi(z) -> s_hat,
         loss ||g(z) - s||^2 + l_KL KL(N(mu, sigma^2) || N(0, I))                    (eq. 1)
  ROLIM  I_phi, one GRU shared by the agents over [o_i, onehot(a_i,t-1), onehot(i)] ->
         (mu_hat_i, log sigma_hat_i^2), loss l_align ||mu_hat - sg(mu)||^2
         + l_rec ||g(z_hat) - s||^2 + l_KL KL(N(mu_hat, .) || N(0, I)), f and g frozen (eq. 2)
  agent  GRU over the same inputs; Q_i = MLP([h_i, sg(mu_hat_i)]); QMIX mixer on the state.

Training lives entirely in update(), called by the engine on uniformly sampled
batches of episodes:
  * Phase I (the method's declared phase "representation": the engine schedules it
    over the update calls that cover the first pretrain_episodes episodes after
    training starts, and says so in UpdateContext.phase): rep_updates SRM steps,
    then rep_updates ROLIM steps on the batch, each with its own Adam. No TD update
    runs in Phase I: the paper (5.3.1) trains the agents only "once SRM and ROLIM are
    trained", so they never learn on latents that are still moving.
  * Phase II (every later call): double-Q TD(lambda) on the agents and mixer, with the
    latents of the frozen ROLIM as inputs (no gradient reaches SRM or ROLIM).
  * KL warm-up: l_KL = beta min(1, k / kl_warmup) at the k-th representation gradient
    step (of the SRM, and likewise of ROLIM: their k-th steps share a weight), counted
    over Phase I and every retrain. B.3's "steps" read as those steps, not update calls
    (one call makes rep_updates of them), so the warm-up ends inside Phase I
    (check_config refuses a kl_warmup longer than Phase I).
  * Validation: the last val_episodes episodes of every batch are held out of
    representation training; after each representation training their ROLIM loss
    terms become the validation reference L_bar, and the parameters become the best
    checkpoint when their validation loss is the lowest so far.
  * Conditional retraining: every call measures the ROLIM loss terms on the newest
    monitor_episodes episodes of the replay buffer (UpdateContext.recent, the paper's
    "sliding buffer of recent episodes") into a ring of the last online_window calls.
    Once the ring is full, when its mean loss exceeds L_bar * (1 + delta), SRM and
    ROLIM restart from the best checkpoint and retrain on the batch (the ring then
    refills). delta = inf: pre-train only.
  Losses are compared with the current weights (l_KL warms up), from stored terms.
  The (re)training and TD branches are `cond_any` (jlmarl.core.seed_cond): real
  branches even when the engine vmaps seeds, and per-seed results are kept only where
  they fired.

Execution (act) is decentralised: each agent's ROLIM and agent GRU carries, its own
observation and last action. Only `oracle=true` (an upper bound) feeds mu = f(s)
and declares act_uses_state.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jlmarl.algos.q_learning import (
    all_joint_actions,
    apply_gradients,
    double_q_td_loss,
    epsilon_settings,
    explore_or_exploit,
    joint_q_values,
    make_optimizer,
)
from jlmarl.core.algo import Algo, Phase, UpdateContext
from jlmarl.core.buffer import EpisodeBatch
from jlmarl.core.seed_cond import cond_any
from jlmarl.envs.base import EnvSpec
from jlmarl.nets.agents import agent_inputs, episode_inputs, input_dim
from jlmarl.nets.gaussian import GaussianHead, kl_std_normal
from jlmarl.nets.gaussian import sample as reparameterize
from jlmarl.nets.latent import ROLIM, LatentAgent
from jlmarl.nets.mixers import QMixer
from jlmarl.nets.mlp import MLP
from jlmarl.nets.recurrent import unroll


@struct.dataclass
class LimarlState:
    params: Any  # {"agent", "mixer"}: Phase II, TD-learned
    target_params: Any
    opt_state: Any
    rep: Any  # {"encoder", "decoder", "rolim"}: Phase I
    srm_opt: Any  # Adam of {"encoder", "decoder"}
    rolim_opt: Any  # Adam of {"rolim"}
    best_rep: Any  # best checkpoint of rep (lowest validation ROLIM loss)
    best_terms: jax.Array  # float [3] (align, rec, kl) validation terms of best_rep
    val_terms: jax.Array  # float [3] validation terms after the last (re)training: L_bar
    online: jax.Array  # float [W, 3] ring of online ROLIM terms
    online_count: jax.Array  # int32 [] entries written since the last (re)training
    retrains: jax.Array  # int32 [] conditional retraining events
    rep_steps: jax.Array  # int32 [] representation training rounds (Phase I + retrains), each
    #                        rep_updates gradient steps of the SRM and of ROLIM
    updates: jax.Array  # int32 [] update calls


@struct.dataclass
class LimarlActor:
    rolim_hidden: jax.Array  # [N, n, H_rolim]
    agent_hidden: jax.Array  # [N, n, H]
    last_action: jax.Array  # int32 [N, n], -1 before the first action


class LatentModel:
    """SRM (encoder f, decoder g) and ROLIM, with their loss terms over episode batches.

    Every term is a masked mean over real steps (and agents) of a sum over dims."""

    def __init__(self, spec: EnvSpec, latent_dim: int, srm_hidden: int, rolim_hidden: int):
        self.spec, self.latent_dim = spec, latent_dim
        self.encoder = GaussianHead(latent_dim, (srm_hidden, srm_hidden))
        self.decoder = MLP((srm_hidden, srm_hidden, spec.state_dim))
        self.rolim = ROLIM(rolim_hidden, latent_dim)

    def init(self, key: jax.Array) -> dict:
        k_enc, k_dec, k_rolim = jax.random.split(key, 3)
        s = self.spec
        x = jnp.zeros((1, input_dim(s.obs_dim, s.n_actions, s.n_agents)))
        return {
            "encoder": self.encoder.init(k_enc, jnp.zeros((1, s.state_dim))),
            "decoder": self.decoder.init(k_dec, jnp.zeros((1, self.latent_dim))),
            "rolim": self.rolim.init(k_rolim, jnp.zeros((1, self.rolim.hidden_dim)), x),
        }

    def encode(self, rep: dict, state: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.encoder.apply(rep["encoder"], state)

    def infer(self, rep: dict, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Agent inputs [B, T+1, n, D] -> (mu_hat, logvar_hat), each [B, T+1, n, d]."""
        out = unroll(self.rolim, rep["rolim"], inputs)
        return out[..., : self.latent_dim], out[..., self.latent_dim :]

    def srm_terms(self, rep: dict, state: jax.Array, mask: jax.Array, key: jax.Array) -> jax.Array:
        """state [B, T, S], mask [B, T] -> (reconstruction, KL) [2]."""
        mu, logvar = self.encode(rep, state)
        rec = squared_error(self.decoder.apply(rep["decoder"], reparameterize(key, mu, logvar)), state)
        return _masked_means(jnp.stack([rec, kl_std_normal(mu, logvar)], -1), mask)

    def rolim_terms(
        self,
        rep: dict,
        mu_hat: jax.Array,
        logvar_hat: jax.Array,
        state: jax.Array,
        mask: jax.Array,
        key,
        train_decoder: bool = False,
    ) -> jax.Array:
        """mu_hat, logvar_hat [B, T, n, d], state [B, T, S], mask [B, T] -> (align, rec, KL) [3].

        The SRM is frozen here: its outputs are constants for the ROLIM gradient (eq. 2).
        train_decoder=True lets the decoder's gradient through (Table 4's TrainDecoder
        ablation, benchmarks/limarl_digits.py); LIMARL itself never sets it."""
        frozen = jax.lax.stop_gradient({"encoder": rep["encoder"], "decoder": rep["decoder"]})
        mu, _ = self.encode(frozen, state)
        align = squared_error(mu_hat, mu[:, :, None])
        decoder = rep["decoder"] if train_decoder else frozen["decoder"]
        recon = self.decoder.apply(decoder, reparameterize(key, mu_hat, logvar_hat))
        rec = squared_error(recon, state[:, :, None])
        terms = jnp.stack([align, rec, kl_std_normal(mu_hat, logvar_hat)], -1)  # [B, T, n, 3]
        return _masked_means(terms, jnp.broadcast_to(mask[..., None], terms.shape[:3]))

    def rolim_terms_of_batch(self, rep: dict, batch: EpisodeBatch, key: jax.Array) -> jax.Array:
        t = batch.reward.shape[1]
        mu_hat, logvar_hat = self.infer(rep, episode_inputs(batch.obs, batch.actions, self.spec.n_actions))
        return self.rolim_terms(rep, mu_hat[:, :t], logvar_hat[:, :t], batch.state[:, :t], batch.mask, key)


def squared_error(x: jax.Array, y: jax.Array) -> jax.Array:
    """||x - y||^2 over the last axis (the paper's squared norms)."""
    return jnp.sum((x - y) ** 2, axis=-1)


def _masked_means(terms: jax.Array, mask: jax.Array) -> jax.Array:
    """terms [..., K], mask [...] -> [K]."""
    m = mask.astype(terms.dtype)[..., None]
    return (terms * m).sum(tuple(range(terms.ndim - 1))) / jnp.maximum(m.sum(), 1.0)


def kl_weight(steps: jax.Array, beta: float, warmup: int) -> jax.Array:
    """l_KL = beta * min(1, steps / warmup) after `steps` representation gradient steps
    (appendix B.3; warmup 0 = beta at once)."""
    if warmup <= 0:
        return jnp.full(jnp.shape(steps), beta, jnp.float32)
    return beta * jnp.minimum(1.0, jnp.asarray(steps).astype(jnp.float32) / warmup)


def _adam_steps(optimizer, rounds: int, params, opt_state, key: jax.Array, loss, per_step: jax.Array):
    """`rounds` optimiser steps of loss(params, key, per_step[i]) -> (scalar, terms), one
    fresh key each, in a scan. Returns (params, opt_state, terms of every step)."""

    def step(carry, xs):
        params, opt = carry
        grads, terms = jax.grad(loss, has_aux=True)(params, *xs)
        upd, opt = optimizer.update(grads, opt, params)
        return (optax.apply_updates(params, upd), opt), terms

    xs = (jax.random.split(key, rounds), per_step)
    (params, opt_state), terms = jax.lax.scan(step, (params, opt_state), xs)
    return params, opt_state, terms


def srm_steps(
    model: LatentModel,
    optimizer: optax.GradientTransformation,
    rounds: int,
    rep: dict,
    opt_state,
    batch: EpisodeBatch,
    key: jax.Array,
    kl_w: jax.Array,
):
    """`rounds` Adam steps of eq. 1 on the batch's states; only encoder/decoder change.
    kl_w: l_KL, one for every step [] or per step [rounds] (the warm-up).

    Returns (rep, opt_state, (reconstruction, KL) of every step [rounds, 2])."""
    t = batch.reward.shape[1]
    state, mask = batch.state[:, :t], batch.mask

    def loss(p, k, w):
        terms = model.srm_terms(p, state, mask, k)
        return terms[0] + w * terms[1], terms

    srm = {"encoder": rep["encoder"], "decoder": rep["decoder"]}
    per_step = jnp.broadcast_to(jnp.asarray(kl_w, jnp.float32), (rounds,))
    srm, opt_state, terms = _adam_steps(optimizer, rounds, srm, opt_state, key, loss, per_step)
    return {**rep, **srm}, opt_state, terms


def rolim_trained_params(rep: dict, train_decoder: bool = False):
    """The part of rep that rolim_steps trains (its optimiser state is over this):
    rep["rolim"], or {"rolim", "decoder"} with train_decoder."""
    return {"rolim": rep["rolim"], "decoder": rep["decoder"]} if train_decoder else rep["rolim"]


def rolim_steps(
    model: LatentModel,
    optimizer: optax.GradientTransformation,
    rounds: int,
    rep: dict,
    opt_state,
    batch: EpisodeBatch,
    key: jax.Array,
    weights: jax.Array,
    train_decoder: bool = False,
):
    """`rounds` Adam steps of eq. 2 (weights = l_align, l_rec, l_KL: [3], or [rounds, 3] per
    step) with the SRM frozen:
    only rep["rolim"] changes (with train_decoder also rep["decoder"]: the optimiser state
    is then over {"rolim": ..., "decoder": ...}). Returns (rep, opt_state, (align, rec, KL) per step
    [rounds, 3])."""
    t = batch.reward.shape[1]
    state, mask = batch.state[:, :t], batch.mask
    inputs = episode_inputs(batch.obs, batch.actions, model.spec.n_actions)
    trained = rolim_trained_params(rep, train_decoder)
    merge = (lambda p: {**rep, **p}) if train_decoder else (lambda p: {**rep, "rolim": p})

    def loss(p, k, w):
        r = merge(p)
        mu_hat, logvar_hat = model.infer(r, inputs)
        terms = model.rolim_terms(r, mu_hat[:, :t], logvar_hat[:, :t], state, mask, k, train_decoder)
        return terms @ w, terms

    per_step = jnp.broadcast_to(jnp.asarray(weights, jnp.float32), (rounds, 3))
    trained, opt_state, terms = _adam_steps(optimizer, rounds, trained, opt_state, key, loss, per_step)
    return merge(trained), opt_state, terms


def retrain_due(online_loss: jax.Array, val_loss: jax.Array, delta: float) -> jax.Array:
    """The retrain trigger: online loss > (1 + delta) x validation mean (delta = inf: never)."""
    if math.isinf(delta):
        return jnp.bool_(False)
    return online_loss > val_loss * (1.0 + delta)


def loss_weights(lc: dict) -> tuple[float, float, float]:
    """(l_align, l_rec, KL beta) after the align/rec/kl switches."""
    return (
        float(lc["lambda_align"]) if lc["align"] else 0.0,
        float(lc["lambda_rec"]) if lc["rec"] else 0.0,
        float(lc["kl_beta"]) if lc["kl"] else 0.0,
    )


# ---- settings and networks ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Settings:
    """The limarl group and the TD keys, read once (configs/algo/limarl.yaml)."""

    latent_dim: int
    gamma: float
    td_lambda: float
    epsilon: tuple[float, float, int]
    oracle: bool
    weights: tuple[float, float, float]  # (l_align, l_rec, KL beta) after the switches
    kl_warmup: int
    rounds: int  # rep_updates: SRM steps, then as many ROLIM steps, per representation round
    pretrain_episodes: int
    delta: float
    n_val: int
    n_monitor: int
    window: int

    @classmethod
    def from_cfg(cls, cfg: dict, method: dict) -> Settings:
        m = method
        return cls(
            latent_dim=int(m["latent_dim"]),
            gamma=float(cfg["gamma"]),
            td_lambda=float(cfg["td_lambda"]),
            epsilon=epsilon_settings(cfg),
            oracle=bool(m["oracle"]),
            weights=loss_weights(m),
            kl_warmup=int(m["kl_warmup"]),
            rounds=int(m["rep_updates"]),
            pretrain_episodes=int(m["pretrain_episodes"]),
            delta=float(m["delta"]),
            n_val=int(m["val_episodes"]),
            n_monitor=int(m["monitor_episodes"]),
            window=int(m["online_window"]),
        )

    @property
    def phases(self) -> tuple[Phase, ...]:
        """Phase I when pretrain_episodes > 0 (else training starts with TD at once)."""
        return (Phase("representation", self.pretrain_episodes),) if self.pretrain_episodes else ()


@dataclasses.dataclass(frozen=True)
class Nets:
    """The networks, and one optimiser per part that learns apart: Phase II's agents +
    mixer, the SRM and ROLIM (each its own Adam, so that neither's moments see the other)."""

    model: LatentModel
    agent: LatentAgent
    mixer: QMixer
    optimizer: optax.GradientTransformation
    srm_optimizer: optax.GradientTransformation
    rolim_optimizer: optax.GradientTransformation


def make_nets(spec: EnvSpec, cfg: dict, method: dict, s: Settings) -> Nets:
    """The latent model, the agent (GRU, Q on [h, latent]), the QMIX mixer and the optimisers."""
    return Nets(
        model=LatentModel(spec, s.latent_dim, int(method["srm_hidden"]), int(method["rolim_hidden"])),
        agent=LatentAgent(int(cfg["hidden_dim"]), spec.n_actions, s.latent_dim),
        mixer=QMixer(spec.n_agents, int(cfg["mixing_embed_dim"]), int(cfg["hypernet_embed"])),
        optimizer=make_optimizer(float(cfg["lr"]), float(cfg["grad_norm_clip"]), float(cfg["adam_eps"])),
        srm_optimizer=optax.adam(float(method["rep_lr"])),
        rolim_optimizer=optax.adam(float(method["rep_lr"])),
    )


def weights_at(s: Settings, steps: jax.Array) -> jax.Array:
    """(l_align, l_rec, l_KL) after `steps` representation gradient steps: [..., 3]. Only
    l_KL moves (its warm-up); the retrain trigger compares losses at one such weight."""
    l_align, l_rec, kl_beta = s.weights
    kl = kl_weight(steps, kl_beta, s.kl_warmup)
    fixed = jnp.broadcast_to(jnp.array([l_align, l_rec], jnp.float32), (*kl.shape, 2))
    return jnp.concatenate([fixed, kl[..., None]], -1)


def init_state(nets: Nets, s: Settings, key: jax.Array) -> LimarlState:
    """Fresh parameters and optimisers; the best checkpoint is the start, with terms that
    any trained representation beats."""
    spec = nets.model.spec
    n = spec.n_agents
    k_agent, k_mixer, k_rep = jax.random.split(key, 3)
    x = jnp.zeros((1, input_dim(spec.obs_dim, spec.n_actions, n) + s.latent_dim))
    params = {
        "agent": nets.agent.init(k_agent, jnp.zeros((1, nets.agent.hidden_dim)), x),
        "mixer": nets.mixer.init(k_mixer, jnp.zeros((1, n)), jnp.zeros((1, spec.state_dim))),
    }
    rep = nets.model.init(k_rep)
    srm = {"encoder": rep["encoder"], "decoder": rep["decoder"]}
    zero = jnp.int32(0)
    return LimarlState(
        params=params,
        target_params=params,
        opt_state=nets.optimizer.init(params),
        rep=rep,
        srm_opt=nets.srm_optimizer.init(srm),
        rolim_opt=nets.rolim_optimizer.init(rolim_trained_params(rep)),
        best_rep=rep,
        # Large but finite, so that products with a zero weight stay 0 (not nan).
        best_terms=jnp.full((3,), 1e30),
        val_terms=jnp.zeros((3,)),
        online=jnp.zeros((s.window, 3)),
        online_count=zero,
        retrains=zero,
        rep_steps=zero,
        updates=zero,
    )


def init_actor(nets: Nets, n_envs: int) -> LimarlActor:
    """Both recurrent carries at zero, no last action: the start of an episode."""
    n = nets.model.spec.n_agents
    return LimarlActor(
        rolim_hidden=jnp.zeros((n_envs, n, nets.model.rolim.hidden_dim)),
        agent_hidden=jnp.zeros((n_envs, n, nets.agent.hidden_dim)),
        last_action=jnp.full((n_envs, n), -1, jnp.int32),
    )


# ---- acting and the latents the agents read -----------------------------------------


def oracle_latent(model: LatentModel, rep: dict, state: jax.Array, like: jax.Array) -> jax.Array:
    """The oracle's latent: the SRM mean of the true state, the same for every agent
    (broadcast to `like`'s shape [..., n, d])."""
    mu, _ = model.encode(rep, state)  # [..., d]
    return jnp.broadcast_to(mu[..., None, :], like.shape)


def act(nets: Nets, s: Settings, ts, actor, obs, avail, key, env_steps, greedy, state=None):
    """Algo.act: each agent's ROLIM carry infers its latent from its own history (the
    oracle reads mu = f(s) instead); epsilon-greedy on Q([h_i, latent_i])."""
    n_actions = nets.model.spec.n_actions
    x = agent_inputs(obs, actor.last_action, n_actions)
    if s.oracle:
        rolim_hidden = actor.rolim_hidden
        latent = oracle_latent(nets.model, ts.rep, state, jnp.zeros((*obs.shape[:2], s.latent_dim)))
    else:
        rolim_hidden, out = nets.model.rolim.apply(ts.rep["rolim"], actor.rolim_hidden, x)
        latent = out[..., : s.latent_dim]
    agent_hidden, q = nets.agent.apply(
        ts.params["agent"], actor.agent_hidden, jnp.concatenate([x, latent], -1)
    )
    actions = explore_or_exploit(key, q, avail, greedy, env_steps, s.epsilon)
    return actions, LimarlActor(rolim_hidden, agent_hidden, actions)


def latents(nets: Nets, s: Settings, rep: dict, batch: EpisodeBatch, inputs: jax.Array):
    """(latent fed to the agents, mu_hat, logvar_hat), each [B, T+1, n, d]. The agents'
    latent is a constant: no TD gradient reaches SRM or ROLIM."""
    mu_hat, logvar_hat = nets.model.infer(rep, inputs)
    latent = oracle_latent(nets.model, rep, batch.state, mu_hat) if s.oracle else mu_hat
    return jax.lax.stop_gradient(latent), mu_hat, logvar_hat


def agent_q(nets: Nets, s: Settings, agent_params, rep: dict, batch: EpisodeBatch, inputs: jax.Array):
    """(the agents' inputs with their latents [B, T+1, n, D+d], Q [B, T+1, n, A])."""
    latent, _, _ = latents(nets, s, rep, batch, inputs)
    agent_in = jnp.concatenate([inputs, latent], -1)
    return agent_in, unroll(nets.agent, agent_params, agent_in)


# ---- Phase I and retraining: the representation round --------------------------------


def retrain(nets: Nets, s: Settings, ts: LimarlState, batch: EpisodeBatch, key: jax.Array, restore):
    """One representation round: s.rounds SRM then s.rounds ROLIM steps on the batch's
    first B - n_val episodes, starting from best_rep when `restore` (a retrain; Phase I
    continues from rep). The held-out episodes give the new L_bar and pick the best
    checkpoint."""
    rounds, n_val = s.rounds, s.n_val
    start = jax.tree.map(lambda b, c: jnp.where(restore, b, c), ts.best_rep, ts.rep)
    train = jax.tree.map(lambda x: x[: batch.size - n_val], batch)
    val = jax.tree.map(lambda x: x[batch.size - n_val :], batch)
    k_train, k_val = jax.random.split(key)
    k_srm, k_rolim = jax.random.split(k_train)
    done = ts.rep_steps * rounds  # representation gradient steps so far (per module)
    step_weights = weights_at(s, done + jnp.arange(rounds))  # [rounds, 3]
    rep, srm_opt, _ = srm_steps(
        nets.model, nets.srm_optimizer, rounds, start, ts.srm_opt, train, k_srm, step_weights[:, 2]
    )
    rep, rolim_opt, _ = rolim_steps(
        nets.model, nets.rolim_optimizer, rounds, rep, ts.rolim_opt, train, k_rolim, step_weights
    )
    weights = weights_at(s, done + rounds)  # the losses are compared at the new weight
    val_terms = nets.model.rolim_terms_of_batch(rep, val, k_val)
    better = val_terms @ weights < ts.best_terms @ weights
    keep = lambda new, old: jnp.where(better, new, old)  # noqa: E731
    return ts.replace(
        rep=rep,
        srm_opt=srm_opt,
        rolim_opt=rolim_opt,
        best_rep=jax.tree.map(keep, rep, ts.best_rep),
        best_terms=keep(val_terms, ts.best_terms),
        val_terms=val_terms,
        online_count=jnp.int32(0),
        retrains=ts.retrains + restore.astype(jnp.int32),
        rep_steps=ts.rep_steps + 1,
    )


def online_terms(model: LatentModel, rep: dict, recent: EpisodeBatch | None, key: jax.Array):
    """ROLIM (align, rec, KL) [3] and SRM (rec, KL) [2] terms on the buffer's newest
    episodes: the retrain trigger's online loss and the monitoring metrics."""
    if recent is None:
        raise ValueError(
            "LIMARL's update needs UpdateContext.recent (the newest buffer episodes, "
            "Algo.recent_episodes > 0); call it through the engine or pass them"
        )
    k_rolim, k_srm = jax.random.split(key)
    t = recent.reward.shape[1]
    terms = model.rolim_terms_of_batch(rep, recent, k_rolim)
    return terms, model.srm_terms(rep, recent.state[:, :t], recent.mask, k_srm)


# ---- Phase II: TD on the agents and the mixer ----------------------------------------


def td_loss(nets: Nets, s: Settings, params, target_params, agent_in, q_target_all, batch: EpisodeBatch):
    """Double-Q TD(lambda) of QMIX over the agents' Q on [inputs, latent]: (loss, aux)."""
    return double_q_td_loss(
        unroll(nets.agent, params["agent"], agent_in),
        q_target_all,
        batch,
        batch.state,
        lambda qs, st: nets.mixer.apply(params["mixer"], qs, st),
        lambda qs, st: nets.mixer.apply(target_params["mixer"], qs, st),
        s.gamma,
        s.td_lambda,
    )


def td_step(nets: Nets, s: Settings, carry, batch: EpisodeBatch, rep: dict, target_params):
    """Phase II: one optimiser step of td_loss on agents + mixer; SRM/ROLIM outputs are
    constants here. carry = (params, opt_state, metrics); returns the same structure."""
    params, opt_state, _ = carry
    inputs = episode_inputs(batch.obs, batch.actions, nets.model.spec.n_actions)
    agent_in, q_target_all = agent_q(nets, s, target_params["agent"], rep, batch, inputs)
    loss_fn = functools.partial(td_loss, nets, s)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, target_params, agent_in, q_target_all, batch
    )
    params, opt_state = apply_gradients(nets.optimizer, params, opt_state, grads)
    return params, opt_state, {"loss": loss, **aux, "grad_norm": optax.tree.norm(grads)}


# ---- one update call -----------------------------------------------------------------


def update(nets: Nets, s: Settings, ts: LimarlState, batch: EpisodeBatch, key, ctx: UpdateContext):
    """Algo.update: TD outside Phase I, the online ROLIM loss into the ring, then a
    representation round in Phase I or when the trigger fires (module docstring)."""
    k_monitor, k_rep = jax.random.split(key)
    pretraining = ctx.phase < len(s.phases)  # shared by every seed: a real branch
    td = functools.partial(td_step, nets, s)

    # No TD while Phase I trains the representation (zeros in its metrics).
    td_shapes = jax.eval_shape(
        lambda: td((ts.params, ts.opt_state, None), batch, ts.rep, ts.target_params)[2]
    )
    td_zero = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), td_shapes)
    params, opt_state, td_metrics = cond_any(
        ~pretraining, td, (ts.params, ts.opt_state, td_zero), batch, ts.rep, ts.target_params
    )

    # Online ROLIM loss on the newest episodes of the buffer, into the ring.
    online, srm_terms = online_terms(nets.model, ts.rep, ctx.recent, k_monitor)
    ring = ts.online.at[ts.online_count % s.window].set(online)
    count = ts.online_count + 1
    filled = (jnp.arange(s.window) < count).astype(jnp.float32)
    weights = weights_at(s, ts.rep_steps * s.rounds)
    online_loss = (ring @ weights * filled).sum() / filled.sum()
    val_loss = ts.val_terms @ weights

    trigger = ~pretraining & (count >= s.window) & retrain_due(online_loss, val_loss, s.delta)
    ts = ts.replace(params=params, opt_state=opt_state, online=ring, online_count=count)
    ts = cond_any(pretraining | trigger, functools.partial(retrain, nets, s), ts, batch, k_rep, trigger)
    ts = ts.replace(updates=ts.updates + 1)
    metrics = {
        **td_metrics,
        "srm_rec": srm_terms[0],
        "srm_kl": srm_terms[1],
        "rolim_align": online[0],
        "rolim_rec": online[1],
        "rolim_kl": online[2],
        "rolim_online": online_loss,
        "rolim_val": val_loss,
        "kl_weight": weights[2],
        "td_trained": (~pretraining).astype(jnp.float32),
        "rep_trained": (pretraining | trigger).astype(jnp.float32),
        "retrains": ts.retrains.astype(jnp.float32),
    }
    return ts, metrics


def joint_q(nets: Nets, s: Settings, ts: LimarlState, batch: EpisodeBatch):
    """Algo.joint_q: Q_tot of every joint action with the current latents (matrix games)."""
    spec = nets.model.spec
    joint_actions = all_joint_actions(spec.n_agents, spec.n_actions)
    inputs = episode_inputs(batch.obs, batch.actions, spec.n_actions)
    q = agent_q(nets, s, ts.params["agent"], ts.rep, batch, inputs)[1][:, :-1]
    mix = lambda c, st: nets.mixer.apply(ts.params["mixer"], c, st)  # noqa: E731
    return joint_q_values(q, batch.state[:, :-1], joint_actions, mix), q


# ---- build ---------------------------------------------------------------------------


def build(spec: EnvSpec, cfg: dict, method: dict, name: str = "limarl") -> Algo:
    """cfg: the `algo` section; method: the `limarl` group (configs/algo/limarl.yaml)."""
    s = Settings.from_cfg(cfg, method)
    nets = make_nets(spec, cfg, method, s)
    return Algo(
        name=name,
        init=functools.partial(init_state, nets, s),
        init_actor=functools.partial(init_actor, nets),
        act=functools.partial(act, nets, s),
        update=functools.partial(update, nets, s),
        target_update=lambda ts: ts.replace(target_params=ts.params),
        joint_q=functools.partial(joint_q, nets, s),
        act_uses_state=s.oracle,
        phases=s.phases,
        recent_episodes=s.n_monitor,
    )


def check_config(cfg) -> None:
    """Keys that relate to the engine's (their own ranges are declared in limarl.yaml)."""
    lc = cfg.limarl
    if lc.val_episodes >= cfg.batch_size:
        raise ValueError(
            f"limarl.val_episodes={lc.val_episodes} must be below batch_size={cfg.batch_size} "
            "(held out of each batch); lower it or raise batch_size"
        )
    if lc.monitor_episodes > cfg.batch_size:
        raise ValueError(
            f"limarl.monitor_episodes={lc.monitor_episodes} exceeds batch_size={cfg.batch_size} "
            "(the buffer holds batch_size episodes when training starts); lower it"
        )
    steps = phase_one_rep_steps(lc.pretrain_episodes, cfg.episodes_per_update, lc.rep_updates)
    if lc.pretrain_episodes > 0 and lc.kl and lc.kl_beta > 0 and lc.kl_warmup > steps:
        raise ValueError(
            f"limarl.kl_warmup={lc.kl_warmup} representation steps is longer than Phase I's {steps} "
            "(ceil(limarl.pretrain_episodes / episodes_per_update) x limarl.rep_updates), so the KL "
            "weight would not reach limarl.kl_beta before the representation is frozen; lower it"
        )


def phase_one_rep_steps(pretrain_episodes: int, episodes_per_update: float, rep_updates: int) -> int:
    """Representation gradient steps (per module) that Phase I makes: its update calls
    (as the engine counts them, jlmarl.core.engine.Engine.phase_ends) x rep_updates."""
    return math.ceil(pretrain_episodes / episodes_per_update - 1e-9) * rep_updates
