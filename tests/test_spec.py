"""XSpec: parsing of gateway spec strings, and errors that name the bad key."""

from __future__ import annotations

import re

import pytest

import execwire
from execwire import XSpec

pytestmark = pytest.mark.timeout(30)


def test_keys_become_attributes_and_missing_keys_read_as_none():
    spec = XSpec("popen//python=python3.12//chdir=some/dir//nice=5//env:MODE=test//env:OTHER=a=b//id=w1"
                 "//dont_write_bytecode//execmodel=main_thread_only")
    assert spec.popen is True
    assert spec.python == "python3.12"
    assert spec.chdir == "some/dir"
    assert spec.nice == "5"
    assert spec.env == {"MODE": "test", "OTHER": "a=b"}
    assert spec.id == "w1"
    assert spec.dont_write_bytecode is True
    assert spec.execmodel == "main_thread_only"
    assert spec.type == "popen"
    assert spec.ssh is None and spec.socket is None and spec.via is None
    assert spec.no_such_attribute is None


def test_ssh_and_socket_types():
    ssh = XSpec("ssh=user@host//python=python3//ssh_config=/etc/ssh_config")
    assert ssh.type == "ssh" and ssh.ssh == "user@host" and ssh.ssh_config == "/etc/ssh_config"
    sock = XSpec("socket=127.0.0.1:8888")
    assert sock.type == "socket" and sock.socket == "127.0.0.1:8888"


def test_str_repr_equality_and_hash():
    spec = XSpec("popen//nice=3")
    assert str(spec) == "popen//nice=3"
    assert "popen//nice=3" in repr(spec)
    assert spec == XSpec("popen//nice=3")
    assert spec != XSpec("popen//nice=4")
    assert hash(spec) == hash(XSpec("popen//nice=3"))
    assert len({spec, XSpec("popen//nice=3")}) == 1


@pytest.mark.parametrize(("text", "named"), [
    ("pope", "pope"),  # unknown gateway type
    ("telnet=host", "telnet"),
    ("popen//colour=red", "colour"),  # unknown key
    ("popen//chdir=a//chdir=b", "chdir"),  # duplicate key
    ("popen//popen", "popen"),
    ("popen//env:X=1//env:X=2", "env:X"),
    ("popen//python=", "python"),  # empty value
    ("popen//chdir=", "chdir"),
    ("popen//id=", "id"),
    ("ssh=", "ssh"),
    ("socket=", "socket"),
    ("popen//nice=abc", "nice"),  # not a number
    ("popen//nice=", "nice"),
    ("popen//execmodel=green_threads", "execmodel"),
    ("popen//dont_write_bytecode=yes", "dont_write_bytecode"),  # a flag takes no value
    ("popen//env:=x", "env:"),
    ("popen//env:NAME", "env:NAME"),  # env without a value
    ("popen//timeout=soon", "timeout"),  # not a number of seconds
    ("popen//timeout=-1", "timeout"),
    ("popen//timeout=0", "timeout"),
    ("popen//timeout=nan", "timeout"),
    ("popen//timeout=inf", "timeout"),
])
def test_bad_spec_raises_value_error_naming_the_key(text, named):
    with pytest.raises(ValueError) as info:
        XSpec(text)
    assert re.search(rf"(?<![\w:]){re.escape(named)}(?!\w)", str(info.value)), str(info.value)


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ValueError, match="chdri.*chdir"):
        XSpec("popen//chdri=x")


@pytest.mark.parametrize("text", ["", "python=python3", "popen//ssh=host", "popen////nice=1"])
def test_spec_without_exactly_one_gateway_type_or_with_empty_key_is_refused(text):
    with pytest.raises(ValueError):
        XSpec(text)


def test_spec_must_be_a_string():
    with pytest.raises(TypeError):
        XSpec(None)  # type: ignore[arg-type]


def test_makegateway_refuses_bad_specs_before_starting_anything():
    group = execwire.Group()
    try:
        for text in ("popen//nice=abc", "popen//bogus=1", "popen//python=", "notatype"):
            with pytest.raises(ValueError):
                group.makegateway(text)
        assert len(group) == 0
    finally:
        group.terminate(1)


def test_makegateway_accepts_an_xspec_object():
    group = execwire.Group()
    try:
        gateway = group.makegateway(XSpec("popen//id=from-object"))
        assert gateway.id == "from-object"
        assert gateway.spec == XSpec("popen//id=from-object")
        assert gateway.remote_exec("channel.send(1)").receive(timeout=10) == 1
    finally:
        group.terminate(5)
