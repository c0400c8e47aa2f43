"""Programs that attack the machine running the code reward or the evaluator (issue 32): signal or
re-limit the trainer, touch host files' attributes, take disk past the limits, leave IPC objects
behind, break the cleanup. Each runs through the reward and through the evaluator's test runner,
in a batch with correct programs, inside a separate "trainer" process (so an attack that got
through kills or changes that process, not pytest), under each isolation this machine has:
bubblewrap's namespaces and the process layers alone (the fallback).

Every attack program would print the right answer after its attack, so 0.0 / False means the
attack was stopped; the trainer then reports its own limits, priority, affinity, scheduler and I/O
priority before and after, the victim file's mode, times and attributes, and whether a System V
segment, message queue or key is left and a sandbox folder is left in the temp dir."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from r1_recipe.rewards.sandbox import LocalSandbox, bubblewrap_works

pytestmark = pytest.mark.skipif(not all(LocalSandbox.protections().values()) or platform.machine() != "x86_64",
                                reason="needs seccomp and Landlock (syscall numbers below are x86_64's)")

SRC = Path(__file__).resolve().parents[1] / "src"
RIGHT = "a, b = map(int, input().split())\nprint(a + b)\n"
TESTS = [{"input": "2 3\n", "output": "5\n"}, {"input": "10 -4\n", "output": "6\n"}]

# {T}: the trainer's pid (an attacker can guess it); {V}: a host file the trainer's uid owns.
ATTACKS = {
    "sigqueue kills the trainer": "import ctypes\nassert ctypes.CDLL(None).sigqueue({T}, 9, 0) == 0\n",
    "sigqueue kills the parent": "import ctypes, os\nassert ctypes.CDLL(None).sigqueue(os.getppid(), 9, 0) == 0\n",
    "rt_tgsigqueueinfo kills the trainer": (
        "import ctypes, struct\ninfo = ctypes.create_string_buffer(struct.pack('iii', 9, 0, -1), 128)\n"
        "assert ctypes.CDLL(None).syscall(297, {T}, {T}, 9, info) == 0\n"),
    "prlimit CPU 1 s on the trainer": "import resource\nresource.prlimit({T}, resource.RLIMIT_CPU, (1, 1))\n",
    "setpriority": "import os\nos.setpriority(os.PRIO_PROCESS, {T}, 19)\n",
    "sched_setaffinity": "import os\nos.sched_setaffinity({T}, {{0}})\n",
    "sched_setscheduler": "import os\nos.sched_setscheduler({T}, os.SCHED_IDLE, os.sched_param(0))\n",
    "ioprio_set": "import ctypes\nassert ctypes.CDLL(None).syscall(251, 1, {T}, 3 << 13) == 0\n",
    "chmod a host file": "import os\nos.chmod({V!r}, 0o777)\n",
    "utime a host file": "import os\nos.utime({V!r}, (0, 0))\n",
    "setxattr a host file": "import os\nos.setxattr({V!r}, 'user.r1', b'x')\n",
    "fallocate 200 MB": ("import ctypes, os\nfd = os.open('big', os.O_CREAT | os.O_WRONLY)\n"
                         "assert ctypes.CDLL(None).fallocate(fd, 1, ctypes.c_long(0), ctypes.c_long(200 << 20)) == 0\n"),
    "System V shared memory": "import ctypes\nassert ctypes.CDLL(None).shmget(0x5EED32, 4096, 0o1666) >= 0\n",
    "System V message queue": "import ctypes\nassert ctypes.CDLL(None).msgget(0x5EED32, 0o1666) >= 0\n",
    "keyring": "import ctypes\nassert ctypes.CDLL(None).syscall(248, b'user', b'r1-sandbox', b'secret', 6, -4) >= 0\n",
    # the sandbox's own child script (compiled once per trainer, run by every later test): its path is in argv
    "rewrite the sandbox's child script": ("import sys\nscript = sys.orig_argv[4]\nassert script.endswith('.pyc')\n"
                                           "open(script, 'r+b').write(b'import os; os._exit(0)')\n"),
}
# Within namespaces only: the scratch tmpfs is capped (without them, files go to the host's disk).
FILL = {"many small files fill the disk": "for i in range(400):\n    open(f'f{{i}}', 'wb').write(b'x' * (500 << 10))\n"}
DEEP = "import os\nfor _ in range(1200):\n    os.mkdir('d')\n    os.chdir('d')\n"  # a correct program after it

TRAINER = r'''
import ctypes, glob, json, os, resource, sys, tempfile
from r1_recipe.rewards.code import code
from r1_recipe.eval_suites.code_tests import run_tests

path, isolation, victim, programs, tests = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)

def state():
    return {"cpu": resource.getrlimit(resource.RLIMIT_CPU), "nice": os.getpriority(os.PRIO_PROCESS, 0),
            "affinity": sorted(os.sched_getaffinity(0)), "scheduler": os.sched_getscheduler(0),
            "ioprio": libc.syscall(252, 1, 0), "mode": os.stat(victim).st_mode, "mtime": os.stat(victim).st_mtime_ns,
            "xattrs": os.listxattr(victim), "shm": libc.shmget(0x5EED32, 0, 0) >= 0, "msg": libc.msgget(0x5EED32, 0) >= 0,
            "key": libc.syscall(250, 10, -4, b"user", b"r1-sandbox", 0) >= 0,
            "folders": sorted(glob.glob(os.path.join(tempfile.gettempdir(), "r1-sandbox-*")))}

programs = [p.replace("{T}", str(os.getpid())) for p in programs]
before = state()
if path == "reward":
    fn = code(cpu_s=2, wall_s=4.0, memory_mb=256, workers=2, isolation=isolation)
    fence = "```"
    scores = fn(completions=[f"<think>x</think>\n{fence}python\n{p}{fence}" for p in programs],
                verification_info=[{"test_cases": tests}] * len(programs))
else:
    ref = json.dumps({"kind": "stdio", "id": "sum", "time_limit_s": 2.0, "memory_mb": 256, "prelude": False})
    scores = run_tests(programs, [ref] * len(programs), [json.dumps(tests)] * len(programs), workers=2,
                       progress=False, sandbox_options={"isolation": isolation})
print(json.dumps({"scores": scores, "before": before, "after": state()}))
'''


def isolations() -> list:
    return [pytest.param("bubblewrap", marks=pytest.mark.skipif(not bubblewrap_works(), reason="no bubblewrap here")),
            "process"]


@pytest.mark.parametrize("path", ["reward", "eval"])
@pytest.mark.parametrize("isolation", isolations())
def test_attacks_score_zero_and_leave_the_trainer_and_host_unchanged(tmp_path, path, isolation):
    victim = tmp_path / "victim.txt"
    victim.write_text("host data")
    victim.chmod(0o600)
    os.utime(victim, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    attacks = {**ATTACKS, **(FILL if isolation == "bubblewrap" else {})}
    programs = [a.format(T="{T}", V=str(victim)) + RIGHT for a in attacks.values()]
    programs += [RIGHT, DEEP + RIGHT]
    (tmp_path / "tmp").mkdir()  # the trainer's temp dir: its own, so other runs' sandboxes do not show
    env = {**os.environ, "PYTHONPATH": str(SRC), "TMPDIR": str(tmp_path / "tmp")}
    run = subprocess.run([sys.executable, "-c", TRAINER, json.dumps([path, isolation, str(victim), programs, TESTS])],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, f"the trainer died ({run.returncode}): {run.stderr[-2000:]}"
    report = json.loads(run.stdout.strip().splitlines()[-1])
    zero = 0.0 if path == "reward" else False
    one = 1.0 if path == "reward" else True
    names = [*attacks, "right", "correct after a 1,200-deep folder chain"]
    assert dict(zip(names, report["scores"])) == {**dict.fromkeys(attacks, zero), "right": one,
                                                  "correct after a 1,200-deep folder chain": one}
    assert report["after"] == report["before"]
    left = {k: report["after"][k] for k in ("shm", "msg", "key")}
    assert not any(left.values()), f"IPC objects on the host (left by this or an earlier run): {left}"
    assert report["after"]["mode"] & 0o777 == 0o600 and report["after"]["xattrs"] == []
    assert report["after"]["folders"] == [] and not any((tmp_path / "tmp").iterdir())


def test_bubblewrap_asked_for_and_missing_is_refused_and_auto_falls_back_saying_so(monkeypatch, tmp_path, caplog):
    """A machine without bwrap (PATH without it): ``isolation: bubblewrap`` with ``strict`` refuses
    to run code, naming the fix; ``auto`` runs with the process layers and says, once, which
    protections are active and which are missing."""
    from r1_recipe.rewards import sandbox

    monkeypatch.setenv("PATH", str(tmp_path))
    sandbox.bubblewrap_works.cache_clear()
    sandbox._ANNOUNCED.clear()
    try:
        with pytest.raises(RuntimeError, match=r"namespaces \(bubblewrap\).*apt-get install bubblewrap"):
            LocalSandbox(isolation="bubblewrap")
        with caplog.at_level("INFO", logger="r1_recipe.rewards.sandbox"):
            box = LocalSandbox(cpu_s=2, wall_s=3.0, isolation="auto")
            LocalSandbox(cpu_s=2, wall_s=3.0, isolation="auto")
        said = [r.getMessage() for r in caplog.records if "protections" in r.getMessage()]
        assert len(said) == 1 and "seccomp" in said[0] and "missing: namespaces" in said[0], said
        r = box.run("import os\nprint(os.getuid() == os.geteuid(), os.getcwd().startswith('/tmp'))")
        assert (box.namespaces, r.returncode) == (False, 0)
    finally:
        sandbox.bubblewrap_works.cache_clear()
        sandbox._ANNOUNCED.clear()


@pytest.mark.skipif(not bubblewrap_works(), reason="no bubblewrap here")
def test_with_bubblewrap_the_program_is_nobody_alone_in_its_namespaces():
    box = LocalSandbox(cpu_s=2, wall_s=3.0, isolation="bubblewrap")
    r = box.run("import os\nprint(os.getuid(), os.getgid(), os.getpid(), os.getcwd())\n"
                "print(sorted(os.listdir('.')))")
    assert r.stdout.split("\n")[:2] == ["65534 65534 2 /tmp", "['main.py']"]


def _running(pid: int) -> bool:
    """Alive and not a zombie (a killed orphan waits, dead, for a reaper)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _descendants(pid: int) -> set[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        kids = {c for c, parent in parents.items() if parent == p}
        todo.extend(kids - found)
        found |= kids
    return found


@pytest.mark.parametrize("isolation", isolations())
def test_the_program_dies_with_its_trainer(isolation):
    """The trainer killed (SIGKILL) while a program sleeps: nothing it started is left alive."""
    import signal
    import time

    trainer = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom r1_recipe.rewards.sandbox import LocalSandbox\n"
         f"LocalSandbox(cpu_s=30, wall_s=60.0, isolation={isolation!r}).run('import time\\ntime.sleep(60)')"],
        env={**os.environ, "PYTHONPATH": str(SRC)})
    try:
        deadline = time.monotonic() + 30
        while len(_descendants(trainer.pid)) < (3 if isolation == "bubblewrap" else 1) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)  # the child confines itself before the program's first line
        started = _descendants(trainer.pid)
        assert started, "the sandbox never started"
    finally:
        trainer.send_signal(signal.SIGKILL)
        trainer.wait()
    deadline = time.monotonic() + 5
    while any(map(_running, started)) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [p for p in started if _running(p)]
    assert not alive, f"left running after the trainer died: {alive}"
