"""XSpec: the ``key1=value1//key2=value2`` strings that describe a gateway."""

from __future__ import annotations

# gateway types: exactly one per spec
GATEWAY_TYPES = ("popen", "ssh", "socket")

# key -> does it need a non-empty value?
VALUE_KEYS = {
    "ssh": True,
    "socket": False,  # socket=HOST:PORT, or a bare socket with installvia=ID
    "via": True,
    "installvia": True,
    "python": True,
    "chdir": True,
    "nice": True,
    "id": True,
    "ssh_config": True,
    "execmodel": True,
    "sudo": True,
    "docker": True,
    "podman": True,
    "kubectl": True,
    "exec": True,
    "timeout": True,
    "token_file": True,
    "max_channels": True,
    "tls_ca": True,
    "imports": True,
    "imports_allow": True,
    "imports_deny": True,
    "logging": True,
}
FLAG_KEYS = ("popen", "dont_write_bytecode", "tls")
# command prefixes: they wrap the far Python's command line (see transports/prefix.py)
PREFIX_KEYS = ("sudo", "docker", "podman", "kubectl", "exec")
CONTAINER_KEYS = ("docker", "podman", "kubectl", "exec")
KNOWN_KEYS = tuple(VALUE_KEYS) + FLAG_KEYS
EXECMODELS = ("thread", "main_thread_only")


def parse_hostport(address: str, spec: str = "") -> tuple[str, int]:
    """Split ``HOST:PORT``; an IPv6 address goes in brackets, as in URLs: ``[::1]:8888``."""
    where = f" in gateway spec {spec!r}" if spec else ""
    if address.startswith("["):
        host, bracket, rest = address[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"socket address {address!r}{where} must look like [IPV6]:PORT, e.g. [::1]:8888")
        port_text = rest[1:]
    else:
        host, colon, port_text = address.rpartition(":")
        if not colon:
            raise ValueError(f"socket address {address!r}{where} needs a port: HOST:PORT")
        if ":" in host:
            raise ValueError(f"socket address {address!r}{where}: write an IPv6 address in brackets, "
                             f"[{host}]:{port_text}")
    if not host:
        raise ValueError(f"socket address {address!r}{where} names no host: HOST:PORT")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"socket address {address!r}{where}: the port must be a number from 0 to 65535")
    return host, int(port_text)


class XSpec:
    """A parsed gateway specification; keys are attributes, missing ones read as None.

    >>> spec = XSpec("popen//python=python3//env:MODE=test")
    >>> spec.popen, spec.python, spec.env, spec.chdir
    (True, 'python3', {'MODE': 'test'}, None)
    """

    popen: bool | None = None
    ssh: str | None = None
    socket: str | bool | None = None
    via: str | None = None
    installvia: str | None = None
    python: str | None = None
    chdir: str | None = None
    nice: str | None = None
    id: str | None = None
    ssh_config: str | None = None
    execmodel: str | None = None
    dont_write_bytecode: bool | None = None
    sudo: str | None = None
    docker: str | None = None
    podman: str | None = None
    kubectl: str | None = None
    exec: str | None = None
    timeout: str | None = None
    token_file: str | None = None
    max_channels: str | None = None
    tls: bool | None = None
    tls_ca: str | None = None
    imports: str | None = None
    imports_allow: str | None = None
    imports_deny: str | None = None
    logging: str | None = None

    def __init__(self, string: str) -> None:
        if not isinstance(string, str):
            raise TypeError(f"a gateway spec is a string, not {type(string).__name__}")
        self._spec = string
        self.env: dict[str, str] = {}
        seen: set[str] = set()
        for item in string.split("//"):
            key, has_value, value = item.partition("=")
            self._check_key(key, has_value, value, seen)
            seen.add(key)
            if key.startswith("env:"):
                self.env[key[4:]] = value
            else:
                setattr(self, key, value if has_value else True)
        self._check_whole()

    def _check_key(self, key: str, has_value: str, value: str, seen: set[str]) -> None:
        spec = self._spec
        if not key:
            raise ValueError(f"empty key in gateway spec {spec!r} (two '//' in a row, or a leading '=')")
        if key in seen:
            raise ValueError(f"duplicate key {key!r} in gateway spec {spec!r}")
        if key.startswith("env:"):
            if not key[4:]:
                raise ValueError(f"key 'env:' needs a variable name (env:NAME=value) in {spec!r}")
            if not has_value:
                raise ValueError(f"key {key!r} needs a value (env:NAME=value) in {spec!r}")
            return
        if key not in KNOWN_KEYS:
            import difflib  # only on this error path

            close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(KNOWN_KEYS)}, env:NAME"
            raise ValueError(f"unknown key {key!r} in gateway spec {spec!r}{hint}")
        if VALUE_KEYS.get(key) and not value:
            raise ValueError(f"key {key!r} needs a value ({key}=...) in gateway spec {spec!r}")
        if key in FLAG_KEYS and has_value:
            raise ValueError(f"key {key!r} takes no value in gateway spec {spec!r}")

    def _check_whole(self) -> None:
        spec = self._spec
        types = [name for name in GATEWAY_TYPES if getattr(self, name) is not None]
        if len(types) > 1:
            raise ValueError(f"gateway spec {spec!r} names several gateway types: {', '.join(types)}")
        if not types and self.via is None and not self.prefixes():
            raise ValueError(
                f"gateway spec {spec!r} names no gateway type; start it with popen, ssh=HOST or socket=HOST:PORT")
        if self.nice is not None:
            try:
                int(self.nice)
            except ValueError:
                raise ValueError(f"key 'nice' needs a whole number, not {self.nice!r}, in {spec!r}") from None
        if self.execmodel is not None and self.execmodel not in EXECMODELS:
            raise ValueError(
                f"key 'execmodel' must be one of {', '.join(EXECMODELS)}, not {self.execmodel!r}, in {spec!r}")
        if self.timeout is not None:
            try:
                seconds = float(self.timeout)
            except ValueError:
                seconds = float("nan")
            if not 0 < seconds < float("inf"):
                raise ValueError(f"key 'timeout' needs a positive number of seconds, not {self.timeout!r}, "
                                 f"in {spec!r}")
        if self.max_channels is not None and not (self.max_channels.isdigit() and int(self.max_channels) > 0):
            raise ValueError(f"key 'max_channels' needs a whole number above 0, not {self.max_channels!r}, "
                             f"in {spec!r}")
        if self.imports is not None and self.imports not in ("on", "off", "auto"):
            raise ValueError(f"key 'imports' must be on, off or auto, not {self.imports!r}, in {spec!r}")
        for key in ("imports_allow", "imports_deny"):
            names = getattr(self, key)
            if names is not None and not all(part.isidentifier() for name in names.split(",")
                                             for part in name.strip().split(".")):
                raise ValueError(f"key {key!r} needs comma-separated module names, not {names!r}, in {spec!r}")
        if self.logging is not None:
            from .remote_logging import parse_setting

            try:
                parse_setting(self.logging)
            except ValueError as exc:
                raise ValueError(f"key 'logging' {exc}, in {spec!r}") from None
        if self.socket is not None or self.installvia is not None:
            self._check_socket()
        for key in ("tls", "tls_ca"):
            if getattr(self, key) is not None and (not isinstance(self.socket, str) or self.installvia is not None):
                raise ValueError(f"key {key!r} goes with socket=HOST:PORT (a server you started; a server made "
                                 f"with installvia has a token of its own and no certificate), in {spec!r}")

    def _check_socket(self) -> None:
        spec = self._spec
        if self.socket is None:
            raise ValueError(f"key 'installvia' goes with socket: socket//installvia=ID, in {spec!r}")
        if isinstance(self.socket, str):
            parse_hostport(self.socket, spec)
        elif self.installvia is None:
            raise ValueError(f"key 'socket' needs an address (socket=HOST:PORT) or installvia=ID, in {spec!r}")

    @property
    def type(self) -> str:
        """The gateway type: 'popen', 'ssh' or 'socket' (a spec with only via or prefixes means popen)."""
        for name in GATEWAY_TYPES:
            if getattr(self, name) is not None:
                return name
        return "popen"

    def __getattr__(self, name: str) -> None:
        if name.startswith("_"):
            raise AttributeError(name)
        return None

    def __repr__(self) -> str:
        return f"<XSpec {self._spec!r}>"

    def __str__(self) -> str:
        return self._spec

    def __hash__(self) -> int:
        return hash(self._spec)

    def __eq__(self, other: object) -> bool:
        return self._spec == getattr(other, "_spec", None)

    def _samefilesystem(self) -> bool:
        return (self.popen is not None and self.chdir is None and self.via is None
                and not any(key in CONTAINER_KEYS for key, _ in self.prefixes()))

    def prefixes(self) -> list[tuple[str, str]]:
        """The command prefixes (sudo, docker, podman, kubectl, exec) as (key, value), in spec order.

        The first one written wraps all the others: ``sudo=root//docker=box``
        runs ``sudo ... docker exec ...``.
        """
        found = []
        for item in self._spec.split("//"):
            key, _, value = item.partition("=")
            if key in PREFIX_KEYS:
                found.append((key, value))
        return found
