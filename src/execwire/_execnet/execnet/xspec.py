"""execnet.xspec: gateway specs read as leniently as execnet reads them.

Unknown keys are kept as attributes (execwire's own XSpec refuses them) and
ignored when the gateway starts; attributes may be set after parsing, as
pytest-xdist does with ``spec.chdir``: the gateway is made from the attributes.
"""

from __future__ import annotations

import execwire
from execwire.spec import KNOWN_KEYS, VALUE_KEYS


class XSpec(execwire.XSpec):
    """Execution specification ``key1=value1//key2=value2``; missing keys read as None."""

    vagrant_ssh: str | None = None

    def __init__(self, string: str) -> None:  # noqa: D107 - execnet's parsing, not execwire's checks
        if not isinstance(string, str):
            raise TypeError(f"a gateway spec is a string, not {type(string).__name__}")
        self._spec = string
        self.env = {}
        for item in string.split("//"):
            key, has_value, value = item.partition("=")
            if not key:
                raise ValueError(f"empty key in gateway spec {string!r}")
            if key.startswith("_"):
                raise AttributeError(f"{key!r} not a valid XSpec key")
            if key in self.__dict__:
                raise ValueError(f"duplicate key: {key!r} in {string!r}")
            if key.startswith("env:"):
                self.env[key[4:]] = value
            else:
                setattr(self, key, value if has_value else True)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def _samefilesystem(self) -> bool:
        return self.popen is not None and self.chdir is None


def to_execwire(spec: XSpec) -> execwire.XSpec:
    """The strict execwire spec for ``spec``'s current attributes (unknown keys are left out)."""
    if spec.vagrant_ssh is not None:
        raise ValueError(f"gateway spec {str(spec)!r}: vagrant_ssh is not available with execwire; use "
                         "ssh=HOST with the host name and options that `vagrant ssh-config` prints")
    written = [item.partition("=")[0] for item in str(spec).split("//")]
    attributes = vars(spec)
    keys = [key for key in written if key in attributes] + [key for key in attributes if key not in written]
    items: list[str] = []
    for key in keys:
        value = attributes[key]
        if key not in KNOWN_KEYS or value is None or value is False:
            continue
        if value is True and not VALUE_KEYS.get(key, False):
            items.append(key)
        else:
            items.append(f"{key}={value}")
    items += [f"env:{name}={value}" for name, value in spec.env.items()]
    if not any(item.partition("=")[0] in ("popen", "ssh", "socket", "via") for item in items) and not any(
            item.partition("=")[0] in ("sudo", "docker", "podman", "kubectl", "exec") for item in items):
        raise ValueError(f"no gateway type found for {str(spec)!r}; start it with popen, ssh=HOST or "
                         "socket=HOST:PORT")
    return execwire.XSpec("//".join(items))
