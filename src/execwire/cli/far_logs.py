"""How ``execwire run`` shows what far code logs: on stderr, as python shows it, or as JSON records.

The far records arrive in this process's logging (see execwire/remote_logging.py);
a handler on its root logger routes each to the gateway's stderr lines (prefixed
like its other output when there are several gateways) or, with --json, to a
record of kind "log". A script run by python without a logging set-up shows
warnings and worse as their bare message, and so does this: the far root level
follows ours, WARNING, unless the spec says ``logging=LEVEL`` or the code sets it.
"""

from __future__ import annotations

import logging

from .console import OutputRouter


class FarRecords(logging.Handler):
    """Shows far log records with the router, and execwire's own records as "execwire: ..." lines."""

    def __init__(self, router: OutputRouter) -> None:
        super().__init__()
        self.router = router
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            gateway_id = getattr(record, "gateway", None)
            if not isinstance(gateway_id, str):
                self.router.console.text(2, f"execwire: {text}\n")
            else:
                fields: dict[str, object] = {"level": record.levelname, "logger": record.name}
                if record.exc_text:
                    fields["exc_text"] = record.exc_text
                self.router.log(gateway_id, text if not self.router.as_json else record.getMessage(), fields)
        except Exception:
            self.handleError(record)


def install(router: OutputRouter) -> FarRecords:
    """Route the records of this process's root logger with ``router`` (until ``remove``)."""
    handler = FarRecords(router)
    logging.getLogger().addHandler(handler)
    return handler


def remove(handler: FarRecords) -> None:
    logging.getLogger().removeHandler(handler)
