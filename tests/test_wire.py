"""Tests of execwire._far.wire, the data serializer."""

import ast
import collections
import enum
import importlib.util
import io
import math
import os
import shutil
import struct
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from execwire._far import wire

pytestmark = pytest.mark.timeout(60)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))


def body(obj, channel_type=None):
    return b"".join(wire.encode(obj, channel_type))


def typed(value):
    """A hashable picture of ``value`` that tells apart exact types, -0.0 and nan."""
    t = type(value)
    if t is float:
        return ("float", repr(value))
    if t is complex:
        return ("complex", repr(value.real), repr(value.imag))
    if t is memoryview:
        return ("bytes", value.tobytes())
    if t in (list, tuple):
        return (t.__name__, tuple(typed(v) for v in value))
    if t is dict:
        return ("dict", tuple((typed(k), typed(v)) for k, v in value.items()))
    if t in (set, frozenset):
        return (t.__name__, frozenset(typed(v) for v in value))
    if t is bytearray:
        return ("bytearray", bytes(value))
    return (t.__name__, value)


def assert_round_trip(obj):
    expected = typed(obj)
    assert typed(wire.decode(body(obj))) == expected
    assert typed(wire.loads(wire.dumps(obj))) == expected


# -- round trips ---------------------------------------------------------

text = st.text(alphabet=st.characters(exclude_categories=()))  # lone surrogates too
hashable = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-2 ** 300, max_value=2 ** 300)
    | st.floats() | st.complex_numbers() | text | st.binary(),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=4),
    max_leaves=8,
)
data = st.recursive(
    hashable | st.binary().map(bytearray) | st.binary().map(memoryview),
    lambda inner: (
        st.lists(inner, max_size=5) | st.lists(inner, max_size=5).map(tuple)
        | st.dictionaries(hashable, inner, max_size=5)
        | st.sets(hashable, max_size=5) | st.frozensets(hashable, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])  # a busy CI machine
@given(data)
def test_round_trip_preserves_values_and_exact_types(obj):
    assert_round_trip(obj)


@pytest.mark.parametrize("value", [
    0, 1, -1, 127, 128, -128, -129, 255, 256, 2 ** 31 - 1, 2 ** 31, -2 ** 31, -2 ** 31 - 1,
    2 ** 63 - 1, 2 ** 63, -2 ** 63, -2 ** 63 - 1, 2 ** 64, -2 ** 64, 2 ** 2040, -2 ** 2047,
    10 ** 5000, -10 ** 5000,
], ids=lambda v: "%s2**%d" % ("-" if v < 0 else "", v.bit_length()))
def test_int_boundaries_and_huge_ints(value):
    result = wire.loads(wire.dumps(value))
    assert type(result) is int and result == value


def test_special_values():
    for value in [float("nan"), float("inf"), float("-inf"), -0.0, 0.0, 5e-324,
                  complex(-0.0, float("nan")), "\ud800x\udfff", "", "é" * 300, "\udc80" * 300,
                  "\udc80" * 70000, b"", b"\0" * 300, bytearray(b"z" * 70000), None, True, False]:
        assert_round_trip(value)
    assert math.copysign(1.0, wire.loads(wire.dumps(-0.0))) == -1.0


def test_memoryviews_travel_as_bytes():
    assert wire.loads(wire.dumps(memoryview(b"abcdef")[::2])) == b"ace"
    ints = memoryview(bytearray(8)).cast("i")
    result = wire.loads(wire.dumps(ints))
    assert type(result) is bytes and result == bytes(8)


def test_decode_accepts_bytearray_and_memoryview_slices():
    encoded = body({"k": [1, b"x", "y"]})
    assert wire.decode(bytearray(encoded)) == {"k": [1, b"x", "y"]}
    view = memoryview(b"junk" + encoded + b"more")[4:-4]
    result = wire.decode(view)
    assert result == {"k": [1, b"x", "y"]} and type(result["k"][1]) is bytes
    assert wire.loads(memoryview(wire.dumps((1, 2)))) == (1, 2)


# -- subclasses travel as their base type -----------------------------------

class Color(enum.IntEnum):
    RED = 3


class Mode(str, enum.Enum):
    FAST = "fast"


class Plain(enum.Enum):
    A = object()


class MyStr(str):
    def __str__(self):
        return "not me"


class MyList(list):
    def __iter__(self):
        return iter(["not me"])


Point = collections.namedtuple("Point", "x y")


@pytest.mark.parametrize("value, expected", [
    (Color.RED, 3),
    (Mode.FAST, "fast"),
    (MyStr("abc"), "abc"),
    (Point(1, 2), (1, 2)),
    (collections.OrderedDict([("a", 1), ("b", 2)]), {"a": 1, "b": 2}),
    (collections.defaultdict(list, {"a": [1]}), {"a": [1]}),
    (collections.Counter("aab"), {"a": 2, "b": 1}),
    (MyList([1, 2]), [1, 2]),
    ([Point(Color.RED, Mode.FAST)], [(3, "fast")]),
])
def test_subclasses_are_demoted_to_their_base_type(value, expected):
    result = wire.loads(wire.dumps(value))
    assert typed(result) == typed(expected)


def test_bool_is_not_demoted():
    assert wire.loads(wire.dumps([True, False, 1, 0])) == [True, False, 1, 0]
    assert [type(v) for v in wire.loads(wire.dumps([True, 1]))] == [bool, int]


# -- errors of encode ---------------------------------------------------------

class Foo(object):
    pass


class UnhashableMeta(type):
    __hash__ = None

    def __eq__(cls, other):
        return cls is other


class Odd(metaclass=UnhashableMeta):
    pass


def dump_error(obj, channel_type=None):
    with pytest.raises(wire.DumpError) as info:
        wire.encode(obj, channel_type)
    return str(info.value)


@pytest.mark.parametrize("obj, path", [
    (Foo(), "(top level)"),
    ([1, 2, Foo()], "[2]"),
    ({"key": Foo()}, "['key']"),
    ((0, [5, {"a": 1, 7: Foo()}]), "[1][1][7]"),
    ([("x", {"k": [None, Foo()]})], "[0][1]['k'][1]"),
    ([{1, Foo()}], "[0]{...}"),
    (Point(1, [Foo()]), "[1][0]"),
    (collections.OrderedDict(a=Foo()), "['a']"),
])
def test_dump_error_names_type_and_path(obj, path):
    message = dump_error(obj)
    assert message == "cannot serialize object of type 'Foo' at " + path


def test_dump_error_path_shortens_long_keys():
    message = dump_error({"k" * 100: [Foo()]})
    assert message == "cannot serialize object of type 'Foo' at ['%s...][0]" % ("k" * 56)


def test_dump_error_on_dict_key():
    message = dump_error({"ok": 1, Foo(): 2})
    assert "cannot serialize object of type 'Foo' at <key <" in message
    message = dump_error([{(1, Foo()): 2}])
    assert message.startswith("cannot serialize object of type 'Foo' at [0]<key (1, <")
    assert message.endswith(">)>[1]")


@pytest.mark.parametrize("obj, name", [
    (len, "builtin_function_or_method"), (Foo, "type"), (Ellipsis, "ellipsis"),
    (types, "module"), (Plain.A, "Plain"), (lambda: 0, "function"), (Odd(), "Odd"),
    (object(), "object"),
])
def test_unsupported_types(obj, name):
    assert dump_error([obj]) == "cannot serialize object of type %r at [0]" % name


def nested(depth):
    value = None
    for _ in range(depth):
        value = [value]
    return value


def depth_of(value):
    """Levels of a nested() value, without recursion (== would hit the recursion limit)."""
    depth = 0
    while value is not None:
        assert type(value) is list and len(value) == 1
        value = value[0]
        depth += 1
    return depth


def test_depth_limit_on_encode():
    assert depth_of(wire.loads(wire.dumps(nested(wire.MAX_DEPTH)))) == wire.MAX_DEPTH
    message = dump_error(nested(wire.MAX_DEPTH + 1))
    assert "nesting too deep" in message


def test_self_recursive_containers():
    lst = [1]
    lst.append(lst)
    assert "nesting too deep" in dump_error(lst)
    d = {}
    d["me"] = [d]
    assert "nesting too deep" in dump_error(d)


def test_depth_limit_on_decode():
    assert depth_of(wire.decode(b"l\x01" * wire.MAX_DEPTH + b"N")) == wire.MAX_DEPTH
    with pytest.raises(wire.LoadError, match="too deep"):
        wire.decode(b"l\x01" * (wire.MAX_DEPTH + 1) + b"N")
    with pytest.raises(wire.LoadError, match="too deep"):
        wire.decode(b"u\x01" * 100000 + b"N")


def test_dump_error_is_a_data_format_error():
    assert issubclass(wire.DumpError, wire.DataFormatError)
    assert issubclass(wire.LoadError, wire.DataFormatError)
    assert issubclass(wire.DataFormatError, Exception)


# -- channel references ---------------------------------------------------------

class Chan(object):
    def __init__(self, id):
        self.id = id


class SubChan(Chan):
    pass


def test_channel_references():
    encoded = body({"c": Chan(7), "more": [SubChan(2 ** 32 - 1)]}, Chan)
    result = wire.decode(encoded, lambda cid: ("channel", cid))
    assert result == {"c": ("channel", 7), "more": [("channel", 2 ** 32 - 1)]}
    assert wire.decode(body(Chan(0), Chan), Chan).id == 0


def test_channel_reference_errors():
    with pytest.raises(wire.LoadError, match="channel"):
        wire.decode(body([Chan(3)], Chan))
    assert dump_error([Chan(3)]) == "cannot serialize object of type 'Chan' at [0]"
    assert "[0]" in dump_error([Chan(2 ** 32)], Chan)
    assert "channel id -1" in dump_error(Chan(-1), Chan)
    assert "channel id" in dump_error(Chan("x"), Chan)


@pytest.mark.parametrize("exc", [KeyError(5), IndexError("boom"), ValueError("bad")])
def test_channel_factory_errors_pass_through(exc):
    def factory(cid):
        raise exc
    with pytest.raises(type(exc)) as info:
        wire.decode(body([Chan(5)], Chan), factory)
    assert info.value is exc


# -- parts: big payloads are not copied -------------------------------------------

@pytest.mark.parametrize("make", [bytes, bytearray, memoryview])
def test_big_payload_is_its_own_part(make):
    big = make(b"x" * (1 << 20))
    raw = big.obj if isinstance(big, memoryview) else big
    parts = wire.encode(["head", big, 1, "tail"])
    assert any(p is big or (isinstance(p, memoryview) and p.obj is raw) for p in parts)
    assert len(parts) == 3
    result = wire.decode(b"".join(parts))
    assert result[1] == bytes(raw) and result[0] == "head" and result[3] == "tail"


def test_small_items_share_one_part():
    parts = wire.encode(["abc"] * 1000 + [b"x" * 1000] * 50)
    assert len(parts) == 1
    parts = wire.encode([b"y" * (wire.BIG + 1)] * 3 + ["z" * 100000])
    assert len(parts) == 8
    assert wire.decode(b"".join(parts))[3] == "z" * 100000


# -- dumps / loads / dump / load ---------------------------------------------------

def test_dumps_header():
    record = wire.dumps([1, "a"])
    assert record[:2] == b"\xe7W"
    assert record[2] == wire.VERSION
    assert int.from_bytes(record[3:7], "big") == len(record) - 7 == len(body([1, "a"]))


def test_loads_rejects_bad_records():
    record = wire.dumps({"a": 1})
    with pytest.raises(wire.LoadError, match=r"b'XY'"):
        wire.loads(b"XY" + record[2:])
    with pytest.raises(wire.LoadError, match="version"):
        wire.loads(record[:2] + b"\x63" + record[3:])
    with pytest.raises(wire.LoadError):
        wire.loads(record + b"\0")
    with pytest.raises(wire.LoadError):
        wire.loads(record[:-1])
    with pytest.raises(wire.LoadError):
        wire.loads(record[:5])
    with pytest.raises(wire.LoadError):
        wire.loads(b"")


def test_dump_and_load_several_records():
    f = io.BytesIO()
    records = [1, "two", [3.0, (4,)], {"five": b"5"}, None, b"x" * 200000]
    for obj in records:
        wire.dump(f, obj)
    f.seek(0)
    assert [wire.load(f) for _ in records] == records
    with pytest.raises(EOFError):
        wire.load(f)


def test_load_truncated_file():
    record = wire.dumps(["abc", 1])
    for cut in (1, 5, 7, len(record) - 1):
        with pytest.raises(wire.LoadError):
            wire.load(io.BytesIO(record[:cut]))


def test_load_does_not_trust_the_length():
    huge = b"\xe7W" + bytes([wire.VERSION]) + b"\xff\xff\xff\xff" + b"N"
    with pytest.raises(wire.LoadError):
        wire.load(io.BytesIO(huge))


# -- malformed input ---------------------------------------------------------------

@pytest.mark.parametrize("raw, match", [
    (b"", "truncated"),
    (b"\xff", "unknown opcode 0xff at offset 0"),
    (b"l\x02N\x00", "unknown opcode 0x00 at offset 3"),
    (b"NN", "trailing"),
    (b"s\x05ab", "truncated"),
    (b"S\xff\xff\xff\xffab", "truncated"),
    (b"L\xff\xff\xff\xffN", "more items"),
    (b"M\x80\x00\x00\x00NN", "more items"),
    (b"m\x01l\x00N", "unhashable"),
    (b"e\x01m\x00", "unhashable"),
    (b"s\x01\xff", "UTF-8"),
    (b"i\x00\x01", "truncated"),
    (b"I\x00\x00\x00\x09\x01", "truncated"),
    (b"l\x02b\x01b", "truncated"),
])
def test_malformed_input(raw, match):
    with pytest.raises(wire.LoadError, match=match):
        wire.decode(raw)
    with pytest.raises(wire.LoadError):
        wire.decode(memoryview(bytearray(raw)))


def decode_or_load_error(raw):
    try:
        wire.decode(raw, lambda cid: cid)
    except wire.LoadError:
        pass


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(raw):
    decode_or_load_error(raw)
    decode_or_load_error(memoryview(raw))


@FUZZ
@given(data, st.data())
def test_fuzz_mutated_encodings(obj, draw):
    raw = bytearray(body(obj))
    for _ in range(draw.draw(st.integers(1, 4))):
        action = draw.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        i = draw.draw(st.integers(0, len(raw)))
        if action == "flip" and i < len(raw):
            raw[i] ^= draw.draw(st.integers(1, 255))
        elif action == "cut":
            del raw[i:]
        elif action == "insert":
            raw[i:i] = draw.draw(st.binary(min_size=1, max_size=5))
        elif i < len(raw):
            del raw[i]
    decode_or_load_error(bytes(raw))


def loads_or_load_error(raw):
    """loads() gives plain data that survives another round trip, or raises LoadError; nothing else."""
    try:
        value = wire.loads(raw)
    except wire.LoadError:
        return
    assert typed(wire.loads(wire.dumps(value))) == typed(value)


@FUZZ
@given(data, st.data())
def test_fuzz_loads_on_damaged_records(obj, draw):
    raw = bytearray(wire.dumps(obj))
    for _ in range(draw.draw(st.integers(1, 4))):
        i = draw.draw(st.integers(0, len(raw)))
        action = draw.draw(st.sampled_from(["flip", "cut", "insert", "repeat", "count"]))
        if action == "flip" and i < len(raw):
            raw[i] ^= draw.draw(st.integers(1, 255))
        elif action == "cut":
            del raw[i:]
        elif action == "insert":
            raw[i:i] = draw.draw(st.binary(min_size=1, max_size=5))
        elif action == "repeat":
            raw[i:i] = raw[i:i + draw.draw(st.integers(1, 16))] * draw.draw(st.integers(1, 3))
        elif i + 4 <= len(raw):  # a length or count at an extreme
            raw[i:i + 4] = struct.pack(">I", draw.draw(st.sampled_from([0, 1, 255, 2 ** 31, 2 ** 32 - 1])))
    if draw.draw(st.booleans()) and len(raw) >= 7:  # a header that matches: the body decoder runs
        raw[3:7] = struct.pack(">I", len(raw) - 7)
    loads_or_load_error(bytes(raw))
    loads_or_load_error(memoryview(raw))


def test_the_long_fuzz_script_runs():
    script = Path(__file__).resolve().parent.parent / "bench" / "fuzz_wire.py"
    out = subprocess.run([sys.executable, str(script), "--inputs", "3000", "--corpus", "200", "--seed", "3"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "done: 3000 inputs (seed 3)" in out.stdout and "nothing else was raised" in out.stdout


# -- the fast paths agree with the general encoder and decoder ---------------------

flat_scalar = (st.none() | st.booleans() | st.integers(-2 ** 40, 2 ** 40) | st.floats()
               | st.text(alphabet=st.characters(exclude_categories=()), max_size=300))
flat = st.lists(flat_scalar, max_size=40) | st.lists(flat_scalar, max_size=40).map(tuple) | flat_scalar


@FUZZ
@given(flat)
def test_fast_encoding_is_the_general_encoding(obj):
    assert b"".join(wire.encode(obj)) == b"".join(wire._encode(obj, None))


@FUZZ
@given(flat, st.binary(max_size=8), st.binary(max_size=8))
def test_fast_decoding_in_place_agrees_with_the_general_decoder(obj, before, after):
    raw = body(obj)
    expected = typed(wire._decode(raw, 0, None))
    buffer = bytearray(before + raw + after)  # as in a read buffer: other frames on both sides
    value = wire.decode_flat(buffer, len(before), len(before) + len(raw))
    assert value is wire.NOT_FLAT or typed(value) == expected
    if isinstance(obj, (list, tuple)) and all(map(takes_fast_path, obj)):
        assert value is not wire.NOT_FLAT, "a flat container missed the fast path"


def takes_fast_path(item):
    """What decode_flat decodes inside a tuple or list."""
    if type(item) is int:
        return -2 ** 31 <= item < 2 ** 31
    if type(item) is str:
        return len(item.encode("utf-8", "surrogatepass")) < 256
    return True  # None, bool, float


@FUZZ
@given(flat, st.data())
def test_fast_decoding_never_accepts_what_the_general_decoder_refuses(obj, draw):
    raw = bytearray(body(obj))
    for _ in range(draw.draw(st.integers(1, 3))):
        i = draw.draw(st.integers(0, max(len(raw) - 1, 0)))
        action = draw.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and raw:
            raw[i] ^= draw.draw(st.integers(1, 255))
        elif action == "cut":
            del raw[i:]
        else:
            raw[i:i] = draw.draw(st.binary(min_size=1, max_size=3))
    padded = bytearray(raw) + b"u\x05s\xff"  # bytes after the body must never be read as part of it
    value = wire.decode_flat(padded, 0, len(raw))
    try:
        expected = wire._decode(bytes(raw), 0, None)
    except wire.LoadError:
        assert value is wire.NOT_FLAT
    else:
        assert value is wire.NOT_FLAT or typed(value) == typed(expected)


# -- the module itself: far-side constraints -------------------------------------

WIRE_PATH = wire.__file__


def test_module_has_no_annotations_and_imports_only_stdlib():
    tree = ast.parse(open(WIRE_PATH).read())
    for node in ast.walk(tree):
        assert not isinstance(node, ast.AnnAssign)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert node.returns is None
            for arg in node.args.args + node.args.kwonlyargs:
                assert arg.annotation is None
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module in ("itertools",)
        if isinstance(node, ast.Import):
            assert [a.name for a in node.names] == ["struct"]


def test_module_works_under_another_name():
    spec = importlib.util.spec_from_file_location("other_pkg_wire", WIRE_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.loads(module.dumps((1, "x"))) == (1, "x")


OTHER_PYTHONS = ["/root/.pyenv/versions/3.6.15/bin/python", "/root/.pyenv/versions/3.7.16/bin/python",
                 shutil.which("pypy3") or "pypy3"]


@pytest.mark.parametrize("python", OTHER_PYTHONS)
def test_runs_on_other_pythons(python):
    """The far side runs wire.py on whatever Python it finds (skipped where not installed)."""
    if not os.path.exists(python):
        pytest.skip("%s not installed" % python)
    script = (
        "import importlib.util as u, sys\n"
        "s = u.spec_from_file_location('wire', sys.argv[1]); w = u.module_from_spec(s)\n"
        "s.loader.exec_module(w)\n"
        "obj = [1, 'a\\ud800', b'b', (2 ** 70, -0.0), {'k': {1, 2}}, bytearray(b'x'), None, True]\n"
        "assert w.loads(w.dumps(obj)) == obj, w.loads(w.dumps(obj))\n"
        "alike = w.dumps([k * sys.hash_info.modulus for k in range(1, 100)]).replace(b'l\\x63', b'e\\x63')\n"
        "try: w.loads(alike)\n"
        "except w.LoadError as exc: assert 'hash like another' in str(exc)\n"
        "else: raise AssertionError('colliding set decoded')\n"
        "print('ok')\n"
    )
    out = subprocess.run([python, "-c", script, WIRE_PATH], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=30)
    assert out.stdout.strip() == "ok", out.stdout


# -- decoding cost a peer controls ----------------------------------------------------

MODULUS = sys.hash_info.modulus  # the ints k * MODULUS all hash to 0
OPCODES = {"set": b"E", "frozenset": b"Z", "dict": b"M"}


def record(kind, keys):
    """A dumps() record of a set, frozenset or dict (values None) of ``keys``, written as a peer may:
    the keys are never put in a Python set here, which is what would take quadratic time."""
    items = [item for key in keys for item in ((key, None) if kind == "dict" else (key,))]
    body = OPCODES[kind] + struct.pack(">I", len(keys)) + b"".join(b"".join(wire.encode(i)) for i in items)
    return wire.MAGIC + bytes([wire.VERSION]) + struct.pack(">I", len(body)) + body


def colliding(count):
    """``count`` distinct values of one hash, in the shapes a peer can send: ints, complex, tuples."""
    return {
        "ints": [k * MODULUS for k in range(1, count + 1)],
        "complex numbers": [complex(-1000003 * k, k) for k in range(count)],
        "tuples": [(k * MODULUS, 0) for k in range(1, count + 1)],
    }


def cpu_seconds(action, rounds=3):
    """The least CPU time of this thread that ``action`` took: other processes' load does not count."""
    best = float("inf")
    for _ in range(rounds):
        started = time.thread_time()
        action()
        best = min(best, time.thread_time() - started)
    return best


def refused(raw):
    with pytest.raises(wire.LoadError, match="hash like another one") as raised:
        wire.loads(raw)
    return str(raised.value)


@pytest.mark.parametrize("kind", sorted(OPCODES))
@pytest.mark.parametrize("shape", sorted(colliding(1)))
def test_keys_that_all_hash_alike_are_refused_in_linear_time(kind, shape):
    keys = colliding(20_000)[shape]
    assert len(set(map(hash, keys))) == 1 and len(set(map(repr, keys))) == 20_000
    raw = record(kind, keys)
    message = refused(raw)
    assert "of 20000" in message and "19999 of them" in message and "more than 32" in message
    # an ordinary container of the same kind and length is the yardstick: refusing costs about what
    # decoding that one does (a quadratic decoder takes hundreds of times as long)
    control = record(kind, [(k, 0) for k in range(2 ** 62, 2 ** 62 + 20_000)])
    assert cpu_seconds(lambda: refused(raw)) < 5 * cpu_seconds(lambda: wire.loads(control)) + 0.05


def test_a_few_shared_hashes_still_decode():
    # -1 and -2 share a hash, and up to 32 keys of a container may hash like another one
    assert wire.loads(wire.dumps({-1: "a", -2: "b"})) == {-1: "a", -2: "b"}
    at_limit = [k * MODULUS for k in range(1, 34)] + list(range(1, 1001))
    for kind in OPCODES:
        value = wire.loads(record(kind, at_limit))
        assert len(value) == 1033 and type(value).__name__ == kind
    message = refused(record("set", at_limit + [34 * MODULUS]))
    assert "set of 1034 elements" in message and "33 of them" in message


def test_repeated_keys_in_a_crafted_set_are_refused():
    # dumps never writes a key twice, but a peer may
    assert "dict of 40 keys" in refused(record("dict", [7] * 40))
    assert wire.loads(record("set", [7] * 33)) == {7}


def test_keys_that_share_only_low_bits_decode_in_linear_time():
    # hashes alike in their low 40 bits collide in the first probes of a table only
    keys = [k << 40 for k in range(1, 20_001)]
    raw = record("set", keys)
    assert wire.loads(raw) == set(keys)
    control = record("set", list(range(2 ** 62, 2 ** 62 + 20_000)))
    assert cpu_seconds(lambda: wire.loads(raw)) < 10 * cpu_seconds(lambda: wire.loads(control)) + 0.05


@pytest.mark.parametrize("kind", [list, tuple, dict, set, frozenset])
@pytest.mark.parametrize("count", [0, 1, 255, 256, 70_000])
def test_a_container_head_and_its_items_encoded_one_by_one_are_the_encoding_of_the_container(kind, count):  # type: ignore[no-untyped-def]
    items = [f"item{index}" for index in range(count)]
    value = dict.fromkeys(items, 7) if kind is dict else kind(items)
    pieces = [wire.container_head(kind, count)]
    for item in (value if kind is not dict else items):
        pieces.extend(wire.encode(item))
        if kind is dict:
            pieces.extend(wire.encode(7))
    assert b"".join(pieces) == b"".join(wire.encode(value))
