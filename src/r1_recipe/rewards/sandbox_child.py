"""The sandboxed child: confine this very process, then run the untrusted ``main.py``.

The local sandbox (:mod:`r1_recipe.rewards.sandbox`) starts ``python -I -S -B sandbox_child.py
CONFIG`` in the run's temporary folder; this script applies every layer to itself (rlimits,
a private network namespace when allowed, Landlock, dropped capabilities, no_new_privs,
seccomp) and only then runs ``main.py`` as ``__main__`` in the same interpreter. So a run
costs one interpreter start, and the parent never runs Python between fork and exec (no
``preexec_fn``: ``subprocess`` can spawn with vfork, which costs the same for a trainer holding
gigabytes as for a small process, and is safe while the parent has other threads).

Only the standard library is imported here (``-I`` keeps site-packages and the package out).
Any confinement failure exits with status 120 before a line of the program runs.

The proof of the program's end: the parent's per-run key arrives on a pipe (read and closed
before the program's first line), and only when ``main.py`` returned without raising does
:func:`_prover` write it, with the harness's ``__r1_result__``, to the proof descriptor, then
``os._exit(0)``. The key is a value in this interpreter while the program runs: a program that
walks the frames, the ``gc`` heap or raw memory can find it, so in a plain run the proof only
carries a result the parent judges itself. A judged run (:func:`judged`) forks first: the
program runs in one process and the tests in another, which alone reads the key.
"""

from __future__ import annotations

import atexit
import errno
import gc
import os
import resource
import struct
import sys

import _ctypes
import _signal

CONFINE_FAILED = 120  # the exit status when a layer could not be set up, after this on stderr:
CONFINE_MESSAGE = b"sandbox: confinement failed: "
KEY_BYTES = 32  # the per-run secret's length (hex text) the parent sends on a pipe
RESULT_NAME = "__r1_result__"  # a harness's global whose text (a str) the proof carries



# libc's functions through ``_ctypes``, the C half of ``ctypes``: importing ``ctypes`` itself
# (its Python half, which builds the whole type zoo) costs 3 ms of every run, a sixth of a small
# test's. The types below are those ``ctypes`` defines under the same codes.
class _CInt(_ctypes._SimpleCData):
    _type_ = "i"


class _CLong(_ctypes._SimpleCData):
    _type_ = "l"


class _CSize(_ctypes._SimpleCData):
    _type_ = "L"  # size_t on LP64 Linux (x86_64, aarch64: the only arches confined here)


class _CUInt32(_ctypes._SimpleCData):
    _type_ = "I"


class _CChar(_ctypes._SimpleCData):
    _type_ = "c"


_FUNCTION_FLAGS = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO


class _IntFunction(_ctypes.CFuncPtr):
    _flags_ = _FUNCTION_FLAGS
    _restype_ = _CInt


class _LongFunction(_ctypes.CFuncPtr):
    _flags_ = _FUNCTION_FLAGS
    _restype_ = _CLong


class _Libc:
    """``ctypes.CDLL(None, use_errno=True)``'s calls: ``_LIBC.name(*args)`` returns a C int,
    ``_LIBC.syscall`` a C long."""

    _handle = _ctypes.dlopen(None)

    def __getattr__(self, name: str):
        function = (_LongFunction if name == "syscall" else _IntFunction)((name, self))
        setattr(self, name, function)
        return function


_LIBC = _Libc()

# syscall numbers per arch: (audit arch, denied calls, signal calls allowed on its own pid only,
# calls allowed on pid 0 or its own pid only)
# denied: fork vfork clone clone3 socket socketpair ptrace process_vm_readv/writev pidfd_open
# pidfd_getfd unshare setns io_uring_setup (io_uring can open sockets without syscalls);
# attributes of files it may reach (chmod, chown, utime, xattr families), fallocate (disk past
# RLIMIT_FSIZE), scheduling and priority of any process (setpriority, sched_set*, ioprio_set);
# System V IPC, POSIX message queues and keyrings (they outlive the run without an IPC namespace).
# signals: kill tkill tgkill pidfd_send_signal rt_sigqueueinfo rt_tgsigqueueinfo; own: prlimit64.
ARCH = {
    "x86_64": (0xC000003E,
               {57, 58, 56, 435, 41, 53, 101, 310, 311, 434, 438, 272, 308, 425,
                90, 91, 268, 452, 92, 93, 94, 260, 132, 235, 261, 280, 188, 189, 190, 197, 198, 199,
                285, 141, 142, 144, 203, 314, 251,
                29, 30, 31, 64, 65, 66, 67, 68, 69, 70, 71, 220, 240, 241, 248, 249, 250},
               {62, 200, 234, 424, 129, 297}, {302}),
    "aarch64": (0xC00000B7,
                {220, 435, 198, 199, 117, 270, 271, 434, 438, 97, 268, 425,
                 52, 53, 54, 55, 88, 452, 5, 6, 7, 14, 15, 16,
                 47, 140, 118, 119, 122, 274, 30,
                 186, 187, 188, 189, 190, 191, 192, 193, 194, 195, 196, 197, 180, 181, 217, 218, 219},
                {129, 130, 131, 424, 138, 240}, {261}),
}
_SYS_LANDLOCK = (444, 445, 446)  # create_ruleset, add_rule, restrict_self (all arches)
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _PR_CAPBSET_DROP = 1, 38, 22, 24
_RO = 1 | 4 | 8  # landlock: execute, read file, read dir
_CLONE_NEWNET = 0x40000000

_ABI: list[int] = []


def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0: none)."""
    if not _ABI:
        abi = _LIBC.syscall(_SYS_LANDLOCK[0], None, _CSize(0), _CUInt32(1))
        _ABI.append(max(0, abi))
    return _ABI[0]


def seccomp_program(pid: int) -> bytes | None:
    """A BPF filter: EPERM for the denied calls (see :data:`ARCH`), for signals to any process but
    ``pid`` and for resource limits of any process but ``pid`` (or 0, itself)."""
    arch = ARCH.get(os.uname().machine)
    if arch is None:
        return None
    audit, denied, signals, own = arch
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
    for nr in sorted(own):  # prlimit64: pid 0 (itself, as setrlimit calls it) or its own pid
        ins += [(jeq, 0, 5, nr), (ld, 0, 0, 16), (jeq, 2, 0, 0), (jeq, 1, 0, pid), (ret, 0, 0, eperm),
                (ret, 0, 0, allow)]
    ins.append((ret, 0, 0, allow))
    return b"".join(struct.pack("HBBI", *i) for i in ins)


def confine(work: str, limits: dict[int, int], read_paths: list[str]) -> None:
    """Apply every layer to the calling process; raises OSError when one fails."""
    confine_shared(work, read_paths)
    confine_own(limits)


def confine_shared(work: str, read_paths: list[str]) -> None:
    """The layers a fork inherits (network namespace, Landlock, capabilities, no_new_privs): a
    judged run sets them up once, before it forks into runner and judge."""
    _LIBC.unshare(_CLONE_NEWNET)  # best effort: seccomp already forbids sockets
    abi = landlock_abi()
    ruleset = -1
    if abi:
        handled = (1 << (13 if abi < 2 else 14 if abi < 3 else 15)) - 1
        attr = struct.pack("Q", handled)
        ruleset = _LIBC.syscall(_SYS_LANDLOCK[0], attr, _CSize(8), _CUInt32(0))
        for path, access in [(work, handled), *((p, _RO) for p in read_paths)]:
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
        raise OSError(_ctypes.get_errno(), "no_new_privs")
    if ruleset >= 0 and _LIBC.syscall(_SYS_LANDLOCK[2], ruleset, 0) != 0:
        raise OSError(_ctypes.get_errno(), "landlock_restrict_self")


def confine_own(limits: dict[int, int]) -> None:
    """The layers of this process alone: rlimits (``RLIMIT_NPROC`` 0 would stop the judged run's
    fork), death with its parent, and seccomp, whose signal rules name this pid."""
    for res, value in limits.items():
        resource.setrlimit(int(res), (value, value))
    _LIBC.prctl(_PR_SET_PDEATHSIG, 9, 0, 0, 0)  # dies with the thread that started it (the trainer's)
    prog = seccomp_program(os.getpid())
    if prog is not None:
        buf = (_CChar * len(prog)).from_buffer_copy(prog)
        fprog = struct.pack("HxxxxxxQ", len(prog) // 8, _ctypes.addressof(buf))
        if _LIBC.prctl(_PR_SET_SECCOMP, 2, fprog, 0, 0) != 0:
            raise OSError(_ctypes.get_errno(), "seccomp")


def command_line(work: str, limits: dict[int, int], read_paths: list[str], key_fd: int, proof_fd: int,
                 judge_fd: int = -1) -> list[str]:
    """The arguments :func:`main` reads (plain strings: parsing JSON here would import ``re``
    and ``enum``, tens of milliseconds per run)."""
    return [work, ",".join(f"{k}={v}" for k, v in limits.items()), "\n".join(read_paths), str(key_fd), str(proof_fd),
            str(judge_fd)]


# --- the judge: tests run in a process apart from the program ---------------------------------
# A judged run sets up the layers a fork inherits, then forks before the rest (each process's own
# rlimits and seccomp, whose signal rules name its pid): the *runner* runs main.py (the program alone)
# and then answers calls on a pipe; the *judge* holds the key, the proof descriptor and the tests
# (which the runner never sees), runs the tests with each name the program should define bound to
# a stand-in that calls the runner, and proves that they ran to their end. Values cross as ``repr``
# text read back with :func:`plain_value` (``ast.literal_eval``'s rules): plain data only, never an object of the program's. The
# runner cannot reach the judge: another process (no ptrace, no process_vm_*, no signals to it, no
# /proc under Landlock or bubblewrap, and the judge is not dumpable).
JUDGE_SEPARATOR = "\0"  # between the judge file's parts: setup, names (comma-separated), test
_PR_SET_DUMPABLE = 4


def _send(fd: int, text: str, write=os.write) -> None:
    data = text.encode("utf-8", "surrogatepass")
    data = b"%010d" % len(data) + data
    while data:
        data = data[write(fd, data):]


def _receive(fd: int, read=os.read) -> str | None:
    """One message, or None when the other side is gone (or sent no message)."""
    head = b""
    while len(head) < 10:
        chunk = read(fd, 10 - len(head))
        if not chunk:
            return None
        head += chunk
    if not head.isdigit():
        return None
    size, body = int(head), []
    while size:
        chunk = read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        body.append(chunk)
        size -= len(chunk)
    return b"".join(body).decode("utf-8", "surrogatepass")


def _serve(namespace: dict, requests: int, replies: int, literal, module_type, kind=type, text=repr,
           can_call=callable, problem=BaseException, receive=_receive, send=_send, exit_=os._exit) -> None:
    """The runner, after the program ran: answer the judge's ``("kind"|"call", name, args, kwargs)``."""
    while True:
        message = receive(requests)
        if message is None:
            exit_(0)
        try:
            op, name, args, kwargs = literal(message)
            obj = namespace[name]
            if op == "kind":
                if kind(obj) is module_type:
                    reply = "module\n" + obj.__name__
                else:
                    reply = "call\n" if can_call(obj) else "value\n" + text(obj)
            else:
                reply = "ok\n" + text(obj(*args, **kwargs))
        except problem as e:  # noqa: BLE001 - whatever the program raised goes back as an error
            try:
                reply = "error\n" + kind(e).__name__
            except problem:
                reply = "error\n"
        send(replies, reply)


class RemoteError(Exception):
    """The program raised, ended, or returned something that is no plain value."""


def plain_value(text: str):
    """``ast.literal_eval`` for the values that cross between runner and judge, over the C
    module ``_ast`` alone: importing ``ast`` (with ``enum``, ``contextlib``, ``collections``) cost
    about 6 ms of every judged run, a fifth of a small test's whole run. Plain data only: str,
    bytes, numbers (complex as ``a + bj``), bool, None, Ellipsis, tuples, lists, dicts, sets and
    ``set()``; anything else raises ValueError, a malformed text SyntaxError.

    >>> plain_value("(1, -2.5, [b'x', {1: None}], {3}, 1+2j, set())")
    (1, -2.5, [b'x', {1: None}], {3}, (1+2j), set())
    """
    import _ast  # noqa: PLC0415 - here, not at the top: only judged runs pay its import (1 ms)

    def value(node):
        kind = type(node)
        if kind is _ast.Constant:
            return node.value
        if kind is _ast.Tuple:
            return tuple(map(value, node.elts))
        if kind is _ast.List:
            return list(map(value, node.elts))
        if kind is _ast.Set:
            return set(map(value, node.elts))
        if kind is _ast.Dict and None not in node.keys:  # a None key is ``**spread``
            return dict(zip(map(value, node.keys), map(value, node.values)))
        if kind is _ast.Call and type(node.func) is _ast.Name and node.func.id == "set" \
                and not node.args and not node.keywords:
            return set()
        if kind is _ast.UnaryOp and type(node.op) in (_ast.UAdd, _ast.USub) and type(node.operand) is _ast.Constant:
            operand = node.operand.value  # a sign on a number written out, nothing else
            if type(operand) in (int, float, complex):
                return +operand if type(node.op) is _ast.UAdd else -operand
        if kind is _ast.BinOp and type(node.op) in (_ast.Add, _ast.Sub) and type(node.right) is _ast.Constant:
            left, right = value(node.left), node.right.value  # ±real ± imaginary written out
            if type(left) in (int, float) and type(right) is complex:
                return left + right if type(node.op) is _ast.Add else left - right
        raise ValueError(f"not a plain value: {kind.__name__}")

    return value(compile(text.lstrip(" \t"), "<value>", "eval", _ast.PyCF_ONLY_AST).body)


def _stand_in(name: str, requests: int, replies: int, literal):
    def call(*args, **kwargs):
        _send(requests, repr(("call", name, args, kwargs)))
        reply = _receive(replies)
        if reply is None:
            raise RemoteError(f"the program ended before {name} returned")
        status, _, payload = reply.partition("\n")
        if status != "ok":
            raise RemoteError(f"{name} raised {payload}")
        try:
            return literal(payload)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
            raise RemoteError(f"{name} returned no plain value") from e

    call.__name__ = name
    return call


def _judge(spec: str, requests: int, replies: int) -> dict:
    """The judge's namespace after the tests ran (raises what a failed test raises)."""
    setup, names, test = spec.split(JUDGE_SEPARATOR)
    namespace: dict = {"__name__": "__judge__"}
    exec(compile(setup, "setup.py", "exec"), namespace)
    for name in filter(None, names.split(",")):
        _send(requests, repr(("kind", name, (), {})))
        reply = _receive(replies)
        if reply is None:
            raise RemoteError("the program ended before its tests")
        status, _, payload = reply.partition("\n")
        if status == "call":
            namespace[name] = _stand_in(name, requests, replies, plain_value)
        elif status == "module":
            namespace[name] = __import__(payload, fromlist=("__name__",))  # the module itself (dotted names too)
        elif status == "value":
            try:
                namespace[name] = plain_value(payload)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                pass  # not plain data: the test finds no such name
    exec(compile(test, "tests.py", "exec"), namespace)
    return namespace


def _prover(key: bytes, proof_fd: int, namespace: dict, write=os.write, exit_=os._exit,
            mask=_signal.pthread_sigmask, signals=_signal.valid_signals(), block=_signal.SIG_BLOCK,
            stop_gc=gc.disable, streams=sys, at_exit=atexit._run_exitfuncs, kind=type, text=str, length=len,
            problem=BaseException):
    """What runs once the program's code returned: the proof, then an exit no handler follows.

    Everything it calls is bound here, before the program runs (default arguments), so a
    program that replaces ``os.write`` or builtins cannot change what it writes. The program's
    ``atexit`` handlers run first, as at a normal exit (an exit from one leaves no proof); the
    last program code that can run is the streams' ``flush`` and the lookup of the result; then the
    collector (finalizers) is off and signals are blocked, so no Python code runs between the
    proof and the exit (no ``atexit`` handler, no signal handler)."""

    def prove() -> None:
        at_exit()
        for stream in (streams.stdout, streams.stderr):
            try:
                stream.flush()
            except problem:  # closed or replaced: its output is what it is
                pass
        stop_gc()
        result = namespace.get(RESULT_NAME)
        mask(block, signals)
        payload = result.encode("utf-8", "surrogatepass") if kind(result) is text else b""
        write(proof_fd, key + b"%010d" % length(payload) + payload)
        exit_(0)

    return prove


def _confine_or_exit(work: str | None, limits: str | None, reads: str = "") -> None:
    """Set up the shared layers (with ``work``), this process's own (with ``limits``), or both."""
    try:
        if work is not None:
            confine_shared(work, [p for p in reads.split("\n") if p])
        if limits is not None:
            confine_own({int(k): int(v) for k, v in (kv.split("=") for kv in limits.split(",") if kv)})
    except Exception as e:  # noqa: BLE001 - strict: never run the program unconfined
        sys.stderr.write(f"{CONFINE_MESSAGE.decode()}{e!r}\n")
        os._exit(CONFINE_FAILED)


def _run_program() -> tuple[dict, object]:
    """A fresh ``__main__`` (as ``python main.py`` gives the program) and ``main.py`` compiled."""
    with open("main.py", "rb") as f:
        code = compile(f.read(), "main.py", "exec")
    sys.argv = ["main.py"]
    module = type(sys)("__main__")
    module.__file__ = "main.py"
    sys.modules["__main__"] = module
    return module.__dict__, code


def main(argv: list[str]) -> None:
    work, limits, reads, key_fd, proof_fd, judge_fd = argv[1:7]
    if judge_fd != "-1":
        return judged(work, limits, reads, int(key_fd), int(proof_fd), int(judge_fd))
    key = os.read(int(key_fd), KEY_BYTES)  # the parent's per-run secret: on a pipe, never in a file
    os.close(int(key_fd))
    _confine_or_exit(work, limits, reads)
    namespace, code = _run_program()
    prove = _prover(key, int(proof_fd), namespace)
    del key
    exec(code, namespace)
    prove()  # reached only when the program's last line ran without raising


def judged(work: str, limits: str, reads: str, key_fd: int, proof_fd: int, judge_fd: int) -> None:
    """Fork into the runner (the program) and the judge (the tests, the key), see above."""
    _confine_or_exit(work, None, reads)
    to_runner, from_judge = os.pipe()[::-1]
    to_judge, from_runner = os.pipe()[::-1]
    if os.fork() == 0:  # the runner: no key, no proof descriptor, no tests
        for fd in (key_fd, proof_fd, judge_fd, to_runner, from_runner):
            os.close(fd)
        _confine_or_exit(None, limits)
        namespace, code = _run_program()
        serve = (lambda: _serve(namespace, from_judge, to_judge, plain_value, type(sys)))  # bound before it runs
        try:
            exec(code, namespace)
        except BaseException:  # noqa: BLE001 - shown as a program's error would be; the judge sees it end
            sys.excepthook(*sys.exc_info())
            os._exit(1)
        for stream in (sys.stdout, sys.stderr):  # what it printed comes out even if the judge ends first
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001 - closed or replaced: its output is what it is
                pass
        serve()
    for fd in (from_judge, to_judge):
        os.close(fd)
    key = os.read(key_fd, KEY_BYTES)
    os.close(key_fd)
    with os.fdopen(judge_fd, "rb") as f:
        spec = f.read().decode("utf-8", "surrogatepass")
    _LIBC.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)  # no /proc/<judge>/mem for anyone of its uid
    _confine_or_exit(None, limits)
    prove = _prover(key, proof_fd, {})
    _judge(spec, to_runner, from_runner)
    prove()  # the tests ran to their end


if __name__ == "__main__":
    main(sys.argv)
