"""Checkpoints of a run (orbax): the whole per-seed carry plus the driver's state.

A checkpoint is one orbax step directory `run_dir/checkpoints/<chunk>/` with two
items: `state` (the SeedCarry pytree: params, optimiser states, targets, PRNG keys,
counters, schedules, and the replay buffer unless it is left out) and `meta`
(JSON: what run it belongs to, and the Python driver's position: chunk index, log
schedule, partial metric averages, metrics-file offsets).

Atomic from the user's point of view: orbax writes into `<chunk>.orbax-checkpoint-tmp*`
and renames it when complete, so a run killed or out of disk while saving leaves
the previous checkpoints as they were (and the partial directory, which is never
listed and is removed by the next start). A checkpoint that cannot be read back
(corrupt, truncated, half-deleted) is moved to `checkpoints/corrupt/<chunk>` when a
run resumes, so the resumed run can save that chunk again.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint._src.path.atomicity import AtomicRenameTemporaryPath

FORMAT_VERSION = 1
TMP_SUFFIX = ".orbax-checkpoint-tmp"


class CheckpointError(RuntimeError):
    pass


class CheckpointSaveError(CheckpointError):
    """A save failed (disk full, permissions); the older checkpoints are intact."""


def _no_fault(point: str) -> None:
    pass


def _temporary_path_class(fault: Callable[[str], None]):
    """orbax's atomic-rename path with the 'during_save' test hook (jlmarl.train.FAULT_HOOKS)
    between writing the step and renaming it into place."""

    class _Path(AtomicRenameTemporaryPath):
        async def finalize(self):
            if self.get_final().name.isdigit():  # the step folder, not one of its items
                fault("during_save")
            await super().finalize()

    return _Path


def _reason(e: BaseException) -> str:
    """One line for an exception from orbax/tensorstore/the OS."""
    if isinstance(e, OSError) and e.errno:
        return os.strerror(e.errno)
    text = str(e).strip()
    if "No space left on device" in text:
        return os.strerror(errno.ENOSPC)
    return text.splitlines()[0] if text else type(e).__name__


def _size_text(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class Checkpointer:
    """Saves and restores checkpoints of one run.

    `identity` names what a checkpoint must match to be resumed by this run (algo,
    env, seeds, ...); a checkpoint of another run is refused with the mismatch named.
    `fault` is the test hook called at 'during_save' (see jlmarl.train.FAULT_HOOKS).
    """

    def __init__(self, run_dir: Path, keep: int, identity: dict[str, Any], fault=_no_fault):
        self.directory = (Path(run_dir) / "checkpoints").absolute()
        self.identity = identity
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=True,
            enable_async_checkpointing=False,
            temporary_path_class=_temporary_path_class(fault),
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)
        self._remove_partial()

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def _remove_partial(self, step: int | None = None) -> None:
        """Deletes half-written step folders (a save killed or failed before its rename)."""
        if jax.process_index() != 0 or not self.directory.is_dir():
            return
        prefix = "" if step is None else f"{step}{TMP_SUFFIX}"
        for path in self.directory.iterdir():
            if TMP_SUFFIX in path.name and path.name.startswith(prefix):
                shutil.rmtree(path, ignore_errors=True)

    def set_aside(self, step: int, folder: str) -> Path:
        """Moves checkpoint `step` to checkpoints/<folder>/<step> (never deletes it)."""
        dest = self.directory / folder / str(step)
        for n in range(1, 1000):
            if not dest.exists():
                break
            dest = self.directory / folder / f"{step}-{n}"
        if jax.process_index() == 0:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.rename(self.directory / str(step), dest)
        self.manager.reload()
        return dest

    def save(self, step: int, carry, driver: dict[str, Any], say=print) -> None:
        if step in self.steps():  # never orbax's StepAlreadyExistsError: keep the old one aside
            say(f"warning: checkpoint {step} already exists; moved it to {self.set_aside(step, 'unused')}")
        meta = {"format": FORMAT_VERSION, "identity": self.identity, "driver": driver}
        args = ocp.args.Composite(state=ocp.args.StandardSave(carry), meta=ocp.args.JsonSave(meta))
        try:
            self.manager.save(step, args=args, force=True)
            self.manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001  (OSError, or orbax/tensorstore wrapping it)
            self._remove_partial(step)
            self.manager.reload()
            raise CheckpointSaveError(self._save_failure(step, e, carry)) from None

    def _save_failure(self, step: int, e: BaseException, carry) -> str:
        good = self.steps()
        if good:  # the newest one on disk is the best estimate (compression included)
            needed = _folder_bytes(self.directory / str(good[-1]))
        else:
            needed = sum(getattr(x, "nbytes", 0) for x in jax.tree.leaves(carry))
        free = shutil.disk_usage(self.directory).free
        kept = f"checkpoint {good[-1]} and older are intact" if good else "no earlier checkpoint exists"
        return (
            f"cannot save checkpoint {step} in {self.directory}: {_reason(e)} (a checkpoint needs about "
            f"{_size_text(needed)}, {_size_text(free)} free; {kept})"
        )

    def _mismatch(self, meta: dict) -> str | None:
        if meta.get("format") != FORMAT_VERSION:
            return f"checkpoint format {meta.get('format')!r}, this version reads {FORMAT_VERSION}"
        theirs = meta.get("identity", {})
        diffs = [
            f"{k}={theirs.get(k)!r} (this run: {v!r})" for k, v in self.identity.items() if theirs.get(k) != v
        ]
        return ", ".join(diffs) or None

    def _read_meta(self, step: int) -> dict:
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def _read_state(self, step: int, abstract_carry):
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_carry))
        return self.manager.restore(step, args=args)["state"]

    def restore_latest(
        self,
        abstract_carry,
        say=print,
        set_aside: bool = False,
        usable: Callable[[dict], str | None] | None = None,
    ) -> tuple[Any, dict, int] | None:
        """Restores the newest checkpoint that reads back, belongs to this run and
        that `usable(driver)` accepts (None = accepted, else the reason it is not).

        Unreadable checkpoints are skipped with a line naming them. With set_aside=True
        (a run that will save again) they are moved to checkpoints/corrupt/<step>, and
        readable ones newer than the one restored to checkpoints/unused/<step>, so no
        step is ever saved twice and the run stays resumable; None is returned when no
        checkpoint is left (start from the beginning). Otherwise finding none raises
        CheckpointError listing every failure; so does a checkpoint of another run, and
        a run whose every checkpoint `usable` refuses."""
        failures, refused, newer = [], [], []
        for step in reversed(self.steps()):
            path = self.directory / str(step)
            try:
                meta = self._read_meta(step)
                mismatch = self._mismatch(meta)
                if mismatch:
                    raise CheckpointError(f"{path} belongs to another run: {mismatch}")
                reason = usable(meta["driver"]) if usable is not None else None
                if reason is None:
                    carry = self._read_state(step, abstract_carry)
            except CheckpointError:
                raise
            except Exception as e:  # noqa: BLE001  (orbax/tensorstore raise many kinds)
                failures.append(f"{path}: {_reason(e)}")
                moved = f"; moved it to {self.set_aside(step, 'corrupt')}" if set_aside else ""
                say(f"warning: cannot resume from {path}: {_reason(e)}{moved}")
                continue
            if reason is not None:
                say(f"warning: cannot resume from {path}: {reason}")
                refused.append(f"{path}: {reason}")
                newer.append(step)
                continue
            if failures or refused:
                say(f"resuming from the newest good checkpoint, {path}")
            if set_aside:
                for later in newer:
                    dest = self.set_aside(later, "unused")
                    say(f"moved checkpoint {later} to {dest} (it is newer than {step})")
            return carry, meta["driver"], step
        if refused:
            raise CheckpointError(f"no checkpoint in {self.directory} fits the run's files: {refused[-1]}")
        if set_aside:
            return None
        if not failures:
            raise CheckpointError(f"no checkpoint in {self.directory} to resume from")
        raise CheckpointError("no usable checkpoint: " + "; ".join(failures))


def abstract_like(tree):
    """Shapes, dtypes and shardings of `tree` (what orbax restores into)."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
