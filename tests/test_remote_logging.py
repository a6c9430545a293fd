"""What far code logs arrives in the controller's logging as real LogRecords, over real gateways.

popen, ssh (tests/sshd.py) and via; the far Pythons 3.6 and 3.13 (tests/pythons.py); levels that follow
the controller's; the spec key logging=; basicConfig on the far side; records from many far threads in
order; and a far side that logs a flood while the controller's handler is stuck: held back, nothing lost.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading

import call_targets
import pytest
import pythons
from conftest import wait_until
from sshd import SshServer

import execwire
from execwire._far.protocol import MIN_COST, WINDOW

pytestmark = pytest.mark.timeout(90)
pytest_plugins = ["sshd"]

LOG_SOME = """
import logging, os, threading
log = logging.getLogger("far.app")
log.debug("not sent: below the level")
log.info("%d apples for %s", 3, "ada", extra={"order": 17, "basket": object()})
try:
    1 / 0
except ZeroDivisionError:
    log.exception("it failed")
channel.send((os.getpid(), threading.current_thread().name))
"""


def capture(caplog: pytest.LogCaptureFixture, root_level: int) -> None:
    """caplog takes records of every level; the controller's root level is ``root_level`` (put back at the end)."""
    caplog.set_level(logging.DEBUG)
    logging.getLogger().setLevel(root_level)


def far_records(caplog: pytest.LogCaptureFixture, count: int, timeout: float = 20) -> list[logging.LogRecord]:
    """The records caplog has from far sides, once there are ``count`` of them."""
    def found() -> list[logging.LogRecord]:
        return [record for record in caplog.records if hasattr(record, "gateway")]

    assert wait_until(lambda: len(found()) >= count, timeout), f"far records: {found()!r}"
    return found()


def check_records(records: list[logging.LogRecord], gateway_id: str, pid: int, thread: str) -> None:
    info, error = records
    assert (info.name, info.levelno, info.levelname) == ("far.app", logging.INFO, "INFO")
    assert info.getMessage() == "3 apples for ada" and info.gateway == gateway_id  # type: ignore[attr-defined]
    assert info.order == 17 and info.basket.startswith("<object object at")  # type: ignore[attr-defined]
    assert info.process == pid and info.threadName == thread and info.lineno == 5
    assert info.exc_text is None
    assert error.levelno == logging.ERROR and error.getMessage() == "it failed"
    assert error.exc_text is not None and error.exc_text.startswith("Traceback (most recent call last):")
    assert error.exc_text.rstrip().endswith("ZeroDivisionError: division by zero")


def test_far_records_arrive_with_their_fields_and_the_gateway_id(group, caplog):
    caplog.set_level(logging.INFO)  # before the gateway starts: its root level follows ours
    gateway = group.makegateway("popen//id=apples")
    pid, thread = gateway.remote_exec(LOG_SOME).receive(timeout=20)
    check_records(far_records(caplog, 2), "apples", pid, thread)
    # the controller's formatters and handlers see a real record
    text = logging.Formatter("%(gateway)s %(name)s %(levelname)s %(message)s").format(caplog.records[-2])
    assert text == "apples far.app INFO 3 apples for ada"


@pytest.mark.parametrize("far", [interpreter for interpreter in pythons.matrix()
                                 if interpreter.name in ("3.6", "3.13", "pypy3")],
                         ids=lambda interpreter: interpreter.name)
def test_records_come_from_old_and_new_far_pythons(group, caplog, far):
    caplog.set_level(logging.INFO)
    gateway = group.makegateway(f"popen//python={far.command}")
    pid, thread = gateway.remote_exec(LOG_SOME).receive(timeout=20)
    check_records(far_records(caplog, 2), "gw0", pid, thread)


def test_records_come_over_ssh_and_through_via(group, caplog, sshd: SshServer):
    caplog.set_level(logging.INFO)
    remote = group.makegateway(sshd.spec("id=remote"))
    behind = group.makegateway("popen//via=remote//id=behind")
    for gateway in (remote, behind):
        caplog.clear()
        pid, thread = gateway.remote_exec(LOG_SOME).receive(timeout=30)
        check_records(far_records(caplog, 2), gateway.id, pid, thread)


def test_a_record_logged_at_once_by_a_new_far_side_is_never_dropped(caplog):
    """What the far side sends right behind its HELLO often comes in the same read: it must not be lost."""
    caplog.set_level(logging.INFO)
    with execwire.Group() as group:
        for number in range(8):
            group.makegateway(f"popen//id=g{number}").remote_exec(
                "import logging; logging.getLogger('early').warning('first thing')")
        records = far_records(caplog, 8)
    assert sorted(record.gateway for record in records) == [f"g{number}" for number in range(8)]  # type: ignore[attr-defined]


def test_the_far_levels_follow_the_controller_unless_the_far_code_sets_them(group, caplog):
    capture(caplog, logging.WARNING)
    logging.getLogger("chatty").setLevel(logging.DEBUG)
    try:
        gateway = group.makegateway("popen")
    finally:
        logging.getLogger("chatty").setLevel(logging.NOTSET)
    levels = gateway.remote_exec("""
        import logging
        logging.getLogger("quiet").info("not sent")
        logging.getLogger("chatty").debug("sent: chatty has the controller's DEBUG")
        channel.send((logging.getLogger().level, logging.getLogger("chatty").level))
        logging.getLogger().setLevel(logging.DEBUG)   # the far code's own choice wins
        logging.getLogger("quiet").debug("sent: the far code asked for it")
    """).receive(timeout=20)
    assert levels == (logging.WARNING, logging.DEBUG)
    records = far_records(caplog, 2)
    assert [record.getMessage() for record in records] == ["sent: chatty has the controller's DEBUG",
                                                            "sent: the far code asked for it"]


PROBE = """
import logging
logging.getLogger("far.probe").debug("%s debug", channel.gateway.id)
logging.getLogger("far.probe").info("%s info", channel.gateway.id)
channel.send(logging.getLogger().level)
"""


def test_later_changes_of_the_controllers_root_level_reach_the_far_side_with_the_next_code_or_call(group, caplog):
    capture(caplog, logging.WARNING)
    follows = group.makegateway("popen//id=follows")
    fixed = group.makegateway("popen//logging=ERROR//id=fixed")
    logging.getLogger().setLevel(logging.INFO)  # before the far side even imported logging
    assert follows.remote_exec(PROBE).receive(timeout=20) == logging.INFO
    logging.getLogger().setLevel(logging.DEBUG)
    assert follows.call(call_targets.log_and_level, "call") == logging.DEBUG  # with a call too
    assert fixed.remote_exec(PROBE).receive(timeout=20) == logging.ERROR  # the spec's level stays
    follows.remote_exec("import logging; logging.getLogger().setLevel(logging.CRITICAL)").waitclose(20)
    logging.getLogger().setLevel(logging.INFO)
    assert follows.remote_exec(PROBE).receive(timeout=20) == logging.CRITICAL  # so does the far code's
    for gateway in (follows, fixed):
        gateway.remote_exec("import logging; logging.getLogger().critical('end')").waitclose(20)
    records = far_records(caplog, 5)
    assert [(record.gateway, record.getMessage()) for record in records] == [  # type: ignore[attr-defined]
        ("follows", "follows info"), ("follows", "call debug"), ("follows", "call info"), ("follows", "end"),
        ("fixed", "end")]


def test_a_later_root_level_reaches_gateways_behind_via_and_their_middle(group, caplog):
    capture(caplog, logging.WARNING)
    group.makegateway("popen//id=middle")
    group.makegateway("popen//via=middle//id=behind")
    ask = "import logging; channel.send(logging.getLogger().level)"
    assert [group[name].remote_exec(ask).receive(timeout=20) for name in ("middle", "behind")] == [30, 30]
    logging.getLogger().setLevel(logging.DEBUG)
    assert [group[name].remote_exec(ask).receive(timeout=20) for name in ("behind", "middle")] == [10, 10]


def test_the_spec_key_sets_the_far_root_level_or_turns_forwarding_off(group, caplog):
    capture(caplog, logging.INFO)
    debug = group.makegateway("popen//logging=DEBUG//id=debug")
    off = group.makegateway("popen//logging=off//id=off")
    on = group.makegateway("popen//logging=on//id=on")
    probe = """
        import logging
        root = logging.getLogger()
        logging.getLogger("probe").debug("from %s", channel.gateway.id)
        logging.getLogger("probe").warning("from %s", channel.gateway.id)
        channel.send((root.level, len(root.handlers)))
    """
    assert debug.remote_exec(probe).receive(timeout=20) == (logging.DEBUG, 1)
    assert off.remote_exec(probe).receive(timeout=20) == (logging.WARNING, 0)  # left as python makes it
    assert on.remote_exec(probe).receive(timeout=20) == (logging.INFO, 1)
    records = far_records(caplog, 3)
    assert sorted((record.gateway, record.levelname) for record in records) == [  # type: ignore[attr-defined]
        ("debug", "DEBUG"), ("debug", "WARNING"), ("on", "WARNING")]


@pytest.mark.parametrize("value", ["loud", "", "-1", "1.5"])
def test_a_bad_logging_value_is_refused_naming_the_key(value):
    with pytest.raises(ValueError, match="key 'logging'"):
        execwire.XSpec(f"popen//logging={value}")


def test_the_controllers_handlers_and_filters_apply(group, caplog):
    caplog.set_level(logging.INFO)
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(self.format(record))

    keep = Keep(logging.WARNING)
    keep.setFormatter(logging.Formatter("[%(gateway)s] %(levelname)s %(message)s"))
    app = logging.getLogger("far.app")
    app.addHandler(keep)
    app.addFilter(lambda record: "secret" not in record.getMessage())
    try:
        gateway = group.makegateway("popen//id=filtered")
        gateway.remote_exec("""
            import logging
            log = logging.getLogger("far.app")
            log.info("below the handler's level")
            log.warning("a secret")
            log.warning("shown")
            logging.getLogger("far.app.child").error("from a child logger")
        """).waitclose(20)
        assert wait_until(lambda: len(seen) >= 2, 20), seen
        assert seen == ["[filtered] WARNING shown", "[filtered] ERROR from a child logger"]
    finally:
        app.removeHandler(keep)
        app.filters.clear()


def test_basic_config_on_the_far_side_works_as_without_execwire(group, caplog):
    caplog.set_level(logging.WARNING)
    gateway = group.makegateway("popen")
    printed = []
    done = threading.Event()

    def keep(gateway: execwire.Gateway, stream: int, data: bytes) -> None:
        printed.append((stream, data))
        if b"the end" in data:
            done.set()

    gateway.output_handler = keep
    root_level = gateway.remote_exec("""
        import logging, sys
        logging.basicConfig(level=logging.INFO, format="far: %(levelname)s %(message)s")
        logging.info("configured here")
        logging.error("the end")
        sys.stderr.flush()
        channel.send(logging.getLogger().level)
    """).receive(timeout=20)
    assert root_level == logging.INFO
    assert done.wait(20)
    stderr = b"".join(data for stream, data in printed if stream == 2)
    assert stderr == b"far: INFO configured here\nfar: ERROR the end\n"
    assert not [record for record in caplog.records if hasattr(record, "gateway")]


def test_records_of_many_far_threads_all_arrive_each_thread_in_order(group, caplog):
    caplog.set_level(logging.INFO)
    gateway = group.makegateway("popen")
    gateway.remote_exec("""
        import logging, threading
        log = logging.getLogger("threads")
        def work(name):
            for number in range(500):
                log.info("%s %d", name, number)
        threads = [threading.Thread(target=work, args=("t%d" % i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    """).waitclose(30)
    records = far_records(caplog, 2000)
    assert len(records) == 2000
    by_thread: dict[str, list[int]] = {}
    for record in records:
        name, number = record.getMessage().split()
        by_thread.setdefault(name, []).append(int(number))
    assert by_thread == {f"t{i}": list(range(500)) for i in range(4)}


def test_a_flood_is_held_back_while_the_handler_is_stuck_and_nothing_is_lost(group):
    """A stuck handler: the far side waits (its channel's credit), the controller holds a bounded amount."""
    release = threading.Event()
    numbers: list[int] = []

    class Stuck(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            release.wait(60)
            numbers.append(int(record.getMessage().split()[0]))

    flood = logging.getLogger("flood")
    flood.setLevel(logging.INFO)
    flood.propagate = False
    stuck = Stuck()
    flood.addHandler(stuck)
    gateway = group.makegateway("popen")
    try:
        channel = gateway.remote_exec("""
            import logging
            log = logging.getLogger("flood")
            for number in range(40000):
                log.info("%d %s", number, "x" * 1000)
            channel.send("all logged")
        """)
        # a channel's credit (WINDOW bytes) holds fewer than WINDOW / (1000 + MIN_COST) such records, and
        # more than half of that (a record's other fields take well under 1000 bytes)
        most = WINDOW // (1000 + MIN_COST)
        assert wait_until(lambda: gateway._callback_queue is not None and gateway._callback_queue.qsize() > most // 2,
                          30)
        queued = gateway._callback_queue
        with pytest.raises(execwire.TimeoutError):
            channel.receive(timeout=2)  # the far side waits for credit: it has not got through its records
        assert queued.qsize() <= most
        release.set()
        assert channel.receive(timeout=60) == "all logged"
        assert wait_until(lambda: len(numbers) == 40000, 60), len(numbers)
        assert numbers == list(range(40000))
    finally:
        release.set()
        gateway.exit()  # its records are all handled before the logger is put back
        flood.removeHandler(stuck)
        flood.propagate = True
        flood.setLevel(logging.NOTSET)


def test_logging_disable_on_the_controller_silences_far_records(group, caplog):
    caplog.set_level(logging.INFO)
    gateway = group.makegateway("popen")
    logging.disable(logging.ERROR)
    try:
        gateway.remote_exec("import logging; logging.getLogger('x').error('silenced')").waitclose(20)
        gateway.remote_exec("channel.send(1)").receive(timeout=20)
        gateway._wait_callbacks(10)
    finally:
        logging.disable(logging.NOTSET)
    gateway.remote_exec("import logging; logging.getLogger('x').error('heard')").waitclose(20)
    assert [record.getMessage() for record in far_records(caplog, 1)] == ["heard"]


# -- the execwire command ---------------------------------------------------------------------------

def run_command(*args: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("EXECWIRE_")}
    return subprocess.run([sys.executable, "-m", "execwire", "run", *args], capture_output=True, text=True,
                          timeout=60, env=env, stdin=subprocess.DEVNULL)


LOGGING_SCRIPT = ("import logging\nprint('before', flush=True)\nlogging.warning('disk %s', 'low')\n"
                  "logging.info('only with logging=INFO')\nprint('after')\n")


def test_execwire_run_shows_far_records_on_stderr_as_python_does():
    result = run_command("-c", LOGGING_SCRIPT)
    assert result.returncode == 0 and result.stdout == "before\nafter\n"
    assert result.stderr == "disk low\n"


def test_execwire_run_shows_records_in_order_with_the_output_prefixed_by_gateway():
    script = ("import logging, sys\nprint('before', file=sys.stderr)\nlogging.warning('disk %s', 'low')\n"
              "logging.info('only with logging=INFO')\nprint('after', file=sys.stderr)\n")
    result = run_command("--on", "popen//id=a,popen//id=b//logging=INFO", "-c", script)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert [line for line in lines if line.startswith("[a]")] == ["[a] before", "[a] disk low", "[a] after"]
    assert [line for line in lines if line.startswith("[b]")] == [
        "[b] before", "[b] disk low", "[b] only with logging=INFO", "[b] after"]


def test_execwire_run_json_gives_log_records():
    code = "import logging; logging.getLogger('app').error('bad', exc_info=ValueError('v'))"
    result = run_command("--json", "-c", code)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[0] == {"gateway": "gw0", "kind": "log", "value": "bad", "level": "ERROR", "logger": "app",
                          "exc_text": "ValueError: v"}
    assert records[1]["kind"] == "exit"
