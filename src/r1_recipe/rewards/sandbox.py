"""Run untrusted Python from completions: a local sandbox, and the interface for remote ones.

What the local sandbox guarantees (Linux; each layer is set up in the child before it execs
the interpreter, and every run is a fresh process in its own temporary directory):

- time: RLIMIT_CPU plus a wall-clock limit enforced by the parent, which kills the whole
  process group;
- memory and output: RLIMIT_AS; stdout/stderr go to files capped by RLIMIT_FSIZE (a program
  that prints forever dies with SIGXFSZ, the parent never buffers it);
- processes: seccomp denies fork/vfork/clone/clone3 (so no fork bomb, no threads, even as
  root, where RLIMIT_NPROC does not bind), ptrace, and signals to any process but itself;
- network: seccomp denies socket()/socketpair(), and the child gets its own empty network
  namespace when it may create one;
- files: Landlock (kernel >= 5.13) lets it write only below its temporary directory and read
  only the interpreter, system libraries and that directory; the directory is deleted after.
- privileges: all capabilities dropped, no_new_privs set.

Where the kernel lacks seccomp or Landlock (non-Linux, old kernels, some containers) those
layers are missing: ``LocalSandbox.protections()`` says which are active, and with
``strict=True`` (the default) the sandbox refuses to run rather than run unconfined.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol

_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.syscall.restype = ctypes.c_long
_LIBC.prctl.restype = ctypes.c_int

# syscall numbers: (audit arch, denied process/network/debug calls, signal calls)
_ARCH = {
    # fork vfork clone clone3 socket socketpair ptrace process_vm_readv/writev pidfd_open
    # pidfd_getfd unshare setns io_uring_setup (io_uring can open sockets without syscalls)
    "x86_64": (0xC000003E, {57, 58, 56, 435, 41, 53, 101, 310, 311, 434, 438, 272, 308, 425},
               {62, 200, 234, 424}),
    "aarch64": (0xC00000B7, {220, 435, 198, 199, 117, 270, 271, 434, 438, 97, 268, 425},
                {129, 130, 131, 424}),
}
_SYS_LANDLOCK = (444, 445, 446)  # create_ruleset, add_rule, restrict_self (all arches)
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _PR_CAPBSET_DROP = 38, 22, 24
_RO = 1 | 4 | 8  # landlock: execute, read file, read dir
_CLONE_NEWNET = 0x40000000


@dataclass
class RunResult:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool


class Sandbox(Protocol):
    """A place to run a program: the local one below, or a remote service (E2B, piston, …)."""

    def run(self, program: str, stdin: str = "") -> RunResult: ...


@cache
def _landlock_abi() -> int:
    abi = _LIBC.syscall(_SYS_LANDLOCK[0], None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(0, abi)


def _seccomp_program(pid: int) -> bytes | None:
    """A BPF filter: EPERM for process creation, sockets, ptrace and signals to others."""
    arch = _ARCH.get(platform.machine())
    if arch is None:
        return None
    audit, denied, signals = arch
    ins: list[tuple[int, int, int, int]] = []
    ld, jeq, ret = 0x20, 0x15, 0x06
    eperm, allow, kill = 0x00050000 | errno.EPERM, 0x7FFF0000, 0x80000000
    ins += [(ld, 0, 0, 4), (jeq, 1, 0, audit), (ret, 0, 0, kill), (ld, 0, 0, 0)]
    if audit == 0xC000003E:  # x32 ABI numbers alias the 64-bit ones with bit 30 set
        ins += [(0x25, 0, 1, 0x3FFFFFFF), (ret, 0, 0, kill)]  # jgt
    for nr in sorted(denied):
        ins += [(jeq, 0, 1, nr), (ret, 0, 0, eperm)]
    for nr in sorted(signals):  # kill/tkill/tgkill/pidfd_send_signal: only its own pid
        ins += [(jeq, 0, 4, nr), (ld, 0, 0, 16), (jeq, 1, 0, pid), (ret, 0, 0, eperm),
                (ret, 0, 0, allow)]
    ins.append((ret, 0, 0, allow))
    return b"".join(struct.pack("HBBI", *i) for i in ins)


def _confine(work: Path, limits: dict[int, int], read_paths: list[str]) -> None:
    """Runs in the child between fork and exec; any failure aborts the run (strict)."""
    for res, value in limits.items():
        resource.setrlimit(res, (value, value))
    _LIBC.unshare(_CLONE_NEWNET)  # best effort: seccomp already forbids sockets
    abi = _landlock_abi()
    ruleset = -1
    if abi:
        handled = (1 << (13 if abi < 2 else 14 if abi < 3 else 15)) - 1
        attr = struct.pack("Q", handled)
        ruleset = _LIBC.syscall(_SYS_LANDLOCK[0], attr, ctypes.c_size_t(8), ctypes.c_uint32(0))
        for path, access in [(str(work), handled), *((p, _RO) for p in read_paths)]:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            if not os.path.isdir(path):
                access &= 1 | 2 | 4 | (16384 if abi >= 3 else 0)  # file-only rights
            rule = struct.pack("=Qi", access, fd)
            _LIBC.syscall(_SYS_LANDLOCK[1], ruleset, 1, rule, 0)
            os.close(fd)
    for cap in range(64):
        _LIBC.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
    header = struct.pack("Ii", 0x20080522, 0)
    _LIBC.capset(header, bytes(24))
    if _LIBC.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "no_new_privs")
    if ruleset >= 0 and _LIBC.syscall(_SYS_LANDLOCK[2], ruleset, 0) != 0:
        raise OSError(ctypes.get_errno(), "landlock_restrict_self")
    prog = _seccomp_program(os.getpid())
    if prog is not None:
        buf = ctypes.create_string_buffer(prog)
        fprog = struct.pack("HxxxxxxQ", len(prog) // 8, ctypes.addressof(buf))
        if _LIBC.prctl(_PR_SET_SECCOMP, 2, ctypes.c_char_p(fprog), 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "seccomp")


class LocalSandbox:
    """One fresh confined ``python -I -S`` process per run (see the module docstring)."""

    def __init__(self, cpu_s: int = 5, wall_s: float = 10.0, memory_mb: int = 512,
                 output_kb: int = 1024, strict: bool = True):
        self.cpu_s, self.wall_s, self.memory_mb, self.output_kb = cpu_s, wall_s, memory_mb, output_kb
        missing = [k for k, on in self.protections().items() if not on]
        if strict and missing:
            raise RuntimeError(
                f"the local code sandbox lacks {missing} on this machine; run code rewards "
                "where seccomp and Landlock work, use a remote sandbox, or pass strict=False "
                "to accept the weaker containment"
            )

    @staticmethod
    def protections() -> dict[str, bool]:
        linux = sys.platform.startswith("linux")
        return {
            "seccomp (no fork, no sockets)": linux and platform.machine() in _ARCH,
            "landlock (files)": linux and _landlock_abi() > 0,
        }

    def run(self, program: str, stdin: str = "") -> RunResult:
        root = Path(tempfile.mkdtemp(prefix="r1-sandbox-"))
        try:
            work = root / "work"
            work.mkdir()
            (work / "main.py").write_text(program, errors="surrogatepass")
            limit = self.output_kb * 1024
            limits = {
                resource.RLIMIT_CPU: self.cpu_s,
                resource.RLIMIT_AS: self.memory_mb * 1024 * 1024,
                resource.RLIMIT_FSIZE: limit,
                resource.RLIMIT_NOFILE: 64,
                resource.RLIMIT_CORE: 0,
            }
            if os.geteuid() != 0:  # does not bind root; seccomp is the real fork guard
                limits[resource.RLIMIT_NPROC] = 0
            exe = os.path.realpath(sys.executable)
            reads = sorted({sys.base_prefix, os.path.dirname(os.path.dirname(exe)), "/usr/lib",
                            "/usr/lib64", "/lib", "/lib64", "/etc/ld.so.cache", "/dev/null",
                            "/dev/urandom"})
            with open(root / "stdout", "w+b") as out, open(root / "stderr", "w+b") as err:
                proc = subprocess.Popen(
                    [exe, "-I", "-S", "-B", "main.py"], cwd=work, stdin=subprocess.PIPE,
                    stdout=out, stderr=err, start_new_session=True, close_fds=True,
                    env={"PATH": "/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work),
                         "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8"},
                    preexec_fn=lambda: _confine(work, limits, reads),
                )
                timed_out = False
                try:
                    proc.communicate(stdin.encode("utf-8", "surrogatepass"), timeout=self.wall_s)
                except subprocess.TimeoutExpired:
                    timed_out = True
                except (BrokenPipeError, OSError):
                    pass
                finally:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                    proc.wait()
                out.seek(0)
                err.seek(0)
                return RunResult(
                    None if timed_out else proc.returncode,
                    out.read(limit).decode("utf-8", "replace"),
                    err.read(limit).decode("utf-8", "replace"),
                    timed_out,
                )
        finally:
            shutil.rmtree(root, ignore_errors=True)
