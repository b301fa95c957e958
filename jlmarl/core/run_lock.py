"""One owner per run folder: `run_dir/.lock` holds the owner's pid, host and start time.

Taken with O_CREAT | O_EXCL, so of two processes starting on one folder exactly one
gets it. A lock left by a process that died without releasing it (kill -9, a crash)
is stale when it names this host and a pid that no longer runs (or now runs another
program, told apart by its start time); it is then taken over, with a line saying
so. A lock from another host cannot be checked from here: the refusal names it, and
deleting the file is the fix once that process is known to be gone.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = ".lock"


class LockError(RuntimeError):
    pass


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (Linux), None elsewhere."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, to tell a reused pid apart."""
    stat = _stat(pid)
    return stat[19] if stat else None


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        pass
    stat = _stat(pid)
    if stat is None:
        return True
    # a zombie (killed, not yet reaped: a container's pid 1 may never reap it) is gone
    return stat[0] != "Z" and (started is None or stat[19] == started)


class RunLock:
    """Held from before the run folder is written into until the run ends."""

    def __init__(self, run_dir: Path, say=print):
        self.path = Path(run_dir) / LOCK_NAME
        self.say = say
        self.mine = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _start_time(os.getpid()),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        self.held = False

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(self.mine, f)
        return True

    def _owner(self) -> dict | None:
        try:
            owner = json.loads(self.path.read_text())
            return owner if isinstance(owner, dict) else {}
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # unreadable or half-written: treated as held by an unknown owner

    def acquire(self) -> RunLock:
        for _ in range(3):  # a lock released or taken over between our steps: look again
            if self._create():
                self.held = True
                return self
            owner = self._owner()
            if owner is None:
                continue
            pid, host = owner.get("pid"), owner.get("host")
            mine = host == self.mine["host"] and isinstance(pid, int)
            stale = mine and not _alive(pid, owner.get("started"))
            if not stale:
                who = f"process {pid} on {host}" if pid else "an unknown process"
                raise LockError(
                    f"run_dir={self.path.parent} is in use by {who} (since {owner.get('since', '?')}); "
                    f"wait for it to finish or choose another run_dir (if that process is gone, "
                    f"delete {self.path})"
                )
            # Take over by renaming the stale file to a name only we use: of two processes
            # doing this at once, one renames it and the other finds it gone and looks again.
            aside = self.path.with_name(f"{LOCK_NAME}.stale.{os.getpid()}")
            try:
                os.rename(self.path, aside)
            except FileNotFoundError:
                continue
            aside.unlink(missing_ok=True)
            self.say(f"jlmarl: took over the stale lock of process {pid} on {host} (it is no longer running)")
        raise LockError(f"run_dir={self.path.parent}: {self.path} keeps changing owner; retry")

    def release(self) -> None:
        if self.held and (self._owner() or {}).get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False
