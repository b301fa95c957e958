"""python -m jlmarl.train algo=<algo> env=<env> [key=value ...]
python -m jlmarl.train resume=true run_dir=<existing run> [total_steps=...]

A thin driver around the compiled chunk (jlmarl.core.engine): it decides which
seeds evaluate next, writes metrics (JSON lines, optionally wandb), saves
checkpoints, draws progress, and stops loudly on non-finite losses. Everything it
needs to continue is in its checkpoints, so a resumed run writes the same
metrics as one that never stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from omegaconf import DictConfig, OmegaConf

from jlmarl import algos, allocator, envs, multirun
from jlmarl.config import ConfigError, frozen_differences, load_config, usage
from jlmarl.core import compile_cache, traced
from jlmarl.core.algo import AlgoConfigError
from jlmarl.core.buffer import buffer_init, check_buffer_fits, check_program_fits
from jlmarl.core.checkpoint import Checkpointer, CheckpointError, CheckpointSaveError, abstract_like
from jlmarl.core.engine import Engine, EngineConfig
from jlmarl.core.metrics_log import MetricsLog, short_files
from jlmarl.core.qtables import q_tables
from jlmarl.core.run_lock import LockError, RunLock
from jlmarl.core.sharding import ShardingError, init_distributed, place, seed_sharding, to_host
from jlmarl.core.wandb_sink import WandbError, WandbSink
from jlmarl.envs.host import HostEnv

EXIT_CONFIG, EXIT_NONFINITE, EXIT_HOST_ENV, EXIT_SAVE = 2, 3, 4, 5  # a signal: 128 + its number

# Fault-injection points (tests/test_faults.py, benchmarks/faults.py). FAULT_HOOKS[point]()
# runs at each named point below; from outside, JLMARL_FAULT=<point>:<action>[:<n>] does
# <action> (sigint, sigterm, sigkill, enospc; sigint*2: a second request after the first)
# at the n-th time (default 1st) the point is reached. Points: before_run_dir,
# before_compile, after_compile, after_chunk, before_save, during_save (written, not yet
# renamed into place), after_save, before_eval, before_plot.
FAULT_HOOKS: dict[str, Callable[[], None]] = {}
_fault_counts: dict[str, int] = {}


def _fault(point: str) -> None:
    if point in FAULT_HOOKS:
        FAULT_HOOKS[point]()
    where, _, rest = os.environ.get("JLMARL_FAULT", "").partition(":")
    if where != point:
        return
    action, _, nth = rest.partition(":")
    _fault_counts[point] = _fault_counts.get(point, 0) + 1
    if _fault_counts[point] != int(nth or 1):
        return
    if action == "enospc":
        raise OSError(28, os.strerror(28))
    name, _, times = action.partition("*")
    for i in range(int(times or 1)):
        time.sleep(_SAME_SIGNAL_S + 1.0 if i else 0)
        os.kill(os.getpid(), getattr(signal, name.upper()))


class NonFiniteError(RuntimeError):
    pass


class Interrupted(RuntimeError):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def build(cfg: DictConfig, sharding=None) -> Engine:
    env_kwargs = {k: v for k, v in OmegaConf.to_container(cfg.env, resolve=True).items() if k != "name"}
    env = envs.make(cfg.env.name, **env_kwargs)
    try:
        algo = algos.build(cfg.algo.name, env.spec, cfg)
    except AlgoConfigError as e:
        raise ConfigError(str(e)) from None
    return Engine(env, algo, EngineConfig.from_cfg(cfg), sharding)


def prepare_run_dir(cfg: DictConfig, say=print) -> tuple[Path, RunLock | None]:
    """Creates run_dir (or checks the existing one) and takes its lock (process 0).

    Nothing is written into a folder that is not empty and not one of our runs, or that
    holds another run (other frozen settings). A folder with this run's config and no
    checkpoint (a start that stopped before its first one) is started again from the
    beginning by the same command, with or without resume=true."""
    if cfg.run_dir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        cfg.run_dir = f"runs/{cfg.algo.name}_{cfg.env.name}_{stamp}"
    if not str(cfg.run_dir).strip():
        raise ConfigError(
            "run_dir is empty; give a folder (run_dir=runs/<name>) or leave it out for "
            "runs/<algo>_<env>_<date-time>"
        )
    run_dir = Path(cfg.run_dir)
    if jax.process_index() != 0:  # process 0 checks, locks and writes the folder
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir, None
    _check_run_dir(cfg, run_dir)  # before writing anything, even the lock
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir, say).acquire()
    try:
        # again, as the lock's owner (resume=true says so itself when it finds no checkpoint)
        if _check_run_dir(cfg, run_dir) == "restart" and not cfg.resume:
            say(
                f"jlmarl: run_dir={run_dir} holds this run without a checkpoint (an earlier start "
                "stopped before its first one); starting it again from the beginning"
            )
        if not cfg.resume:
            tmp = run_dir / ".config.yaml.tmp"  # never a half-written config.yaml
            OmegaConf.save(cfg, tmp, resolve=True)
            os.replace(tmp, run_dir / "config.yaml")
    except BaseException:
        lock.release()
        raise
    return run_dir, lock


def _has_checkpoints(run_dir: Path) -> bool:
    folder = run_dir / "checkpoints"
    return folder.is_dir() and any(p.name.isdigit() for p in folder.iterdir())


def _check_run_dir(cfg: DictConfig, run_dir: Path) -> str:
    """'new' (absent or empty), 'restart' (this run, no checkpoint yet) or 'resume';
    a ConfigError for a folder this command must not write into."""
    if not run_dir.exists():
        return "new"
    if not run_dir.is_dir():
        raise ConfigError(f"run_dir={run_dir} is a file, not a folder; choose another run_dir")
    if cfg.resume:  # load_resume_config read its config.yaml
        return "resume" if _has_checkpoints(run_dir) else "restart"
    if not [p for p in run_dir.iterdir() if not p.name.startswith((".lock", ".config.yaml"))]:
        return "new"  # empty, or only a lock/config of a start killed before writing its config
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        raise ConfigError(
            f"run_dir={run_dir} is not empty and is not a jlmarl run (no config.yaml); "
            "choose a new or empty folder"
        )
    try:
        saved = OmegaConf.load(saved_path)
        differences = frozen_differences(saved, cfg)
    except Exception as e:  # noqa: BLE001  (yaml/omegaconf errors: not a run of ours)
        raise ConfigError(
            f"run_dir={run_dir} holds an unreadable config.yaml ({e}); choose another run_dir"
        ) from None
    if differences:
        more = f" and {len(differences) - 3} more" if len(differences) > 3 else ""
        raise ConfigError(
            f"run_dir={run_dir} holds another run ({', '.join(differences[:3])}{more}); "
            "choose another run_dir"
        )
    if _has_checkpoints(run_dir):
        raise ConfigError(
            f"run_dir={run_dir} already holds this run, with checkpoints; continue it with: "
            f"python -m jlmarl.train resume=true run_dir={run_dir} (or choose another run_dir)"
        )
    return "restart"


@dataclasses.dataclass
class DriverState:
    """The Python loop's position; saved (as JSON) inside every checkpoint."""

    chunk_idx: int
    env_steps: list[int]
    next_test: list[int]
    next_checkpoint: int
    last_logged: list[int]  # env_steps of each seed's newest line, -1 before the first
    lines: list[int]  # lines written per seed
    sums: list[dict[str, float]]  # train-metric sums since each seed's last line
    counts: list[dict[str, int]]
    final: list[dict]  # each seed's newest line
    offsets: list[int]  # byte length of each seed's metrics file
    wall_s: float  # training wall time before this process (resumed runs)
    wandb_ids: list[str] | None = None

    @classmethod
    def fresh(cls, n: int) -> DriverState:
        return cls(0, [0] * n, [0] * n, 0, [-1] * n, [0] * n, [{} for _ in range(n)],
                   [{} for _ in range(n)], [{} for _ in range(n)], [0] * n, 0.0)  # fmt: skip

    def accumulate(self, k: int, metrics: dict, update_keys: tuple[str, ...]) -> None:
        trained = metrics["trained"][k] > 0
        for name, values in metrics.items():
            if name == "trained" or (name in update_keys and not trained):
                continue
            self.sums[k][name] = self.sums[k].get(name, 0.0) + float(values[k])
            self.counts[k][name] = self.counts[k].get(name, 0) + 1

    def pop_averages(self, k: int) -> dict[str, float]:
        out = {name: self.sums[k][name] / self.counts[k][name] for name in self.sums[k]}
        self.sums[k], self.counts[k] = {}, {}
        return out


def saved_view(cfg: DictConfig, carry):
    """The part of the carry a checkpoint holds (all of it unless checkpoint_buffer=false)."""
    return carry if cfg.checkpoint_buffer else carry.replace(buffer=None)


def open_checkpoints(cfg: DictConfig, run_dir: Path, carry) -> tuple[Checkpointer, Any]:
    """The run's Checkpointer and the abstract tree its checkpoints restore into."""
    abstract = abstract_like(saved_view(cfg, carry))
    return Checkpointer(run_dir, cfg.checkpoint_keep, _identity(cfg, abstract), _checkpoint_fault), abstract


def _checkpoint_fault(point: str) -> None:
    _fault(point)


def _identity(cfg: DictConfig, saved_carry) -> dict:
    shapes = jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), saved_carry)
    digest = hashlib.sha256(repr(jax.tree.leaves(shapes)).encode()).hexdigest()[:16]
    return {
        "algo": cfg.algo.name,
        "env": cfg.env.name,
        "num_seeds": cfg.num_seeds,
        "num_envs": cfg.num_envs,
        "seed": cfg.seed,
        "checkpoint_buffer": cfg.checkpoint_buffer,
        "array_shapes": digest,
    }


_hard_exit = os._exit  # the second signal's exit (tests replace it)
# One stop request often arrives twice: `timeout` passes a signal to its child and to its
# process group, and Ctrl-C reaches a run started by a wrapper from the terminal too.
# Signals this soon after the first are that same request, not the second one. Both copies
# arrive within microseconds; the window is short because the first is timed when a thread
# reads it, which a loaded machine can delay (a 1 s window swallowed real second requests).
_SAME_SIGNAL_S = 0.25


class _Signals:
    """SIGINT (exit 130) and SIGTERM (143) only set a flag: the driver stops at its next
    safe point (after the compile, a chunk, a save, the final evaluation or the plot),
    with a checkpoint. Raising from the handler instead would unwind through XLA's
    compiler (a segfault) or orbax's save (a traceback, a half-written step). A second
    signal exits at once with the same code: the newest complete checkpoint is intact
    (a save in progress is never renamed into place)."""

    def __init__(self):
        self.received: str | None = None
        self.code = 0
        self.previous = {}
        self.on_exit: list[Callable[[], None]] = []  # run before the second signal's exit
        self.first_at: float | None = None  # monotonic time of the first signal
        self.exiting = False
        self.wakeup = None

    def _is_second(self) -> bool:
        """Records a signal; True if it is a second request (see _SAME_SIGNAL_S)."""
        now = time.monotonic()
        if self.first_at is None:
            self.first_at = now
            return False
        return now - self.first_at >= _SAME_SIGNAL_S

    def _exit_now(self, signum):
        if not self.exiting:  # the watcher and the main thread may both get here: say it once
            self.exiting = True
            print(f"\n{signal.Signals(signum).name} again: exiting now", file=sys.stderr, flush=True)
        for cleanup in self.on_exit:
            try:
                cleanup()
            except Exception:  # noqa: BLE001  (exiting anyway)
                pass
        sys.stdout.flush()
        _hard_exit(128 + signum)

    def _handle(self, signum, frame):
        # The watcher below records the signal first (the C handler writes to its pipe
        # before this runs); this handler only sets the flag, or exits on a second request
        # when the main thread got to it first.
        if self.received and self._is_second():
            self._exit_now(signum)
        if not self.received:
            self.received, self.code = signal.Signals(signum).name, 128 + signum

    def _watch(self, fd: int) -> None:
        # Python runs signal handlers in the main thread between bytecodes, so a second
        # signal during a long compile or device call would wait for it to return; the C
        # handler writes each signal to this pipe at once, and this thread (XLA releases
        # the GIL while it works) exits on the second.
        while (data := os.read(fd, 1)) and data[0]:
            if data[0] in (signal.SIGINT, signal.SIGTERM):
                first = self.first_at is None
                if self._is_second():
                    self._exit_now(data[0])
                if first:
                    name = signal.Signals(data[0]).name
                    print(f"\n{name}: stopping at the next safe point (again to exit at once)", flush=True)
        os.close(fd)

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        read, write = os.pipe()
        os.set_blocking(write, False)
        self.wakeup = (read, write, signal.set_wakeup_fd(write, warn_on_full_buffer=False))
        threading.Thread(target=self._watch, args=(read,), daemon=True, name="jlmarl-signals").start()
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        if self.wakeup is not None:
            read, write, previous = self.wakeup
            signal.set_wakeup_fd(previous)
            try:
                os.write(write, b"\0")  # ends the watcher
            except OSError:  # it has ended already
                pass
            os.close(write)


def _next_multiple(steps, interval: int) -> int:
    return int(steps // interval + 1) * interval


def _check_finite(metrics: dict, names: tuple[str, ...], seeds: list[int], steps) -> None:
    trained = metrics["trained"] > 0
    for name in names:
        bad = np.flatnonzero(~np.isfinite(metrics[name]) & trained)
        if bad.size:
            k = bad[0]
            raise NonFiniteError(
                f"non-finite {name}={metrics[name][k]} in seed {seeds[k]} at env_steps {int(steps[k])}; "
                "the run stopped without checkpointing it (lower algo.lr or algo.grad_norm_clip, or check "
                "the env's rewards)"
            )


def run(cfg: DictConfig, signals: _Signals | None = None) -> dict:
    """Trains every seed of `cfg` to total_steps (continuing the run in run_dir when
    resume=true); returns the final test metrics per seed. SIGINT/SIGTERM stop it at
    the next safe point with a checkpoint (Interrupted)."""
    if signals is None:
        with _Signals() as installed:
            return run(cfg, installed)
    init_distributed(cfg)
    compile_cache.enable(cfg.get("compile_cache", "default"))
    sharding = seed_sharding(cfg.num_seeds, cfg.devices)
    engine = build(cfg, sharding)
    replay = engine.algo.replay  # on-policy learners allocate no buffer and sample no batch
    in_flight = {"num_envs": cfg.num_envs, "batch_size": cfg.batch_size if replay else 0}
    in_flight["test_episodes"] = cfg.test_episodes
    capacity = cfg.buffer_size if replay else 0
    check_buffer_fits(
        engine.env.spec, capacity, cfg.num_seeds, jax.devices()[0], episodes_in_flight=in_flight
    )
    _fault("before_run_dir")
    if signals.received:
        raise Interrupted(f"{signals.received}: stopped before the run folder was written", signals.code)
    run_dir, lock = prepare_run_dir(cfg)
    if lock is not None:
        signals.on_exit.append(lock.release)
    try:
        return _run_in(cfg, engine, sharding, run_dir, signals)
    finally:
        if lock is not None:
            lock.release()


# Settings that never reach a traced function: a run differing only in these loads the
# same saved trace (jlmarl.core.traced). Everything else is part of the key.
UNTRACED_KEYS = frozenset(
    {"run_dir", "resume", "total_steps", "progress", "log_interval_s", "plot", "compile_cache", "logger",
     "wandb", "checkpoint_interval", "checkpoint_keep"}
)  # fmt: skip


def _trace_store(cfg: DictConfig, engine: Engine, sharding, args) -> tuple[Path | None, str | None]:
    """Where the chunk's traced program is kept, and its key; (None, None) = trace it
    (compile_cache=false, a sharded run, or host callbacks, which cannot be serialised)."""
    folder = compile_cache.cache_dir(cfg.get("compile_cache", "default"))
    if folder is None or sharding is not None or isinstance(engine.env, HostEnv):
        return None, None
    settings = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in UNTRACED_KEYS}
    return folder / "traced", traced.program_key("chunk", settings, args)


def _run_in(cfg: DictConfig, engine: Engine, sharding, run_dir: Path, signals: _Signals) -> dict:
    spec, n_seeds, total = engine.env.spec, cfg.num_seeds, cfg.total_steps
    is_main = jax.process_index() == 0
    chunk_steps = cfg.num_envs * engine.algo.segment_length  # 0 for episodic learners
    if is_main and chunk_steps > cfg.test_interval:
        print(
            f"warning: test_interval={cfg.test_interval} is shorter than one {cfg.algo.name} chunk "
            f"({cfg.num_envs} envs x {engine.algo.segment_length} steps = {chunk_steps} env steps): "
            "it can evaluate only once per chunk, so some intervals get no evaluation and "
            f"jlmarl.compare refuses the run beside others; set test_interval >= {chunk_steps}",
            file=sys.stderr,
        )
    seeds = [cfg.seed + k for k in range(n_seeds)]
    carry = engine.init(engine.seed_keys(seeds))

    ckpt, abstract = open_checkpoints(cfg, run_dir, carry)
    state = DriverState.fresh(n_seeds)
    state.next_checkpoint = cfg.checkpoint_interval
    saved_chunk = None  # chunk of the newest checkpoint of this run: a chunk is saved once
    if cfg.resume:
        # A metrics file cut shorter than a checkpoint recorded is never padded: an older
        # checkpoint that fits is used, or the resume is refused.
        usable = (lambda driver: short_files(run_dir, driver["offsets"])) if is_main else None
        found = ckpt.restore_latest(abstract, set_aside=is_main, usable=usable)
        if found is None:
            print(f"jlmarl: no checkpoint in {ckpt.directory}: starting the run from the beginning")
        else:
            restored, driver, saved_chunk = found
            if not cfg.checkpoint_buffer and engine.algo.replay:  # an empty buffer, refilled first
                empty = jax.vmap(lambda _: buffer_init(spec, cfg.buffer_size))(np.arange(n_seeds))
                restored = restored.replace(buffer=place(empty, sharding))
            carry = restored
            state = DriverState(**driver)
            state.next_checkpoint = _next_multiple(min(state.env_steps), cfg.checkpoint_interval)
            print(
                f"jlmarl: resuming {run_dir} from checkpoint {saved_chunk} (env_steps {min(state.env_steps)})"
            )

    t0 = time.time()
    all_due = np.ones(n_seeds, bool)
    _fault("before_compile")
    folder, key = _trace_store(cfg, engine, sharding, (carry, np.int32(0), all_due, all_due))
    chunk = traced.compile_program(engine.chunk, (carry, np.int32(0), all_due, all_due), 1, folder, key)
    compile_s = time.time() - t0
    sizes = {"num_seeds": n_seeds, "num_envs": cfg.num_envs, "batch_size": cfg.batch_size}
    check_program_fits(getattr(chunk, "compiled", chunk), jax.devices()[0], sizes)
    _fault("after_compile")
    print(
        f"jlmarl: {cfg.algo.name} on {spec.name}, {n_seeds} seed(s) x {cfg.num_envs} envs"
        f"{f' on {sharding.mesh.size} devices' if sharding is not None else ''}; "
        f"chunk compiled in {compile_s:.1f}s{' (saved trace)' if getattr(chunk, 'loaded', False) else ''}; "
        f"malloc {allocator.active()}; run_dir={run_dir}",
        flush=True,
    )

    log = sink = progress = None
    t_start = time.time() - state.wall_s
    env_steps = np.asarray(state.env_steps, np.int64)

    # (env_steps, time) of each seed's last line in this process: rates exclude compiling
    rate_from = [(int(s), time.time()) for s in env_steps]

    def log_tests(due, test, episodes):
        for k in np.flatnonzero(due):
            now = time.time()
            record = {
                "seed": seeds[k],
                "env_steps": int(env_steps[k]),
                "episodes": int(episodes[k]),
                "wall_s": round(now - t_start, 3),
                "env_steps_per_s": (env_steps[k] - rate_from[k][0]) / max(now - rate_from[k][1], 1e-9),
                **state.pop_averages(k),
                **{name: float(v[k]) for name, v in test.items()},
            }
            if log is not None:
                log.write(k, record)
            if sink is not None:
                sink.log(k, state.lines[k], record)
            state.final[k] = record
            rate_from[k] = (int(env_steps[k]), now)
            state.last_logged[k] = int(env_steps[k])
            state.lines[k] += 1

    def checkpoint():
        nonlocal saved_chunk
        if saved_chunk == state.chunk_idx:  # e.g. a signal right after a scheduled save
            return
        state.env_steps = env_steps.tolist()
        state.wall_s = time.time() - t_start
        if log is not None:
            log.sync()  # the lines the checkpoint counts are on disk before it exists
            state.offsets = log.offsets()
        _fault("before_save")
        try:
            ckpt.save(state.chunk_idx, saved_view(cfg, carry), dataclasses.asdict(state))
        except CheckpointSaveError as e:
            raise CheckpointSaveError(
                f"{e}; free space and continue with: python -m jlmarl.train resume=true run_dir={run_dir}"
            ) from None
        saved_chunk = state.chunk_idx
        _fault("after_save")

    def stop_if_signalled():
        """At a safe point: checkpoint what was trained and stop for the signal received."""
        if not signals.received:
            return
        if state.chunk_idx > 0:
            checkpoint()
        if saved_chunk is None:
            text = (
                f"stopped before the first checkpoint; run_dir={run_dir} is kept, and the same "
                "command (with or without resume=true) starts it again from the beginning"
            )
        else:
            text = (
                f"checkpoint saved at env_steps {min(state.env_steps)} "
                f"({ckpt.directory / str(saved_chunk)}); "
                f"continue with: python -m jlmarl.train resume=true run_dir={run_dir}"
            )
        raise Interrupted(f"{signals.received}: {text}", signals.code)

    def call_chunk(train, due):
        nonlocal carry
        carry, train_m, test_m = chunk(carry, np.int32(state.chunk_idx), train, due)
        state.chunk_idx += 1
        return to_host((train_m, test_m, carry.env_steps, carry.episodes))

    try:
        stop_if_signalled()  # a signal while restoring or compiling
        log = MetricsLog(run_dir, n_seeds, truncate_to=state.offsets) if is_main else None
        if is_main and cfg.logger == "wandb":
            config = OmegaConf.to_container(cfg, resolve=True)
            sink = WandbSink(cfg, run_dir, seeds, config, state.wandb_ids)
            state.wandb_ids = sink.run_ids
        progress = _Progress(cfg, min(state.env_steps)) if is_main else None
        # The chunk trains, then evaluates. A segment learner's chunk is long (PQN: 16,384
        # env steps per seed) and its length known, so it evaluates in the chunk that
        # reaches the next multiple of test_interval, not in the one after: each
        # evaluation then lands in the interval it was due for (jlmarl.compare's grid).
        while (env_steps < total).any():
            training = env_steps < total  # a seed at its budget is frozen, not trained on
            due = (env_steps + chunk_steps >= state.next_test) & training
            train_m, test_m, steps, episodes = call_chunk(training, due)
            try:
                _check_finite(train_m, engine.metric_names, seeds, steps)
            except NonFiniteError as e:
                good = ckpt.steps()
                where = f"{ckpt.directory / str(good[-1])}" if good else "none yet"
                raise NonFiniteError(f"{e}; last good checkpoint: {where}") from None
            for k in np.flatnonzero(env_steps < total):
                state.accumulate(k, train_m, engine.metric_names)
            state.next_test = np.where(
                due, ((env_steps + chunk_steps) // cfg.test_interval + 1) * cfg.test_interval, state.next_test
            ).tolist()
            env_steps = steps.astype(np.int64)
            if due.any():
                log_tests(due, test_m, episodes)
            if progress is not None:
                progress.update(env_steps, state.final)
            if env_steps.min() >= state.next_checkpoint:
                checkpoint()
                state.next_checkpoint = _next_multiple(env_steps.min(), cfg.checkpoint_interval)
            _fault("after_chunk")
            stop_if_signalled()
        # A last evaluation for every seed whose newest line is older than its final params.
        due = np.array([state.last_logged[k] != env_steps[k] for k in range(n_seeds)])
        if due.any():
            _fault("before_eval")
            _, test_m, _, episodes = call_chunk(np.zeros(n_seeds, bool), due)
            log_tests(due, test_m, episodes)
        checkpoint()
        stop_if_signalled()
    finally:
        for closer in (log, sink, progress, engine.env):
            if hasattr(closer, "close"):  # host envs stop their worker processes
                closer.close()

    if hasattr(engine.env, "payoff") and engine.algo.joint_q is not None:
        tables = q_tables(engine, carry, cfg.test_episodes, jax.random.PRNGKey(cfg.seed))
        if is_main:
            (run_dir / "q_tables.json").write_text(json.dumps(tables, indent=1))
    _fault("before_plot")
    if is_main and cfg.plot:
        _plot_curves(run_dir)
    stop_if_signalled()  # the run has finished and its final checkpoint is saved
    summary = {
        "run_dir": str(run_dir),
        "compile_s": compile_s,
        "wall_s": time.time() - t_start,
        "seeds": state.final,
    }
    if is_main:
        _print_summary(summary, spec.info_keys)
    return summary


def _run_sweep_member(overrides: list[str], signals: _Signals) -> dict:
    """One combination of a sweep (its run_dir= comes last): resumed where it has a checkpoint."""
    run_dir = Path(overrides[-1].partition("=")[2])
    resume = ["resume=true"] if _has_checkpoints(run_dir) else []
    return run(load_config([*overrides, *resume]), signals)


def _compare_sweep(run_dirs: list[Path], out: Path) -> dict:
    from jlmarl.analysis.report import compare  # rliable takes a second to import: only here

    return compare([(d, None) for d in run_dirs], out)


def _plot_curves(run_dir: Path) -> None:
    from jlmarl.core.metrics_log import read_run
    from jlmarl.plot import PlotError, default_metric, plot_runs

    try:
        runs = [read_run(run_dir)]  # a damaged line is skipped, with a warning naming it
        plot_runs([run_dir], default_metric([run_dir], runs), run_dir / "curves.png", runs)
    except PlotError as e:
        print(f"warning: no curves.png: {e}")
    except Exception as e:  # noqa: BLE001  (a finished run is never lost to a plot)
        first = (str(e).strip().splitlines() or [""])[0]
        print(f"warning: no curves.png: {type(e).__name__}: {first}")


class _Progress:
    """A tqdm bar on a terminal; otherwise one plain line per chunk, at most one
    every `log_interval_s` seconds (weeks-long runs would write millions)."""

    def __init__(self, cfg, start_steps: int):
        self.cfg, self.total = cfg, cfg.total_steps
        self.bar = None
        self.last = (time.time(), start_steps)
        self.printed_at = -math.inf
        if cfg.progress and sys.stdout.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=self.total, initial=start_steps, unit="step", unit_scale=True, dynamic_ncols=True
            )

    @staticmethod
    def _test_text(final: list[dict]) -> str:
        logged = [r for r in final if r]
        if not logged:
            return ""
        text = f"test_return {np.mean([r['test_return_mean'] for r in logged]):.3f}"
        wins = [r["test_win_rate"] for r in logged if "test_win_rate" in r]
        return text + (f" test_win_rate {np.mean(wins):.3f}" if wins else "")

    def update(self, env_steps: np.ndarray, final: list[dict]) -> None:
        done = int(min(env_steps.min(), self.total))
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            self.bar.set_postfix_str(self._test_text(final), refresh=False)
            return
        now = time.time()
        if now - self.printed_at < self.cfg.log_interval_s and done < self.total:
            return
        rate = (done - self.last[1]) / max(now - self.last[0], 1e-9)
        eta = (self.total - done) / rate if rate > 0 else math.inf
        eta_text = time.strftime("%H:%M:%S", time.gmtime(eta)) if math.isfinite(eta) else "?"
        print(
            f"env_steps {done}/{self.total} ({100 * done / self.total:.0f}%) {rate:.0f} steps/s "
            f"eta {eta_text} {self._test_text(final)}".rstrip(),
            flush=True,
        )
        self.printed_at, self.last = now, (now, done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _print_summary(summary: dict, info_keys) -> None:
    seeds = [s for s in summary["seeds"] if s]
    names = ["test_return_mean", "test_ep_length"] + (["test_win_rate"] if "won" in info_keys else [])
    for name in names:
        values = [s[name] for s in seeds]
        per_seed = ", ".join(f"{v:.3f}" for v in values)
        print(f"final {name}: {np.mean(values):.3f} (mean over {len(values)} seed(s): {per_seed})")
    print(
        f"wall time {summary['wall_s']:.1f}s (compile {summary['compile_s']:.1f}s); "
        f"metrics in {summary['run_dir']}/metrics/"
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("--help", "-h", "help") for a in argv):
        print(usage())
        return
    cfg = None
    with _Signals() as signals:  # from the start: a signal at any moment stops cleanly
        try:
            if multirun.is_multirun(argv):
                multirun.sweep(argv, load_config, lambda o: _run_sweep_member(o, signals), _compare_sweep)
                return
            cfg = load_config(argv)
            run(cfg, signals)
        except CheckpointSaveError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(EXIT_SAVE)
        except (ConfigError, MemoryError, CheckpointError, ShardingError, WandbError, LockError) as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(EXIT_CONFIG)
        except NonFiniteError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(EXIT_NONFINITE)
        except Interrupted as e:
            print(str(e), file=sys.stderr)
            sys.exit(e.code)
        except OSError as e:  # disk full or unwritable outside a checkpoint (metrics, config)
            where = e.filename or (cfg.run_dir if cfg is not None else None)
            print(f"error: cannot write{f' in {where}' if where else ''}: {e.strerror or e}", file=sys.stderr)
            sys.exit(EXIT_SAVE)
        except jax.errors.JaxRuntimeError as e:
            # A host env that cannot go on raises inside the compiled chunk; XLA wraps it.
            found = re.search(r"HostEnvError: ([^\n]*)", str(e))
            if found is None:
                raise
            print(f"error: {found.group(1)}", file=sys.stderr)
            sys.exit(EXIT_HOST_ENV)


if __name__ == "__main__":
    main()
