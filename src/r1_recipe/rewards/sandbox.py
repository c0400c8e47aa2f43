"""Run untrusted Python from completions: a local sandbox, and the interface for remote ones.

What the local sandbox guarantees (Linux; every run is a fresh ``python -I -S`` process, started
from the child script's bytecode (compiled once per trainer), which sets up each process layer
on itself before the program's first line:
:mod:`r1_recipe.rewards.sandbox_child`):

- namespaces (where bubblewrap works, ``isolation: auto``/``bubblewrap``): the program runs as uid
  65534 in its own user, PID, IPC, mount, network, UTS and cgroup namespaces, sees only the
  interpreter and system libraries (read-only) and a tmpfs of ``scratch_mb`` as its folder and
  ``/tmp``; no host process to signal or re-limit, no host file to touch, no IPC object that
  outlives it; it dies with its parent;
- time: RLIMIT_CPU plus a wall-clock limit enforced by the parent, which kills the whole
  process group;
- memory and output: RLIMIT_AS; stdin, stdout and stderr are files, the output ones capped by
  RLIMIT_FSIZE (a program that prints forever dies with SIGXFSZ, the parent never buffers it,
  and one that never reads its input cannot block the parent);
- processes: seccomp denies fork/vfork/clone/clone3 (so no fork bomb, no threads, even as
  root, where RLIMIT_NPROC does not bind), ptrace, signals (kill, tkill, tgkill,
  rt_sigqueueinfo, rt_tgsigqueueinfo, pidfd_send_signal) and prlimit to any process but itself,
  scheduling and I/O priority calls, file attribute calls (chmod, chown, utime, xattr families),
  fallocate, System V IPC, POSIX message queues and keyrings; PDEATHSIG kills it with its parent;
- network: seccomp denies socket()/socketpair(), and the child gets its own empty network
  namespace;
- files: Landlock (kernel >= 5.13) lets it write only below its folder and read only the
  interpreter, system libraries and that folder; the folder is deleted after, however deep;
- privileges: all capabilities dropped, no_new_privs set.

Without bubblewrap or user namespaces (``isolation: process``, or ``auto`` where bwrap is
missing: some clusters, Ubuntu 24.04's AppArmor default) the process layers alone apply: the
program runs as the trainer's uid in the host's PID and IPC namespaces and writes its folder on
the host's disk (many small files can fill it for as long as the run lasts). Each sandbox says
once which layers are active; ``strict`` with ``isolation: bubblewrap`` refuses to run without
the namespaces, and ``strict`` always refuses without seccomp and Landlock.

The parent runs no Python between fork and exec (no ``preexec_fn``), so ``subprocess`` spawns
with vfork: a run costs the same from a trainer holding gigabytes as from a small process, and
is safe from many threads at once (the code reward and the evaluator run tests in parallel).

Proof of a program's end (``RunResult.completed``): exit status 0 does not say the program ran
to its last line (``os._exit(0)``, ``sys.exit(0)``, an ``atexit`` handler or ``sys.excepthook``
that exits 0 after a failed assert all give it). So the parent sends the child a fresh random
key on a pipe (never in a file, argument or environment variable the program could read) and
hands it a proof file the program cannot open by name; the child writes key + length +
``__r1_result__`` (a harness's result text) there once the code returned without raising, then
``os._exit(0)``. Inside one interpreter a program that introspects it can find the key, so the
proof alone decides nothing a program could want to forge: with a :class:`Judge` the tests run in
a process apart that alone holds the key; otherwise the result it carries is compared by the
parent with a value the program never saw. A remote sandbox without such a proof reports
``completed=False``, and the tests decided by it fail there, safely.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import platform
import py_compile
import resource
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from r1_recipe.rewards.sandbox_child import (ARCH, CONFINE_FAILED, CONFINE_MESSAGE, JUDGE_SEPARATOR, KEY_BYTES,
                                             command_line, landlock_abi)

logger = logging.getLogger(__name__)

_CHILD = os.path.realpath(Path(__file__).with_name("sandbox_child.py"))  # the script the child runs
_COMPILING = threading.Lock()
ISOLATIONS = ("auto", "bubblewrap", "process")
NOBODY = 65534  # the uid and gid the program runs as inside its user namespace
_SCRATCH = "/tmp"  # inside bubblewrap: the size-capped tmpfs the program runs in
_CHILD_INSIDE = "/r1-sandbox"  # inside bubblewrap: the child script's folder (its host folder may lie below /tmp)
_ANNOUNCED: set[tuple[str, ...]] = set()  # the protection sets already logged (once per process)


@dataclass
class RunResult:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    completed: bool = False  # the run's proof: the program's last line ran without raising (see above)
    result: str | None = None  # a harness's ``__r1_result__`` text, carried by the proof


@dataclass(frozen=True)
class Judge:
    """Tests run apart from the program (see :mod:`r1_recipe.rewards.sandbox_child`): ``setup``
    (trusted code: a prompt's helpers), then each of ``names`` bound to a stand-in calling the
    program's own, then ``test``; the run is ``completed`` when ``test`` ran to its end."""

    setup: str
    names: tuple[str, ...]
    test: str

    def spec(self) -> bytes:
        return JUDGE_SEPARATOR.join([self.setup, ",".join(self.names), self.test]).encode("utf-8", "surrogatepass")


class Sandbox(Protocol):
    """A place to run a program: the local one below, or a remote service (E2B, piston, …)."""

    def run(self, program: str, stdin: str = "", judge: Judge | None = None) -> RunResult: ...


def _exits_within(proc: subprocess.Popen, seconds: float) -> bool:
    """Whether ``proc`` exits within ``seconds``, woken the moment it does (a pidfd).

    ``Popen.wait(timeout)`` polls with sleeps of up to 50 ms, which alone cost more than the
    run of a small program; the stdin, stdout and stderr files need no pipe to be pumped."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd (old kernel, not Linux): poll
        try:
            proc.wait(seconds)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        poller = select.poll()  # not select(): a trainer may hold more than FD_SETSIZE (1024) descriptors
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(max(0, int(seconds * 1000))))
    finally:
        os.close(fd)


def _proven(proof: bytes, key: bytes) -> tuple[bool, str | None]:
    """(True, the result text) when ``proof`` is exactly what the child writes after the
    program's last line: the key, the result's length in 10 digits, the result."""
    head = len(key) + 10
    if len(proof) < head or not secrets.compare_digest(proof[:len(key)], key) or not proof[len(key):head].isdigit():
        return False, None
    if int(proof[len(key):head]) != len(proof) - head:
        return False, None
    return True, proof[head:].decode("utf-8", "replace")


def _remove(root: Path) -> None:
    """Delete a run's folder whatever the program left there: ``shutil.rmtree`` recurses once per
    level and raises ``RecursionError`` (which ``ignore_errors`` does not catch) on a chain of
    ~1,000 folders; ``rm -rf`` walks any depth."""
    try:
        shutil.rmtree(root, ignore_errors=True)
    except RecursionError:
        subprocess.run(["rm", "-rf", "--", str(root)], check=False, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@functools.cache
def _child_script() -> str:
    """The child script as bytecode, compiled once per process into a folder of its own (removed
    at exit): ``python script.py`` compiles its script on every start (3 ms for this one, a tenth
    of a small test's run), ``python script.pyc`` does not. The source itself where no folder can
    be written."""
    with _COMPILING:
        try:
            folder = tempfile.mkdtemp(prefix="r1-child-script-")
            os.chmod(folder, 0o755)  # read (never written) by the program's uid inside bubblewrap too
            compiled = py_compile.compile(_CHILD, cfile=os.path.join(folder, "sandbox_child.pyc"), doraise=True)
        except (OSError, py_compile.PyCompileError) as e:
            logger.debug("code sandbox: runs its child from source (%s)", e)
            return _CHILD
        atexit.register(shutil.rmtree, folder, True)
        return compiled


@functools.cache
def _read_paths() -> list[str]:
    """What the child may read: the interpreter, its standard library and the system libraries
    (and the child script's folder, :func:`_child_paths`)."""
    exe = os.path.realpath(sys.executable)
    paths = {sys.base_prefix, os.path.dirname(os.path.dirname(exe)), "/usr/lib", "/usr/lib64", "/lib", "/lib64",
             "/etc/ld.so.cache", "/dev/null", "/dev/urandom"}
    return sorted(p for p in paths if os.path.exists(p))


@functools.cache
def _child_paths(namespaces: bool) -> tuple[str, list[str]]:
    """The child script and every path the child may read, as the child sees them: inside
    bubblewrap the script's folder is mounted at ``/r1-sandbox``."""
    script = _child_script()
    folder = _CHILD_INSIDE if namespaces else os.path.dirname(script)
    return os.path.join(folder, os.path.basename(script)), sorted([*_read_paths(), folder])


def _bwrap_args(scratch_bytes: int, program_fd: int) -> list[str]:
    """bubblewrap's command line: uid/gid 65534 in new user, PID, IPC, mount, network, UTS and
    cgroup namespaces, killed with its parent, a new session (no terminal injection), only the
    interpreter and libraries mounted (read-only), ``main.py`` copied onto a tmpfs of
    ``scratch_bytes`` where the program runs."""
    args = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--uid", str(NOBODY), "--gid",
            str(NOBODY), "--cap-drop", "ALL", "--dev", "/dev"]
    for path in _read_paths():
        if not path.startswith("/dev/"):
            args += ["--ro-bind", path, path]
    args += ["--ro-bind", os.path.dirname(_child_script()), _CHILD_INSIDE]
    return [*args, "--size", str(scratch_bytes), "--tmpfs", _SCRATCH, "--file", str(program_fd),
            f"{_SCRATCH}/main.py", "--chdir", _SCRATCH, "--"]


@functools.cache
def bubblewrap_works() -> bool:
    """Whether ``bwrap`` is installed and may create the namespaces here (user namespaces can be
    off: some clusters, Ubuntu 24.04's AppArmor default)."""
    if not sys.platform.startswith("linux") or shutil.which("bwrap") is None:
        return False
    with tempfile.TemporaryFile() as program:
        program.write(b"import os\nassert os.getuid() == %d\n" % NOBODY)
        program.flush()
        program.seek(0)
        try:
            probe = subprocess.run([*_bwrap_args(1 << 20, program.fileno()), os.path.realpath(sys.executable),
                                    "-I", "-S", f"{_SCRATCH}/main.py"], pass_fds=(program.fileno(),),
                                   capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return False
    if probe.returncode != 0:
        logger.debug("bubblewrap cannot isolate here: %s", probe.stderr.decode(errors="replace").strip())
    return probe.returncode == 0


class LocalSandbox:
    """One fresh confined ``python -I -S`` process per run (see the module docstring).

    ``isolation``: ``auto`` runs it inside bubblewrap's namespaces where bwrap works, else with
    the process layers alone (and says so once); ``bubblewrap`` asks for the namespaces (with
    ``strict``, no namespaces is an error); ``process`` never uses them."""

    def __init__(self, cpu_s: int = 5, wall_s: float = 10.0, memory_mb: int = 512,
                 output_kb: int = 1024, strict: bool = True, isolation: str = "auto", scratch_mb: int = 64):
        if isolation not in ISOLATIONS:
            raise ValueError(f"code sandbox: isolation={isolation!r}; choose one of {ISOLATIONS}")
        self.cpu_s, self.wall_s, self.memory_mb, self.output_kb = cpu_s, wall_s, memory_mb, output_kb
        self.scratch_mb = scratch_mb
        self.namespaces = isolation != "process" and bubblewrap_works()
        missing = [k for k, on in self.protections().items() if not on]
        if isolation == "bubblewrap" and not self.namespaces:
            missing.append("namespaces (bubblewrap)")
        if strict and missing:
            raise RuntimeError(
                f"the local code sandbox lacks {missing} on this machine; install bubblewrap "
                "(apt-get install bubblewrap) where user namespaces are allowed, run code rewards where "
                "seccomp and Landlock work, use a remote sandbox, or pass strict=False to accept the "
                "weaker containment"
            )
        self._announce(missing)

    def _announce(self, missing: list[str]) -> None:
        """Say once per process which layers this sandbox's programs run under."""
        active = [k for k, on in self.protections().items() if on] + ["rlimits"]
        if self.namespaces:
            active.insert(0, f"namespaces (bubblewrap: uid {NOBODY}, own user/pid/ipc/mount/net, "
                             f"{self.scratch_mb} MB tmpfs)")
        elif "namespaces (bubblewrap)" not in missing:
            missing = [*missing, "namespaces (bubblewrap missing, user namespaces off or isolation='process': "
                                 "programs run as this uid in the host's PID and IPC namespaces)"]
        key = (*active, "|", *missing)
        if key in _ANNOUNCED:
            return
        _ANNOUNCED.add(key)
        (logger.warning if missing else logger.info)(
            "code sandbox protections: %s%s", ", ".join(active), f"; missing: {', '.join(missing)}" if missing else "")

    @staticmethod
    def protections() -> dict[str, bool]:
        """The layers inside the program's process (the namespaces around it: ``namespaces``)."""
        linux = sys.platform.startswith("linux")
        return {
            "seccomp (no fork, no sockets)": linux and platform.machine() in ARCH,
            "landlock (files)": linux and landlock_abi() > 0,
        }

    def run(self, program: str, stdin: str = "", judge: Judge | None = None) -> RunResult:
        """Run ``program`` on ``stdin``; with a ``judge``, its tests in a process apart."""
        root = Path(tempfile.mkdtemp(prefix="r1-sandbox-"))
        try:
            work = root / "work"
            work.mkdir()
            (work / "main.py").write_text(program, errors="surrogatepass")
            (root / "stdin").write_bytes(stdin.encode("utf-8", "surrogatepass"))
            (root / "judge").write_bytes(judge.spec() if judge else b"")
            with open(work / "main.py", "rb") as source, open(root / "judge", "rb") as tests:
                judge_fd = tests.fileno() if judge else -1
                if self.namespaces:  # main.py copied onto the tmpfs: the host's folder stays out of sight
                    return self._run(_bwrap_args(self.scratch_mb << 20, source.fileno()), _SCRATCH, root,
                                     (source.fileno(),), judge_fd)
                return self._run([], str(work), root, (), judge_fd)
        finally:
            _remove(root)

    def _run(self, prefix: list[str], work: str, root: Path, fds: tuple[int, ...], judge_fd: int = -1) -> RunResult:
        """Start the child (behind ``prefix``, bubblewrap's command or nothing) in ``work``, wait
        for it within the wall limit, kill what is left, read its output and proof."""
        limit = self.output_kb * 1024
        limits = {
            resource.RLIMIT_CPU: self.cpu_s,
            resource.RLIMIT_AS: self.memory_mb * 1024 * 1024,
            resource.RLIMIT_FSIZE: limit,
            resource.RLIMIT_NOFILE: 64,
            resource.RLIMIT_CORE: 0,
        }
        if os.geteuid() != 0 and not prefix:  # does not bind root; seccomp is the real fork guard
            limits[resource.RLIMIT_NPROC] = 0
        exe = os.path.realpath(sys.executable)
        script, reads = _child_paths(bool(prefix))
        key = secrets.token_hex(KEY_BYTES // 2).encode()
        key_in, key_out = os.pipe()  # the key never touches a file the program could read
        try:
            os.write(key_out, key)
        finally:
            os.close(key_out)
        with open(root / "stdin", "rb") as inp, open(root / "stdout", "w+b") as out, \
                open(root / "stderr", "w+b") as err, open(root / "proof", "w+b") as proof:
            try:
                proc = subprocess.Popen(  # no preexec_fn: spawned by vfork, thread-safe
                    [*prefix, exe, "-I", "-S", "-B", script, *command_line(work, limits, reads, key_in, proof.fileno(),
                                                                       judge_fd)],
                    cwd=root if prefix else work, stdin=inp, stdout=out, stderr=err, start_new_session=True,
                    close_fds=True, pass_fds=(key_in, proof.fileno(), *fds, *([judge_fd] if judge_fd >= 0 else [])),
                    env={"PATH": "/usr/bin:/bin", "HOME": work, "TMPDIR": work,
                         "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8"},
                )
            finally:
                os.close(key_in)
            try:
                timed_out = not _exits_within(proc, self.wall_s)
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # bubblewrap's namespace dies with it
                except (ProcessLookupError, PermissionError):
                    pass
                proc.wait()
            out.seek(0)
            err.seek(0)
            if proc.returncode == CONFINE_FAILED and err.read(len(CONFINE_MESSAGE)) == CONFINE_MESSAGE:
                raise RuntimeError(f"the code sandbox could not confine its child: {err.read(2000)!r}")
            err.seek(0)
            proof.seek(0)
            completed, result = _proven(proof.read(limit + len(key) + 11), key)
            return RunResult(
                None if timed_out else proc.returncode,
                out.read(limit).decode("utf-8", "replace"),
                err.read(limit).decode("utf-8", "replace"),
                timed_out,
                completed and not timed_out and proc.returncode == 0,
                result if completed else None,
            )
