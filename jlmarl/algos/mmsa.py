"""MMSA: model-based value decomposition with joint state-action learned embeddings
(seed 001, section 4, Table 6; our spec: shared/specs/mmsa.md).

Networks (jlmarl.nets.sale, jlmarl.nets.world_model):
  agent     GRU over [o_i, onehot(a_i,t-1), onehot(i)] -> h_i; Q_i(a) = (W h_i + b)[a] +
            MLP([h_i, z^o, z^{oa}(a), phi^{oa}(a)]) for every action (history_head; false drops
            the first term), z^o = N(f(o_i)), z^{oa} = g([z^o, onehot(a)]) read
            from a frozen copy of the observation encoders f, g (TD7's decoupling: the copy is
            refreshed with the target network, the target network reads the copy before it)
  model     on the joint hidden state h = concat_i h_i: posterior q(ŝ_t | h_t); state-level SALE
            on ŝ with the joint action; VAE-1 (its encoder is the learned prior p(ŝ_{t+1} | e_t),
            its decoder predicts the next embeddings); VAE-2's decoder (embeddings -> h_{t+1});
            the policy head pi(z^s, phi^s) that imagination follows
  mixer     QMIX on [s_t, sg(ŝ^Rollout_t)], ŝ^Rollout_t = (ŝ_t, ŝ_{t+1}, ..., ŝ_{t+j}) imagined
            from the posterior mean with the policy head's greedy joint actions
Loss (one RMSProp over everything, Table 6): L = L_TD + L_SALE + L_KL + L_REC + L_pi, where
  L_TD    QMIX's double-Q TD loss on real episodes (one-step: td_lambda = 0, the paper's y^tot);
          it reaches the agents and the mixer only (frozen encoders, sg(rollout))
  L_SALE  ||g(f(o_t), a_t) - sg(f(o_{t+1}))||^2 per agent, and the same on ŝ with the joint action
  L_KL    KL(p || N(0, I)) + KL-balanced KL(q(ŝ_{t+1} | h_{t+1}) || p(ŝ_{t+1} | e_t)), alpha = 0.2
  L_REC   MSE(ê_{t+1}, sg(e_{t+1})) + MSE(VAE-2(ê_{t+1}), sg(h_{t+1})), e_{t+1} from the posterior
          mean of t+1 and the recorded action a_{t+1}
  L_pi    cross-entropy of pi(ŝ_t) to the agents' greedy actions at t (available actions only)
The model learns on the agents' h as data: sg(h) is its input and target, so no model loss
changes the agents (nor does the TD loss change the model). Acting reads only each
agent's own observation, last action and GRU state (the frozen encoders are per agent).

Spec vs paper, and readings where the paper is silent (module docstring by rule):
  * The paper's L_REC is written MSE(x_t, x_t) for every term; we read it (with section 4.3 and
    the spec) as "predicted at t-1 vs obtained at t": VAE-1's predicted next embeddings vs the
    embeddings of the next posterior, VAE-2's predicted h vs the real h. `rec_hidden=same`
    takes VAE-2's term as written (h_t reconstructed from the embeddings of the posterior's
    draw of ŝ_t), `both` adds it to ours; `rec_reduction=sum`, `kl_weight` and `free_nats` are not in the
    paper (probes of the world model's collapse: benchmarks/results/mmsa_wm_lbf/).
  * The paper's Figure 2 has "the agent networks" choose the imagined actions from h; their
    Q_i needs z^o of an observation imagination does not have, so (as the spec) imagination
    follows the policy head pi(z^s, phi^s) of section 4.2, trained toward the greedy actions.
  * KL balancing: the paper writes alpha KL(q || sg p) + (1 - alpha) KL(sg q || p) with
    alpha = 0.8 (Table 6), yet says it "allows the prior to mature quickly while preventing the
    posterior from being over-regularized" and cites DreamerV2, whose 0.8 weighs the prior's
    term. In the formula as written 0.8 moves the posterior 4x faster than the prior; we follow
    the text and the citation: kl_alpha = 0.2 in the formula (0.8 on the prior's side). Runs
    before 2026-12-02 used 0.8 (benchmarks/results/mmsa_*/ say which).
  * TD target: the paper writes y = r + gamma max Q_tot(...; psi^-), one step; we keep the
    kit's double-Q (PyMARL's QMIX default) with td_lambda = 0.
  * AvgL1Norm has TD7's floor max(mean|x|, 1e-8) (the paper's formula divides by mean|x|).
  * The SALE and reconstruction errors are mean squared errors over the embedding (TD7's
    F.mse_loss; the paper says MSE), not the spec's summed squared norm.
  * Table 6's "dimension of the embedding layer for agent network: 4" is read as the size of
    z^o, z^{oa} and phi^{oa} (mmsa.obs_embed_dim); the world model's widths are not given
    (mmsa.model_hidden = 64, like the SALE encoders' 64 of the spec; mmsa.decoder_hidden widens
    VAE-2's decoder alone).
  * Imagination and the world-model diagnostics use the means of the posterior and the prior
    (no sampling): the mixer's input is then a function of the episode, not of a noise draw.
  * How h enters Q_i is not given: the paper writes Q_i(z^o, z^{oa}, phi^{oa}) with the SALE
    features "provided alongside conventional representations" (4.2). The spec's one MLP over
    [h, z^o, z^{oa}(a), phi^{oa}(a)] barely depends on the action (it reaches Q only through
    z^{oa} and the 4-wide phi^{oa}) and learned nothing on LBF; the default adds the
    conventional agent's per-action output on h (history_head; benchmarks/results/mmsa_learning/).
  * As the paper (4.3, "we set ŝ_{t+1} = z^s_{t+1}"), each imagined ŝ_{t+k} is VAE-1's
    predicted z^s, an AvgL1Norm-ed embedding (entries ~1), while ŝ_t is the posterior's latent.
    `rollout_scale` (not in the paper; 1) multiplies the rollout where the mixer reads it: on
    LBF, whose state entries are ~0.15, the unscaled rollout runs Q_tot away from the returns.
  * Without SALE (mmsa.sale=false), the agent is the plain recurrent Q agent and VAE-1 maps
    [ŝ_t, onehot(â_t)] to ŝ_{t+1} directly.
Diagnostics (update metrics): wm_{zs,h}_{model,still}_{1,j}: the squared error of the model's
1-step and j-step predictions of the next latents' embedding z^s (ŝ without SALE) and of the
joint hidden state h, imagined along the recorded actions from the posterior mean, against the
real next steps' values, beside the "nothing changes" guess (x_{t+k} := x_t), and
wm_{zs,h}_mean_{1,j}: the error of the best constant guess (the batch's mean), which a
collapsed model reaches; wm_h_recon_1: VAE-2's error on h_{t+1} read from the embeddings of
the real next latent (the posterior mean of t+1 with a_{t+1}), the 1-step error a perfect VAE-1
would leave: wm_h_model_1 - wm_h_recon_1 is the transition's share (none where it is <= 0),
wm_h_recon_1 that of the latent and VAE-2's decoding.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jlmarl.algos.q_learning import (
    RecurrentActor,
    all_joint_actions,
    apply_gradients,
    double_q_td_loss,
    epsilon_settings,
    explore_or_exploit,
    init_recurrent_actor,
    joint_q_values,
    make_optimizer,
)
from jlmarl.core.algo import Algo, AlgoConfigError, UpdateContext
from jlmarl.core.buffer import EpisodeBatch
from jlmarl.envs.base import EnvSpec
from jlmarl.nets import world_model
from jlmarl.nets.agents import RNNAgent, agent_inputs, episode_inputs, input_dim, masked_argmax
from jlmarl.nets.gaussian import kl_balanced, kl_diag, kl_std_normal
from jlmarl.nets.gaussian import sample as reparameterize
from jlmarl.nets.mixers import QMixer
from jlmarl.nets.recurrent import unroll
from jlmarl.nets.sale import SaleAgent, SaleEncoder, sale_features, sale_features_at
from jlmarl.nets.world_model import MmsaWorldModel


@struct.dataclass
class MmsaState:
    params: Any  # {"agent", "mixer", "sale", "model"}: what the one optimiser trains
    target_params: Any  # {"agent", "mixer"}: the TD target network
    frozen_sale: Any  # observation encoders the online value function reads
    frozen_sale_target: Any  # the frozen copy before it, read by the target network
    opt_state: Any
    updates: jax.Array  # int32 [] gradient steps taken


@dataclasses.dataclass(frozen=True)
class MmsaNets:
    """The networks and static settings of one MMSA build."""

    spec: EnvSpec
    agent: Any  # SaleAgent, or RNNAgent without SALE
    obs_sale: SaleEncoder | None
    model: MmsaWorldModel | None
    mixer: QMixer
    horizon: int
    global_state: bool
    rollout_scale: float
    kl_balance: bool
    kl_alpha: float
    free_nats: float
    kl_weight: float
    rec_reduction: str
    rec_hidden: str
    gamma: float
    td_lambda: float
    diag_episodes: int

    def mixer_conditioning(self, state: jax.Array, rollout: jax.Array) -> jax.Array:
        """[s_t, sg(rollout_scale * ŝ^Rollout_t)] (without s_t for No-GS)."""
        return world_model.mixer_inputs(state, self.rollout_scale * rollout, self.global_state)

    @property
    def mixer_input_dim(self) -> int:
        rollout = (self.horizon + 1) * self.model.latent_dim if self.model else 0
        return (self.spec.state_dim if self.global_state else 0) + rollout


# ---------------------------------------------------------------- losses (pure functions)


def masked_mse(pred: jax.Array, target: jax.Array, weights: jax.Array) -> jax.Array:
    """Mean of (pred - target)^2 over the entries with weight 1: pred, target [..., D], weights
    broadcastable to them (0/1). The target is a constant (stop-gradient)."""
    err = (pred - jax.lax.stop_gradient(target)) ** 2
    w = jnp.broadcast_to(weights, err.shape).astype(err.dtype)
    return (err * w).sum() / jnp.maximum(w.sum(), 1.0)


def sale_loss(zsa: jax.Array, next_zs: jax.Array, mask: jax.Array) -> jax.Array:
    """SALE's loss: mean squared error between g(f(x_t), a_t) = zsa [..., E] and sg(f(x_{t+1}))
    = next_zs [..., E] over the valid steps (mask [...]): the gradient moves g and f through
    the prediction only, never through the target."""
    return masked_mse(zsa, next_zs, mask[..., None])


def kl_losses(
    post: tuple[jax.Array, jax.Array],
    prior: tuple[jax.Array, jax.Array],
    mask: jax.Array,
    balance: bool,
    alpha: float,
    free_nats: float = 0.0,
) -> tuple[jax.Array, jax.Array]:
    """L_KL's two terms, masked means over steps: (KL(p || N(0, I)), KL(q || p)), the second
    KL-balanced (alpha KL(q || sg p) + (1 - alpha) KL(sg q || p)) or plain (No-KLB).
    post, prior: (mu, logvar) [..., d]; mask [...].

    free_nats > 0: free bits (DreamerV2/V3's max(free, KL) per step, not in the paper): a
    step whose KL is below free_nats sends no gradient. The values stay the plain KLs (they
    differ from max(free, KL) by a constant), so the metrics show what the latents carry."""
    m = mask.astype(post[0].dtype)
    count = jnp.maximum(m.sum(), 1.0)
    to_std = kl_std_normal(*prior)
    between = kl_balanced(*post, *prior, alpha) if balance else kl_diag(*post, *prior)
    if free_nats > 0.0:
        free = lambda kl: jnp.where(kl < free_nats, jax.lax.stop_gradient(kl), kl)  # noqa: E731
        to_std, between = free(to_std), free(between)
    return (to_std * m).sum() / count, (between * m).sum() / count


def rec_scale(nets: MmsaNets, pred: jax.Array) -> float:
    """1 for the paper's MSE (a mean over features); the feature count for rec_reduction=sum,
    the squared error summed over features (a unit-variance Gaussian log-likelihood: the
    ELBO's weight of reconstruction against the KL, which is summed over latent dims)."""
    return float(pred.shape[-1]) if nets.rec_reduction == "sum" else 1.0


def hidden_reconstruction(nets: MmsaNets, model, params, e_t, h_pred, hidden, mask) -> jax.Array:
    """VAE-2's term of L_REC. e_t [B, T, 3d]: the embeddings of the posterior draw ŝ_t with the
    recorded a_t; h_pred [B, T, n H]: VAE-2 on VAE-1's prediction ê_{t+1}; hidden [B, T+1, n H].
    rec_hidden=next: h_pred against h_{t+1} (our reading of section 4.3); same: VAE-2 on e_t
    against h_t (the paper's formula as written, MSE(h_t, h_t): the posterior and VAE-2 are
    then an auto-encoder of h); both: the sum."""
    t = h_pred.shape[1]
    terms = []
    if nets.rec_hidden in ("next", "both"):
        terms.append(masked_mse(h_pred, hidden[:, 1:], mask[..., None]))
    if nets.rec_hidden in ("same", "both"):
        h_same = model.apply(params, e_t, method=MmsaWorldModel.decode_hidden)
        terms.append(masked_mse(h_same, hidden[:, :t], mask[..., None]))
    return sum(terms[1:], terms[0]) * rec_scale(nets, h_pred)


def policy_loss(logits: jax.Array, greedy: jax.Array, avail: jax.Array, mask: jax.Array):
    """Cross-entropy of the policy head toward the agents' greedy actions, over available
    actions. logits [..., n, A], greedy int [..., n], avail [..., n, A], mask [...].
    Returns (loss, fraction of agents whose most likely available action is the greedy one)."""
    logp = jax.nn.log_softmax(jnp.where(avail, logits, -1e9), axis=-1)
    nll = -jnp.take_along_axis(logp, greedy[..., None], axis=-1)[..., 0]  # [..., n]
    m = jnp.broadcast_to(mask[..., None], nll.shape).astype(nll.dtype)
    count = jnp.maximum(m.sum(), 1.0)
    agree = (masked_argmax(logits, avail) == greedy).astype(nll.dtype)
    return (nll * m).sum() / count, (agree * m).sum() / count


def clip_each_group(grads: dict, max_norm: float) -> dict:
    """Clips each top-level group's gradient (agent, mixer, sale, model) to global norm
    max_norm on its own. Each loss trains its own group, so one loss's spike (AvgL1Norm of
    an all-zero observation divides by its 1e-8 floor) cannot shrink the others' steps, as
    one global clip over everything would."""

    def clip(g):
        scale = jnp.minimum(1.0, max_norm / jnp.maximum(optax.tree.norm(g), 1e-12))
        return jax.tree.map(lambda x: x * scale, g)

    return {k: clip(g) for k, g in grads.items()}


# ---------------------------------------------------------------- imagination


def joint_onehot(actions: jax.Array, n_actions: int) -> jax.Array:
    """int [..., n] -> the agents' one-hots side by side [..., n A]."""
    onehot = jax.nn.one_hot(actions, n_actions)
    return onehot.reshape(*actions.shape[:-1], -1)


def imagined_rollout(model: MmsaWorldModel, params, start: jax.Array, horizon: int) -> jax.Array:
    """ŝ^Rollout: from start = ŝ_t [..., d], j = horizon steps of â = greedy pi(ŝ), ê = VAE-1's
    mean prediction, ŝ <- next_state(ê). Returns concat(ŝ_t, ŝ_{t+1}, ..., ŝ_{t+j}) [..., (j+1) d]."""

    def step(s):
        a = jnp.argmax(model.apply(params, s, method=MmsaWorldModel.policy), axis=-1)  # [..., n]
        e = model.apply(params, s, joint_onehot(a, model.n_actions), method=MmsaWorldModel.embed)
        _, _, pred = model.apply(params, e, None, method=MmsaWorldModel.predict)
        s = model.apply(params, pred, method=MmsaWorldModel.next_state)
        return s, s

    return world_model.rollout_feature(start, world_model.imagine(step, start, horizon))


def recorded_rollout(
    model: MmsaWorldModel, params, start: jax.Array, actions: jax.Array, horizon: int
) -> tuple[jax.Array, jax.Array]:
    """The model's k-step predictions along the recorded actions (the diagnostics).

    start ŝ_t [B, T+1, d] (posterior means), actions int [B, T, n]. Returns the predicted
    next-state embeddings (z^s; ŝ without SALE) [j, B, T+1, d] and hidden states
    [j, B, T+1, n H] of steps t+1..t+j; entries past the episode's end are garbage that
    prediction_errors leaves out."""
    shifted = joint_onehot(world_model.actions_ahead(actions, horizon), model.n_actions)  # [j, B, T+1, n A]

    def step(carry):
        s, k = carry
        a = jax.lax.dynamic_index_in_dim(shifted, k, keepdims=False)
        e = model.apply(params, s, a, method=MmsaWorldModel.embed)
        _, _, pred = model.apply(params, e, None, method=MmsaWorldModel.predict)
        s = model.apply(params, pred, method=MmsaWorldModel.next_state)
        h = model.apply(params, pred, method=MmsaWorldModel.decode_hidden)
        return (s, k + 1), (s, h)

    return world_model.imagine(step, (start, jnp.int32(0)), horizon)


# ---------------------------------------------------------------- the whole loss


def world_model_terms(
    nets: MmsaNets, params, hidden: jax.Array, greedy: jax.Array, batch: EpisodeBatch, key: jax.Array
) -> dict[str, jax.Array]:
    """L_KL, L_REC, the state-level L_SALE and L_pi on a batch (masked means over real steps).

    hidden: the agents' joint hidden states h [B, T+1, n H] (a constant here); greedy int
    [B, T+1, n]: the agents' greedy actions. Also returns "posterior_mean" [B, T+1, d]."""
    model, n_actions = nets.model, nets.spec.n_actions
    t = batch.reward.shape[1]
    mask = batch.mask
    act_next = jnp.concatenate([mask[:, 1:], jnp.zeros_like(mask[:, :1])], axis=1)  # a_{t+1} recorded
    apply = lambda method, *a: model.apply(params, *a, method=method)  # noqa: E731
    mu_q, logvar_q = apply(MmsaWorldModel.infer, hidden)  # [B, T+1, d]
    k_post, k_prior = jax.random.split(key)
    s_t = reparameterize(k_post, mu_q[:, :t], logvar_q[:, :t])  # ŝ_t ~ q, [B, T, d]
    a_t = joint_onehot(batch.actions, n_actions)  # [B, T, n A]
    e_t = apply(MmsaWorldModel.embed, s_t, a_t)
    mu_p, logvar_p, pred = apply(MmsaWorldModel.predict, e_t, k_prior)  # ê_{t+1} [B, T, De]
    h_pred = apply(MmsaWorldModel.decode_hidden, pred)  # [B, T, n H]
    next_mean = jax.lax.stop_gradient(mu_q[:, 1:])
    a_next = jnp.concatenate([a_t[:, 1:], jnp.zeros_like(a_t[:, :1])], axis=1)
    target = apply(MmsaWorldModel.target, next_mean, a_next)  # [B, T, De]
    d = model.latent_dim
    if model.sale:  # (z^{sa}, z^s, phi^{sa}): the action parts need the recorded a_{t+1}
        both = jnp.repeat((mask & act_next)[..., None], d, -1)
        weights = jnp.concatenate([both, jnp.repeat(mask[..., None], d, -1), both], -1)  # [B, T, 3d]
    else:
        weights = mask[..., None]
    kl_prior, kl_post = kl_losses(
        (mu_q[:, 1:], logvar_q[:, 1:]), (mu_p, logvar_p), mask, nets.kl_balance, nets.kl_alpha, nets.free_nats
    )
    valid = jnp.concatenate([jnp.ones_like(mask[:, :1]), mask], axis=1)  # real observations [B, T+1]
    pi_loss, pi_agree = policy_loss(
        apply(MmsaWorldModel.policy, jax.lax.stop_gradient(mu_q)), greedy, batch.avail, valid
    )
    terms = {
        "kl_prior": kl_prior,
        "kl_posterior": kl_post,
        "rec_embedding": masked_mse(pred, target, weights) * rec_scale(nets, pred),
        "rec_hidden": hidden_reconstruction(nets, model, params, e_t, h_pred, hidden, mask),
        "policy_ce": pi_loss,
        "policy_agreement": pi_agree,
    }
    if model.sale:  # g_w(f_w(ŝ_t), a_t) is e_t's z^{sa}; its target the next z^s
        terms["sale_state"] = sale_loss(e_t[..., :d], target[..., d : 2 * d], mask)
    return terms | {"posterior_mean": jax.lax.stop_gradient(mu_q)}


def diagnostics(nets: MmsaNets, params, mean: jax.Array, hidden: jax.Array, batch: EpisodeBatch) -> dict:
    """1-step and j-step prediction errors of the model beside "nothing changes" and the best
    constant guess (see the module docstring): mean [B, T+1, d] posterior means, hidden
    [B, T+1, n H]. They read the batch's first diag_episodes episodes (a uniform draw from
    the replay too): means over steps, so fewer episodes make them noisier, not different."""
    model, j, e = nets.model, nets.horizon, nets.diag_episodes
    mean, hidden, batch = mean[:e], hidden[:e], jax.tree.map(lambda x: x[:e], batch)
    pred_s, pred_h = recorded_rollout(model, params, mean, batch.actions, j)
    real_s = model.apply(params, mean, method=MmsaWorldModel.state_embedding)
    valid = jnp.concatenate([jnp.ones_like(batch.mask[:, :1]), batch.mask], axis=1)
    out = {}
    for name, pred, real in (("zs", pred_s, real_s), ("h", pred_h, hidden)):
        errs = world_model.prediction_errors(pred, real, valid)
        for k in sorted({1, j}):
            for kind in ("model", "still", "mean"):
                # horizons longer than the batch's steps have no pairs: report 0
                out[f"wm_{name}_{kind}_{k}"] = errs.get(f"{kind}_{k}", jnp.float32(0.0))
    # VAE-2 on the embeddings of the real next latent: a perfect VAE-1's 1-step error
    a_t = joint_onehot(batch.actions, model.n_actions)
    a_next = jnp.concatenate([a_t[:, 1:], jnp.zeros_like(a_t[:, :1])], axis=1)  # a_{t+1}, 0 after the last
    exact = model.apply(params, mean[:, 1:], a_next, method=MmsaWorldModel.target)
    decoded = model.apply(params, exact, method=MmsaWorldModel.decode_hidden)  # h_{t+1} [e, T, n H]
    padded = jnp.concatenate([decoded, decoded[:, -1:]], axis=1)[None]  # [1, e, T+1, n H]
    recon = world_model.prediction_errors(padded, hidden, valid)
    out["wm_h_recon_1"] = recon.get("model_1", jnp.float32(0.0))
    return jax.lax.stop_gradient(out)


def agent_features(nets: MmsaNets, encoders, obs: jax.Array) -> jax.Array:
    """The value function's extra inputs from the frozen encoders (nothing without SALE)."""
    if nets.obs_sale is None:
        return obs[..., :0]
    return sale_features(nets.obs_sale, encoders, obs, nets.spec.n_actions)


def loss_terms(nets: MmsaNets, params, ts: MmsaState, batch: EpisodeBatch, key: jax.Array):
    """L_total and its terms (a dict of scalars) on a batch; differentiate w.r.t. params.

    ts supplies the target network and the frozen encoders (constants)."""
    n_actions = nets.spec.n_actions
    t = batch.reward.shape[1]
    inputs = episode_inputs(batch.obs, batch.actions, n_actions)
    online_in = jnp.concatenate([inputs, agent_features(nets, ts.frozen_sale, batch.obs)], -1)
    hs, q_all = unroll(nets.agent, params["agent"], online_in, with_hidden=True)  # [B, T+1, n, H|A]
    if nets.obs_sale is None:
        q_target = unroll(nets.agent, ts.target_params["agent"], inputs)
    else:

        def q_target(greedy):  # the target network at the online greedy actions only
            feats = sale_features_at(nets.obs_sale, ts.frozen_sale_target, batch.obs, greedy, n_actions)
            at_greedy = nets.agent.clone(candidates=1)
            return unroll(at_greedy, ts.target_params["agent"], jnp.concatenate([inputs, feats], -1))[..., 0]

    terms = {}
    mixer_in = batch.state
    if nets.model is not None:
        hidden = jax.lax.stop_gradient(hs.reshape(*hs.shape[:2], -1))  # [B, T+1, n H]
        greedy = masked_argmax(jax.lax.stop_gradient(q_all), batch.avail)
        terms = world_model_terms(nets, params["model"], hidden, greedy, batch, key)
        mean = terms.pop("posterior_mean")
        rollout = imagined_rollout(nets.model, params["model"], mean, nets.horizon)  # [B, T+1, (j+1) d]
        mixer_in = nets.mixer_conditioning(batch.state, rollout)
        terms |= diagnostics(nets, params["model"], mean, hidden, batch)
    td, aux = double_q_td_loss(
        q_all,
        q_target,
        batch,
        mixer_in,
        lambda qs, m: nets.mixer.apply(params["mixer"], qs, m),
        lambda qs, m: nets.mixer.apply(ts.target_params["mixer"], qs, m),
        nets.gamma,
        nets.td_lambda,
    )
    terms |= {"td": td, **aux}
    if nets.obs_sale is not None:
        zo = nets.obs_sale.apply(params["sale"], batch.obs, method=SaleEncoder.embed_state)  # [B, T+1, n, E]
        zoa = nets.obs_sale.apply(
            params["sale"],
            zo[:, :t],
            jax.nn.one_hot(batch.actions, n_actions),
            method=SaleEncoder.embed_action,
        )
        mask = jnp.broadcast_to(batch.mask[..., None], zoa.shape[:-1])
        terms["sale_obs"] = sale_loss(zoa, zo[:, 1:], mask)
    total = sum(terms[k] * (nets.kl_weight if k in KL_TERMS else 1.0) for k in LOSS_TERMS if k in terms)
    return total, terms


KL_TERMS = ("kl_prior", "kl_posterior")  # L_KL, weighted by kl_weight in the total
LOSS_TERMS = (
    "td",
    "sale_obs",
    "sale_state",
    "kl_prior",
    "kl_posterior",
    "rec_embedding",
    "rec_hidden",
    "policy_ce",
)


# ---------------------------------------------------------------- build


def make_nets(spec: EnvSpec, cfg: dict, method: dict) -> MmsaNets:
    """The networks of one build from the `algo` section and the `mmsa` group."""
    n, a, hidden = spec.n_agents, spec.n_actions, int(cfg["hidden_dim"])
    sale, use_model, norm = bool(method["sale"]), bool(method["world_model"]), str(method["normalizer"])
    if not use_model and not method["global_state"]:
        raise AlgoConfigError(
            "mmsa.global_state=false with mmsa.world_model=false leaves the mixer no input; "
            "keep one of them true"
        )
    embed = int(method["obs_embed_dim"])
    history = bool(method["history_head"])
    agent = (
        SaleAgent(hidden, a, spec.obs_dim, embed, hidden, norm, history_head=history)
        if sale
        else RNNAgent(hidden, a)
    )
    obs_sale = SaleEncoder(embed, int(method["sale_hidden"]), norm) if sale else None
    model = None
    if use_model:
        d = int(method["latent_dim"]) * n
        decoder = None if method["decoder_hidden"] is None else int(method["decoder_hidden"])
        model = MmsaWorldModel(n, a, d, hidden, int(method["model_hidden"]), sale, norm, decoder)
    return MmsaNets(
        spec=spec,
        agent=agent,
        obs_sale=obs_sale,
        model=model,
        mixer=QMixer(n, int(cfg["mixing_embed_dim"]), int(cfg["hypernet_embed"])),
        horizon=int(method["horizon"]),
        global_state=bool(method["global_state"]),
        rollout_scale=float(method["rollout_scale"]),
        kl_balance=bool(method["kl_balance"]),
        kl_alpha=float(method["kl_alpha"]),
        free_nats=float(method["free_nats"]),
        kl_weight=float(method["kl_weight"]),
        rec_reduction=str(method["rec_reduction"]),
        rec_hidden=str(method["rec_hidden"]),
        gamma=float(cfg["gamma"]),
        td_lambda=float(cfg["td_lambda"]),
        diag_episodes=int(method["diag_episodes"]),
    )


def init_params(nets: MmsaNets, key: jax.Array) -> dict:
    spec, n = nets.spec, nets.spec.n_agents
    k_agent, k_mixer, k_sale, k_model = jax.random.split(key, 4)
    x = jnp.zeros((1, n, input_dim(spec.obs_dim, spec.n_actions, n)))
    obs = jnp.zeros((1, n, spec.obs_dim))
    onehot = jnp.zeros((1, n, spec.n_actions))
    params = {"sale": {}, "model": {}}
    if nets.obs_sale is not None:
        params["sale"] = nets.obs_sale.init(k_sale, obs, onehot)
    x = jnp.concatenate([x, agent_features(nets, params["sale"], obs)], -1)
    params["agent"] = nets.agent.init(k_agent, jnp.zeros((1, n, nets.agent.hidden_dim)), x)
    params["mixer"] = nets.mixer.init(k_mixer, jnp.zeros((1, n)), jnp.zeros((1, nets.mixer_input_dim)))
    if nets.model is not None:
        h = jnp.zeros((1, n * nets.agent.hidden_dim))
        params["model"] = nets.model.init(k_model, h, jnp.zeros((1, n * spec.n_actions)))
    return params


def build(spec: EnvSpec, cfg: dict, method: dict, name: str = "mmsa") -> Algo:
    """cfg: the `algo` section; method: the `mmsa` group (configs/algo/mmsa.yaml)."""
    nets = make_nets(spec, cfg, method)
    n, n_actions = spec.n_agents, spec.n_actions
    epsilon = epsilon_settings(cfg)
    clip = float(cfg["grad_norm_clip"])
    # clipped per group in update (clip_each_group): the kit's global clip is left open
    optimizer = make_optimizer(
        float(cfg["lr"]),
        float("inf"),
        float(cfg["adam_eps"]),
        kind=str(method["optimizer"]),
        rms_decay=float(method["rms_decay"]),
    )

    def init(key):
        params = init_params(nets, key)
        targets = {"agent": params["agent"], "mixer": params["mixer"]}
        return MmsaState(
            params, targets, params["sale"], params["sale"], optimizer.init(params), jnp.int32(0)
        )

    def act(ts, actor, obs, avail, key, env_steps, greedy):
        x = agent_inputs(obs, actor.last_action, n_actions)
        x = jnp.concatenate([x, agent_features(nets, ts.frozen_sale, obs)], -1)
        hidden, q = nets.agent.apply(ts.params["agent"], actor.hidden, x)
        actions = explore_or_exploit(key, q, avail, greedy, env_steps, epsilon)
        return actions, RecurrentActor(hidden, actions)

    def update(ts, batch: EpisodeBatch, key, ctx: UpdateContext):
        del ctx  # no phases: every part trains from the first update
        (loss, terms), grads = jax.value_and_grad(loss_terms, argnums=1, has_aux=True)(
            nets, ts.params, ts, batch, key
        )
        clipped = clip_each_group(grads, clip)
        params, opt_state = apply_gradients(optimizer, ts.params, ts.opt_state, clipped)
        norms = {f"grad_norm_{k}": optax.tree.norm(g) for k, g in grads.items() if jax.tree.leaves(g)}
        metrics = {"loss": loss, **terms, **norms}
        return ts.replace(params=params, opt_state=opt_state, updates=ts.updates + 1), metrics

    def target_update(ts):
        # TD7: the target network reads the frozen encoders it was trained with
        return ts.replace(
            target_params={"agent": ts.params["agent"], "mixer": ts.params["mixer"]},
            frozen_sale_target=ts.frozen_sale,
            frozen_sale=ts.params["sale"],
        )

    def joint_q(ts, batch: EpisodeBatch):
        inputs = episode_inputs(batch.obs, batch.actions, n_actions)
        x = jnp.concatenate([inputs, agent_features(nets, ts.frozen_sale, batch.obs)], -1)
        hs, q = unroll(nets.agent, ts.params["agent"], x, with_hidden=True)
        mixer_in = batch.state
        if nets.model is not None:
            mean, _ = nets.model.apply(
                ts.params["model"], hs.reshape(*hs.shape[:2], -1), method=MmsaWorldModel.infer
            )
            rollout = imagined_rollout(nets.model, ts.params["model"], mean, nets.horizon)
            mixer_in = nets.mixer_conditioning(batch.state, rollout)
        mix = lambda c, m: nets.mixer.apply(ts.params["mixer"], c, m)  # noqa: E731
        q = q[:, :-1]
        return joint_q_values(q, mixer_in[:, :-1], all_joint_actions(n, n_actions), mix), q

    return Algo(
        name=name,
        init=init,
        init_actor=lambda n_envs: init_recurrent_actor(n_envs, n, nets.agent.hidden_dim),
        act=act,
        update=update,
        target_update=target_update,
        joint_q=joint_q,
    )
