"""One adapter per system under test: each workload written with that system's ordinary API.

Every adapter offers some of: ``start()`` (one gateway from nothing to its first
result, then exit), ``connect()`` (a warm connection for the per-message workloads),
``group(size)`` and ``idle_rss()``. ``supports`` says which workloads it maps onto;
a workload leaves out the systems that do not support it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PYTHON = sys.executable
SETSID = shutil.which("setsid")
# Linux gives every session its own scheduler autogroup; execwire starts each far Python
# in a new session, so under load from other sessions its far sides would get more CPU
# than those of the others. With OWN_SESSION every system's far side gets a session of
# its own (through setsid(1) where the system's API offers no other way).
OWN_SESSION = True
SETUP_TIMEOUT = 60.0  # for waits outside the timed loops; a hang becomes an error, not a stall
perf_counter = time.perf_counter

ECHO_SOURCE = "for item in channel:\n    channel.send(item)\n"
SINK_SOURCE = (
    "channel.send('ready')\n"
    "count = size = 0\n"
    "for item in channel:\n"
    "    if item is None:\n"
    "        break\n"
    "    count += 1\n"
    "    size += len(item)\n"
    "channel.send((count, size))\n"
)
ONELINER = "x = 1"
FIRST_RESULT = "channel.send(1)"


class Unavailable(Exception):
    """The system is not installed here; the benchmark says so and goes on without it."""


def read_rss_kb(pid: int) -> int:
    """VmRSS of a process, in kB, from /proc/PID/status."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS line in /proc/{pid}/status")


def check(condition: bool, what: str) -> None:
    """A benchmark that measures something that did not happen measures nothing."""
    if not condition:
        raise RuntimeError(f"wrong result: {what}")


class System:
    name = ""
    supports: frozenset[str] = frozenset()
    required = False  # a failure of a required system makes the run fail

    def version(self) -> str:
        return ""

    def start(self) -> dict[str, float]:
        raise NotImplementedError

    def connect(self) -> Connection:
        raise NotImplementedError

    def group(self, size: int) -> float:
        raise NotImplementedError

    def idle_rss(self) -> int:
        raise NotImplementedError


class Connection:
    """A warm connection; each method returns the seconds its timed part took."""

    def roundtrip(self, n: int) -> float:
        raise NotImplementedError

    def oneliner(self, n: int) -> float:
        raise NotImplementedError

    def bulk(self, blob: bytes, k: int) -> float:
        raise NotImplementedError

    def tuples(self, m: int) -> float:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


# -- execwire and execnet: the same channel code through both -----------------
class ChannelConnection(Connection):
    """Workloads written against the execnet-style API that execwire and execnet share."""

    def __init__(self, gateway: Any, closer: Any) -> None:
        self.gw = gateway
        self._closer = closer
        self.gw.remote_exec(FIRST_RESULT).receive(SETUP_TIMEOUT)

    def roundtrip(self, n: int) -> float:
        channel = self.gw.remote_exec(ECHO_SOURCE)
        channel.send(-1)
        first = channel.receive(SETUP_TIMEOUT)
        check(first == -1, f"echo of -1 came back as {first!r}")
        send, receive = channel.send, channel.receive
        last = None
        t0 = perf_counter()
        for i in range(n):
            send(i)
            last = receive()
        elapsed = perf_counter() - t0
        check(last == n - 1, f"last echo {last!r}, expected {n - 1}")
        channel.close()
        channel.waitclose(SETUP_TIMEOUT)
        return elapsed

    def oneliner(self, n: int) -> float:
        remote_exec = self.gw.remote_exec
        t0 = perf_counter()
        for _ in range(n):
            remote_exec(ONELINER).waitclose(SETUP_TIMEOUT)
        return perf_counter() - t0

    def _sink(self, items: Any, count: int, size: int) -> float:
        channel = self.gw.remote_exec(SINK_SOURCE)
        ready = channel.receive(SETUP_TIMEOUT)
        check(ready == "ready", f"the sink said {ready!r} instead of 'ready'")
        send = channel.send
        t0 = perf_counter()
        for item in items:
            send(item)
        send(None)
        answer = channel.receive(SETUP_TIMEOUT)
        elapsed = perf_counter() - t0
        check(tuple(answer) == (count, size), f"sink saw {answer!r}, expected {(count, size)!r}")
        channel.waitclose(SETUP_TIMEOUT)
        return elapsed

    def bulk(self, blob: bytes, k: int) -> float:
        return self._sink([blob] * k, k, k * len(blob))

    def tuples(self, m: int) -> float:
        return self._sink([("task", i, 1.5) for i in range(m)], m, 3 * m)

    def close(self) -> None:
        self._closer()


class Execwire(System):
    name = "execwire"
    supports = frozenset({"start", "roundtrip", "oneliner", "bulk", "tuples", "group", "rss"})
    required = True

    def __init__(self) -> None:
        import execwire

        self.mod = execwire

    def version(self) -> str:
        return str(self.mod.__version__)

    def start(self) -> dict[str, float]:
        t0 = perf_counter()
        gw = self.mod.makegateway("popen")
        gw.remote_exec(FIRST_RESULT).receive(SETUP_TIMEOUT)
        t1 = perf_counter()
        gw.exit()
        return {"total": perf_counter() - t0, "first result": t1 - t0}

    def connect(self) -> Connection:
        gw = self.mod.makegateway("popen")
        return ChannelConnection(gw, gw.exit)

    def group(self, size: int) -> float:
        t0 = perf_counter()
        group = self.mod.Group()
        group.makegateways(["popen"] * size)  # side by side (makegateway waits for each, as execnet's does)
        results = group.remote_exec(FIRST_RESULT).receive_each()
        group.terminate(5.0)
        elapsed = perf_counter() - t0
        check(results == [1] * size, f"group results {results!r}")
        return elapsed

    def idle_rss(self) -> int:
        gw = self.mod.makegateway("popen")
        try:
            channel = gw.remote_exec(FIRST_RESULT)
            channel.receive(SETUP_TIMEOUT)
            channel.waitclose(SETUP_TIMEOUT)
            return read_rss_kb(gw._rinfo().pid)
        finally:
            gw.exit()


def far_python() -> list[str]:
    """The far interpreter's command for systems that start it themselves."""
    if OWN_SESSION and SETSID is not None:
        return [SETSID, PYTHON]
    return [PYTHON]


class Execnet(System):
    name = "execnet"
    supports = frozenset({"start", "roundtrip", "oneliner", "bulk", "tuples", "group", "rss"})
    required = True

    def __init__(self) -> None:
        try:
            import execnet
        except ImportError as exc:
            raise Unavailable("execnet is not installed (pip install execnet)") from exc
        self.mod = execnet

    def version(self) -> str:
        return str(self.mod.__version__)

    @staticmethod
    def spec() -> str:
        return "popen//python=" + " ".join(far_python())

    def start(self) -> dict[str, float]:
        t0 = perf_counter()
        group = self.mod.Group()
        gw = group.makegateway(self.spec())
        gw.remote_exec(FIRST_RESULT).receive(SETUP_TIMEOUT)
        t1 = perf_counter()
        group.terminate(5.0)  # gw.exit() alone does not wait for the process
        return {"total": perf_counter() - t0, "first result": t1 - t0}

    def connect(self) -> Connection:
        group = self.mod.Group()
        gw = group.makegateway(self.spec())
        return ChannelConnection(gw, lambda: group.terminate(5.0))

    def group(self, size: int) -> float:
        t0 = perf_counter()
        group = self.mod.Group()
        for _ in range(size):
            group.makegateway(self.spec())
        results = group.remote_exec(FIRST_RESULT).receive_each()
        group.terminate(5.0)
        elapsed = perf_counter() - t0
        check(results == [1] * size, f"group results {results!r}")
        return elapsed

    def idle_rss(self) -> int:
        group = self.mod.Group()
        try:
            gw = group.makegateway(self.spec())
            channel = gw.remote_exec(FIRST_RESULT)
            channel.receive(SETUP_TIMEOUT)
            channel.waitclose(SETUP_TIMEOUT)
            return read_rss_kb(gw._rinfo().pid)
        finally:
            group.terminate(5.0)


# -- mitogen: calls instead of channels ------------------------------------------
class Mitogen(System):
    name = "mitogen"
    supports = frozenset({"start", "roundtrip", "bulk", "group", "rss"})

    def __init__(self) -> None:
        try:
            import mitogen.core
            import mitogen.master
        except ImportError as exc:
            raise Unavailable("mitogen is not installed (pip install mitogen)") from exc
        self.mod = mitogen
        self.master = mitogen.master

    def version(self) -> str:
        return ".".join(str(part) for part in self.mod.__version__)

    def _router(self) -> tuple[Any, Any]:
        broker = self.master.Broker()
        return broker, self.master.Router(broker)

    def start(self) -> dict[str, float]:
        t0 = perf_counter()
        broker, router = self._router()
        context = router.local(python_path=far_python())
        context.call(os.getpid)
        t1 = perf_counter()
        broker.shutdown()
        broker.join()
        return {"total": perf_counter() - t0, "first result": t1 - t0}

    def connect(self) -> Connection:
        broker, router = self._router()
        return MitogenConnection(broker, router.local(python_path=far_python()))

    def group(self, size: int) -> float:
        t0 = perf_counter()
        broker, router = self._router()
        # local() returns once the child is up, so they start one after the other
        contexts = [router.local(python_path=far_python()) for _ in range(size)]
        pids = [context.call(os.getpid) for context in contexts]
        broker.shutdown()
        broker.join()
        elapsed = perf_counter() - t0
        check(len(set(pids)) == size, f"pids {pids!r}")
        return elapsed

    def idle_rss(self) -> int:
        broker, router = self._router()
        try:
            return read_rss_kb(router.local(python_path=far_python()).call(os.getpid))
        finally:
            broker.shutdown()
            broker.join()


class MitogenConnection(Connection):
    def __init__(self, broker: Any, context: Any) -> None:
        self.broker = broker
        self.context = context
        context.call(os.getpid)

    def roundtrip(self, n: int) -> float:
        call = self.context.call
        last = None
        t0 = perf_counter()
        for i in range(n):
            last = call(abs, i)
        elapsed = perf_counter() - t0
        check(last == n - 1, f"last answer {last!r}")
        return elapsed

    def bulk(self, blob: bytes, k: int) -> float:
        call_async = self.context.call_async
        t0 = perf_counter()
        receivers = [call_async(len, blob) for _ in range(k)]
        sizes = [receiver.get().unpickle() for receiver in receivers]
        elapsed = perf_counter() - t0
        check(sum(sizes) == k * len(blob), f"sizes {sizes[:3]!r}...")
        return elapsed

    def close(self) -> None:
        self.broker.shutdown()
        self.broker.join()


# -- rpyc: the classic (SlaveService) server over the pipes of a subprocess --------
RPYC_SERVER = """\
import os, sys
from rpyc.utils.classic import connect_pipes
stdin, stdout = sys.stdin, sys.stdout
sys.stdin = open(os.devnull, "r")
sys.stdout = open(os.devnull, "w")
try:
    connect_pipes(stdin, stdout).serve_all()
except (EOFError, OSError):
    pass  # the controller went away
"""


class Rpyc(System):
    name = "rpyc"
    supports = frozenset({"start", "roundtrip", "oneliner", "bulk", "rss"})

    def __init__(self) -> None:
        try:
            import rpyc
            from rpyc.core.service import ClassicService
            from rpyc.utils.factory import connect_pipes
        except ImportError as exc:
            raise Unavailable("rpyc is not installed (pip install rpyc)") from exc
        self.mod = rpyc
        self._connect_pipes = connect_pipes
        self._service = ClassicService  # what rpyc.classic.connect_subproc uses

    def version(self) -> str:
        return str(self.mod.__version__)

    def _connect(self) -> Any:
        # rpyc.utils.factory.connect_subproc with a session of its own; the far side is what
        # ``rpyc_classic --mode stdio`` runs, without its command-line framework
        popen = subprocess.Popen([PYTHON, "-u", "-c", RPYC_SERVER], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, start_new_session=OWN_SESSION)
        conn = self._connect_pipes(popen.stdout, popen.stdin, self._service)
        conn.proc = popen
        return conn

    @staticmethod
    def _close(conn: Any) -> None:
        conn.close()
        conn.proc.wait(SETUP_TIMEOUT)

    def start(self) -> dict[str, float]:
        t0 = perf_counter()
        conn = self._connect()
        check(conn.eval("1") == 1, "eval")
        t1 = perf_counter()
        self._close(conn)
        return {"total": perf_counter() - t0, "first result": t1 - t0}

    def connect(self) -> Connection:
        return RpycConnection(self._connect(), self.mod)

    def idle_rss(self) -> int:
        conn = self._connect()
        try:
            return read_rss_kb(conn.modules.os.getpid())
        finally:
            self._close(conn)


class RpycConnection(Connection):
    def __init__(self, conn: Any, rpyc: Any) -> None:
        self.conn = conn
        self.rpyc = rpyc
        self.abs = conn.builtins.abs
        self.len = conn.builtins.len
        check(self.abs(-1) == 1, "abs")

    def roundtrip(self, n: int) -> float:
        call = self.abs
        last = None
        t0 = perf_counter()
        for i in range(n):
            last = call(i)
        elapsed = perf_counter() - t0
        check(last == n - 1, f"last answer {last!r}")
        return elapsed

    def oneliner(self, n: int) -> float:
        execute = self.conn.execute
        t0 = perf_counter()
        for _ in range(n):
            execute(ONELINER)
        return perf_counter() - t0

    def bulk(self, blob: bytes, k: int) -> float:
        length = self.rpyc.async_(self.len)
        t0 = perf_counter()
        results = [length(blob) for _ in range(k)]
        sizes = [result.value for result in results]
        elapsed = perf_counter() - t0
        check(sum(sizes) == k * len(blob), f"sizes {sizes[:3]!r}...")
        return elapsed

    def close(self) -> None:
        Rpyc._close(self.conn)


# -- the baselines -------------------------------------------------------------
RAW_FAR = (Path(__file__).parent / "_rawfar.py").read_text(encoding="utf-8")
HEAD = 4


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(HEAD, "big") + payload


class RawProcess:
    """A far Python running _rawfar.py, talked to with os.read/os.write on its pipes."""

    def __init__(self, mode: str) -> None:
        self.popen = subprocess.Popen([PYTHON, "-c", RAW_FAR, mode], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, bufsize=0, start_new_session=OWN_SESSION)
        assert self.popen.stdin is not None and self.popen.stdout is not None
        self.w = self.popen.stdin.fileno()
        self.r = self.popen.stdout.fileno()

    def write_all(self, buffers: list[Any]) -> None:
        while buffers:
            written = os.writev(self.w, buffers)
            while buffers and written >= len(buffers[0]):
                written -= len(buffers.pop(0))
            if written:
                buffers[0] = memoryview(buffers[0])[written:]

    def read_message(self) -> bytes:
        data = os.read(self.r, 65536)
        while len(data) < HEAD or len(data) < HEAD + int.from_bytes(data[:HEAD], "big"):
            more = os.read(self.r, 65536)
            if not more:
                raise RuntimeError("the raw far side ended early")
            data += more
        return data[HEAD:]

    def close_write(self) -> None:
        """End of stream for the far side, which then exits."""
        assert self.popen.stdin is not None
        self.popen.stdin.close()

    def close(self) -> None:
        assert self.popen.stdout is not None
        self.close_write()
        self.popen.wait(SETUP_TIMEOUT)
        self.popen.stdout.close()

    def counts(self) -> tuple[int, int]:
        """Ask a sink how many messages and bytes it has seen since it was last asked."""
        os.write(self.w, frame(b""))
        answer = self.read_message()
        return int.from_bytes(answer[:8], "big"), int.from_bytes(answer[8:], "big")


class Raw(System):
    name = "raw pipe"
    supports = frozenset({"start", "roundtrip", "bulk", "tuples", "group", "rss"})
    required = True

    def start(self) -> dict[str, float]:
        t0 = perf_counter()
        far = RawProcess("echo")
        os.write(far.w, frame(b"1"))
        check(far.read_message() == b"1", "echo")
        t1 = perf_counter()
        far.close()
        return {"total": perf_counter() - t0, "first result": t1 - t0}

    def connect(self) -> Connection:
        return RawConnection()

    def group(self, size: int) -> float:
        t0 = perf_counter()
        fars = [RawProcess("echo") for _ in range(size)]
        for far in fars:
            os.write(far.w, frame(b"1"))
        answers = [far.read_message() for far in fars]
        for far in fars:
            far.close_write()  # all at once: they end side by side
        for far in fars:
            far.close()
        elapsed = perf_counter() - t0
        check(answers == [b"1"] * size, "echo answers")
        return elapsed

    def idle_rss(self) -> int:
        far = RawProcess("echo")
        try:
            os.write(far.w, frame(b"1"))
            far.read_message()
            return read_rss_kb(far.popen.pid)
        finally:
            far.close()


class RawConnection(Connection):
    def __init__(self) -> None:
        self.echo = RawProcess("echo")
        self.sink = RawProcess("sink")
        os.write(self.echo.w, frame(b"1"))
        check(self.echo.read_message() == b"1", "echo")
        check(self.sink.counts() == (0, 0), "sink")

    def roundtrip(self, n: int) -> float:
        message = frame((12345678).to_bytes(8, "big"))
        write, read, w, r = os.write, os.read, self.echo.w, self.echo.r
        size = len(message)
        t0 = perf_counter()
        for _ in range(n):
            write(w, message)
            data = read(r, 65536)
            while len(data) < size:
                data += read(r, 65536)
        elapsed = perf_counter() - t0
        check(data == message, "echo")
        return elapsed

    def bulk(self, blob: bytes, k: int) -> float:
        head = len(blob).to_bytes(HEAD, "big")
        write_all = self.sink.write_all
        t0 = perf_counter()
        for _ in range(k):
            write_all([head, blob])
        counts = self.sink.counts()
        elapsed = perf_counter() - t0
        check(counts == (k, k * len(blob)), f"sink saw {counts!r}")
        return elapsed

    def tuples(self, m: int) -> float:
        # a message as long as execwire's encoding of ("task", i, 1.5), sent one write per item
        message = frame(b"t" * 19)
        write, w = os.write, self.sink.w
        t0 = perf_counter()
        for _ in range(m):
            write(w, message)
        counts = self.sink.counts()
        elapsed = perf_counter() - t0
        check(counts == (m, 19 * m), f"sink saw {counts!r}")
        return elapsed

    def close(self) -> None:
        self.echo.close()
        self.sink.close()


BARE_PROGRAM = "import os; os.write(1, b'r'); os.read(0, 1)"


class Bare(System):
    """A Python that does nothing: ``python -c pass`` to time, a blocked read to weigh."""

    name = "bare python"
    supports = frozenset({"start", "rss"})
    required = True

    def version(self) -> str:
        return sys.version.split()[0]

    def start(self) -> dict[str, float]:
        t0 = perf_counter()
        subprocess.run([PYTHON, "-c", "pass"], check=True, start_new_session=OWN_SESSION)
        return {"total": perf_counter() - t0}

    def idle_rss(self) -> int:
        popen = subprocess.Popen([PYTHON, "-c", BARE_PROGRAM], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, bufsize=0, start_new_session=OWN_SESSION)
        assert popen.stdin is not None and popen.stdout is not None
        try:
            check(popen.stdout.read(1) == b"r", "bare python ready")
            return read_rss_kb(popen.pid)
        finally:
            popen.stdin.close()
            popen.wait(SETUP_TIMEOUT)
            popen.stdout.close()


ALL_SYSTEMS: tuple[type[System], ...] = (Execwire, Execnet, Raw, Bare, Mitogen, Rpyc)
