"""Far log records in the controller's logging: the levels sent at start-up, the records made again here.

The far side (``_far/logforward.py``) sends each record's fields; here they become a
real LogRecord with the extra field ``gateway`` (the gateway id), handed to the
controller's logger of the same name, so its handlers and filters apply. The far
logger's level decided whether the record was made at all, as ``logging`` does;
the spec key ``logging=`` says what that level starts as. Unless that is a level, the
far root level follows the controller's: later changes go with the next remote_exec()
or call (upstream.send_root_level), until the far code sets a level of its own.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._async.gateway import AsyncGateway
    from .gateway import Gateway
    from .spec import XSpec

LEVEL_NAMES = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET")
MAX_LEVELS_SENT = 1000  # loggers with a level of their own whose level the far side gets


def parse_setting(value: str) -> int | str:
    """The value of the spec key ``logging``: "on", "off", or a level (a name or a whole number)."""
    if value in ("on", "off"):
        return value
    if value.upper() in LEVEL_NAMES:
        return int(logging.getLevelName(value.upper()))
    if value.isdigit():
        return int(value)
    raise ValueError(f"must be on, off or a level ({', '.join(LEVEL_NAMES)} or a number), not {value!r}")


def far_settings(spec: XSpec) -> dict[str, Any] | None:
    """What the far side needs to forward records (None: it leaves its logging alone).

    The far root level is the spec's ``logging=LEVEL``, else the controller's
    root level now; loggers given a level of their own here get it there too.
    """
    setting = parse_setting(spec.logging) if spec.logging is not None else "on"
    if setting == "off":
        return None
    follow = not isinstance(setting, int)
    level = logging.getLogger().getEffectiveLevel() if follow else setting
    levels = {}
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            levels[name] = logger.level
            if len(levels) >= MAX_LEVELS_SENT:
                break
    return {"level": level, "levels": levels, "follow": follow}


def followed_level(spec: XSpec) -> int | None:
    """The controller's root level now, if the far root level follows it (spec ``logging`` on or unset)."""
    if spec.logging is not None and parse_setting(spec.logging) != "on":
        return None
    return logging.getLogger().getEffectiveLevel()


def make_record(gateway_id: str, fields: dict[str, Any]) -> logging.LogRecord:
    """The LogRecord of a far record's ``fields``, carrying ``gateway`` and the far extra fields."""
    given = dict(fields)
    extra = given.pop("extra", None) or {}
    attributes: dict[str, Any] = {key: value for key, value in extra.items() if isinstance(key, str)}
    attributes.update(given)
    attributes.update(args=(), exc_info=None, gateway=gateway_id)
    if not isinstance(attributes.get("msg"), str):
        attributes["msg"] = str(attributes.get("msg"))
    if not isinstance(attributes.get("levelno"), int):
        attributes["levelno"] = logging.WARNING
    if not isinstance(attributes.get("name"), str):
        attributes["name"] = "root"
    return logging.makeLogRecord(attributes)


def handle(gateway: Gateway | AsyncGateway, fields: dict[str, Any]) -> None:
    """Hand a far record to the controller's logger of its name (on the gateway's callback thread, or its loop)."""
    record = make_record(gateway.id, fields)
    if logging.root.manager.disable >= record.levelno:
        return  # logging.disable() here silences the far side too
    logger = logging.getLogger() if record.name == "root" else logging.getLogger(record.name)
    logger.handle(record)
