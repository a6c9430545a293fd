"""What far code logs with ``logging`` goes to the controller as plain record fields.

Far-side module: stdlib only, Python >= 3.6. upstream.py calls install() once shipped
code has imported ``logging``.

A handler on the far root logger sends each record it gets (the message already
formatted, the exception and stack as text, extra fields that are not plain data
as their repr) on the upstream channel; the controller turns it back into a
LogRecord. Sending waits for the channel's credit like any send, so a far side
that logs faster than the controller's handlers take it is held back, and no
record is dropped. The far root level is set to the controller's (or to the
spec's ``logging=LEVEL``) when logging is imported; what the far code sets later
wins. ``logging.basicConfig()`` works as without execwire: when the forwarding
handler is the root's only one, basicConfig sets the root up as asked, replacing it.
"""

PLAIN = (str, int, float, bool, type(None))
FIELDS = ("name", "levelno", "levelname", "pathname", "filename", "module", "lineno", "funcName", "created",
          "msecs", "thread", "threadName", "process", "processName")


def install(link, logging, settings):
    """Put the forwarding handler on the far root logger and apply the controller's levels."""
    handler = _handler_class(logging)(link)
    root = logging.getLogger()
    root.addHandler(handler)
    if settings.get("level") is not None:
        root.setLevel(settings["level"])
    for name, level in (settings.get("levels") or {}).items():
        logging.getLogger(name).setLevel(level)
    logging.basicConfig = _basic_config(logging, handler, logging.basicConfig)
    return handler


def _handler_class(logging):
    standard = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
    formatter = logging.Formatter()

    class ForwardingHandler(logging.Handler):
        """Sends every record it handles to the controller, in order."""

        def __init__(self, link):
            logging.Handler.__init__(self)
            self.link = link

        def emit(self, record):
            try:
                fields = record_fields(record, standard, formatter)
            except Exception:
                self.handleError(record)  # a message that cannot be formatted: logging's own report
                return
            try:
                self.link.send(("log", fields))
            except Exception:  # the controller is gone: nobody is left to show it to
                pass

    return ForwardingHandler


def record_fields(record, standard, formatter):
    """The parts of ``record`` the controller needs to make it again, as plain data."""
    fields = dict((name, getattr(record, name, None)) for name in FIELDS)
    fields["msg"] = record.getMessage()
    exc_text = record.exc_text
    if not exc_text and record.exc_info:
        exc_text = formatter.formatException(record.exc_info)
    fields["exc_text"] = exc_text or None
    fields["stack_info"] = getattr(record, "stack_info", None)
    extra = {}
    for name, value in record.__dict__.items():
        if name not in standard and isinstance(name, str):
            extra[name] = value if isinstance(value, PLAIN) else _safe_repr(value)
    fields["extra"] = extra
    return fields


def _safe_repr(value):
    try:
        return repr(value)
    except Exception as exc:
        return "<unrepresentable %s: %s>" % (type(value).__name__, exc)


def _basic_config(logging, handler, original):
    """logging.basicConfig that treats a root holding only the forwarding handler as not configured."""

    def basicConfig(**kwargs):  # noqa: N802 - logging's name
        root = logging.getLogger()
        if root.handlers != [handler]:
            return original(**kwargs)
        root.removeHandler(handler)
        try:
            return original(**kwargs)
        finally:
            if not root.handlers:  # it raised before adding its handler: keep forwarding
                root.addHandler(handler)

    basicConfig.__doc__ = original.__doc__
    basicConfig.__wrapped__ = original
    return basicConfig
