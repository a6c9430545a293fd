"""Which execwire this interpreter maps execnet onto.

Stdlib only, Python >= 3.6. In a controller (Python 3.10+ with execwire
importable) the whole API is there. On the far side of a gateway whose Python
cannot import execwire (an older Python, another machine), shipped code that
does ``import execnet`` still gets the names it uses there (dumps, loads,
DumpError, RemoteError, Channel, ...), taken from the far side execwire brought.
"""

import sys


def _near_available():
    if sys.version_info < (3, 10):
        return False
    try:
        import execwire  # noqa: F401
    except ImportError:
        return False
    return True


NEAR = _near_available()

if NEAR:
    from execwire._far import channel as channel_module
    from execwire._far import errors, wire
else:
    try:
        channel_module = sys.modules["_execwire_far.channel"]
        errors = sys.modules["_execwire_far.errors"]
        wire = sys.modules["_execwire_far.wire"]
    except KeyError:
        raise ImportError("this execnet package maps execnet onto execwire, which needs Python 3.10 or newer "
                          "(this is Python %d.%d) and the execwire package; on the far side of an execwire "
                          "gateway it uses what execwire brought" % sys.version_info[:2]) from None
