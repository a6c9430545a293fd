"""execwire.Executor: a concurrent.futures.Executor over gateways, and Group.map."""

from __future__ import annotations

import concurrent.futures
import threading
from pathlib import Path

import call_targets
import pytest
from conftest import wait_until

import execwire

pytestmark = pytest.mark.timeout(90)


def test_map_is_ordered_over_every_gateway_with_chunks_and_progress() -> None:
    seen: list[tuple[int, int]] = []
    with execwire.Executor(["popen"] * 3, progress=lambda done, total: seen.append((done, total))) as pool:
        assert list(pool.map(call_targets.square, range(40))) == [n * n for n in range(40)]
        assert list(pool.map(call_targets.add, range(25), range(25), chunksize=4)) == [2 * n for n in range(25)]
        pids = set(pool.map(call_targets.pid_after, [0.05] * 12))
        assert pids == {gw._rinfo().pid for gw in pool.gateways} and len(pids) == 3  # all of them worked
    assert seen[-1] == (77, 77) and len(seen) == 40 + 7 + 12  # a chunk of 4 reports once, counting 4


def test_submit_with_as_completed_and_wait() -> None:
    with execwire.Executor(["popen", "popen"], max_workers=4) as pool:
        futures = {pool.submit(call_targets.sleep_then, 0.1, n): n for n in range(8)}
        assert sorted(f.result() for f in concurrent.futures.as_completed(futures, timeout=30)) == list(range(8))
        done, not_done = concurrent.futures.wait([pool.submit(call_targets.add, 1, b=2)], timeout=30)
        assert [f.result() for f in done] == [3] and not not_done
        failed = pool.submit(call_targets.fail, "bad input")
        with pytest.raises(execwire.RemoteError, match="ValueError: bad input"):
            failed.result(30)
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(call_targets.add, 1)
    assert all(gw.state == "closed" for gw in pool.gateways)  # it started them, so it ended them


def test_several_calls_at_once_per_gateway() -> None:
    with execwire.Executor(["popen"], max_workers=4) as pool:
        barrier_pids = list(pool.map(call_targets.pid_after, [0.5] * 4))
    assert len(set(barrier_pids)) == 1
    assert len(pool._threads) == 4


def test_map_timeout_and_shutdown_cancelling_futures() -> None:
    pool = execwire.Executor(["popen"])
    results = pool.map(call_targets.sleep_then, [5, 5, 5], [1, 2, 3], timeout=0.5)
    with pytest.raises(TimeoutError):
        next(results)
    queued = [pool.submit(call_targets.sleep_then, 5, n) for n in range(3)]
    pool.shutdown(wait=True, cancel_futures=True)
    assert all(future.cancelled() for future in queued)


def test_lambdas_fail_at_submit() -> None:
    with execwire.Executor(["popen"]) as pool:
        with pytest.raises(execwire.CallError, match="lambda"):
            pool.submit(lambda: 1)
        with pytest.raises(ValueError, match="chunksize must be 1 or more"):
            pool.map(call_targets.square, [1], chunksize=0)
    with pytest.raises(ValueError, match="max_workers must be 1 or more"):
        execwire.Executor(["popen"], max_workers=0)


def test_a_lost_gateway_is_replaced_and_its_call_retried(tmp_path: Path) -> None:
    marker = tmp_path / "died"
    with execwire.Executor(["popen", "popen"]) as pool:
        first_pids = {gw._rinfo().pid for gw in pool.gateways}
        assert pool.submit(call_targets.die_once, str(marker), "survived").result(60) == "survived"
        assert marker.exists()
        dead = int(marker.read_text())
        assert dead in first_pids
        assert list(pool.map(call_targets.square, range(10))) == [n * n for n in range(10)]

        def replaced() -> bool:  # from its spec, by the slot that saw the loss (on a busy machine, a bit later)
            now = {gw._rinfo().pid for gw in pool.gateways}
            return len(now) == 2 and dead not in now

        assert wait_until(replaced, 30)


def test_without_retries_the_future_fails_with_gateway_lost(tmp_path: Path) -> None:
    with execwire.Executor(["popen"], retries=0) as pool:
        future = pool.submit(call_targets.die_once, str(tmp_path / "died"), "x")
        with pytest.raises(execwire.GatewayLostError):
            future.result(60)
        assert pool.submit(call_targets.add, 2, 2).result(60) == 4  # the replacement works


def test_a_spec_that_cannot_start_fails_the_work_instead_of_hanging() -> None:
    with pytest.raises(execwire.GatewayStartError, match="cannot start '/nonexistent/python3'"):
        execwire.Executor(["popen", "popen//python=/nonexistent/python3"])
    with execwire.Executor(["popen//python=/bin/false"]) as pool:  # starts, and ends before it answers
        future = pool.submit(call_targets.add, 1)
        with pytest.raises(execwire.GatewayStartError, match="ended before it answered"):
            future.result(60)
        with pytest.raises(RuntimeError, match="every gateway of this Executor was lost"):
            pool.submit(call_targets.add, 1)


def test_group_map_keeps_the_group(group: execwire.Group) -> None:
    group.makegateway("popen")
    group.makegateway("popen")
    assert group.map(call_targets.square, [1, 2, 3]) == [1, 4, 9]
    assert group.map(call_targets.add, [1, 2], [10, 20], chunksize=2) == [11, 22]
    assert all(gw.state == "up" for gw in group)
    assert threading.active_count() < 50


def test_bad_arguments_and_results_fail_only_their_future() -> None:
    with execwire.Executor(["popen"]) as pool:
        bad_argument = pool.submit(call_targets.add, object())
        bad_result = pool.submit(call_targets.unsendable)
        fine = pool.submit(call_targets.add, 1, 1)
        with pytest.raises(execwire.DumpError, match="the arguments of the call of add cannot be sent"):
            bad_argument.result(30)
        with pytest.raises(execwire.DumpError, match=r"the result of unsendable .* cannot be sent back.*\['bad'\]"):
            bad_result.result(30)
        assert fine.result(30) == 2
