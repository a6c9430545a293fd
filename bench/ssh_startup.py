"""ssh start-up, execwire against execnet, on the same loopback sshd.

Starts its own sshd on 127.0.0.1 (tests/sshd.py: generated keys, its own
config), then times, for each library, makegateway -> first result of a
remote_exec -> exit, and prints the medians and their ratio. Both use the
system's ssh client with the same ssh_config and the same remote python3.

    python bench/ssh_startup.py [--rounds N]

Needs openssh-server, openssh-client and execnet (pip install execnet).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from sshd import launch_sshd, stop_sshd  # noqa: E402


def time_execwire(spec: str) -> float:
    import execwire

    start = time.perf_counter()
    group = execwire.Group()
    gateway = group.makegateway(spec)
    result = gateway.remote_exec("channel.send(6 * 7)").receive(30)
    gateway.exit()
    elapsed = time.perf_counter() - start
    assert result == 42, result
    return elapsed


def time_execnet(spec: str) -> float:
    import execnet

    start = time.perf_counter()
    group = execnet.Group()
    gateway = group.makegateway(spec)
    result = gateway.remote_exec("channel.send(6 * 7)").receive(30)
    gateway.exit()
    group.terminate(5)
    elapsed = time.perf_counter() - start
    assert result == 42, result
    return elapsed


def median_of(measure: Callable[[str], float], spec: str, rounds: int) -> tuple[float, list[float]]:
    measure(spec)  # warm-up: imports, page cache
    samples = [measure(spec) for _ in range(rounds)]
    return statistics.median(samples), samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="execwire-bench-") as folder:
        server, process = launch_sshd(Path(folder))
        try:
            # the host's python3 by its real path (not a pyenv shim script, which costs a shell start)
            python = subprocess.run(["ssh", "-F", str(server.ssh_config), server.alias,
                                     "python3 -c 'import sys; print(sys.executable)'"],
                                    capture_output=True, text=True, timeout=30).stdout.strip()
            spec = f"ssh={server.alias}//ssh_config={server.ssh_config}//python={python}"
            print(f"sshd on 127.0.0.1:{server.port}; remote python: {python}; {args.rounds} rounds each")
            ours, our_samples = median_of(time_execwire, spec, args.rounds)
            theirs, their_samples = median_of(time_execnet, spec, args.rounds)
        finally:
            stop_sshd(process)
    print(f"execwire makegateway -> first result -> exit: median {ours * 1000:.1f} ms "
          f"(min {min(our_samples) * 1000:.1f}, max {max(our_samples) * 1000:.1f})")
    print(f"execnet  makegateway -> first result -> exit: median {theirs * 1000:.1f} ms "
          f"(min {min(their_samples) * 1000:.1f}, max {max(their_samples) * 1000:.1f})")
    print(f"ratio execnet / execwire: {theirs / ours:.2f}")


if __name__ == "__main__":
    main()
