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
           V_i' = sum_a pi_i(a|tau_i') (q_i'(a) - alpha log pi_i(a|tau_i'))  (target="soft";
           "expected" drops the entropy term: the expectation in eq. 16; "max" uses
           max_a q_i'(a): its max operator)
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

from typing import Any

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


def build(spec: EnvSpec, cfg: dict, messages: bool, method: dict, name: str | None = None) -> Algo:
    """cfg: the `algo` section (_soft_actor_critic.yaml); method: the `lsf_sac` group (the
    variants of _sac_variants.yaml, and lsf_sac.yaml's message keys)."""
    if method["target"] not in TARGETS:
        raise ValueError(f"lsf_sac.target must be one of {', '.join(TARGETS)}, got {method['target']!r}")
    n, n_actions = spec.n_agents, spec.n_actions
    hidden = int(cfg["hidden_dim"])
    msg_dim = int(method["message_dim"]) if messages else 0
    n_sets = 2 if method["double_q"] else 1
    gamma, lam = float(cfg["gamma"]), float(cfg["td_lambda"])
    target_kind = method["target"]
    fixed_alpha = method["fixed_alpha"]
    rho = float(cfg["target_entropy_ratio"])
    beta = float(method["message_beta"]) if messages else 0.0
    message_coef = float(method["message_coef"]) if messages else 0.0

    actor = RNNAgent(hidden_dim=hidden, n_actions=n_actions)
    trunk = RecurrentTrunk(hidden_dim=hidden)
    q_head = MLP((hidden, n_actions))
    encoder = MLP((hidden, max(msg_dim, 1)))
    predictor = MLP((hidden, n_actions))
    mixer = QMixer(n, int(cfg["mixing_embed_dim"]), int(cfg["hypernet_embed"]))

    def adam(lr):
        return make_optimizer(float(lr), float(cfg["grad_norm_clip"]), float(cfg["adam_eps"]))

    groups = {"actor": "actor", "critic": "critic", "mixer": "critic", "log_alpha": "alpha"}
    optimizer = optax.multi_transform(
        {"actor": adam(cfg["actor_lr"]), "critic": adam(cfg["lr"]), "alpha": adam(cfg["alpha_lr"])},
        lambda p: {k: jax.tree.map(lambda _, g=groups[k]: g, v) for k, v in p.items()},
    )

    def init_critic(key):
        k_trunk, k_q, k_msg, k_pred, k_mix = jax.random.split(key, 5)
        feats = jnp.zeros((1, hidden + n * msg_dim))
        p = {
            "trunk": trunk.init(
                k_trunk, jnp.zeros((1, hidden)), jnp.zeros((1, input_dim(spec.obs_dim, n_actions, n)))
            ),
            "q": q_head.init(k_q, feats),
        }
        if msg_dim:
            p["message"] = encoder.init(k_msg, jnp.zeros((1, hidden)))
            p["predictor"] = predictor.init(k_pred, feats)
        return p, mixer.init(k_mix, jnp.zeros((1, n)), jnp.zeros((1, spec.state_dim)))

    def init(key):
        k_actor, k_critic = jax.random.split(key)
        h = jnp.zeros((1, hidden))
        x = jnp.zeros((1, input_dim(spec.obs_dim, n_actions, n)))
        critics, mixers = jax.vmap(init_critic)(jax.random.split(k_critic, n_sets))
        init_alpha = float(fixed_alpha if fixed_alpha is not None else cfg["init_alpha"])
        params = {
            "actor": actor.init(k_actor, h, x),
            "critic": critics,
            "mixer": mixers,
            "log_alpha": jnp.log(jnp.float32(init_alpha)),
        }
        targets = {"critic": critics, "mixer": mixers}
        return SACState(params, targets, optimizer.init(params), jnp.int32(0))

    def init_actor(n_envs):
        return init_recurrent_actor(n_envs, n, hidden)

    def act(ts, actor_state, obs, avail, key, env_steps, greedy):
        del env_steps  # no schedule: exploration comes from the stochastic policy
        h, logits = actor.apply(
            ts.params["actor"], actor_state.hidden, agent_inputs(obs, actor_state.last_action, n_actions)
        )
        if greedy:
            actions = masked_argmax(logits, avail)
        else:
            actions = jax.random.categorical(key, jnp.where(avail, logits, -jnp.inf), axis=-1).astype(
                jnp.int32
            )
        return actions, RecurrentActor(h, actions)

    def critic_forward(cp, inputs, noise):
        """One critic set over an episode batch: q [B,T+1,n,A], message means [B,T+1,n,d]
        (or None) and the predictor's logits (or None). noise [B,T+1,n,d] ~ N(0, I)."""
        feats = unroll(trunk, cp["trunk"], inputs)
        if not msg_dim:
            return q_head.apply(cp["q"], feats), None, None
        mean = encoder.apply(cp["message"], feats)
        x = jnp.concatenate([feats, incoming_messages(mean + noise)], axis=-1)
        return q_head.apply(cp["q"], x), mean, predictor.apply(cp["predictor"], x)

    critics_forward = jax.vmap(critic_forward, in_axes=(0, None, 0))
    mix_sets = jax.vmap(lambda mp, qs, s: mixer.apply(mp, qs, s), in_axes=(0, 0, None))

    def alpha_of(log_alpha):
        return jnp.float32(fixed_alpha) if fixed_alpha is not None else jnp.exp(log_alpha)

    def update(ts, batch: EpisodeBatch, key, ctx: UpdateContext):
        del ctx  # no clock-dependent schedule
        b, t1 = batch.obs.shape[:2]
        inputs = episode_inputs(batch.obs, batch.actions, n_actions)
        mask = batch.mask.astype(jnp.float32)  # [B, T]
        count = jnp.maximum(mask.sum(), 1.0)
        agent_mask = jnp.broadcast_to(mask[..., None], batch.actions.shape)  # [B, T, n]
        k_noise, k_target_noise = jax.random.split(key)
        noise_shape = (n_sets, b, t1, n, max(msg_dim, 1))
        noise = jax.random.normal(k_noise, noise_shape)
        target_noise = jax.random.normal(k_target_noise, noise_shape)
        n_avail = batch.avail[:, :-1].sum(-1).astype(jnp.float32)
        target_entropy = rho * jnp.log(jnp.maximum(n_avail, 1.0))

        def loss_fn(params):
            alpha = alpha_of(params["log_alpha"])
            probs, logp = masked_policy(unroll(actor, params["actor"], inputs), batch.avail)  # [B,T+1,n,A]
            sg_probs, sg_logp, sg_alpha = jax.tree.map(jax.lax.stop_gradient, (probs, logp, alpha))

            # Critic: soft TD target from the target critics, target mixers and current policy.
            q_target, _, _ = critics_forward(ts.target_params["critic"], inputs, target_noise)
            v_next = next_value(q_target, sg_probs, sg_logp, sg_alpha, batch.avail, target_kind)
            mixed_next = mix_sets(ts.target_params["mixer"], v_next, batch.state).min(axis=0)  # [B, T+1]
            y = jax.lax.stop_gradient(
                td_lambda_targets(batch.reward, batch.terminated, batch.mask, mixed_next, gamma, lam)
            )
            q, means, pred_logits = critics_forward(params["critic"], inputs, noise)  # [K,B,T+1,n,A]
            chosen = jnp.take_along_axis(q[:, :, :-1], batch.actions[None, ..., None], axis=-1)[..., 0]
            q_tot = mix_sets(params["mixer"], chosen, batch.state[:, :-1])  # [K, B, T]
            critic_loss = jnp.sum(((q_tot - y) ** 2) * mask) / count / n_sets

            # Actor (eq. 14): gradients reach the actors only.
            mix_now = lambda mp, v: mix_sets(mp, v, batch.state[:, :-1]).min(axis=0)  # noqa: E731
            policy_loss = actor_loss(
                probs[:, :-1], logp[:, :-1], q[:, :, :-1], alpha, params["mixer"], mix_now, mask
            )

            # Messages (eq. 12): predict agent j's critic Boltzmann distribution from its
            # features and incoming messages (mean over the critic sets).
            if msg_dim:
                m_loss = jax.vmap(message_loss, in_axes=(0, None, 0, 0, None, None, None))(
                    q[:, :, :-1], alpha, pred_logits[:, :, :-1], means[:, :, :-1],
                    batch.avail[:, :-1], agent_mask, beta,
                ).mean()  # fmt: skip
            else:
                m_loss = jnp.float32(0.0)

            ent = entropy(sg_probs[:, :-1], sg_logp[:, :-1])  # [B, T, n]
            if fixed_alpha is None:
                alpha_loss = temperature_loss(params["log_alpha"], ent, target_entropy, agent_mask)
            else:
                alpha_loss = jnp.float32(0.0)
            total = critic_loss + policy_loss + message_coef * m_loss + alpha_loss
            aux = {
                "critic_loss": critic_loss,
                "actor_loss": policy_loss,
                "message_loss": m_loss,
                "temperature_loss": alpha_loss,
                "alpha": alpha,
                "entropy": jnp.sum(ent * agent_mask) / (count * n),
                "q_taken_mean": jnp.sum(q_tot.mean(0) * mask) / count,
                "target_mean": jnp.sum(y * mask) / count,
            }
            return total, aux

        (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(ts.params)
        params, opt_state = apply_gradients(optimizer, ts.params, ts.opt_state, grads)
        metrics = {**aux, "grad_norm": optax.tree.norm(grads)}
        return ts.replace(params=params, opt_state=opt_state, updates=ts.updates + 1), metrics

    def target_update(ts):
        return ts.replace(target_params={"critic": ts.params["critic"], "mixer": ts.params["mixer"]})

    def joint_q(ts, batch: EpisodeBatch):
        """Critic set 0 with the mean messages (no sampling): Q_tot of every joint action."""
        inputs = episode_inputs(batch.obs, batch.actions, n_actions)
        first = jax.tree.map(lambda x: x[0], (ts.params["critic"], ts.params["mixer"]))
        zeros = jnp.zeros((*inputs.shape[:3], max(msg_dim, 1)))
        q = critic_forward(first[0], inputs, zeros)[0][:, :-1]  # [B, T, n, A]
        mix = lambda c, s: mixer.apply(first[1], c, s)  # noqa: E731
        return joint_q_values(q, batch.state[:, :-1], all_joint_actions(n, n_actions), mix), q

    return Algo(
        name=name or ("lsf_sac" if messages else "masac"),
        init=init,
        init_actor=init_actor,
        act=act,
        update=update,
        target_update=target_update,
        joint_q=joint_q,
    )
