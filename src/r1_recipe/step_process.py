"""A pipeline node's process: it dies with its pipeline, and a stage folder has one writer.

The pipeline starts every node (a stage, a tool, an evaluation) through this guard:

    python -m r1_recipe.step_process --folder <stage folder> --parent <pipeline pid> -- <command...>

Why: a node used to be a plain child of the pipeline. Killing the pipeline alone (``kill -9``, the
OOM killer) left the stage training, and the next ``make pipeline`` saw a dead pipeline pid in
``lineage.json``, marked the step interrupted and started a second writer into the same folder.

- Dies with the pipeline (Linux): the guard asks the kernel for SIGTERM when the pipeline thread
  that started it dies (``prctl(PR_SET_PDEATHSIG)``); it then stops its command's whole process
  group (SIGTERM, SIGKILL after ``GRACE_S``). The command is started in a group of its own, also
  with a parent-death SIGKILL, so it dies even if the guard itself is killed.
- One writer per folder: the guard holds an exclusive ``flock`` on ``<folder>/.writer.lock``
  for the command's whole life, with the holder's pid, host and command written in it. A second
  guard on the same folder finds the lock held and stops with one line naming the holder. The
  kernel drops the lock when its holder dies, so a lock file left by a killed writer is stale:
  the next writer takes it over with a warning naming the old holder. (``flock`` works across
  hosts on local disks and on NFS v4; a filesystem without locks falls back to the pid on this
  host.)
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

logger = logging.getLogger(__name__)

LOCK_NAME = ".writer.lock"
GRACE_S = 10.0  # SIGTERM to SIGKILL when the pipeline is gone
_PR_SET_PDEATHSIG = 1


class FolderBusy(RuntimeError):
    """Another live process writes this stage folder."""


def die_with_parent(sig: int) -> bool:
    """Ask Linux to send ``sig`` to this process when the thread that started it dies; False
    where there is no ``prctl`` (not Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def lock_holder(folder: Path) -> dict | None:
    """Who writes ``folder`` now (pid, host, command, since), or None when nobody does."""
    path = Path(folder) / LOCK_NAME
    if not path.exists():
        return None
    with open(path, "a+") as f:
        holder = _holder(f)
        locked = _try_flock(f)
        if locked is False:
            return holder or {}
        if locked is None and holder is not None and _alive_here(holder):
            return holder
        return None  # closing the file drops the probe's own lock


def acquire(folder: Path, command: list[str]):
    """Take ``folder``'s writer lock for this process: (the open lock file: keep it open, the
    holder record). Raises :class:`FolderBusy` naming the live holder; a stale lock (its holder
    died without releasing it) is taken over with a warning."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    f = open(folder / LOCK_NAME, "a+")
    old = _holder(f)
    locked = _try_flock(f)
    if locked is False or (locked is None and old is not None and _alive_here(old)):
        f.close()
        who = old or {}
        raise FolderBusy(
            f"{folder} is being written by pid {who.get('pid')} on host {who.get('host')} (since "
            f"{_when(who.get('since'))}: {' '.join(who.get('command') or [])[:160]}); a second writer would mix "
            "two runs in one folder: wait for it or stop it, then rerun")
    if old is not None:
        logger.warning("%s: taking over the writer lock of pid %s on host %s (since %s), which is gone",
                       folder, old.get("pid"), old.get("host"), _when(old.get("since")))
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "command": command}
    _write(f, holder)
    return f, holder


def release(f) -> None:
    """A clean end: empty the record (no stale-lock warning for the next writer), then unlock."""
    f.seek(0)
    f.truncate()
    f.flush()
    f.close()


def _write(f, holder: dict) -> None:
    f.seek(0)
    f.truncate()
    json.dump(holder, f)
    f.flush()


def _try_flock(f) -> bool | None:
    """True: locked; False: another open file holds it; None: this filesystem has no locks."""
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError:
        return None


def _holder(f) -> dict | None:
    f.seek(0)
    try:
        holder = json.loads(f.read() or "null")
    except json.JSONDecodeError:
        return None
    return holder if isinstance(holder, dict) else None


def _alive_here(holder: dict) -> bool:
    """Whether a holder recorded on a filesystem without locks still runs (known on its host only)."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder.get("pid")), 0)
        return True
    except (OSError, TypeError, ValueError):
        return False


def _when(since) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"


def _stop_group(pgid: int, proc: subprocess.Popen) -> None:
    """SIGTERM to the command's process group, SIGKILL to what is left after ``GRACE_S``."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run(folder: Path, command: list[str], parent: int | None = None) -> int:
    """Run ``command`` as the folder's one writer, dying with ``parent``; its exit code."""
    die_with_parent(signal.SIGTERM)
    if parent is not None and os.getppid() != parent:  # the pipeline died before the line above
        return 128 + signal.SIGTERM
    try:
        lock, holder = acquire(folder, command)
    except FolderBusy as e:
        print(f"r1-recipe pipeline: error: {e}", file=sys.stderr, flush=True)
        return 3
    # The guard is single-threaded, so preexec_fn is safe here (it is not in the threaded pipeline).
    proc = subprocess.Popen(command, start_new_session=True, preexec_fn=lambda: die_with_parent(signal.SIGKILL))
    _write(lock, {**holder, "child": proc.pid})

    def stop(signum, frame):
        _stop_group(proc.pid, proc)
        os._exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    code = proc.wait()
    try:  # what the command left running in its group (e.g. an engine's workers)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    release(lock)
    return code


def guarded(folder: Path, command: list[str]) -> list[str]:
    """``command`` wrapped in this guard for ``folder``, dying with the calling process."""
    return [sys.executable, "-m", "r1_recipe.step_process", "--folder", str(folder), "--parent", str(os.getpid()),
            "--", *command]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m r1_recipe.step_process", description=__doc__.splitlines()[0])
    parser.add_argument("--folder", required=True, type=Path)
    parser.add_argument("--parent", type=int, default=None)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command after --")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run(args.folder, command, args.parent)


if __name__ == "__main__":
    sys.exit(main())
