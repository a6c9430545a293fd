"""Groups of gateways, the default group, and MultiChannel over real popen gateways."""

from __future__ import annotations

import os
import queue
import secrets
import socket
import sys
import time

import pytest
from conftest import pid_gone, wait_until

import execwire

pytestmark = pytest.mark.timeout(60)


def far_pids(group: execwire.Group) -> list[int]:
    return [gw._rinfo().pid for gw in group]


# -- Group -------------------------------------------------------------------------------------------------
def test_gateways_get_ids_in_order_and_can_be_indexed(group):
    first = group.makegateway()
    second = group.makegateway("popen")
    named = group.makegateway("popen//id=special")
    assert [gw.id for gw in group] == ["gw0", "gw1", "special"]
    assert len(group) == 3
    assert group[0] is first and group[1] is second and group[2] is named
    assert group["gw0"] is first and group["gw1"] is second and group["special"] is named
    assert "special" in group and first in group and "gw7" not in group
    with pytest.raises(KeyError, match="gw7"):
        group["gw7"]
    with pytest.raises(IndexError):
        group[3]


def test_automatic_ids_skip_ids_taken_by_name(group):
    group.makegateway("popen//id=gw0")
    assert group.makegateway().id == "gw1"


def test_duplicate_id_is_refused(group):
    group.makegateway("popen//id=twin")
    with pytest.raises(ValueError, match="twin"):
        group.makegateway("popen//id=twin")
    assert len(group) == 1


def test_group_built_from_specs(group):
    made = execwire.Group(["popen", "popen//id=b"])
    try:
        assert [gw.id for gw in made] == ["gw0", "b"]
        assert made.remote_exec("channel.send(channel.gateway.id)").receive_each() == ["gw0", "b"]
    finally:
        made.terminate(5)
    assert len(made) == 0


def test_remote_exec_runs_on_every_gateway(group):
    for _ in range(3):
        group.makegateway()
    multi = group.remote_exec("import os; channel.send(os.getpid())")
    assert isinstance(multi, execwire.MultiChannel)
    pids = multi.receive_each()
    assert sorted(pids) == sorted(far_pids(group))
    assert len(set(pids)) == 3
    multi.waitclose(10)


def test_terminate_leaves_no_process_behind(group):
    for _ in range(3):
        group.makegateway()
    group.makegateway("popen//execmodel=main_thread_only")
    pids = far_pids(group)
    group[0].remote_exec("import time\nwhile True: time.sleep(0.01)")  # busy far code
    group[1].remote_exec("while True: pass")  # far code that never sleeps
    # far code that ignores SIGTERM: only SIGKILL ends it
    stubborn = group[3].remote_exec("""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        channel.send("ignoring SIGTERM")
        while True:
            time.sleep(0.01)
    """)
    assert stubborn.receive(timeout=10) == "ignoring SIGTERM"
    started = time.monotonic()
    group.terminate(timeout=0.5)
    elapsed = time.monotonic() - started
    assert elapsed < 6, f"terminate(0.5) took {elapsed:.1f} s"
    assert len(group) == 0
    group.terminate(timeout=0.5)  # again: nothing left to do
    assert wait_until(lambda: all(map(pid_gone, pids)), 5), [pid for pid in pids if not pid_gone(pid)]
    for pid in pids:
        with pytest.raises(ProcessLookupError):  # not even a zombie: reaped
            os.kill(pid, 0)


def rendezvous_python(tmp_path, count: int) -> str:
    """An interpreter whose start waits (up to 6 s, as a slow ssh login would) until ``count`` have begun.

    A rendezvous, not a stopwatch (a time bound was at the mercy of a busy machine): started one by
    one, the first ones wait alone and say so in $RENDEZVOUS.
    """
    arrived = tmp_path / "arrived"
    arrived.mkdir()
    slow = tmp_path / "rendezvous-python"
    slow.write_text(
        f"#!{sys.executable}\n"
        "import os, sys, time\n"
        f"folder = {str(arrived)!r}\n"
        "open(os.path.join(folder, str(os.getpid())), 'w').close()\n"
        "deadline = time.monotonic() + 6\n"
        f"while len(os.listdir(folder)) < {count} and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        f"os.environ['RENDEZVOUS'] = 'all starting' if len(os.listdir(folder)) == {count} else 'started alone'\n"
        "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n")
    slow.chmod(0o755)
    return f"popen//python={slow}"


def rendezvous_answers(group: execwire.Group) -> list[tuple[str, str]]:
    multi = group.remote_exec("import os\nchannel.send((channel.gateway.id, os.environ['RENDEZVOUS']))")
    return [tuple(answer) for answer in multi.receive_each()]


def test_makegateways_starts_gateways_side_by_side(group, tmp_path):
    started = group.makegateways([rendezvous_python(tmp_path, 4)] * 4)
    assert [gw.state for gw in started] == ["up"] * 4  # it returns once all have answered
    assert rendezvous_answers(group) == [(f"gw{number}", "all starting") for number in range(4)]


def test_a_group_made_from_specs_starts_them_side_by_side(tmp_path):
    with execwire.Group([rendezvous_python(tmp_path, 3)] * 3) as made:
        assert rendezvous_answers(made) == [(f"gw{number}", "all starting") for number in range(3)]


def _children() -> set[int]:
    found: set[int] = set()
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        try:
            with open(f"/proc/{os.getpid()}/task/{task}/children") as listing:
                found.update(int(pid) for pid in listing.read().split())
        except FileNotFoundError:
            pass  # that thread has ended since it was listed
    return {pid for pid in found if not pid_gone(pid)}


def test_a_group_made_from_specs_that_fail_raises_and_leaves_nothing_running():
    before = _children()
    with pytest.raises(execwire.GatewayStartError, match="'bad'"):
        execwire.Group(["popen//id=good", "popen//id=bad//python=false", "popen//id=fine"])
    assert wait_until(lambda: _children() <= before, 10), "the gateways that started outlived the failed Group()"


def test_makegateway_waits_for_the_far_side_so_gateways_made_in_a_row_start_one_by_one(group, tmp_path):
    spec = rendezvous_python(tmp_path, 2) + "//timeout=20"
    first = group.makegateway(spec)
    assert first.state == "up"
    group.makegateway(spec)
    assert rendezvous_answers(group) == [("gw0", "started alone"), ("gw1", "all starting")]


def test_makegateway_raises_start_up_errors_itself_and_the_gateway_leaves_the_group(group, tmp_path):
    with pytest.raises(execwire.GatewayStartError, match="no-such-python"):
        group.makegateway(f"popen//python={tmp_path}/no-such-python")
    with pytest.raises(execwire.GatewayStartError, match="ended before it answered"):
        group.makegateway("popen//id=dies//python=false")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    with pytest.raises(execwire.HostNotFound, match=str(port)):
        group.makegateway(f"socket=127.0.0.1:{port}//token_file={token_file(tmp_path)}")
    assert len(group) == 0 and "dies" not in group
    assert group.makegateway("popen//id=dies").remote_exec("channel.send(1)").receive(timeout=30) == 1


def test_makegateways_raises_for_the_ones_that_failed_and_keeps_the_others(group, tmp_path):
    with pytest.raises(execwire.GatewayStartError, match="'bad'") as raised:
        group.makegateways(["popen//id=good", "popen//id=bad//python=false", "popen//id=fine"])
    assert "'good'" not in str(raised.value)
    assert [gw.id for gw in group] == ["good", "fine"]
    assert [gw.remote_exec("channel.send(channel.gateway.id)").receive(timeout=30) for gw in group] == ["good", "fine"]
    with pytest.raises(execwire.GatewayStartError, match="2 gateways could not start") as two:
        group.makegateways(["popen//id=x//python=false", f"popen//id=y//python={tmp_path}/none", "popen//id=ok"])
    assert sorted(two.value.failures) == ["x", "y"]  # type: ignore[attr-defined]
    assert [gw.id for gw in group] == ["good", "fine", "ok"]


def token_file(folder) -> str:
    path = folder / "token"
    path.write_text(secrets.token_hex(32))
    path.chmod(0o600)
    return str(path)


# -- the default group ---------------------------------------------------------------------------------------
def test_makegateway_and_popengateway_use_the_default_group(clean_default_group):
    made = execwire.makegateway()
    popen = execwire.PopenGateway()
    assert made in execwire.default_group and popen in execwire.default_group
    assert made.id != popen.id
    assert made.remote_exec("channel.send(1)").receive(timeout=10) == 1
    assert popen.remote_exec("channel.send(2)").receive(timeout=10) == 2
    pid = popen._rinfo().pid
    popen.exit()
    assert popen not in execwire.default_group
    assert wait_until(lambda: pid_gone(pid), 5)


def test_popengateway_with_python_argument(clean_default_group):
    gateway = execwire.PopenGateway(python=os.path.realpath(sys.executable))
    assert gateway.spec.python == os.path.realpath(sys.executable)
    assert gateway.remote_exec("channel.send('ok')").receive(timeout=10) == "ok"


def test_makegateway_with_a_full_spec(clean_default_group, tmp_path):
    gateway = execwire.makegateway(f"popen//python={sys.executable}//chdir={tmp_path}//nice=1"
                                   f"//env:EXECWIRE_SPEC_T=on//id=full-spec")
    assert gateway.id == "full-spec"
    channel = gateway.remote_exec("import os; channel.send((os.getcwd(), os.environ['EXECWIRE_SPEC_T'], os.nice(0)))")
    assert channel.receive(timeout=10) == (str(tmp_path), "on", min(os.nice(0) + 1, 19))


def test_bad_spec_in_makegateway_raises_value_error_and_adds_nothing(group):
    with pytest.raises(ValueError, match="nice"):
        group.makegateway("popen//nice=abc")
    assert len(group) == 0


# -- MultiChannel ---------------------------------------------------------------------------------------------
@pytest.fixture
def three(group):
    for _ in range(3):
        group.makegateway()
    return group


def test_receive_each_in_channel_order(three):
    multi = three.remote_exec("channel.send(channel.gateway.id)")
    assert multi.receive_each() == ["gw0", "gw1", "gw2"]
    multi = three.remote_exec("channel.send(channel.gateway.id)")
    pairs = multi.receive_each(withchannel=True)
    assert [channel for channel, _ in pairs] == list(multi)
    assert [item for _, item in pairs] == ["gw0", "gw1", "gw2"]


def test_send_each_reaches_every_channel(three):
    multi = three.remote_exec("channel.send((channel.gateway.id, channel.receive() * 2))")
    multi.send_each(21)
    assert multi.receive_each() == [("gw0", 42), ("gw1", 42), ("gw2", 42)]


def test_make_receive_queue_tells_where_each_item_came_from(three):
    multi = three.remote_exec("for i in range(3): channel.send((channel.gateway.id, i))")
    received = multi.make_receive_queue(endmarker="END")
    by_channel: dict[int, list[object]] = {id(channel): [] for channel in multi}
    ends = 0
    while ends < 3:
        channel, item = received.get(timeout=10)
        assert channel in multi
        if item == "END":
            ends += 1
        else:
            by_channel[id(channel)].append(item)
    for channel, gateway in zip(multi, three, strict=True):
        assert by_channel[id(channel)] == [(gateway.id, i) for i in range(3)]
    with pytest.raises(queue.Empty):
        received.get(timeout=0.1)


def test_make_receive_queue_without_endmarker(three):
    multi = three.remote_exec("channel.send(1)")
    received = multi.make_receive_queue()
    items = [received.get(timeout=10) for _ in range(3)]
    assert sorted(item for _, item in items) == [1, 1, 1]
    assert {id(channel) for channel, _ in items} == {id(channel) for channel in multi}


def test_multichannel_waitclose_raises_the_remote_error_after_all_are_done(three):
    multi = three.remote_exec("""
        if channel.gateway.id == "gw1":
            raise ValueError("only gw1 fails")
    """)
    with pytest.raises(execwire.RemoteError, match="only gw1 fails"):
        multi.waitclose(10)
    assert all(channel.isclosed() for channel in multi)
    multi[0].waitclose(0)
    multi[2].waitclose(0)


def test_multichannel_waitclose_times_out(three):
    multi = three.remote_exec("channel.receive()")
    with pytest.raises(execwire.TimeoutError):
        multi.waitclose(0.3)
    multi.send_each(None)
    multi.waitclose(10)


def test_multichannel_of_channels_on_one_gateway(gw):
    channels = [gw.remote_exec(f"channel.send({n})") for n in range(5)]
    multi = execwire.MultiChannel(channels)
    assert len(multi) == 5 and multi[2] is channels[2]
    assert multi.receive_each() == [0, 1, 2, 3, 4]


def test_gateways_and_groups_are_context_managers():
    with execwire.Group() as group:
        with group.makegateway("popen") as gw:
            pid = gw.remote_exec("import os; channel.send(os.getpid())").receive(30)
        assert gw.state == "closed"
        assert wait_until(lambda: pid_gone(pid), 10)
        other = group.makegateway("popen")
        other_pid = other.remote_exec("import os; channel.send(os.getpid())").receive(30)
    assert len(group) == 0
    assert wait_until(lambda: pid_gone(other_pid), 10)
