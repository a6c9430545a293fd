"""The execwire serializer: plain data to bytes and back, never code.

Values of a fixed set of builtin types (and channel references) are encoded
into a compact tagged format; decoding untrusted bytes yields only such values
or raises LoadError. No pickle, no imports of names, no calls of anything but
the optional channel factory.

Far-side module: stdlib only, Python >= 3.6 (CPython and PyPy), no I/O
(dump() and load() are thin wrappers over file objects).

Format: every value is a one-byte opcode then its operand (network order):

  N None          T True          F False        C channel ref: u32 id
  b int, i8       i int, i32      q int, i64     I int: u32 n, n bytes two's complement
  d float, f64    c complex: two f64
  s str: u8 n     S str: u32 n          (n bytes of UTF-8, surrogatepass)
  y bytes: u8 n   Y bytes: u32 n        a / A bytearray: u8 n / u32 n
  l / L list, u / U tuple, m / M dict, e / E set, z / Z frozenset:
      u8 / u32 count, then the items (a dict: key, value, key, value, ...)

dumps() adds a 7-byte header: the magic b"\\xe7W", a version byte and the
u32 length of the body.
"""

import struct
from itertools import chain

__all__ = ["DataFormatError", "DumpError", "LoadError",
           "encode", "decode", "dumps", "loads", "dump", "load"]

MAGIC = b"\xe7W"
VERSION = 1
MAX_DEPTH = 1000  # most containers open at once, enforced both ways
# most keys of one decoded dict or set that may hash like another of its keys:
# building a table of k keys with one hash costs k * k / 2 comparisons
MAX_SHARED_HASHES = 32
BIG = 65536  # bytes-like payloads longer than this become a part of their own
_U32_MAX = 0xFFFFFFFF


class DataFormatError(Exception):
    """Base of the serializer's errors."""


class DumpError(DataFormatError):
    """The object (or something inside it) cannot be serialized."""


class LoadError(DataFormatError):
    """The bytes are not a valid encoding."""


class _Fail(Exception):
    """Internal: raised at the failing spot; encode() adds the path."""


class _Passthrough(Exception):
    """Internal: carries an exception of the channel factory out unchanged."""


_pack_op_u32 = struct.Struct(">BI").pack
_pack_op_i32 = struct.Struct(">Bi").pack
_pack_op_i64 = struct.Struct(">Bq").pack
_pack_op_f64 = struct.Struct(">Bd").pack
_pack_op_2f64 = struct.Struct(">Bdd").pack
_unpack_u32 = struct.Struct(">I").unpack_from
_unpack_i32 = struct.Struct(">i").unpack_from
_unpack_i64 = struct.Struct(">q").unpack_from
_unpack_f64 = struct.Struct(">d").unpack_from
_unpack_2f64 = struct.Struct(">dd").unpack_from
_header = struct.Struct(">2sBI")


def _short_headers(op):
    """Opcode + u8 length, precomputed for every length < 256."""
    return [bytes((op, n)) for n in range(256)]


_STR8 = _short_headers(0x73)  # s
_BYTES8 = _short_headers(0x79)  # y
_BARR8 = _short_headers(0x61)  # a
# int8 encodings, indexed by the value itself: -1 picks the last entry
_INT8 = [bytes((0x62, v & 0xFF)) for v in range(256)]
_SIGNED8 = list(range(128)) + list(range(-128, 0))

# exact container type -> (short headers, long opcode, is a dict)
_CONTAINERS = {
    list: (_short_headers(0x6C), 0x4C, False),  # l L
    tuple: (_short_headers(0x75), 0x55, False),  # u U
    dict: (_short_headers(0x6D), 0x4D, True),  # m M
    set: (_short_headers(0x65), 0x45, False),  # e E
    frozenset: (_short_headers(0x7A), 0x5A, False),  # z Z
}


def container_head(t, n):
    """The bytes that start the encoding of a ``t`` (list, tuple, dict, set, frozenset) of ``n`` items.

    For encodings put together from pieces (items sent by reference through relays).
    """
    short, op32, _ = _CONTAINERS[t]
    return short[n] if n < 256 else _pack_op_u32(op32, n)


_FLAT_MAX = 32  # items in a tuple or list that _encode_flat tries
_FLAT_BYTES_MAX = 512  # bodies that decode() first tries with decode_flat()
_FLAT_HEADS = {tuple: _CONTAINERS[tuple][0], list: _CONTAINERS[list][0]}
NOT_FLAT = object()


def _blob(out, parts, data, short, op32):
    """Append a length-prefixed byte string; a big one becomes its own part."""
    n = len(data)
    if n < 256:
        out += short[n]
        out += data
        return
    _long_blob(out, parts, data, op32)


def _long_blob(out, parts, data, op32):
    n = len(data)
    if n > _U32_MAX:
        raise _Fail("cannot serialize %d bytes in one item (limit 4 GiB)" % n)
    out += _pack_op_u32(op32, n)
    if n > BIG:
        parts.append(bytes(out))
        del out[:]
        parts.append(data)  # no copy: the caller writes it out as is
    else:
        out += data


def _enc_str(x, out, parts):
    _blob(out, parts, x.encode("utf-8", "surrogatepass"), _STR8, 0x53)


def _enc_int(x, out, parts):
    if -128 <= x < 128:
        out += _INT8[x]
    elif -0x80000000 <= x <= 0x7FFFFFFF:
        out += _pack_op_i32(0x69, x)
    elif -0x8000000000000000 <= x <= 0x7FFFFFFFFFFFFFFF:
        out += _pack_op_i64(0x71, x)
    else:
        # bit_length() + 1 bits hold the sign too
        _long_blob(out, parts, x.to_bytes((x.bit_length() + 8) // 8, "big", signed=True), 0x49)


def _enc_float(x, out, parts):
    out += _pack_op_f64(0x64, x)


def _enc_complex(x, out, parts):
    out += _pack_op_2f64(0x63, x.real, x.imag)


def _enc_bytes(x, out, parts):
    _blob(out, parts, x, _BYTES8, 0x59)


def _enc_bytearray(x, out, parts):
    _blob(out, parts, x, _BARR8, 0x41)


def _enc_memoryview(x, out, parts):
    if x.ndim != 1 or x.format != "B" or not x.c_contiguous:
        try:
            x = x.cast("B")
        except (TypeError, ValueError):  # not contiguous
            x = memoryview(x.tobytes())
    _blob(out, parts, x, _BYTES8, 0x59)  # arrives as bytes


# exact type -> encoder function; encode() inlines None, bool and the common
# cases of str, int and float, and the base-type values of subclasses (see
# _demote) come through here too
_SCALARS = {
    str: _enc_str, int: _enc_int, float: _enc_float, bytes: _enc_bytes,
    bytearray: _enc_bytearray, memoryview: _enc_memoryview, complex: _enc_complex,
}


def _demote(x):
    """A subclass instance of a supported type as a value of the base type."""
    t = type(x)
    # bool cannot be subclassed, and no class derives from two of these
    # (their layouts conflict), so the order only follows frequency
    if issubclass(t, str):  # also class E(str, Enum)
        return str.__str__(x)
    if issubclass(t, int):  # IntEnum, IntFlag
        return int.__int__(x)
    if issubclass(t, tuple):  # namedtuple
        return tuple(tuple.__iter__(x))
    if issubclass(t, dict):  # OrderedDict, defaultdict, Counter
        return dict(dict.items(x))
    if issubclass(t, list):
        return list(list.__iter__(x))
    if issubclass(t, float):
        return float.__float__(x)
    if issubclass(t, bytes):
        return bytes(memoryview(x))
    if issubclass(t, bytearray):
        return bytearray(memoryview(x))
    if issubclass(t, frozenset):
        return frozenset(frozenset.__iter__(x))
    if issubclass(t, set):
        return set(set.__iter__(x))
    if issubclass(t, complex):
        return complex(complex.real.__get__(x), complex.imag.__get__(x))
    raise _Fail("cannot serialize object of type %r" % (t.__name__,))


def _enc_channel(x, out):
    try:
        cid = x.id
    except Exception:
        raise _Fail("channel object of type %r has no .id" % (type(x).__name__,))
    if type(cid) is not int or not 0 <= cid <= _U32_MAX:
        raise _Fail("channel id %r is not an unsigned 32-bit int" % (cid,))
    out += _pack_op_u32(0x43, cid)


def encode(obj, channel_type=None):
    """Encode ``obj``; return a list of bytes-like parts making up the body.

    Instances of ``channel_type`` (if given) are encoded as references to
    their ``.id``. Raises DumpError naming the unsupported type and its path.
    """
    t = type(obj)
    if t is tuple or t is list:
        if len(obj) <= _FLAT_MAX:
            flat = _encode_flat(obj, t)
            if flat is not None:
                return [flat]
    elif t is int:
        if -128 <= obj < 128:
            return [_INT8[obj]]
        if -0x80000000 <= obj <= 0x7FFFFFFF:
            return [_pack_op_i32(0x69, obj)]
    elif t is str:
        b = obj.encode("utf-8", "surrogatepass")
        if len(b) < 256:
            return [_STR8[len(b)] + b]
    elif t is float:
        return [_pack_op_f64(0x64, obj)]
    elif obj is None:
        return [b"N"]
    return _encode(obj, channel_type)


def _encode_flat(seq, t):
    """The common case made cheap: a short tuple or list of small scalars; None otherwise.

    Its scalar branches repeat those of _encode on purpose: a call per item would cost more
    than they do. tests/test_wire.py checks that both give the same bytes.
    """
    out = bytearray(_FLAT_HEADS[t][len(seq)])
    for x in seq:
        t = type(x)
        if t is str:
            b = x.encode("utf-8", "surrogatepass")
            if len(b) >= 256:
                return None
            out += _STR8[len(b)]
            out += b
        elif t is int:
            if -128 <= x < 128:
                out += _INT8[x]
            elif -0x80000000 <= x <= 0x7FFFFFFF:
                out += _pack_op_i32(0x69, x)
            else:
                return None
        elif t is float:
            out += _pack_op_f64(0x64, x)
        elif x is None:
            out += b"N"
        elif t is bool:
            out += b"T" if x else b"F"
        else:
            return None
    return out


def _encode(obj, channel_type):
    """Encode any value: containers are walked with an explicit stack, not recursion."""
    out = bytearray()
    parts = []
    stack = []  # (iterator, container, child) of every open container
    top = cur = (obj,)
    it = iter(top)
    x = obj
    try:
        while True:
            for x in it:
                t = type(x)
                if t is str:
                    b = x.encode("utf-8", "surrogatepass")
                    if len(b) < 256:
                        out += _STR8[len(b)]
                        out += b
                    else:
                        _blob(out, parts, b, _STR8, 0x53)
                elif t is int:
                    if -128 <= x < 128:
                        out += _INT8[x]
                    elif -0x80000000 <= x <= 0x7FFFFFFF:
                        out += _pack_op_i32(0x69, x)
                    else:
                        _enc_int(x, out, parts)
                elif t is float:
                    out += _pack_op_f64(0x64, x)
                elif x is None:
                    out += b"N"
                elif t is bool:
                    out += b"T" if x else b"F"
                else:
                    y = x
                    try:
                        c = _CONTAINERS.get(t)
                        f = None if c else _SCALARS.get(t)
                    except TypeError:  # a metaclass made the type unhashable
                        c = f = None
                    if c is None:
                        if f is not None:
                            f(x, out, parts)
                            continue
                        if channel_type is not None and issubclass(t, channel_type):
                            _enc_channel(x, out)
                            continue
                        y = _demote(x)
                        c = _CONTAINERS.get(type(y))
                        if c is None:
                            _SCALARS[type(y)](y, out, parts)
                            continue
                    short, op32, is_dict = c
                    n = len(y)
                    if n < 256:
                        out += short[n]
                    elif n <= _U32_MAX:
                        out += _pack_op_u32(op32, n)
                    else:
                        raise _Fail("container of %d items is too large" % n)
                    if n:
                        if len(stack) >= MAX_DEPTH:
                            raise _Fail("nesting too deep (more than %d levels)" % MAX_DEPTH)
                        stack.append((it, cur, x))
                        cur = y
                        it = chain.from_iterable(y.items()) if is_dict else iter(y)
                        break
            else:
                if not stack:
                    break
                it, cur, _ = stack.pop()
    except _Fail as exc:
        path = _path([(c, child) for _, c, child in stack] + [(cur, x)], top)
        error = DumpError("%s at %s" % (exc.args[0], path))
        error.path = path
        raise error from None
    if out or not parts:
        parts.append(out)
    return parts


def _path(links, top):
    """Python-like path of the failing object, from (container, child) links.

    Called only on failure. Children are found by identity; when the same
    object occurs twice in a container its first occurrence is the one that
    failed, since encoding is deterministic.
    """
    segments = []
    for container, child in links:
        if container is top:
            continue
        t = type(container)
        segment = "[?]"
        if t is dict:
            for k, v in container.items():
                if k is child:
                    segment = "<key %s>" % _short_repr(k)
                    break
                if v is child:
                    segment = "[%s]" % _short_repr(k)
                    break
        elif t is set or t is frozenset:
            segment = "{...}"
        else:
            for i, item in enumerate(container):
                if item is child:
                    segment = "[%d]" % i
                    break
        segments.append(segment)
    path = "".join(segments)
    if len(path) > 300:
        path = path[:140] + " ... " + path[-140:]
    return path or "(top level)"


def _short_repr(obj):
    try:
        text = repr(obj)
    except Exception:
        text = "<%s object>" % type(obj).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _mkdict(items):
    pairs = iter(items)
    return dict(zip(pairs, pairs))


# opcode of a container -> (constructor or None for list, count is u32, slots per item)
_OPENERS = {}
for _mk, _ops in ((None, b"lL"), (tuple, b"uU"), (_mkdict, b"mM"), (set, b"eE"), (frozenset, b"zZ")):
    _OPENERS[_ops[0]] = (_mk, False, 2 if _mk is _mkdict else 1)
    _OPENERS[_ops[1]] = (_mk, True, 2 if _mk is _mkdict else 1)
del _mk, _ops


def _check_hashes(items, is_dict, pos):
    """Refuse a dict or set whose keys collide: building it would take quadratic time.

    Counting distinct hash values is linear: the hash of a hash value is that
    value itself, so they cannot collide in turn. Raises TypeError when a key
    is unhashable.
    """
    keys = items[0::2] if is_dict else items
    shared = len(keys) - len(set(map(hash, keys)))
    if shared > MAX_SHARED_HASHES:
        raise LoadError("%s of %d %s before offset %d: %d of them hash like another one (more than %d "
                        "colliding or repeated keys would make decoding take quadratic time)"
                        % ("dict" if is_dict else "set", len(keys), "keys" if is_dict else "elements",
                           pos, shared, MAX_SHARED_HASHES))


def decode(buf, channel_factory=None):
    """Decode one body (all of ``buf``: bytes, bytearray or memoryview).

    Channel references become ``channel_factory(id)``. Raises LoadError for
    any malformed input.
    """
    buf = _as_bytes_like(buf)
    if 0 < len(buf) <= _FLAT_BYTES_MAX:
        value = decode_flat(buf, 0, len(buf))
        if value is not NOT_FLAT:
            return value
    return _decode(buf, 0, channel_factory)


def decode_flat(buf, start, end):
    """The common case made cheap: a small scalar, or a short tuple or list of them.

    Reads ``buf[start:end]`` (bytes or bytearray) where it lies. Returns NOT_FLAT
    for anything else, malformed input included: decode() then decodes it or
    says what is wrong. An item that runs past ``end`` leaves ``pos`` beyond it
    (or raises), so checking ``pos == end`` at the end is enough.
    """
    if end - start < 2:
        if end - start == 1 and buf[start] == 0x4E:  # N
            return None
        return NOT_FLAT
    op = buf[start]
    if op == 0x75 or op == 0x6C:  # u l
        pos = start + 2
        vals = []
        append = vals.append
        try:
            for _ in range(buf[start + 1]):
                op = buf[pos]
                if op == 0x73:  # s
                    e = pos + 2 + buf[pos + 1]
                    append(buf[pos + 2:e].decode("utf-8", "surrogatepass"))
                    pos = e
                elif op == 0x62:  # b
                    append(_SIGNED8[buf[pos + 1]])
                    pos += 2
                elif op == 0x69:  # i
                    append(_unpack_i32(buf, pos + 1)[0])
                    pos += 5
                elif op == 0x64:  # d
                    append(_unpack_f64(buf, pos + 1)[0])
                    pos += 9
                elif op == 0x4E:  # N
                    append(None)
                    pos += 1
                elif op == 0x54 or op == 0x46:  # T F
                    append(op == 0x54)
                    pos += 1
                else:
                    return NOT_FLAT
        except (IndexError, struct.error, UnicodeDecodeError):
            return NOT_FLAT
        if pos != end:
            return NOT_FLAT
        return tuple(vals) if buf[start] == 0x75 else vals
    size = end - start
    if op == 0x62 and size == 2:  # b
        return _SIGNED8[buf[start + 1]]
    if op == 0x69 and size == 5:  # i
        return _unpack_i32(buf, start + 1)[0]
    if op == 0x73 and size == 2 + buf[start + 1]:  # s
        try:
            return buf[start + 2:end].decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return NOT_FLAT
    if op == 0x64 and size == 9:  # d
        return _unpack_f64(buf, start + 1)[0]
    return NOT_FLAT


def _as_bytes_like(buf):
    if type(buf) is bytes or type(buf) is bytearray:
        return buf
    view = memoryview(buf)
    if view.nbytes < 4096 and view.c_contiguous:
        return view.tobytes()  # indexing bytes is faster than a view; small copies are cheap
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    elif view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    return view


def _decode(buf, pos, factory):
    """Decode the value at ``buf[pos:]``, which must end exactly at the end."""
    end = len(buf)
    stack = []  # saved (kind, items, append, left) of the enclosing containers
    kind = None  # what makes the current container from its items; None: list
    items = []  # the top level is a pseudo-container of one item
    append = items.append
    left = 1  # item slots still to fill in the current container
    try:
        while True:
            op = buf[pos]
            pos += 1
            if op == 0x73:  # s
                e = pos + 1 + buf[pos]
                if e > end:
                    raise LoadError("truncated data: string runs past the end at offset %d" % pos)
                val = str(buf[pos + 1:e], "utf-8", "surrogatepass")
                pos = e
            elif op == 0x62:  # b
                val = _SIGNED8[buf[pos]]
                pos += 1
            elif op == 0x69:  # i
                val = _unpack_i32(buf, pos)[0]
                pos += 4
            elif op == 0x64:  # d
                val = _unpack_f64(buf, pos)[0]
                pos += 8
            elif op == 0x4E:  # N
                val = None
            elif op == 0x54:  # T
                val = True
            elif op == 0x46:  # F
                val = False
            elif op in _OPENERS:
                mk, wide, slots = _OPENERS[op]
                if wide:
                    n = _unpack_u32(buf, pos)[0] * slots
                    pos += 4
                else:
                    n = buf[pos] * slots
                    pos += 1
                if n:
                    if n > end - pos:  # every item takes at least one byte
                        raise LoadError("container at offset %d claims more items than "
                                        "there are bytes left" % (pos - 1,))
                    if len(stack) >= MAX_DEPTH:
                        raise LoadError("nesting too deep (more than %d levels) at offset %d"
                                        % (MAX_DEPTH, pos))
                    stack.append((kind, items, append, left))
                    kind = mk
                    items = []
                    append = items.append
                    left = n
                    continue
                val = [] if mk is None else mk(())
            elif op == 0x71:  # q
                val = _unpack_i64(buf, pos)[0]
                pos += 8
            elif op == 0x53 or op == 0x59 or op == 0x79 or op == 0x41 or op == 0x61 or op == 0x49:
                if op == 0x79 or op == 0x61:  # y a: u8 length
                    e = pos + 1 + buf[pos]
                    pos += 1
                else:
                    e = pos + 4 + _unpack_u32(buf, pos)[0]
                    pos += 4
                if e > end:
                    raise LoadError("truncated data: item at offset %d runs past the end" % pos)
                if op == 0x53:  # S
                    val = str(buf[pos:e], "utf-8", "surrogatepass")
                elif op == 0x49:  # I
                    val = int.from_bytes(buf[pos:e], "big", signed=True)
                elif op == 0x41 or op == 0x61:  # A a
                    val = bytearray(buf[pos:e])
                else:  # Y y
                    val = bytes(buf[pos:e])
                pos = e
            elif op == 0x63:  # c
                val = complex(*_unpack_2f64(buf, pos))
                pos += 16
            elif op == 0x43:  # C
                cid = _unpack_u32(buf, pos)[0]
                pos += 4
                if factory is None:
                    raise LoadError("channel reference (id %d) but no channel factory" % cid)
                try:
                    val = factory(cid)
                except Exception as exc:
                    raise _Passthrough(exc)
            else:
                raise LoadError("unknown opcode 0x%02x at offset %d" % (op, pos - 1))
            append(val)
            left -= 1
            while not left:  # the current container is complete
                if not stack:
                    if pos != end:
                        raise LoadError("%d bytes of trailing data at offset %d" % (end - pos, pos))
                    return items[0]
                if kind is None:
                    val = items
                else:
                    try:
                        if kind is not tuple and len(items) > MAX_SHARED_HASHES:
                            _check_hashes(items, kind is _mkdict, pos)
                        val = kind(items)
                    except TypeError:
                        raise LoadError("unhashable dict key or set element before offset %d"
                                        % pos) from None
                kind, items, append, left = stack.pop()
                append(val)
                left -= 1
    except (IndexError, struct.error):
        raise LoadError("truncated data: ended inside the item before offset %d" % pos) from None
    except UnicodeDecodeError as exc:
        raise LoadError("invalid UTF-8 in a string before offset %d: %s" % (pos, exc)) from None
    except _Passthrough as wrapper:
        raise wrapper.args[0] from None


def dumps(obj):
    """Encode ``obj`` as a self-delimiting record: header + body."""
    parts = encode(obj)
    n = sum(len(p) for p in parts)
    if n > _U32_MAX:
        raise DumpError("encoded object of %d bytes is too large (limit 4 GiB)" % n)
    parts.insert(0, _header.pack(MAGIC, VERSION, n))
    return b"".join(parts)


def _check_header(head):
    """Return the body length announced by the 7-byte header ``head``."""
    if head[:2] != MAGIC:
        raise LoadError("bad magic %r: not an execwire record" % (bytes(head[:2]),))
    if head[2] != VERSION:
        raise LoadError("unsupported format version %d (this is version %d)" % (head[2], VERSION))
    return _unpack_u32(head, 3)[0]


def loads(data):
    """Decode one record made by dumps(); ``data`` must hold exactly that."""
    data = _as_bytes_like(data)
    if len(data) < _header.size:
        raise LoadError("truncated record: %d bytes, shorter than the header" % len(data))
    n = _check_header(data)
    if len(data) - _header.size != n:
        raise LoadError("record header announces %d bytes of body but %d follow"
                        % (n, len(data) - _header.size))
    return _decode(data, _header.size, None)


def dump(file, obj):
    """Write ``obj`` to ``file`` as one dumps() record."""
    file.write(dumps(obj))


def _read(file, n, what):
    """Read exactly n bytes, in bounded chunks (n is not trusted)."""
    chunks = bytearray()
    while len(chunks) < n:
        chunk = file.read(min(n - len(chunks), 1 << 20))
        if not chunk:
            raise LoadError("truncated record: file ended inside the %s" % what)
        chunks += chunk
    return chunks


def load(file):
    """Read and decode one dumps() record from ``file``.

    Raises EOFError if the file is at its end before the record starts.
    """
    first = file.read(1)
    if not first:
        raise EOFError("no more records")
    head = first + _read(file, _header.size - 1, "header")
    n = _check_header(head)
    return _decode(_read(file, n, "body"), 0, None)
