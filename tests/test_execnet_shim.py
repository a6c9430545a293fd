"""The execnet package: execnet's API and manners on execwire, as an execnet user meets them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import find_python
from shim_helpers import SRC, run_with_shim, shim_env

import execwire
from execwire._execnet import shim_path

pytestmark = pytest.mark.timeout(180)


def test_the_cli_prints_the_folder_and_nothing_imports_it_as_execnet_by_accident():
    printed = subprocess.run([sys.executable, "-m", "execwire", "--execnet-shim-path"], env=shim_env(),
                             capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr
    folder = Path(printed.stdout.strip())
    assert folder == Path(shim_path())
    assert (folder / "execnet" / "__init__.py").is_file()
    # with only execwire on the path, `import execnet` is never this package
    plain = subprocess.run([sys.executable, "-c", "import execnet; print(execnet.__file__)"],
                           env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
    assert shim_path() not in plain.stdout


def test_the_modules_and_names_execnet_users_import():
    result = run_with_shim("""
        import execnet, execnet.gateway_base, execnet.gateway, execnet.multi, execnet.xspec, execnet.rsync
        import execwire
        for name in execnet.__all__:
            getattr(execnet, name)
        for name in ["Group", "MultiChannel", "RSync", "XSpec", "makegateway", "default_group", "set_execmodel",
                     "HostNotFound", "RemoteError", "TimeoutError", "DataFormatError", "DumpError", "LoadError",
                     "dumps", "loads", "dump", "load", "Channel", "Gateway"]:
            assert name in execnet.__all__, name
        assert issubclass(execnet.TimeoutError, OSError)
        assert execnet.gateway.Gateway is execnet.Gateway and execnet.multi.Group is execnet.Group
        assert issubclass(execnet.gateway_base.Channel, execwire.Channel)
        assert execnet.gateway_base.get_execmodel("main_thread_only").backend == "main_thread_only"
        assert execnet.loads(execnet.dumps({"a": (1, 2.5, b"x")}), py2str_as_py3str=True) == {"a": (1, 2.5, b"x")}
        print(execnet.__file__)
    """)
    assert result.stdout.strip().startswith(shim_path())


def test_makegateway_raises_start_up_errors_itself_and_makegateways_starts_side_by_side(tmp_path):
    run_with_shim(f"""
        import os, socket, execnet, execwire
        os.environ.pop("EXECWIRE_TOKEN", None)
        try:
            execnet.makegateway("popen//python={tmp_path}/no-such-python")
        except execwire.GatewayStartError as exc:
            assert "no-such-python" in str(exc), exc
        else:
            raise AssertionError("a missing python must raise in makegateway")
        try:
            execnet.makegateway("popen//python=false")  # starts, then ends before it answers
        except execwire.GatewayStartError as exc:
            assert "ended before it answered" in str(exc), exc
        else:
            raise AssertionError("a far side that dies at start-up must raise in makegateway")
        # nothing listens: HostNotFound, even though no token was given (execnet has none to ask for)
        probe = socket.socket(); probe.bind(("127.0.0.1", 0)); port = probe.getsockname()[1]; probe.close()
        try:
            execnet.makegateway("socket=127.0.0.1:%d" % port)
        except execnet.HostNotFound as exc:
            assert str(port) in str(exc), exc
        group = execnet.Group()
        try:
            group.makegateways(["popen//id=good", "popen//python=false//id=bad", "popen//id=fine"])
        except execwire.GatewayStartError as exc:
            assert "'bad'" in str(exc), exc
        else:
            raise AssertionError("makegateways must raise for the one that failed")
        assert sorted(gw.id for gw in group) == ["fine", "good"]
        assert group["good"].remote_exec("channel.send(6 * 7)").receive() == 42
        two = execnet.Group(["popen", "popen"], execmodel="main_thread_only")
        assert [gw.id for gw in two] == ["gw0", "gw1"] and two.execmodel.backend == "main_thread_only"
        group.terminate(5); two.terminate(5)
    """)


def test_channels_behave_as_execnet_channels_on_both_sides():
    run_with_shim("""
        import threading, time, execnet
        gw = execnet.makegateway("popen")
        # receive() on a channel with a callback: OSError, as execnet
        ch = gw.remote_exec("channel.send(1); channel.receive()")
        got = []
        ch.setcallback(got.append)
        try:
            ch.receive()
        except OSError as exc:
            assert "callback" in str(exc)
        else:
            raise AssertionError("receive() on a callback channel must raise OSError")
        ch.send("go"); ch.waitclose(10)
        assert got == [1]
        # waitclose() returns only once every callback ran
        ch = gw.remote_exec("for i in range(3): channel.send(i)")
        order = []
        def slow(item):
            time.sleep(0.2)
            order.append(item)
        ch.setcallback(slow, endmarker="end")
        ch.waitclose(30)
        order.append("waitclose returned")
        assert order == [0, 1, 2, "end", "waitclose returned"], order
        # the error that ended a channel, the way pytest-xdist asks for it
        ch = gw.remote_exec("raise ValueError('far')")
        ch.setcallback(lambda item: None, endmarker=None)
        ch.waitclose(10) if False else None
        try:
            ch.waitclose(10)
        except execnet.RemoteError:
            pass
        assert "ValueError: far" in str(ch._getremoteerror())
        ok = gw.remote_exec("pass"); ok.waitclose(10)
        assert ok._getremoteerror() is None
        # what cannot be sent says "can't serialize", with the type and where it sits
        try:
            gw.remote_exec("channel.receive()").send({"key": [1, object()]})
        except execnet.DumpError as exc:
            assert "can't serialize" in str(exc) and "object" in str(exc) and "key" in str(exc), exc
        else:
            raise AssertionError("sending an object() must raise DumpError")
        # makefile(proxyclose=True) closes the channel with the file
        ch = gw.remote_exec("channel.send('line one\\\\n'); channel.receive()")
        f = ch.makefile("r", proxyclose=True)
        assert f.readline() == "line one\\n"
        f.close()
        assert ch.isclosed()
        # execnet's no-ops are accepted
        gw.remote_init_threads(3)
        gw.reconfigure(py2str_as_py3str=False)
        ch = gw.remote_exec("channel.send('x')"); ch.reconfigure(py3str_as_py2str=False)
        assert ch.receive() == "x"
        # the far side: execmodel objects, and the same channel manners there
        group = execnet.Group(execmodel="main_thread_only")
        far = group.makegateway("popen")
        assert far.execmodel.backend == "main_thread_only"
        assert far.remote_status().numexecuting == 0
        ch = far.remote_exec('''
            model = channel.gateway.execmodel
            lock, rlock, event = model.Lock(), model.RLock(), model.Event()
            with rlock:
                with rlock:
                    event.set()
            sub = channel.gateway.newchannel()
            sub.setcallback(lambda item: None)
            try:
                sub.receive()
                refused = False
            except OSError:
                refused = True
            channel.send((model.backend, event.is_set(), refused, repr(model)))
        ''')
        assert ch.receive(10) == ("main_thread_only", True, True, "<ExecModel 'main_thread_only'>")
        group.terminate(5)
        print("ok")
    """)


def test_a_lost_gateway_ends_its_channels_with_eoferror_as_pytest_xdist_expects():
    run_with_shim("""
        import execnet
        gw = execnet.makegateway("popen")
        ch = gw.remote_exec("import os; channel.send('last'); os._exit(3)")
        assert ch.receive(10) == "last"
        try:
            ch.receive(10)
        except EOFError as exc:
            assert isinstance(ch._getremoteerror(), EOFError)  # pytest-xdist: "Not properly terminated"
        else:
            raise AssertionError("EOFError expected")
        # the endmarker of a callback comes too
        gw = execnet.makegateway("popen")
        ends = []
        ch = gw.remote_exec("import os; channel.receive(); os._exit(3)")
        ch.setcallback(ends.append, endmarker="END")
        ch.send(1)
        try:
            ch.waitclose(20)
        except EOFError:
            pass
        assert ends == ["END"], ends
        # the endmarker's callback already sees the error that ended the channel (execnet's test of it asks
        # from the thread that the endmarker wakes: it used to see None now and then)
        for _ in range(10):
            gw = execnet.makegateway("popen")
            seen = []
            ch = gw.remote_exec("import os; channel.receive(); os._exit(3)")
            ch.setcallback(lambda item, ch=ch: seen.append(ch._getremoteerror()), endmarker="END")
            ch.send(1)
            try:
                ch.waitclose(20)
            except EOFError:
                pass
            assert len(seen) == 1 and isinstance(seen[0], EOFError), seen
    """)


def test_far_stdout_is_dropped_and_far_stderr_shown_as_execnet_does():
    result = run_with_shim("""
        import execnet
        gw = execnet.makegateway("popen")
        gw.remote_exec("import sys; print('far stdout'); sys.stderr.write('far stderr\\\\n')").waitclose(10)
        gw.exit()
        print("near stdout")
    """)
    assert "far stdout" not in result.stdout and "near stdout" in result.stdout
    assert "far stderr" in result.stderr


def test_far_stderr_goes_to_file_descriptor_2_not_through_sys_stderr():
    # as an execnet far side writes to the descriptor it inherited: sys.stderr replaced (as pytest's in-process
    # runs capture it) does not see it; execwire's own gateways forward it through sys.stderr
    result = run_with_shim("""
        import io, sys, execnet, execwire
        captured, sys.stderr = sys.stderr, io.StringIO()
        for make in (execnet.makegateway, execwire.makegateway):
            gw = make("popen")
            gw.remote_exec("import sys; sys.stderr.write(%r)" % ("from " + make.__module__ + "\\n")).waitclose(10)
            gw.exit()
        caught, sys.stderr = sys.stderr.getvalue(), captured
        print(repr(caught))
    """)
    assert "from execnet" in result.stderr and "from execnet" not in result.stdout
    assert "from execwire" in result.stdout and "from execwire" not in result.stderr


def test_xspec_is_lenient_like_execnets_and_the_gateway_is_made_from_its_attributes(tmp_path):
    run_with_shim(f"""
        import os, execnet
        spec = execnet.XSpec("popen//hello=3//env:MODE=x")
        assert spec.hello == "3" and spec.chdir is None and spec.nice is None and spec.env == {{"MODE": "x"}}
        assert execnet.XSpec("vagrant_ssh=default").vagrant_ssh == "default"
        try:
            execnet.XSpec("popen//popen")
        except ValueError:
            pass
        else:
            raise AssertionError("a duplicate key must raise ValueError")
        spec.chdir = {str(tmp_path / "work")!r}  # set after parsing, as pytest-xdist does
        group = execnet.Group()
        group.allocate_id(spec)
        assert spec.id == "gw0"
        gw = group.makegateway(spec)
        assert gw.spec is spec and gw.id == "gw0"
        assert gw.remote_exec("import os; channel.send((os.getcwd(), os.environ['MODE']))").receive() == \\
            ({str(tmp_path / "work")!r}, "x")
        try:
            group.makegateway("vagrant_ssh=default")
        except ValueError as exc:
            assert "vagrant_ssh" in str(exc) and "ssh=" in str(exc)
        try:
            group.makegateway("hello")
        except ValueError as exc:
            assert "gateway type" in str(exc)
        group.terminate(5)
    """)


def test_an_older_far_python_imports_the_execnet_package_without_execwire():
    python = find_python("3.8*") or find_python("3.6*")
    if python is None:
        pytest.skip("no Python 3.6 or 3.8 under pyenv")
    run_with_shim(f"""
        import execnet
        gw = execnet.makegateway("popen//python={python}")
        ch = gw.remote_exec('''
            import sys, execnet
            try:
                execnet.dumps(object())
            except execnet.DumpError as exc:
                message = str(exc)
            channel.send((sys.version_info[:2], execnet.loads(execnet.dumps([1, "a"])), message,
                          channel.gateway.execmodel.backend))
        ''')
        version, value, message, model = ch.receive(30)
        assert version < (3, 10) and value == [1, "a"] and "object" in message and model == "thread", \\
            (version, value, message, model)
    """)


# -- what the execnet package needs but only the new core can give (for the lead) --------------------


def test_execwires_own_makegateway_raises_start_up_errors(group):
    with pytest.raises(execwire.GatewayStartError):  # as the execnet package's does (more in test_group.py)
        group.makegateway("popen//python=false")
    assert len(group) == 0


def test_execwires_receive_on_a_callback_channel_raises_oserror(gw):
    channel = gw.remote_exec("channel.receive()")
    channel.setcallback(lambda item: None)
    with pytest.raises(OSError):
        channel.receive(timeout=5)
    channel.send(1)


def test_a_far_channel_that_shipped_code_drops_is_closed(gw):
    channel = gw.remote_exec("""
        sub = channel.gateway.newchannel()
        channel.send(sub)
        sub.send(1)
        del sub
        import gc; gc.collect()
        channel.receive()
    """)
    sub = channel.receive(timeout=10)
    assert sub.receive(timeout=10) == 1
    try:
        with pytest.raises(EOFError):
            sub.receive(timeout=5)
    finally:
        channel.send("done")


def test_execnet_names_channels_rinfo_and_messages_as_execnet_does():
    run_with_shim("""
        import execnet, execnet.gateway, execnet.gateway_base as base
        gw = execnet.makegateway("popen//execmodel=main_thread_only")
        # Channel(gateway, id) makes a channel object, as execnet's does (a MultiChannel of them works)
        multi = execnet.MultiChannel([base.Channel(gw, number) for number in range(3)])
        assert [channel.id for channel in multi] == [0, 1, 2] and multi[1] in multi
        del multi
        import gc; gc.collect()  # garbage, they tell the far side nothing: it never made them
        assert gw.remote_exec("channel.send(7)").receive(30) == 7
        # shipped strings are "<remote exec>" in far tracebacks
        shipped = gw.remote_exec("import traceback; channel.send(''.join(traceback.format_stack()))")
        stack = shipped.receive(30)
        assert 'File "<remote exec>"' in stack, stack
        shipped.waitclose(30)  # main_thread_only: one at a time
        # a second remote_exec while main_thread_only runs one: exactly the documented text
        first = gw.remote_exec("channel.send(1); channel.receive()")
        assert first.receive(30) == 1
        second = gw.remote_exec("channel.send(2)")
        try:
            second.receive(30)
        except execnet.RemoteError as exc:
            assert exc.formatted == base.MAIN_THREAD_ONLY_DEADLOCK_TEXT, exc.formatted
        else:
            raise AssertionError("a concurrent remote_exec on main_thread_only must fail")
        first.send(None); first.waitclose(30)
        # _rinfo(update=True) asks with code, so it sees what code before it did; _cache_rinfo sets it back
        before = gw._rinfo()
        gw.remote_exec("import os; os.chdir('/')").waitclose(30)
        assert gw._rinfo().cwd == before.cwd and gw._rinfo(update=True).cwd == "/"
        gw._cache_rinfo = before
        assert gw._rinfo().cwd == before.cwd and gw._rinfo().version_info == before.version_info
        assert callable(execnet.gateway.rinfo_source)
        gw.exit()
    """)


def test_shipped_code_may_not_close_its_own_channel_while_it_runs_as_in_execnet():
    run_with_shim("""
        import execnet
        gw = execnet.makegateway("popen")
        try:
            gw.remote_exec("channel.close()").waitclose(30)
        except execnet.RemoteError as exc:
            assert "cannot explicitly close channel within remote_exec" in exc.formatted, exc.formatted
        else:
            raise AssertionError("closing the remote_exec channel from its code must fail")
        proxy = gw.remote_exec('f = channel.makefile(proxyclose=True); f.write("hello"); f.close()')
        assert proxy.receive(30) == "hello"
        try:
            proxy.receive(30)
        except execnet.RemoteError as exc:  # the file's close() closes the channel, and that is refused
            assert "explicitly close" in exc.formatted, exc.formatted
        else:
            raise AssertionError("proxyclose=True must close the channel (and so fail inside remote_exec)")
        other = gw.remote_exec("sub = channel.gateway.newchannel(); channel.send(sub); sub.close()")
        sub = other.receive(30)
        other.waitclose(30)  # a channel the code made itself closes freely: its receiver sees the end
        try:
            sub.receive(30)
        except EOFError:
            pass
        else:
            raise AssertionError("the closed sub-channel must end with EOFError")
        gw.exit()
    """)
