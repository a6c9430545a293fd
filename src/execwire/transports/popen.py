"""popen: a local Python subprocess."""

from __future__ import annotations

import os

from .._far.streams import PipeStream
from ..process import Process
from ..spec import XSpec
from .command import far_config, is_this_interpreter, python_argv, start_command


def start_popen(spec: XSpec, gateway_id: str, debug: bool) -> tuple[PipeStream, Process]:
    marshalled = is_this_interpreter(spec)
    argv = python_argv(spec, marshalled)
    # env: is also applied by the far side itself; set at spawn it reaches start-up too (PYTHONPATH, ...)
    env = {**os.environ, **spec.env} if spec.env else None
    return start_command(argv, far_config(spec, gateway_id, debug), f"gateway {gateway_id!r} ({spec})",
                         marshalled, env)
