"""Executing one pipeline notebook: papermill with a per-cell timeout, a wall-clock limit per job, a kernel
liveness check, and a kernel client that cannot sleep through a reply that has already arrived.

Why notebook 05's ``display(ex.widget())`` cell could hang papermill forever: nbclient
mimics a front end for ``ipywidgets.Output``. Every output the kernel routes into an Output widget makes nbclient
send the widget's whole new state (here a ~350 kB PNG per redraw) back to the kernel as a ``comm_msg`` on the
*shell* socket, while the same socket is being awaited (``await socket.poll()``) for the cell's
``execute_reply``. jupyter_client's ``Session.send`` writes through a synchronous *shadow* of that
``zmq.asyncio`` socket, so pyzmq's asyncio layer never learns that libzmq processed the socket's pending
commands during the send. When the reply arrives just before such a send (the kernel answers right after the
cell's last display, while nbclient is still decoding that display), the send consumes the wake-up on the
socket's edge-triggered file descriptor: the reply sits in the socket (``zmq.EVENTS`` says POLLIN) and the poll
never wakes. Without a cell timeout that is forever; with one, nbclient's timeout path polls again and finds the
reply, i.e. the cell "succeeds" after exactly the timeout. Seen here with 3-4 MB of Output-widget displays in
one cell (4 of 4 runs over IPC, 3 of 4 over TCP) and with notebook 05 at the default profile's size after 40
redraws; smoke-sized figures rarely hit the window. The fix, :class:`RearmingKernelClient`: after every send
it reads ``zmq.EVENTS`` through the asyncio socket (which schedules the socket's handler when a message is
waiting), and once a second it does the same for every channel, so any other lost wake-up is healed too.

Besides that, every execution has limits (profile keys ``cell_timeout_s`` and ``job_timeout_s`` of its stage):
papermill's ``execution_timeout`` per cell, and a watchdog that kills the kernel's process group when the whole
job runs past its wall-clock limit. nbclient checks every second that the kernel process is alive. Each way a
job can stop raises :class:`~matting_lib.pipeline.common.PipelineError` naming the notebook, the cell, the executed
copy and what to do; no marker is written, so a rerun executes the job again (trainings resume from
``last.pt``).
"""

from __future__ import annotations

import functools
import math
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matting_lib.pipeline.common import PipelineError

REARM_INTERVAL_S = 1.0  # how often every channel socket is re-armed (the liveness check of the client side)


@functools.cache
def rearming_client_class() -> type:
    """An ``AsyncKernelClient`` whose channels re-arm their asyncio socket after each send and once a second."""
    # imported here: the pipeline loads only the standard library up front
    import asyncio

    import zmq
    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.channels import AsyncZMQSocketChannel
    from traitlets import Type

    def rearm(channel: Any) -> None:
        sock = getattr(channel, "socket", None)
        if sock is not None and not sock.closed:
            sock.get(zmq.EVENTS)  # the asyncio socket's get() schedules its handler when a message is waiting

    class RearmingChannel(AsyncZMQSocketChannel):
        def send(self, msg: dict) -> None:
            super().send(msg)  # writes through a synchronous shadow socket: may consume the wake-up of a reply
            rearm(self)

    class RearmingKernelClient(AsyncKernelClient):
        shell_channel_class = Type(RearmingChannel)
        iopub_channel_class = Type(RearmingChannel)
        stdin_channel_class = Type(RearmingChannel)
        control_channel_class = Type(RearmingChannel)

        def start_channels(self, *args: Any, **kwargs: Any) -> None:
            super().start_channels(*args, **kwargs)
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not started from a running loop: nothing awaits these sockets yet
                return
            self._rearm_task = loop.create_task(self._rearm_periodically())

        async def _rearm_periodically(self) -> None:
            while True:
                await asyncio.sleep(REARM_INTERVAL_S)
                for ch in (self._shell_channel, self._iopub_channel, self._stdin_channel, self._control_channel):
                    if ch is not None:
                        rearm(ch)

        def stop_channels(self) -> None:
            task = getattr(self, "_rearm_task", None)
            if task is not None:
                task.cancel()
                self._rearm_task = None
            super().stop_channels()

    return RearmingKernelClient


@functools.cache
def _ipc_kernel_manager() -> type:
    """nbclient's kernel manager talking to the kernel over local IPC sockets instead of TCP (nothing listens on
    the network, and ipykernel has no reason to warn about unencrypted TCP traffic on every notebook), with the
    re-arming client. Instances register with the :class:`JobWatch` of a per-job subclass
    (:func:`kernel_manager_for`)."""
    # imported here: the pipeline loads only the standard library up front
    import shutil
    import tempfile

    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class IPCKernelManager(AsyncKernelManager):
        _watch: JobWatch | None = None
        _extra_env: dict[str, str] = {}  # set in the kernel's environment (e.g. the job's CUDA_VISIBLE_DEVICES)

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            if self._watch is not None:
                self._watch.managers.append(self)

        @default("transport")
        def _transport_default(self) -> str:
            return "ipc"

        @default("ip")
        def _ip_default(self) -> str:  # a private folder per kernel: parallel jobs never race for socket names
            self._ipc_dir = tempfile.mkdtemp(prefix="matting-kernel-")
            return os.path.join(self._ipc_dir, "ipc")

        async def _async_pre_start_kernel(self, **kw: Any) -> Any:
            if self._extra_env:
                kw["env"] = {**kw.get("env", os.environ), **self._extra_env}
            return await super()._async_pre_start_kernel(**kw)

        @default("client_factory")
        def _client_factory_default(self) -> type:
            return rearming_client_class()

        async def _async_interrupt_kernel(self) -> None:
            # jupyter_client's shutdown_kernel first sends SIGINT to the kernel's process group; a kernel that is
            # handling a message at that instant logs "[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel."
            # into a run that passed. The shutdown request that follows goes over the control channel (served even
            # while the kernel is busy), and finish_shutdown escalates to SIGTERM / SIGKILL: no SIGINT is needed.
            # nbclient's interrupt on a cell timeout calls interrupt_kernel, which this does not change.
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

        def cleanup_connection_file(self) -> None:  # called once the kernel is gone for good (not on restart)
            super().cleanup_connection_file()
            if getattr(self, "_ipc_dir", None):
                shutil.rmtree(self._ipc_dir, ignore_errors=True)

    return IPCKernelManager


def kernel_manager_for(watch: JobWatch | None, env: dict[str, str] | None = None) -> type:
    """The IPC kernel manager class, bound to ``watch`` and adding ``env`` to the kernel's environment (one
    subclass per job, so parallel jobs keep apart)."""
    base = _ipc_kernel_manager()
    if watch is None and not env:
        return base
    return type("JobKernelManager", (base,), {"_watch": watch, "_extra_env": dict(env or {})})


# ----------------------------------------------------------------------------------------------- the watchdog
@dataclass(eq=False)  # hashed by identity: kept in the set of running executions
class JobWatch:
    """Wall-clock limit of one job: after ``limit_s`` seconds it kills the job's kernel (its whole process group,
    DataLoader workers included); nbclient then raises ``DeadKernelError`` within a second. It also records which
    code cell is executing (nbclient's ``on_cell_execute`` hook), for the error message."""

    limit_s: float
    managers: list = field(default_factory=list)
    cell_index: int | None = None
    cell_line: str = ""
    expired: bool = False

    def on_cell_execute(self, cell: Any, cell_index: int, **_: Any) -> None:
        self.cell_index = cell_index
        self.cell_line = next((ln.strip() for ln in str(cell.source).splitlines() if ln.strip()), "")[:80]

    def __enter__(self) -> JobWatch:
        self._timer = threading.Timer(self.limit_s, self._expire)
        self._timer.daemon = True
        self._timer.start()
        _RUNNING.add(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._timer.cancel()
        _RUNNING.discard(self)

    def _expire(self) -> None:
        self.expired = True
        self.kill_kernels()

    def kill_kernels(self) -> None:
        """Kill the job's kernels now (their process groups)."""
        for km in list(self.managers):
            prov = getattr(km, "provisioner", None)
            pid, pgid = getattr(prov, "pid", None), getattr(prov, "pgid", None)
            try:
                if pgid and pgid != os.getpgrp():  # the kernel runs in its own session: take its children too
                    os.killpg(pgid, signal.SIGKILL)
                elif pid:
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def where(self) -> str:
        if self.cell_index is None:
            return "before its first cell (while starting the kernel)"
        return f"at cell {self.cell_index} (`{self.cell_line}`)"


_RUNNING: set[JobWatch] = set()  # the executions in progress in this process


def kill_running_kernels() -> None:
    """Kill the kernel of every notebook execution in progress in this process: a job that is preempted or
    requeued (:mod:`matting_lib.pipeline.slurm`) must not leave a kernel training on behind it."""
    for watch in list(_RUNNING):
        watch.kill_kernels()


# ----------------------------------------------------------------------------------------------- one execution
def execute_notebook(notebook: Path, out: Path, params: dict, *, job: str, stage: str, cwd: Path,
                     cell_timeout_s: float, job_timeout_s: float, env: dict[str, str] | None = None) -> None:
    """Execute ``notebook`` into ``out`` with papermill under the limits above; raise ``PipelineError`` on failure.

    ``job``/``stage`` name the job and its profile table in messages (e.g. ``distill.cell_timeout_s``); ``env``
    is added to the kernel's environment."""
    # imported here: the pipeline loads only the standard library up front
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    rerun = ("Rerun ./run_all.sh with the same options to resume: finished jobs are skipped and an interrupted "
             "training continues from its last checkpoint.")
    with JobWatch(job_timeout_s) as watch:
        try:
            pm.execute_notebook(str(notebook), str(out), parameters=params, cwd=str(cwd), progress_bar=False,
                                kernel_name="python3", kernel_manager_class=kernel_manager_for(watch, env),
                                execution_timeout=max(1, math.ceil(cell_timeout_s)),
                                on_cell_execute=watch.on_cell_execute)
        except KeyboardInterrupt:  # Ctrl-C: the kernel runs in its own process group and would train on
            watch.kill_kernels()
            raise
        except PapermillExecutionError as err:
            raise PipelineError(
                f"{notebook.name} failed in job {job!r} at cell {err.cell_index} "
                f"(execution count {err.exec_count}): {err.ename}: {err.evalue}\n"
                f"  executed copy with the traceback: {out}") from None
        except Exception as err:  # timeouts, a dead kernel, or anything the watchdog's kill set off
            if watch.expired:
                raise PipelineError(
                    f"{notebook.name} (job {job!r}) ran longer than {stage}.job_timeout_s = {job_timeout_s:g} s and "
                    f"was stopped {watch.where()}.\n  executed copy: {out}\n  If the job is just slow, raise the "
                    f"limit (--set {stage}.job_timeout_s=...); else the executed copy shows how far it got. "
                    f"{rerun}") from None
            if isinstance(err, CellTimeoutError):
                raise PipelineError(
                    f"{notebook.name} (job {job!r}) stopped {watch.where()}: the cell ran longer than "
                    f"{stage}.cell_timeout_s = {cell_timeout_s:g} s without finishing ({err}).\n"
                    f"  executed copy: {out}\n  If the cell is just slow, raise the limit "
                    f"(--set {stage}.cell_timeout_s=...); if it hangs, the executed copy shows its last output. "
                    f"{rerun}") from None
            if isinstance(err, DeadKernelError):
                raise PipelineError(
                    f"the kernel running {notebook.name} (job {job!r}) died {watch.where()}: killed from outside "
                    f"or by the system (out of memory?), or it crashed.\n  executed copy: {out}\n  {rerun}") from None
            raise
