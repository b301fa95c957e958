"""VDFD: value decomposition with a disentangled world model (seed 004, section 4;
our reading: specs/vdfd.md).

A GRU agent (QMIX's, parameters shared, one-hot ids) acts alone; in training a world
model of three branches over the agent graph (jlmarl.nets.gala) feeds a QMIX mixer
on [s_t, sg(O^Rollout_t)]. Per node (agent) i and step t, latents of size d:

  action-conditioned  posterior q(ŝ_t | h_t) = GALA encoder over the agents' GRU states
                      prior VAE p(ŝ_t | ŝ_{t-1}, a_{t-1}) = Gaussian head per node, its
                      decoder reconstructs [ŝ_{t-1}, onehot(a_{t-1})]; GALA decoder ŝ_t -> h_t
  action-free         posterior q(v̂_t | v̂_{t-1}, o_t) = GALA encoder over [v̂_{t-1}, o_t]
                      (a scan over time); prior VAE p(v̂_t | v̂_{t-1}), its decoder
                      reconstructs v̂_{t-1}; GALA decoder v̂_t -> [v̂_{t-1}, o_t]
  static              GALA auto-encoder over each agent's running mean of o_{1:t}
  output              O_t = M^ac mean_i ŝ_t + M^af mean_i v̂_t + M^st mean_i z_t
  imagination         j steps from every (b, t): a' = the agents' greedy joint action
                      (their own Q head on h among the actions available at t),
                      ŝ_{k+1} ~ prior(ŝ_k, a'), h_{k+1} = GALA decoder(ŝ_{k+1});
                      v̂_{k+1} ~ prior(v̂_k); O^Rollout_t = concat(O_t, Ô_{t+1}, ..., Ô_{t+j})
  loss                L = β1 L_ac^KL + β2 L_ac^REC + β3 L_af^KL + β4 L_af^REC + β5 L_st + L_TD
                      L_x^KL = KL(prior || N(0, I)) + KL(q || prior) (balanced, alpha)

Choices where the paper leaves room (each in one place below):
  * The world-model losses are functions of the world model's parameters only (the
    paper's L(θ) beside L^TD(φ)): h_t enters as sg(h_t), and the TD loss reaches the
    world model through nothing (world_model.mixer_inputs stops the rollout's gradient).
  * The prior reads sg(ŝ_{t-1}) / sg(v̂_{t-1}): it models the posterior's transitions;
    the posterior is moved by its KL and its GALA reconstruction. The action-free
    posterior's own recurrent input v̂_{t-1} is a constant for its gradient too (one-step
    truncation), which lets its backward pass run over all steps at once.
  * L_af^REC includes the prior's reconstruction of v̂_{t-1} (the paper's equation;
    the spec lists only GALA's term). Reconstructions are the paper's MSE (mean over
    features; the spec writes GALA's ½‖X − X̂‖², a sum), averaged over agents and real
    steps; the prior's reconstruction of [ŝ_{t-1}, a_{t-1}] is two MSEs, as the paper has.
  * Imagination holds the graph and the available actions of step t; latents are drawn
    (the paper's ~), the static branch is held (it has no transition).
  * KL balancing's alpha (the paper gives the formula alpha KL(q || sg p) + (1 - alpha)
    KL(sg q || p) and says the KL is "minimized faster with respect to the prior than the
    posterior", as in DreamerV2, which it cites, but no value) defaults to 0.2: the prior's
    term weighs 0.8, DreamerV2's setting. The spec's 0.8 in this formula does the opposite;
    on smax_3m it left the prior's 1-step prediction further from the posterior
    (benchmarks/results/vdfd_wm_smax_3m_probes/).
  * `prior=false` (VDF-POST): no prior, KL(q || N(0, I)), no imagination (nothing to
    roll forward), so the mixer reads [s_t, O_t]; its k-step "prediction" in the
    diagnostics is its reconstruction of step t.
  * The diagnostics (wm_{ac,af}_{model,still,mean}_k; mean: the best constant guess, which a
    collapsed branch reaches) predict the real next steps, so they roll
    the priors' means from the posterior means along the recorded actions (as MMSA's),
    not the mixer's imagination, whose draws and greedy actions need not be the ones taken.
    wm_{ac,af}_model_0, on the same scale, is the decoding of step t from its own posterior
    draw: the floor a k-step prediction decoded by the same decoder starts from. They
    read the batch's first `diag_episodes` episodes (16; all 128 of a batch cost 7% of
    an update).
  * `posterior=mlp` (VDF-SV): the action-conditioned and action-free posteriors and
    their decoders run on the empty graph, where GALA's filters are the identity: the
    same layers as node-wise fully connected networks (parameters independent of n).

The graph: `graph=full` links every agent; `graph=visibility` links i and j when either
sees the other this step (SMAX's ally_visibility; sight ranges differ by unit type, so
A ∨ Aᵀ before GALA's normalisation), and isolates dead agents. The paper does not say
which graph it used. On a complete graph GALA keeps only the team mean (jlmarl.nets.gala):
every agent's posterior mean is the same (the decoder maps it to one h for all agents,
zero at n = 3), so all the branch can tell agents apart by is its draws' noise and, in
the prior, each agent's own action. Visibility graphs are complete in most steps of
small maps (benchmarks/gala_graphs.py); `posterior=mlp` is the graph-free form.

Acting is decentralised: each agent's own GRU on its own observation; the world
model, the graph and the mixer are training-only.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jlmarl.algos.q_learning import (
    QLearnerState,
    apply_gradients,
    double_q_td_loss,
    epsilon_settings,
    init_recurrent_actor,
    make_optimizer,
    recurrent_act,
)
from jlmarl.core.algo import Algo, AlgoConfigError, UpdateContext
from jlmarl.core.buffer import EpisodeBatch
from jlmarl.envs.base import EnvSpec
from jlmarl.nets import world_model as wm
from jlmarl.nets.agents import RNNAgent, episode_inputs, input_dim, masked_argmax
from jlmarl.nets.gala import GALADecoder, GALAEncoder
from jlmarl.nets.gaussian import GaussianHead, bounded_logvar, kl_balanced, kl_diag, kl_std_normal, sample
from jlmarl.nets.mixers import QMixer
from jlmarl.nets.mlp import MLP
from jlmarl.nets.recurrent import unroll

VISIBILITY = "ally_visibility"


@dataclasses.dataclass(frozen=True)
class Settings:
    """The vdfd group and the TD keys, read once (configs/algo/vdfd.yaml)."""

    latent_dim: int = 16
    width: int = 64
    horizon: int = 3
    graph: str = "full"
    masks: tuple[float, float, float] = (1.0, 1.0, 1.0)  # M^ac, M^af, M^st
    betas: tuple[float, float, float, float, float] = (1.0, 1.0, 1.0, 1.0, 1.0)  # β1..β5
    kl_alpha: float | None = 0.2  # None: plain KL (no balancing)
    prior: bool = True
    posterior: str = "gala"
    gamma: float = 0.99
    td_lambda: float = 0.0
    diag_episodes: int = 16

    @classmethod
    def from_cfg(cls, cfg: dict, method: dict) -> Settings:
        m = method
        return cls(
            latent_dim=int(m["latent_dim"]),
            width=int(m["wm_hidden"]),
            horizon=int(m["horizon"]),
            graph=str(m["graph"]),
            masks=(float(m["mask_ac"]), float(m["mask_af"]), float(m["mask_st"])),
            betas=tuple(float(m[f"beta_{k}"]) for k in ("ac_kl", "ac_rec", "af_kl", "af_rec", "st")),
            kl_alpha=float(m["kl_alpha"]) if m["kl_balancing"] else None,
            prior=bool(m["prior"]),
            posterior=str(m["posterior"]),
            gamma=float(cfg["gamma"]),
            td_lambda=float(cfg["td_lambda"]),
            diag_episodes=int(m["diag_episodes"]),
        )

    @property
    def rollout_dim(self) -> int:
        """Size of O^Rollout_t: O_t and one Ô per imagined step (none without a prior)."""
        return self.latent_dim * (1 + (self.horizon if self.prior else 0))


# ---- the graph --------------------------------------------------------------------


def full_adjacency(n: int) -> jax.Array:
    """Every agent linked to every other: float [n, n], zero diagonal."""
    return 1.0 - jnp.eye(n, dtype=jnp.float32)


def visibility_adjacency(visibility: jax.Array) -> jax.Array:
    """visibility bool [..., n, n] ([i, j] = i sees j, diagonal = i alive) -> float A
    [..., n, n]: A_ij = (i sees j or j sees i), both alive, i != j. Sight ranges differ
    by unit type, so the relation is symmetrised before GALA normalises it."""
    n = visibility.shape[-1]
    alive = jnp.diagonal(visibility, axis1=-2, axis2=-1)  # [..., n]
    seen = visibility | jnp.swapaxes(visibility, -1, -2)
    linked = seen & alive[..., :, None] & alive[..., None, :] & ~jnp.eye(n, dtype=bool)
    return linked.astype(jnp.float32)


def batch_adjacency(batch: EpisodeBatch, graph: str) -> jax.Array:
    """The agent graph of every observation of the batch: float [B, T+1, n, n]."""
    b, t1, n = batch.obs.shape[:3]
    if graph == "visibility":
        return visibility_adjacency(batch.extras[VISIBILITY])
    return jnp.broadcast_to(full_adjacency(n), (b, t1, n, n))


# ---- losses and small pieces (pure, module level) ---------------------------------


def observed_steps(mask: jax.Array) -> jax.Array:
    """mask [B, T] of steps taken -> bool [B, T+1] of real observations (o_0 of a
    non-empty episode, then o_{t+1} for every step t taken)."""
    return jnp.concatenate([mask[:, :1], mask], axis=1)


def mse(x: jax.Array, y: jax.Array) -> jax.Array:
    """The paper's MSE per node: mean over the feature axis, [..., D] -> [...]."""
    return jnp.mean((x - y) ** 2, axis=-1)


def masked_mean(x: jax.Array, valid: jax.Array) -> jax.Array:
    """x [B, T+1, n] per node, valid [B, T+1] -> mean over agents and real steps."""
    w = jnp.broadcast_to(valid[..., None], x.shape).astype(x.dtype)
    return (x * w).sum() / jnp.maximum(w.sum(), 1.0)


def shift_in_time(x: jax.Array) -> jax.Array:
    """x_{t-1} at t, zeros at t = 0: [B, T+1, ...] -> [B, T+1, ...]."""
    return jnp.concatenate([jnp.zeros_like(x[:, :1]), x[:, :-1]], axis=1)


def running_mean(obs: jax.Array, valid: jax.Array) -> jax.Array:
    """Each agent's mean observation over the real steps so far: obs [B, T+1, n, O],
    valid [B, T+1] -> [B, T+1, n, O] (held after the episode ends)."""
    w = valid.astype(obs.dtype)[..., None, None]
    count = jnp.maximum(jnp.cumsum(w, axis=1), 1.0)
    return jnp.cumsum(obs * w, axis=1) / count


def masked_output(o_ac: jax.Array, o_af: jax.Array, z_static: jax.Array, masks) -> jax.Array:
    """O = M^ac o^ac + M^af o^af + M^st z^static (scalar masks); a mask of 0 drops its
    branch exactly, whatever the branch holds (it is not even read)."""
    terms = [m * o for m, o in zip(masks, (o_ac, o_af, z_static), strict=True) if m != 0.0]
    return sum(terms[1:], terms[0]) if terms else jnp.zeros_like(o_ac)


def branch_kl(posterior, prior, alpha: float | None) -> jax.Array:
    """L^KL of one branch per node: KL(prior || N(0, I)) + KL(q || prior), the second
    balanced by alpha (None: plain); without a prior (VDF-POST) KL(q || N(0, I)).
    posterior, prior: (mu, logvar) each [..., d] (prior may be None) -> [...]."""
    if prior is None:
        return kl_std_normal(*posterior)
    to_prior = kl_diag(*posterior, *prior) if alpha is None else kl_balanced(*posterior, *prior, alpha)
    return kl_std_normal(*prior) + to_prior


def weighted_loss(td: jax.Array, terms: dict[str, jax.Array], betas) -> jax.Array:
    """L = β1 L_ac^KL + β2 L_ac^REC + β3 L_af^KL + β4 L_af^REC + β5 L_st + L_TD."""
    names = ("ac_kl", "ac_rec", "af_kl", "af_rec", "st_rec")
    return td + sum(b * terms[k] for b, k in zip(betas, names, strict=True))


def _gaussian(out: jax.Array) -> tuple[jax.Array, jax.Array]:
    d = out.shape[-1] // 2
    return out[..., :d], bounded_logvar(out[..., d:])


def reconstruction_error(decoded: jax.Array, real: jax.Array, valid: jax.Array) -> jax.Array:
    """decoded, real [B, T+1, n, D], valid [B, T+1] -> the squared error summed over agents
    and features, averaged over real steps: k = 0 on the scale of _prediction_errors."""
    b, t1 = real.shape[:2]
    err = ((decoded - real) ** 2).reshape(b, t1, -1).sum(-1)
    w = valid.astype(err.dtype)
    return (err * w).sum() / jnp.maximum(w.sum(), 1.0)


def _prediction_errors(predicted: jax.Array, real: jax.Array, valid: jax.Array) -> dict:
    """world_model.prediction_errors over per-agent features flattened, with the time
    axis padded so that every k gets its keys even on episodes shorter than the horizon
    (padding is invalid and counts for nothing)."""
    k, b, t1 = predicted.shape[:3]
    predicted, real = predicted.reshape(k, b, t1, -1), real.reshape(b, t1, -1)
    pad = max(0, k + 1 - t1)
    if pad:
        predicted = jnp.pad(predicted, ((0, 0), (0, 0), (0, pad), (0, 0)))
        real = jnp.pad(real, ((0, 0), (0, pad), (0, 0)))
        valid = jnp.pad(valid, ((0, 0), (0, pad)))
    return wm.prediction_errors(predicted, real, valid)


# ---- the world model --------------------------------------------------------------


class WorldModel:
    """The three branches' networks (GALA blocks, Gaussian heads, MLPs) and passes."""

    def __init__(self, spec: EnvSpec, agent_hidden: int, s: Settings):
        d, w = s.latent_dim, s.width
        self.spec, self.settings, self.agent_hidden = spec, s, agent_hidden
        self.nets = {
            "ac_posterior": GALAEncoder((w, 2 * d)),
            "ac_decoder": GALADecoder((w, agent_hidden)),
            "af_posterior": GALAEncoder((w, 2 * d)),
            "af_decoder": GALADecoder((w, d + spec.obs_dim)),
            "st_encoder": GALAEncoder((w, d)),
            "st_decoder": GALADecoder((w, spec.obs_dim)),
        }
        if s.prior:
            self.nets |= {
                "ac_prior": GaussianHead(d, (w,)),
                "ac_prior_decoder": MLP((w, d + spec.n_actions)),
                "af_prior": GaussianHead(d, (w,)),
                "af_prior_decoder": MLP((w, d)),
            }

    def init(self, key: jax.Array) -> dict:
        d, n, o, a = self.settings.latent_dim, self.spec.n_agents, self.spec.obs_dim, self.spec.n_actions
        adj = full_adjacency(n)
        x = lambda dim: jnp.zeros((n, dim))  # noqa: E731
        inputs = {
            "ac_posterior": (x(self.agent_hidden), adj),
            "ac_decoder": (x(d), adj),
            "af_posterior": (x(d + o), adj),
            "af_decoder": (x(d), adj),
            "st_encoder": (x(o), adj),
            "st_decoder": (x(d), adj),
            "ac_prior": (x(d + a),),
            "ac_prior_decoder": (x(d),),
            "af_prior": (x(d),),
            "af_prior_decoder": (x(d),),
        }
        keys = jax.random.split(key, len(self.nets))
        return {
            name: net.init(k, *inputs[name]) for (name, net), k in zip(self.nets.items(), keys, strict=True)
        }

    def apply(self, params: dict, name: str, *args):
        return self.nets[name].apply(params[name], *args)

    def infer(self, params, hs, obs, last_actions, valid, adj, key):
        """Posterior pass over a batch of episodes and each branch's loss terms.

        hs [B, T+1, n, H] (constants here), obs [B, T+1, n, O], last_actions onehot
        [B, T+1, n, A] (a_{t-1}; zeros at t = 0), valid bool [B, T+1], adj [B, T+1, n, n].
        Returns (terms {ac_kl, ac_rec, af_kl, af_rec, st_rec}, latents {s, v, z}, each
        [B, T+1, n, d], decoded {h, x_af} reconstructions of step t, x_af [B, T+1, n, d+O]:
        the action-free decoder's targets [v̂_{t-1}, o_t])."""
        s = self.settings
        k_ac, k_af, k_ac_prior, k_af_prior = jax.random.split(key, 4)
        post_adj = jnp.zeros_like(adj) if s.posterior == "mlp" else adj
        sg = jax.lax.stop_gradient

        # Action-conditioned: q(ŝ_t | h_t), GALA back to h_t, prior VAE on (ŝ_{t-1}, a_{t-1}).
        ac_post = _gaussian(self.apply(params, "ac_posterior", hs, post_adj))
        s_hat = sample(k_ac, *ac_post)
        h_rec = self.apply(params, "ac_decoder", s_hat, post_adj)
        ac_rec = mse(hs, h_rec)  # [B, T+1, n]
        ac_prior = None
        if s.prior:
            prior_in = jnp.concatenate([shift_in_time(sg(s_hat)), last_actions], -1)
            ac_prior = self.apply(params, "ac_prior", prior_in)
            prior_rec = self.apply(params, "ac_prior_decoder", sample(k_ac_prior, *ac_prior))
            d = s.latent_dim
            ac_rec = (
                ac_rec + mse(prior_in[..., :d], prior_rec[..., :d]) + mse(last_actions, prior_rec[..., d:])
            )

        # Action-free: q(v̂_t | v̂_{t-1}, o_t) is recurrent in v̂. Its recurrent input is a
        # constant for the gradient (one-step truncation), so the chain of draws runs
        # forward only (a scan on frozen parameters) and the posterior is then evaluated
        # at every step at once, with gradient, on the same inputs and keys.
        b, t1, n = obs.shape[:3]
        keys_v = jax.random.split(k_af, t1)
        time_first = lambda a: jnp.swapaxes(a, 0, 1)  # noqa: E731
        frozen = sg(params)

        def af_draw(v_prev, xs):
            o_t, adj_t, k = xs
            x_t = jnp.concatenate([v_prev, o_t], -1)  # [B, n, d+O]
            v = sample(k, *_gaussian(self.apply(frozen, "af_posterior", x_t, adj_t)))
            return v, v_prev

        v0 = jnp.zeros((b, n, s.latent_dim), obs.dtype)
        _, v_prev = jax.lax.scan(af_draw, v0, (time_first(obs), time_first(post_adj), keys_v))
        x_af = jnp.concatenate([time_first(v_prev), obs], -1)  # [B, T+1, n, d+O]: [v̂_{t-1}, o_t]
        mu_v, logvar_v = _gaussian(self.apply(params, "af_posterior", x_af, post_adj))
        v_hat = jax.vmap(sample, in_axes=(0, 1, 1), out_axes=1)(keys_v, mu_v, logvar_v)
        x_af_rec = self.apply(params, "af_decoder", v_hat, post_adj)
        af_rec = mse(x_af, x_af_rec)
        af_prior = None
        if s.prior:
            v_before = x_af[..., : s.latent_dim]  # v̂_{t-1}, a constant
            af_prior = self.apply(params, "af_prior", v_before)
            v_rec = self.apply(params, "af_prior_decoder", sample(k_af_prior, *af_prior))
            af_rec = af_rec + mse(v_before, v_rec)

        # Static: a GALA auto-encoder over each agent's running mean of its observations.
        mean_obs = running_mean(obs, valid)
        z = self.apply(params, "st_encoder", mean_obs, adj)
        st_rec = mse(mean_obs, self.apply(params, "st_decoder", z, adj))

        terms = {
            "ac_kl": masked_mean(branch_kl(ac_post, ac_prior, s.kl_alpha), valid),
            "ac_rec": masked_mean(ac_rec, valid),
            "af_kl": masked_mean(branch_kl((mu_v, logvar_v), af_prior, s.kl_alpha), valid),
            "af_rec": masked_mean(af_rec, valid),
            "st_rec": masked_mean(st_rec, valid),
        }
        latents = {"s": s_hat, "v": v_hat, "z": z, "s_mean": ac_post[0], "v_mean": mu_v}
        return terms, latents, {"h": h_rec, "x_af": x_af_rec, "x_af_target": x_af}

    def imagine(self, params, q_head, start, avail, adj, key):
        """`horizon` imagined steps from every (b, t). start: {s, v} [B, T+1, n, d] and
        h [B, T+1, n, H]; q_head: h -> Q [.., n, A] (the agents' own head); avail
        [B, T+1, n, A] and adj held at step t. Returns stacked over k = 1..j:
        (mean_i ŝ, mean_i v̂) [j, B, T+1, d] each (the decoded h only picks the next
        greedy action)."""
        post_adj = jnp.zeros_like(adj) if self.settings.posterior == "mlp" else adj
        n_actions = self.spec.n_actions

        def step(carry):
            s_hat, h, v_hat, k = carry
            k, k_s, k_v = jax.random.split(k, 3)
            greedy = masked_argmax(q_head(h), avail)  # [B, T+1, n]
            prior_in = jnp.concatenate([s_hat, jax.nn.one_hot(greedy, n_actions, dtype=s_hat.dtype)], -1)
            s_next = sample(k_s, *self.apply(params, "ac_prior", prior_in))
            h_next = self.apply(params, "ac_decoder", s_next, post_adj)
            v_next = sample(k_v, *self.apply(params, "af_prior", v_hat))
            return (s_next, h_next, v_next, k), (s_next.mean(-2), v_next.mean(-2))

        return wm.imagine(step, (start["s"], start["h"], start["v"], key), self.settings.horizon)

    def predict_recorded(self, params, start, actions, adj):
        """The diagnostics' k-step predictions: from the posterior means start {s, v}
        [B, T+1, n, d], the priors' means along the recorded actions (int [B, T, n]),
        decoded: h [j, B, T+1, n, H] and [v̂_{t+k-1}, o_{t+k}] [j, B, T+1, n, d+O]. Entries
        past an episode's end are garbage that prediction_errors leaves out."""
        post_adj = jnp.zeros_like(adj) if self.settings.posterior == "mlp" else adj
        j = self.settings.horizon
        taken = jax.nn.one_hot(wm.actions_ahead(actions, j), self.spec.n_actions)  # [j, B, T+1, n, A]

        def step(carry):
            s_hat, v_hat, k = carry
            a = jax.lax.dynamic_index_in_dim(taken, k, keepdims=False).astype(s_hat.dtype)
            s_next, _ = self.apply(params, "ac_prior", jnp.concatenate([s_hat, a], -1))
            v_next, _ = self.apply(params, "af_prior", v_hat)
            decoded = (
                self.apply(params, "ac_decoder", s_next, post_adj),
                self.apply(params, "af_decoder", v_next, post_adj),
            )
            return (s_next, v_next, k + 1), decoded

        return wm.imagine(step, (start["s"], start["v"], jnp.int32(0)), j)


# ---- the loss of one update -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Nets:
    agent: RNNAgent
    mixer: QMixer
    world: WorldModel


def make_nets(spec: EnvSpec, cfg: dict, s: Settings) -> Nets:
    """The agent (QMIX's GRU agent), the QMIX mixer and the world model of a run."""
    agent = RNNAgent(int(cfg["hidden_dim"]), spec.n_actions)
    mixer = QMixer(spec.n_agents, int(cfg["mixing_embed_dim"]), int(cfg["hypernet_embed"]))
    return Nets(agent, mixer, WorldModel(spec, agent.hidden_dim, s))


def q_head_of(agent: RNNAgent, agent_params):
    """The agent's own Q head (its fc2 layer) as a function of h."""
    head = nn.Dense(agent.n_actions)
    return lambda h: head.apply({"params": agent_params["params"]["fc2"]}, h)


def vdfd_loss(nets: Nets, s: Settings, params, target_params, q_target_all, batch: EpisodeBatch, key):
    """(L, metrics) of one batch. params/target_params {agent, mixer, world};
    q_target_all [B, T+1, n, A] from the target agent. metrics["td_loss"] is L_TD alone."""
    k_infer, k_imagine = jax.random.split(key)
    n_actions = nets.agent.n_actions
    sg = jax.lax.stop_gradient
    inputs = episode_inputs(batch.obs, batch.actions, n_actions)
    hs, q_all = unroll(nets.agent, params["agent"], inputs, with_hidden=True)  # [B, T+1, n, H|A]
    valid = observed_steps(batch.mask)  # [B, T+1]
    adj = batch_adjacency(batch, s.graph)  # [B, T+1, n, n]
    last = jnp.concatenate([jnp.full_like(batch.actions[:, :1], -1), batch.actions], axis=1)
    last_onehot = jax.nn.one_hot(last, n_actions, dtype=batch.obs.dtype)  # zeros for -1
    terms, lat, decoded = nets.world.infer(
        params["world"], sg(hs), batch.obs, last_onehot, valid, adj, k_infer
    )

    # O_t, then the imagined Ô_{t+k}; every piece is a constant for the TD loss.
    z_mean = lat["z"].mean(-2)
    first = masked_output(lat["s"].mean(-2), lat["v"].mean(-2), z_mean, s.masks)  # [B, T+1, d]
    if s.prior:
        world, head = sg(params["world"]), q_head_of(nets.agent, sg(params["agent"]))
        start = {"s": sg(lat["s"]), "v": sg(lat["v"]), "h": sg(hs)}
        s_k, v_k = nets.world.imagine(world, head, start, batch.avail, adj, k_imagine)
        imagined = jax.vmap(lambda a, v: masked_output(a, v, z_mean, s.masks))(s_k, v_k)
        rollout = wm.rollout_feature(first, imagined)  # [B, T+1, (j+1) d]
    else:  # VDF-POST: nothing to roll forward
        rollout = first

    # The diagnostics read the batch's first diag_episodes episodes (a uniform draw from
    # the replay too): their errors are means over steps, so fewer episodes make them
    # noisier, not different, and their k-step decodings stay a small part of the update.
    e = s.diag_episodes
    hs_d, valid_d, x_real = sg(hs[:e]), valid[:e], sg(decoded["x_af_target"][:e])
    if s.prior:
        means = {"s": sg(lat["s_mean"][:e]), "v": sg(lat["v_mean"][:e])}
        h_k, x_k = nets.world.predict_recorded(world, means, batch.actions[:e], adj[:e])
    else:  # VDF-POST: no transition; the "prediction" is the reconstruction of step t
        h_k = jnp.broadcast_to(decoded["h"][:e], (s.horizon, *hs_d.shape))
        x_k = jnp.broadcast_to(decoded["x_af"][:e], (s.horizon, *x_real.shape))

    td, aux = double_q_td_loss(
        q_all,
        q_target_all,
        batch,
        wm.mixer_inputs(batch.state, rollout),
        lambda qs, m: nets.mixer.apply(params["mixer"], qs, m),
        lambda qs, m: nets.mixer.apply(target_params["mixer"], qs, m),
        s.gamma,
        s.td_lambda,
    )
    metrics = {"td_loss": td, **aux, **{f"wm_{k}": v for k, v in terms.items()}}
    errors = {
        "ac": _prediction_errors(sg(h_k), hs_d, valid_d),
        "af": _prediction_errors(sg(x_k), x_real, valid_d),
    }
    errors["ac"]["model_0"] = reconstruction_error(sg(decoded["h"][:e]), hs_d, valid_d)
    errors["af"]["model_0"] = reconstruction_error(sg(decoded["x_af"][:e]), x_real, valid_d)
    for branch, errs in errors.items():
        metrics |= {f"wm_{branch}_{k}": v for k, v in errs.items()}
    return weighted_loss(td, terms, s.betas), metrics


# ---- build ------------------------------------------------------------------------


def build(spec: EnvSpec, cfg: dict, method: dict, name: str = "vdfd") -> Algo:
    """cfg: the `algo` section; method: the `vdfd` group (configs/algo/vdfd.yaml)."""
    s = Settings.from_cfg(cfg, method)
    n, n_actions = spec.n_agents, spec.n_actions
    if s.graph == "visibility" and spec.extras_shapes.get(VISIBILITY, ((),))[0] != (n, n):
        raise AlgoConfigError(
            f"vdfd.graph=visibility needs an env that reports which agents see each other "
            f"(smax_* maps), and {spec.name} does not: use vdfd.graph=full"
        )
    nets = make_nets(spec, cfg, s)
    agent, mixer = nets.agent, nets.mixer
    epsilon = epsilon_settings(cfg)
    # RMSProp (PyMARL's QMIX, which the paper's defaults follow).
    optimizer = make_optimizer(
        float(cfg["lr"]), float(cfg["grad_norm_clip"]), float(cfg["adam_eps"]), "rmsprop"
    )

    def init(key):
        k_agent, k_mixer, k_world = jax.random.split(key, 3)
        x = jnp.zeros((1, input_dim(spec.obs_dim, n_actions, n)))
        mixer_in = jnp.zeros((1, spec.state_dim + s.rollout_dim))
        params = {
            "agent": agent.init(k_agent, jnp.zeros((1, agent.hidden_dim)), x),
            "mixer": mixer.init(k_mixer, jnp.zeros((1, n)), mixer_in),
            "world": nets.world.init(k_world),
        }
        return QLearnerState(params, params, optimizer.init(params), jnp.int32(0))

    def update(ts, batch: EpisodeBatch, key, ctx: UpdateContext):
        del ctx
        inputs = episode_inputs(batch.obs, batch.actions, n_actions)
        q_target_all = unroll(agent, ts.target_params["agent"], inputs)

        def loss_fn(params):
            return vdfd_loss(nets, s, params, ts.target_params, q_target_all, batch, key)

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(ts.params)
        params, opt_state = apply_gradients(optimizer, ts.params, ts.opt_state, grads)
        metrics = {"loss": loss, **metrics, "grad_norm": optax.tree.norm(grads)}
        return ts.replace(params=params, opt_state=opt_state, updates=ts.updates + 1), metrics

    return Algo(
        name=name,
        init=init,
        init_actor=lambda n_envs: init_recurrent_actor(n_envs, n, agent.hidden_dim),
        act=recurrent_act(agent, n_actions, epsilon),
        update=update,
        target_update=lambda ts: ts.replace(target_params=ts.params),
    )
