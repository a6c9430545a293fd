"""Types of wire.py for type checkers (the far side itself stays Python 3.6 code without annotations).

What may be encoded is spelled out as ``Data``; what decoding gives is ``Any``, since the bytes decide
(as for json.loads), and a union there would make every caller narrow what it knows already.
"""

from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Final, TypeAlias

from _typeshed import ReadableBuffer, SupportsRead, SupportsWrite

__all__ = ["DataFormatError", "DumpError", "LoadError", "encode", "decode", "dumps", "loads", "dump", "load"]

# Values the serializer takes. Containers are the abstract read-only types, so that list[int] or
# dict[str, list[str]] fit (list and dict are invariant) and subclasses such as namedtuples do too; it
# lets through a few containers that encode() refuses at run time (range, deque, dict views).
Data: TypeAlias = (
    None | bool | int | float | complex | str | bytes | bytearray | memoryview
    | Sequence[Data] | Mapping[Any, Data] | AbstractSet[Data]
)
# one part of an encoded body, as encode() returns them
Part: TypeAlias = bytes | bytearray | memoryview

MAGIC: Final[bytes]
VERSION: Final[int]
MAX_DEPTH: Final[int]
BIG: Final[int]
NOT_FLAT: Final[object]

class DataFormatError(Exception): ...
class DumpError(DataFormatError): ...
class LoadError(DataFormatError): ...

def container_head(t: type, n: int) -> bytes: ...
def encode(obj: object, channel_type: type[object] | None = None) -> list[Part]: ...
def decode(buf: ReadableBuffer, channel_factory: Callable[[int], object] | None = None) -> Any: ...
def decode_flat(buf: bytes | bytearray, start: int, end: int) -> Any: ...
def dumps(obj: Data) -> bytes: ...
def loads(data: ReadableBuffer) -> Any: ...
def dump(file: SupportsWrite[bytes], obj: Data) -> None: ...
def load(file: SupportsRead[bytes]) -> Any: ...
