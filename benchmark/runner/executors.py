"""Where a sweep's cells run: one after another in this process (``LocalExecutor``, the default), or as Ray
tasks on a local Ray instance or a cluster (``RayExecutor``, ``afsl-bench sweep --executor ray``).

An executor takes the planned cells and yields ``(cell, CellResult)`` as cells finish; ``run_sweep`` turns
the results into its outcome and the failure records. Every cell runs ``afsl_bench.runner.cell.run_cell``, which
writes the cell's record itself, so a Ray worker writes to ``options.results_dir`` directly: on a cluster
that folder must be a shared filesystem (NFS) mounted at the same path on every node, and so must the
checkpoint cache under it. A result crossing the wire is small: the cell id, whether it was cached, or the
error.

Cells of one trained model (the same ``train_id``) form a chain that runs one cell at a time, so a model
is trained once and its later cells load the checkpoint; different chains run in parallel, one task per
free slot (a GPU where the cluster has GPUs, else ``cpus_per_cell`` CPUs).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import socket
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from afsl_bench.core.errors import ConfigError, DiskFullError
from afsl_bench.core.spec import CellSpec
from afsl_bench.runner.cell import RunOptions, run_cell

#: seconds to wait for a TCP connection to a Ray address before calling it unreachable
CONNECT_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class CellResult:
    """What a finished cell reports back: cached or freshly run, or the error it raised."""

    cell_id: str
    cached: bool = False
    error: dict[str, str] | None = None


OnStart = Callable[[CellSpec], None]


class Executor(Protocol):
    def run(
        self, cells: Sequence[CellSpec], options: RunOptions, on_start: OnStart
    ) -> Iterator[tuple[CellSpec, CellResult]]:
        """Run the cells, calling ``on_start`` as each starts; yield each with its result as it finishes."""
        ...


def run_one(cell: CellSpec, options: RunOptions) -> CellResult:
    """Run one cell; its exception is data (the sweep records it and goes on), Ctrl-C is not caught."""
    try:
        outcome = run_cell(cell, options)
    except DiskFullError:
        raise  # every later cell would fail the same way: the sweep stops here
    except Exception as err:  # noqa: BLE001  a cell's failure is recorded, the sweep goes on
        return CellResult(cell.cell_id, error=error_of(err))
    return CellResult(cell.cell_id, cached=outcome.cached)


def error_of(err: BaseException) -> dict[str, str]:
    """The error as a record stores it; call it inside the ``except`` block (it reads the traceback)."""
    return {"type": type(err).__name__, "message": str(err), "traceback": traceback.format_exc(limit=20)}


class LocalExecutor:
    """Cells one after another in this process, in the suite's order (models trained once, kept warm)."""

    def run(
        self, cells: Sequence[CellSpec], options: RunOptions, on_start: OnStart
    ) -> Iterator[tuple[CellSpec, CellResult]]:
        for cell in cells:
            on_start(cell)
            yield cell, run_one(cell, options)


def chains(cells: Sequence[CellSpec]) -> deque[deque[CellSpec]]:
    """The cells grouped by trained model, in first-seen order: each chain runs one cell at a time."""
    groups: dict[str, deque[CellSpec]] = {}
    for cell in cells:
        groups.setdefault(cell.training.train_id, deque()).append(cell)
    return deque(groups.values())


class RayExecutor:
    """Cells as Ray tasks: ``address`` None starts a local Ray instance (shut down afterwards), 'auto'
    joins the cluster of this node, 'host:port' or 'ray://host:port' a remote one (checked first: an
    unreachable address fails in seconds, not after Ray's long retries). ``num_cpus`` sizes the local
    instance (default: all CPUs). A Ray session the caller already started (a notebook) is used as it is."""

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        num_gpus_per_cell: float = 1,
        cpus_per_cell: int = 1,
    ) -> None:
        if importlib.util.find_spec("ray") is None:
            raise ConfigError("--executor ray needs Ray: pip install 'afsl-bench[ray]'")
        if address is not None:
            endpoint(address)  # a malformed address fails here, before anything runs
        if address is not None and address.startswith("ray://") and importlib.util.find_spec("grpc") is None:
            raise ConfigError(f"--address {address} is Ray Client, which needs pip install 'ray[client]'")
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus_per_cell = num_gpus_per_cell
        self.cpus_per_cell = cpus_per_cell

    def run(
        self, cells: Sequence[CellSpec], options: RunOptions, on_start: OnStart
    ) -> Iterator[tuple[CellSpec, CellResult]]:
        if self.address is not None:
            check_reachable(self.address)  # before importing Ray (seconds): a wrong address fails at once
        import ray

        # workers run elsewhere (another folder, another node): the results folder must be absolute
        options = dataclasses.replace(options, results_dir=Path(options.results_dir).resolve())
        started_here = self._connect(ray)
        try:
            yield from self._schedule(ray, cells, options, on_start)
        finally:
            if started_here:
                ray.shutdown()

    def _connect(self, ray: Any) -> bool:
        """Join (or start) Ray; True when this call started the session (so it shuts it down)."""
        if ray.is_initialized():
            return False
        if self.address is None:
            ray.init(
                num_cpus=self.num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                ignore_reinit_error=True,
            )
            return True
        try:
            ray.init(address=self.address, log_to_driver=False)
        except (ConnectionError, RuntimeError) as err:
            raise ConfigError(_unreachable(self.address, str(err))) from None
        return True

    def _resources(self, ray: Any) -> dict[str, float]:
        """One GPU per task where the cluster has GPUs, else ``cpus_per_cell`` CPUs."""
        has_gpus = ray.cluster_resources().get("GPU", 0) > 0
        return {"num_cpus": self.cpus_per_cell, "num_gpus": self.num_gpus_per_cell if has_gpus else 0}

    def _slots(self, ray: Any, resources: dict[str, float]) -> int:
        """How many tasks run at once: more in flight would only queue (and read as running)."""
        total = ray.cluster_resources()
        if resources["num_gpus"]:
            return max(1, int(total.get("GPU", 0) // resources["num_gpus"]))
        return max(1, int(total.get("CPU", 1) // resources["num_cpus"]))

    def _schedule(
        self, ray: Any, cells: Sequence[CellSpec], options: RunOptions, on_start: OnStart
    ) -> Iterator[tuple[CellSpec, CellResult]]:
        resources = self._resources(ray)
        task = ray.remote(run_in_worker).options(**resources)
        waiting, running = chains(cells), {}

        def submit(chain: deque[CellSpec]) -> None:
            cell = chain.popleft()
            on_start(cell)
            running[task.remote(cell, options, self.cpus_per_cell)] = (cell, chain)

        for _ in range(min(self._slots(ray, resources), len(waiting))):
            submit(waiting.popleft())
        try:
            while running:
                [ref], _ = ray.wait(list(running), num_returns=1)
                cell, chain = running.pop(ref)
                yield cell, _result(ray, ref, cell)
                if chain or waiting:  # the model's next cell, else the next model's first
                    submit(chain if chain else waiting.popleft())
        finally:  # Ctrl-C or an error: stop what still runs (records are written atomically)
            for ref in running:
                ray.cancel(ref, force=True)


def run_in_worker(cell: CellSpec, options: RunOptions, threads: int) -> CellResult:
    """The Ray task: one cell, with as many torch threads as the task has CPUs."""
    import torch

    torch.set_num_threads(threads)
    return run_one(cell, options)


def _result(ray: Any, ref: Any, cell: CellSpec) -> CellResult:
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as err:  # the worker died (killed, out of memory): the cell failed
        return CellResult(cell.cell_id, error=error_of(err))


def endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) of 'host:port' or 'ray://host:port'; None for 'auto' (Ray finds the local cluster)."""
    if address == "auto":
        return None
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"--address '{address}' is not a Ray address; use host:port (e.g. head-node:6379), "
            "ray://host:port or auto"
        )
    return host, int(port)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail in seconds when nothing listens at the address, or something that is not Ray does (a web
    server, the dashboard's port): Ray itself retries for minutes. Ray's GCS and Ray Client speak gRPC,
    whose server answers the HTTP/2 preface with a SETTINGS frame (not checked under ``RAY_USE_TLS``)."""
    target = endpoint(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout) as sock:
            if os.environ.get("RAY_USE_TLS", "0") in ("0", "") and not _speaks_grpc(sock):
                raise ConfigError(
                    f"'{address}' answers but is not a Ray cluster (no gRPC there); give the head node's "
                    "GCS port (`ray start --head` prints it, 6379 by default) or ray://host:10001"
                )
    except OSError as err:
        raise ConfigError(_unreachable(address, err.strerror or str(err))) from None


#: the HTTP/2 client preface and an empty SETTINGS frame
HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _speaks_grpc(sock: socket.socket) -> bool:
    """Whether the peer answers the HTTP/2 preface with a frame header of type SETTINGS (4)."""
    sock.sendall(HTTP2_HELLO)
    head = b""
    try:
        while len(head) < 9 and (chunk := sock.recv(9 - len(head))):
            head += chunk
    except OSError:  # silent (timed out) or reset: not a gRPC server
        return False
    return len(head) == 9 and head[3] == 4


def _unreachable(address: str, reason: str) -> str:
    return (
        f"cannot reach the Ray cluster at '{address}': {reason}; start one with `ray start --head` "
        "or drop --address"
    )
