"""What a group knows about its gateways: their ids, who runs through whom, the order of ending.

Shared by the threaded Group (group.py) and the async one (_async/group.py); a
gateway here is anything with an ``id`` and a ``spec``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar

from ._far.errors import GatewayStartError
from .spec import XSpec


class Named(Protocol):
    """What the group helpers need of a gateway (threaded or async)."""

    id: str
    spec: XSpec


G = TypeVar("G", bound=Named)


class Roster(Generic[G]):
    """A group's gateways as a collection: its length, iteration, ``in`` and indexing by position or id."""

    _gateways: list[G]

    def __len__(self) -> int:
        return len(self._gateways)

    def __iter__(self) -> Iterator[G]:
        return iter(list(self._gateways))

    def __contains__(self, key: object) -> bool:
        return any(gw is key or gw.id == key for gw in self._gateways)

    def __getitem__(self, key: int | str | G) -> G:
        if isinstance(key, int):
            return self._gateways[key]
        for gw in self._gateways:
            if gw is key or gw.id == key:
                return gw
        raise KeyError(f"no gateway {key!r} in this group; ids: {[gw.id for gw in self._gateways]}")


def find_middle(spec: XSpec, gateway_id: str, gateways: list[G]) -> G | None:
    """The gateway among ``gateways`` that ``via=`` or ``installvia=`` of ``spec`` names, or None."""
    by_id = {gw.id: gw for gw in gateways}
    if spec.via is not None:
        if spec.via not in by_id:
            raise ValueError(f"via={spec.via!r} in gateway spec {str(spec)!r} names no gateway of this group; "
                             f"its gateways are {list(by_id)}")
        return by_id[str(spec.via)]
    if spec.installvia is not None:
        if spec.installvia not in by_id:
            raise GatewayStartError(f"gateway {gateway_id!r} ({spec}): installvia={spec.installvia} names no "
                                    f"gateway of this group; ids: {list(by_id)}")
        return by_id[str(spec.installvia)]
    return None


def allocate_id(spec: XSpec, gateways: list[G], next_auto_id: int) -> tuple[str, int]:
    """The id of a new gateway for ``spec`` (its own, or the next free ``gwN``), and the next N to try."""
    taken = {gw.id for gw in gateways}
    if spec.id is not None:
        if spec.id in taken:
            raise ValueError(f"a gateway with id {spec.id!r} is already in this group")
        return str(spec.id), next_auto_id
    while f"gw{next_auto_id}" in taken:
        next_auto_id += 1
    return f"gw{next_auto_id}", next_auto_id + 1


def by_depth(gateways: list[G]) -> list[tuple[int, G]]:
    """Each gateway with the number of ``gateways`` it runs through (via=, installvia=)."""
    by_id = {gw.id: gw for gw in gateways}
    depths: dict[str, int] = {}

    def depth(gateway: G, seen: frozenset[str] = frozenset()) -> int:
        if gateway.id not in depths:
            through = gateway.spec.via or gateway.spec.installvia
            middle = by_id.get(str(through)) if through is not None else None
            if middle is None or middle.id in seen:
                depths[gateway.id] = 0
            else:
                depths[gateway.id] = 1 + depth(middle, seen | {gateway.id})
        return depths[gateway.id]

    return [(depth(gw), gw) for gw in gateways]


def exit_waves(gateways: list[G]) -> list[list[G]]:
    """``gateways`` in the order they are ended: those behind the most via= or installvia= first."""
    ranked = by_depth(gateways)
    levels = sorted({level for level, _ in ranked}, reverse=True)
    return [[gw for level, gw in ranked if level == wanted] for wanted in levels]
