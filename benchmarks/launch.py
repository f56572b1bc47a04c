"""Starts the processes of one data-parallel cell and their torch.distributed group.

accelerate's launch machinery does the work: `PrepareForLaunch` gives each
spawned process its rank in the environment, and `accelerate.PartialState`,
called in each (`join_group`), joins the group over gloo on CPUs
or NCCL on GPUs. What is added here is what a benchmark runner needs around
it: a free port per cell (several cells launch at once), processes that stop
when the cell's parent dies, and a rank's error raised in the parent as
itself (a `SpecError` stays one line), not as a wall of child tracebacks.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def stop_with_parent(parent: int) -> None:
    """This process ignores Ctrl-C (its parent decides: finish or abort) and
    exits within a second of its parent's death by any signal, so no orphan
    goes on writing into the results folder."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def join_group() -> tuple[int, int]:
    """(processes, this one's rank) of the group `launch` started, joined through
    accelerate; an error if this process was not started by `launch`, rather
    than a rank that believes it is alone and writes the whole cell."""
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    expected = int(os.environ.get("WORLD_SIZE", 1))
    if state.num_processes != expected:
        raise RuntimeError(f"joined a group of {state.num_processes} processes, launched as {expected}")
    return state.num_processes, state.process_index


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(fn: Callable[..., Any], args: tuple, parent: int, errors: str) -> None:
    stop_with_parent(parent)
    try:
        fn(*args)
    except BaseException as err:
        try:
            blob = pickle.dumps(err)
        except Exception:
            blob = pickle.dumps(RuntimeError(f"{type(err).__name__}: {err}"))
        Path(errors, os.environ["RANK"]).write_bytes(blob)
        raise


def launch(fn: Callable[..., Any], args: tuple, processes: int) -> None:
    """Run `fn(*args)` on `processes` new processes, one torch.distributed group
    (gloo here, NCCL where CUDA is), and wait for all of them. A rank's error
    is raised here, rank 0's first."""
    from accelerate.utils import PrepareForLaunch, patch_environment
    from torch.multiprocessing import ProcessExitedException, ProcessRaisedException, start_processes

    cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as errors, patch_environment(
        master_addr="127.0.0.1", master_port=str(_free_port()), world_size=str(processes), nproc=str(processes),
        accelerate_use_cpu="no" if cuda else "yes", gloo_socket_ifname="lo",
    ):
        launcher = PrepareForLaunch(_rank, distributed_type="MULTI_GPU" if cuda else "MULTI_CPU")
        try:
            start_processes(launcher, args=(fn, args, os.getpid(), errors), nprocs=processes, start_method="spawn")
        except (ProcessRaisedException, ProcessExitedException) as failure:
            raised = sorted(Path(errors).iterdir(), key=lambda p: int(p.name))
            if raised:
                raise pickle.loads(raised[0].read_bytes()) from None
            raise RuntimeError(f"a process of a {processes}-process cell died: {failure}") from None
