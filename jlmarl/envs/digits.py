"""Digit classification game (`digits_game`; seed 000, section 7.2 and appendix E).

A digit image is drawn uniformly at reset and stays fixed for the episode. At every
step each agent sees the image through its own fresh random mask (each pixel kept
with probability keep_prob, default 0.2) together with the mask itself:
obs_i = [image * mask_i, mask_i]. Actions are the 10 labels; the shared reward of
a step is the fraction of agents whose label is right. Episodes last
episode_limit steps (default 8, a time limit).

Observed: the masked pixels and which pixels are shown. Hidden: the rest of the
image (the global state, flattened, in [0, 1]) and the label. The paper uses
MNIST; nothing may be downloaded here, so the default data is scikit-learn's
bundled 8x8 digits (1797 images, state_dim 64); `data` may instead name a local
MNIST .npz (keys x_train/y_train, or x/y; 28x28 images, state_dim 784).
`subset` picks a fixed 80/20 split (train/test) of the images, or all of them.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jlmarl.envs.base import EnvSpec, make_timestep
from jlmarl.envs.registry import register

N_LABELS = 10
SUBSETS = ("all", "train", "test")


@struct.dataclass
class DigitsState:
    image: jax.Array  # int32 [], index of the image
    t: jax.Array  # int32 [], steps taken


def load_images(data: str = "sklearn") -> tuple[np.ndarray, np.ndarray]:
    """(images float32 [N, P] in [0, 1], labels int32 [N]) from sklearn's digits or a local .npz."""
    if data == "sklearn":
        from sklearn.datasets import load_digits

        digits = load_digits()
        return (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int32)
    path = Path(data)
    if path.suffix != ".npz" or not path.is_file():
        raise ValueError(
            f"env.data={data!r} is neither 'sklearn' nor an existing local .npz file; "
            "give the path of an MNIST .npz (keys x_train/y_train) or use data=sklearn"
        )
    with np.load(path) as f:
        keys = ("x_train", "y_train") if "x_train" in f else ("x", "y")
        if not set(keys) <= set(f.files):
            raise ValueError(f"env.data={data}: expected arrays x_train/y_train (or x/y), found {f.files}")
        x, y = f[keys[0]], f[keys[1]]
    x = x.reshape(len(x), -1).astype(np.float32)
    return (x / 255.0 if x.max() > 1.0 else x), y.astype(np.int32)


def split_indices(n: int, subset: str) -> np.ndarray:
    """A fixed 80/20 split of n images (the same for every run)."""
    if subset not in SUBSETS:
        raise ValueError(f"env.subset must be one of {SUBSETS}, got {subset!r}")
    order = np.random.default_rng(0).permutation(n)
    cut = int(0.8 * n)
    return {"all": np.arange(n), "train": np.sort(order[:cut]), "test": np.sort(order[cut:])}[subset]


class DigitsGame:
    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        n_agents: int = 2,
        episode_limit: int = 8,
        keep_prob: float = 0.2,
        name: str = "digits_game",
    ):
        if not 0.0 < keep_prob <= 1.0:
            raise ValueError(f"env.keep_prob must be in (0, 1], got {keep_prob}")
        if images.ndim != 2 or len(images) != len(labels) or len(images) == 0:
            raise ValueError(
                f"{name}: images must be [N, P] with N labels, got {images.shape}, {labels.shape}"
            )
        self.images, self.labels = jnp.asarray(images, jnp.float32), jnp.asarray(labels, jnp.int32)
        self.keep_prob = float(keep_prob)
        pixels = images.shape[1]
        self.spec = EnvSpec(
            name=name,
            n_agents=int(n_agents),
            obs_dim=2 * pixels,
            state_dim=pixels,
            n_actions=N_LABELS,
            episode_limit=int(episode_limit),
            info_keys=("accuracy",),
            fixed_length=True,  # every game lasts episode_limit steps
        )

    def _timestep(self, key, s: DigitsState, reward, accuracy, done):
        image = self.images[s.image]
        masks = jax.random.bernoulli(key, self.keep_prob, (self.spec.n_agents, image.shape[0]))
        masks = masks.astype(jnp.float32)
        obs = jnp.concatenate([image * masks, masks], axis=-1)
        avail = jnp.ones((self.spec.n_agents, N_LABELS), jnp.bool_)
        return make_timestep(self.spec, obs, image, avail, reward, False, done, info={"accuracy": accuracy})

    def label(self, s: DigitsState) -> jax.Array:
        return self.labels[s.image]

    def reset(self, key: jax.Array):
        k_image, k_mask = jax.random.split(key)
        s = DigitsState(jax.random.randint(k_image, (), 0, self.images.shape[0]), jnp.int32(0))
        return s, self._timestep(k_mask, s, 0.0, 0.0, False)

    def step(self, key: jax.Array, s: DigitsState, actions: jax.Array):
        accuracy = (actions == self.labels[s.image]).astype(jnp.float32).mean()
        s = s.replace(t=s.t + 1)
        return s, self._timestep(key, s, accuracy, accuracy, s.t >= self.spec.episode_limit)


def digits_game(
    n_agents: int = 2,
    episode_limit: int = 8,
    keep_prob: float = 0.2,
    data: str = "sklearn",
    subset: str = "all",
) -> DigitsGame:
    images, labels = load_images(data)
    idx = split_indices(len(images), subset)
    return DigitsGame(images[idx], labels[idx], n_agents, episode_limit, keep_prob)


register("digits_game", digits_game)
