"""LSF-SAC and MASAC (seed 003): soft actor-critic with a QMIX-decomposed critic.

- Actors pi_i(a | tau_i): the shared GRU agent (RNNAgent) whose outputs are logits;
  the policy is a softmax over the available actions only (unavailable actions get
  probability exactly zero). Acting uses the actors alone: messages, critics and the
  mixer exist only in training, so execution is decentralised.
- Local critics q_i(tau_i, ., m_i): a separate GRU trunk; for LSF-SAC its features
  also give agent i's outgoing message m_i^out ~ N(f_m(tau_i), I), and the critic of
  agent i reads the other agents' messages m_i (jlmarl.nets.message_critic). MASAC
  (the paper's ablation 1) has no messages.
- Mixer: QMIX's hypernetwork mixer on the state.

Losses per update, on whole episodes (eq. 8, 12, 14, 15, 16):
  critic   (Q_tot(tau, a, m) - y)^2,  y = r + gamma (1 - terminated) mix'(s', V'),
           V_i' = sum_a pi_i(a|tau_i') q_i'(a)  (target="expected", the default: eq. 16's
           expectation, no entropy term); "soft" adds SAC's - alpha log pi_i(a|tau_i')
           inside the sum (our spec's first reading: its per-step bonus, about alpha H n
           per step, outweighs SMAX's rewards and pays for long episodes); "max" uses
           max_a q_i'(a): eq. 16's max operator
  actor    -mix(s, [sum_a pi_i(a) (q_i(a) - alpha log pi_i(a))]), into the actors only
  message  sum_j CE(p_j, q_psi(.|tau_j, m_j)) + beta KL(N(f_m(tau_i), I) || N(0, I)), with the
           target p_j = softmax(q_j(tau_j, ., m_j) / alpha) over the available actions, held
           fixed: the critic's Boltzmann distribution, which depends on the joint history
           through m_j (the NDQ reading eq. 12 follows). The actor pi_j never sees messages,
           so a target of pi_j would teach the messages nothing.
  alpha    alpha (H(pi_i) - H_0),  H_0 = rho log |available actions|  (so alpha rises
           while the entropy is below its target)
Critic, message and mixer parameters share one Adam, the actors another, log alpha a
third (each group clipped on its own), all stepped together from the same batch.
double_q=True keeps two critic sets (trunks, heads and mixers) and takes the minimum of
their mixed values in the target and in the policy loss. Targets are hard copies every
target_update_interval episodes (Algorithm 1).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jlmarl.algos.q_learning import (
    RecurrentActor,
    all_joint_actions,
    apply_gradients,
    init_recurrent_actor,
    joint_q_values,
    make_optimizer,
)
from jlmarl.core.algo import Algo, UpdateContext
from jlmarl.core.buffer import EpisodeBatch
from jlmarl.core.targets import td_lambda_targets
from jlmarl.envs.base import EnvSpec
from jlmarl.nets.agents import RNNAgent, agent_inputs, episode_inputs, input_dim, masked_argmax
from jlmarl.nets.gaussian import kl_std_normal
from jlmarl.nets.message_critic import incoming_messages
from jlmarl.nets.mixers import QMixer
from jlmarl.nets.mlp import MLP
from jlmarl.nets.recurrent import RecurrentTrunk, unroll

TARGETS = ("soft", "expected", "max")
MASKED_LOGIT = -1e9  # exp() of it underflows to exactly 0 and 0 * it stays finite


@struct.dataclass
class SACState:
    params: Any  # {"actor", "critic" [K, ...], "mixer" [K, ...], "log_alpha" []}
    target_params: Any  # {"critic", "mixer"}
    opt_state: Any
    updates: jax.Array  # int32 [], gradient steps taken


def masked_policy(logits: jax.Array, avail: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Softmax over the available actions: (probs, log probs) [..., A]; unavailable
    actions have probability exactly 0 and log probability reported as 0."""
    logp = jax.nn.log_softmax(jnp.where(avail, logits, MASKED_LOGIT), axis=-1)
    return jnp.where(avail, jnp.exp(logp), 0.0), jnp.where(avail, logp, 0.0)


def soft_value(probs: jax.Array, logp: jax.Array, q: jax.Array, alpha: jax.Array) -> jax.Array:
    """V = sum_a pi(a) (q(a) - alpha log pi(a)) over the last axis."""
    return jnp.sum(probs * (q - alpha * logp), axis=-1)


def entropy(probs: jax.Array, logp: jax.Array) -> jax.Array:
    return -jnp.sum(probs * logp, axis=-1)


def next_value(q_next, probs, logp, alpha, avail, kind: str) -> jax.Array:
    """Each agent's next-state value in the critic's TD target (eq. 16), [..., n]:
    soft = sum_a pi (q' - alpha log pi), expected = sum_a pi q', max = max over available a of q'.
    The caller holds pi and alpha fixed (they are the current policy's)."""
    if kind == "max":
        return jnp.max(jnp.where(avail, q_next, MASKED_LOGIT), axis=-1)
    return soft_value(probs, logp, q_next, alpha if kind == "soft" else 0.0)


def actor_loss(probs, logp, q, alpha, mixer_params, mix, mask) -> jax.Array:
    """Eq. 14: -mean over real steps of mix(s, [V_pi,i]) with V_pi,i = sum_a pi_i (q_i - alpha
    log pi_i). The critics, the mixer and alpha are held fixed, so the gradient reaches the
    policy (probs, logp: the actors) only. mix(mixer_params, v [..., n]) -> [...]."""
    sg = jax.lax.stop_gradient
    v_pi = soft_value(probs, logp, sg(q), sg(alpha))
    return -jnp.sum(mix(sg(mixer_params), v_pi) * mask) / jnp.maximum(mask.sum(), 1.0)


def temperature_loss(log_alpha: jax.Array, entropy: jax.Array, target_entropy: jax.Array, weight):
    """Eq. 15 with E_pi[-log pi] = H: J(alpha) = alpha (H - H_0), averaged with `weight`.
    Its gradient in log alpha is alpha (H - H_0): negative (alpha grows) while H < H_0."""
    gap = jax.lax.stop_gradient(entropy - target_entropy)
    return jnp.sum(jnp.exp(log_alpha) * gap * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def message_loss(q, alpha, pred_logits, means, avail, weight, beta: float) -> jax.Array:
    """Eq. 12 averaged with `weight` [..., n]: CE(softmax(sg(q) / sg(alpha)), softmax(pred))
    over the available actions + beta KL(N(means, I) || N(0, I)). q, pred_logits,
    avail [..., n, A]; means [..., n, d]. Gradients reach the predictor and, through the
    messages it reads, the encoder; the target is held fixed."""
    sg = jax.lax.stop_gradient
    target, _ = masked_policy(sg(q) / sg(alpha), avail)
    _, log_pred = masked_policy(pred_logits, avail)
    ce = -jnp.sum(target * log_pred, axis=-1)
    per = ce + beta * kl_std_normal(means)
    return jnp.sum(per * weight) / jnp.maximum(jnp.sum(weight), 1.0)


# ---- settings and networks ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Settings:
    """The SAC keys and the lsf_sac group, read once (_soft_actor_critic.yaml, _sac_variants.yaml,
    lsf_sac.yaml). msg_dim 0 is MASAC: no messages, so no message loss either."""

    hidden: int
    msg_dim: int
    n_sets: int  # critic sets: 2 with double_q
    gamma: float
    td_lambda: float
    target_kind: str  # one of TARGETS
    fixed_alpha: float | None  # None: alpha is learned (eq. 15)
    init_alpha: float
    rho: float  # target entropy ratio: H_0 = rho log |available actions|
    beta: float  # message KL weight
    message_coef: float

    @classmethod
    def from_cfg(cls, cfg: dict, method: dict, messages: bool) -> Settings:
        if method["target"] not in TARGETS:
            raise ValueError(f"lsf_sac.target must be one of {', '.join(TARGETS)}, got {method['target']!r}")
        fixed_alpha = method["fixed_alpha"]
        return cls(
            hidden=int(cfg["hidden_dim"]),
            msg_dim=int(method["message_dim"]) if messages else 0,
            n_sets=2 if method["double_q"] else 1,
            gamma=float(cfg["gamma"]),
            td_lambda=float(cfg["td_lambda"]),
            target_kind=method["target"],
            fixed_alpha=float(fixed_alpha) if fixed_alpha is not None else None,
            init_alpha=float(fixed_alpha if fixed_alpha is not None else cfg["init_alpha"]),
            rho=float(cfg["target_entropy_ratio"]),
            beta=float(method["message_beta"]) if messages else 0.0,
            message_coef=float(method["message_coef"]) if messages else 0.0,
        )


@dataclasses.dataclass(frozen=True)
class Nets:
    """The actors, one critic set's modules (vmapped over the sets), the mixer and the
    optimiser of all of them."""

    spec: EnvSpec
    actor: RNNAgent
    trunk: RecurrentTrunk
    q_head: MLP
    encoder: MLP  # tau_i -> message mean f_m(tau_i) (unused without messages)
    predictor: MLP  # [features, incoming messages] -> logits of the critic's Boltzmann policy
    mixer: QMixer
    optimizer: optax.GradientTransformation


# Critic, message and mixer parameters share one Adam, the actors another, log alpha a third.
OPTIMIZER_GROUPS = {"actor": "actor", "critic": "critic", "mixer": "critic", "log_alpha": "alpha"}


def make_optimizers(cfg: dict) -> optax.GradientTransformation:
    """One clipped Adam per OPTIMIZER_GROUPS group, each with its own learning rate (and
    clipped on its own), stepped together."""
    adam = lambda lr: make_optimizer(float(lr), float(cfg["grad_norm_clip"]), float(cfg["adam_eps"]))  # noqa: E731
    return optax.multi_transform(
        {"actor": adam(cfg["actor_lr"]), "critic": adam(cfg["lr"]), "alpha": adam(cfg["alpha_lr"])},
        lambda p: {k: jax.tree.map(lambda _, g=OPTIMIZER_GROUPS[k]: g, v) for k, v in p.items()},
    )


def make_nets(spec: EnvSpec, cfg: dict, s: Settings) -> Nets:
    """The actors' GRU agent, a critic set's trunk and heads, the QMIX mixer, the optimiser."""
    n_actions = spec.n_actions
    return Nets(
        spec=spec,
        actor=RNNAgent(hidden_dim=s.hidden, n_actions=n_actions),
        trunk=RecurrentTrunk(hidden_dim=s.hidden),
        q_head=MLP((s.hidden, n_actions)),
        encoder=MLP((s.hidden, max(s.msg_dim, 1))),
        predictor=MLP((s.hidden, n_actions)),
        mixer=QMixer(spec.n_agents, int(cfg["mixing_embed_dim"]), int(cfg["hypernet_embed"])),
        optimizer=make_optimizers(cfg),
    )


def init_critic(nets: Nets, s: Settings, key: jax.Array):
    """One critic set: ({trunk, q[, message, predictor]}, its mixer's parameters)."""
    spec, hidden, n = nets.spec, s.hidden, nets.spec.n_agents
    k_trunk, k_q, k_msg, k_pred, k_mix = jax.random.split(key, 5)
    feats = jnp.zeros((1, hidden + n * s.msg_dim))
    p = {
        "trunk": nets.trunk.init(
            k_trunk, jnp.zeros((1, hidden)), jnp.zeros((1, input_dim(spec.obs_dim, spec.n_actions, n)))
        ),
        "q": nets.q_head.init(k_q, feats),
    }
    if s.msg_dim:
        p["message"] = nets.encoder.init(k_msg, jnp.zeros((1, hidden)))
        p["predictor"] = nets.predictor.init(k_pred, feats)
    return p, nets.mixer.init(k_mix, jnp.zeros((1, n)), jnp.zeros((1, spec.state_dim)))


def init_state(nets: Nets, s: Settings, key: jax.Array) -> SACState:
    """Fresh actors, s.n_sets critic sets (stacked on a leading axis), alpha at its start;
    the targets start as copies of the critics."""
    spec = nets.spec
    k_actor, k_critic = jax.random.split(key)
    h = jnp.zeros((1, s.hidden))
    x = jnp.zeros((1, input_dim(spec.obs_dim, spec.n_actions, spec.n_agents)))
    critics, mixers = jax.vmap(functools.partial(init_critic, nets, s))(jax.random.split(k_critic, s.n_sets))
    params = {
        "actor": nets.actor.init(k_actor, h, x),
        "critic": critics,
        "mixer": mixers,
        "log_alpha": jnp.log(jnp.float32(s.init_alpha)),
    }
    targets = {"critic": critics, "mixer": mixers}
    return SACState(params, targets, nets.optimizer.init(params), jnp.int32(0))


# ---- acting -------------------------------------------------------------------------


def act(nets: Nets, ts: SACState, actor_state, obs, avail, key, env_steps, greedy):
    """Algo.act: the actors alone (no critic, message or mixer): a sample of the policy
    over the available actions, or its mode at evaluation."""
    del env_steps  # no schedule: exploration comes from the stochastic policy
    inputs = agent_inputs(obs, actor_state.last_action, nets.spec.n_actions)
    h, logits = nets.actor.apply(ts.params["actor"], actor_state.hidden, inputs)
    if greedy:
        actions = masked_argmax(logits, avail)
    else:
        actions = jax.random.categorical(key, jnp.where(avail, logits, -jnp.inf), axis=-1).astype(jnp.int32)
    return actions, RecurrentActor(h, actions)


# ---- the critics ----------------------------------------------------------------------


def critic_forward(nets: Nets, s: Settings, cp, inputs: jax.Array, noise: jax.Array):
    """One critic set over an episode batch: q [B,T+1,n,A], message means [B,T+1,n,d]
    (or None) and the predictor's logits (or None). noise [B,T+1,n,d] ~ N(0, I) makes
    the messages samples of N(f_m(tau_i), I)."""
    feats = unroll(nets.trunk, cp["trunk"], inputs)
    if not s.msg_dim:
        return nets.q_head.apply(cp["q"], feats), None, None
    mean = nets.encoder.apply(cp["message"], feats)
    x = jnp.concatenate([feats, incoming_messages(mean + noise)], axis=-1)
    return nets.q_head.apply(cp["q"], x), mean, nets.predictor.apply(cp["predictor"], x)


def critics_forward(nets: Nets, s: Settings, cps, inputs: jax.Array, noise: jax.Array):
    """critic_forward of every set: cps and noise carry the set axis K in front."""
    return jax.vmap(functools.partial(critic_forward, nets, s), in_axes=(0, None, 0))(cps, inputs, noise)


def mix_sets(nets: Nets, mixer_params, qs: jax.Array, state: jax.Array) -> jax.Array:
    """Each set's mixer on its own per-agent values: qs [K, ..., n], state [..., S] -> [K, ...]."""
    return jax.vmap(lambda mp, q, st: nets.mixer.apply(mp, q, st), in_axes=(0, 0, None))(
        mixer_params, qs, state
    )


def alpha_of(s: Settings, log_alpha: jax.Array) -> jax.Array:
    """The temperature: the fixed one, else exp(log alpha) (learned in log space: stays > 0)."""
    return jnp.float32(s.fixed_alpha) if s.fixed_alpha is not None else jnp.exp(log_alpha)


# ---- the loss of one update -------------------------------------------------------------


class LossInputs(NamedTuple):
    """What the loss takes from the batch and the key, independent of the parameters (so
    made once per update, outside the gradient)."""

    inputs: jax.Array  # [B, T+1, n, D] the agents' inputs (obs, last action, id)
    mask: jax.Array  # float [B, T] real steps
    count: jax.Array  # [] real steps, at least 1
    agent_mask: jax.Array  # [B, T, n]
    noise: jax.Array  # [K, B, T+1, n, d] message noise of the critics
    target_noise: jax.Array  # the same of the target critics (drawn apart)
    target_entropy: jax.Array  # [B, T, n] H_0 = rho log |available actions|


def loss_inputs(nets: Nets, s: Settings, batch: EpisodeBatch, key: jax.Array) -> LossInputs:
    """LossInputs of a batch: the masks and one message-noise draw per critic set."""
    b, t1 = batch.obs.shape[:2]
    inputs = episode_inputs(batch.obs, batch.actions, nets.spec.n_actions)
    mask = batch.mask.astype(jnp.float32)  # [B, T]
    count = jnp.maximum(mask.sum(), 1.0)
    agent_mask = jnp.broadcast_to(mask[..., None], batch.actions.shape)  # [B, T, n]
    k_noise, k_target_noise = jax.random.split(key)
    noise_shape = (s.n_sets, b, t1, nets.spec.n_agents, max(s.msg_dim, 1))
    noise = jax.random.normal(k_noise, noise_shape)
    target_noise = jax.random.normal(k_target_noise, noise_shape)
    n_avail = batch.avail[:, :-1].sum(-1).astype(jnp.float32)
    target_entropy = s.rho * jnp.log(jnp.maximum(n_avail, 1.0))
    return LossInputs(inputs, mask, count, agent_mask, noise, target_noise, target_entropy)


def critic_targets(
    nets: Nets, s: Settings, target_params, batch: EpisodeBatch, x: LossInputs, probs, logp, alpha
):
    """The critic's TD(lambda) targets y [B, T] (eq. 16): the target critics' next-state
    values under the current policy (probs, logp, alpha: held fixed by the caller), mixed
    by the target mixers, min over the sets (the double-Q guard against overestimation)."""
    q_target, _, _ = critics_forward(nets, s, target_params["critic"], x.inputs, x.target_noise)
    v_next = next_value(q_target, probs, logp, alpha, batch.avail, s.target_kind)
    mixed_next = mix_sets(nets, target_params["mixer"], v_next, batch.state).min(axis=0)  # [B, T+1]
    return jax.lax.stop_gradient(
        td_lambda_targets(batch.reward, batch.terminated, batch.mask, mixed_next, s.gamma, s.td_lambda)
    )


def sets_message_loss(q, alpha, pred_logits, means, avail, weight, beta: float) -> jax.Array:
    """message_loss of every critic set (leading axis K of q, pred_logits, means), averaged
    over the sets: each set's messages learn from its own critic."""
    return jax.vmap(message_loss, in_axes=(0, None, 0, 0, None, None, None))(
        q, alpha, pred_logits, means, avail, weight, beta
    ).mean()


def sac_loss(nets: Nets, s: Settings, params, target_params, batch: EpisodeBatch, x: LossInputs):
    """(critic + actor + message_coef message + temperature loss, metrics) of one batch.
    Every loss stops the gradients that are not its own, so one gradient of the sum steps
    each part on its own loss."""
    alpha = alpha_of(s, params["log_alpha"])
    probs, logp = masked_policy(unroll(nets.actor, params["actor"], x.inputs), batch.avail)  # [B,T+1,n,A]
    sg_probs, sg_logp, sg_alpha = jax.tree.map(jax.lax.stop_gradient, (probs, logp, alpha))

    # Critic: TD target from the target critics, target mixers and current policy.
    y = critic_targets(nets, s, target_params, batch, x, sg_probs, sg_logp, sg_alpha)
    q, means, pred_logits = critics_forward(nets, s, params["critic"], x.inputs, x.noise)  # [K,B,T+1,n,A]
    chosen = jnp.take_along_axis(q[:, :, :-1], batch.actions[None, ..., None], axis=-1)[..., 0]
    q_tot = mix_sets(nets, params["mixer"], chosen, batch.state[:, :-1])  # [K, B, T]
    critic_loss = jnp.sum(((q_tot - y) ** 2) * x.mask) / x.count / s.n_sets

    # Actor (eq. 14): gradients reach the actors only.
    mix_now = lambda mp, v: mix_sets(nets, mp, v, batch.state[:, :-1]).min(axis=0)  # noqa: E731
    policy_loss = actor_loss(
        probs[:, :-1], logp[:, :-1], q[:, :, :-1], alpha, params["mixer"], mix_now, x.mask
    )

    # Messages (eq. 12): predict agent j's critic Boltzmann distribution from its
    # features and incoming messages (mean over the critic sets).
    if s.msg_dim:
        m_loss = sets_message_loss(
            q[:, :, :-1],
            alpha,
            pred_logits[:, :, :-1],
            means[:, :, :-1],
            batch.avail[:, :-1],
            x.agent_mask,
            s.beta,
        )
    else:
        m_loss = jnp.float32(0.0)

    ent = entropy(sg_probs[:, :-1], sg_logp[:, :-1])  # [B, T, n]
    if s.fixed_alpha is None:
        alpha_loss = temperature_loss(params["log_alpha"], ent, x.target_entropy, x.agent_mask)
    else:
        alpha_loss = jnp.float32(0.0)
    total = critic_loss + policy_loss + s.message_coef * m_loss + alpha_loss
    aux = {
        "critic_loss": critic_loss,
        "actor_loss": policy_loss,
        "message_loss": m_loss,
        "temperature_loss": alpha_loss,
        "alpha": alpha,
        "entropy": jnp.sum(ent * x.agent_mask) / (x.count * nets.spec.n_agents),
        "q_taken_mean": jnp.sum(q_tot.mean(0) * x.mask) / x.count,
        "target_mean": jnp.sum(y * x.mask) / x.count,
    }
    return total, aux


def update(nets: Nets, s: Settings, ts: SACState, batch: EpisodeBatch, key: jax.Array, ctx: UpdateContext):
    """Algo.update: one step of every optimiser group on sac_loss of the batch."""
    del ctx  # no clock-dependent schedule
    x = loss_inputs(nets, s, batch, key)
    loss_fn = functools.partial(sac_loss, nets, s)
    (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(ts.params, ts.target_params, batch, x)
    params, opt_state = apply_gradients(nets.optimizer, ts.params, ts.opt_state, grads)
    metrics = {**aux, "grad_norm": optax.tree.norm(grads)}
    return ts.replace(params=params, opt_state=opt_state, updates=ts.updates + 1), metrics


def target_update(ts: SACState) -> SACState:
    """Hard copies of the critics and mixers (Algorithm 1); the actors have no target."""
    return ts.replace(target_params={"critic": ts.params["critic"], "mixer": ts.params["mixer"]})


def joint_q(nets: Nets, s: Settings, ts: SACState, batch: EpisodeBatch):
    """Algo.joint_q: critic set 0 with the mean messages (no sampling): Q_tot of every joint action."""
    n, n_actions = nets.spec.n_agents, nets.spec.n_actions
    inputs = episode_inputs(batch.obs, batch.actions, n_actions)
    first = jax.tree.map(lambda x: x[0], (ts.params["critic"], ts.params["mixer"]))
    zeros = jnp.zeros((*inputs.shape[:3], max(s.msg_dim, 1)))
    q = critic_forward(nets, s, first[0], inputs, zeros)[0][:, :-1]  # [B, T, n, A]
    mix = lambda c, st: nets.mixer.apply(first[1], c, st)  # noqa: E731
    return joint_q_values(q, batch.state[:, :-1], all_joint_actions(n, n_actions), mix), q


# ---- build ------------------------------------------------------------------------------


def build(spec: EnvSpec, cfg: dict, messages: bool, method: dict, name: str | None = None) -> Algo:
    """cfg: the `algo` section (_soft_actor_critic.yaml); method: the `lsf_sac` group (the
    variants of _sac_variants.yaml, and lsf_sac.yaml's message keys)."""
    s = Settings.from_cfg(cfg, method, messages)
    nets = make_nets(spec, cfg, s)
    return Algo(
        name=name or ("lsf_sac" if messages else "masac"),
        init=functools.partial(init_state, nets, s),
        init_actor=lambda n_envs: init_recurrent_actor(n_envs, spec.n_agents, s.hidden),
        act=functools.partial(act, nets),
        update=functools.partial(update, nets, s),
        target_update=target_update,
        joint_q=functools.partial(joint_q, nets, s),
    )
