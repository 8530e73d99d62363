"""One benchmark worker in a child process, and the parent's handle on it.

Child (``python -m bench.worker_process``)::

    python -m bench.worker_process --task-queue Q --address 127.0.0.1:7233 \\
        --database-url sqlite:///... [--kind product|naive] [--max-cached-workflows N] \\
        [--unsandboxed] [--metrics-port P] [--sample-profile FILE]

``--kind product`` (default) runs the product's worker exactly as ``worker.py`` builds it
(``wiring.build_activities`` + ``wiring.build_worker``); ``--kind naive`` runs a worker of the
naive ladder (``bench.naive``: its workflow and ``ACTIVITIES``, nothing else). Everything else
comes from the environment the way the product reads it (``Settings``): ``PAYLOAD_KEYS`` (the
client's key ring: without it the worker could not read what the bench's client encrypted),
``DELIVERY_BACKEND``/``DELIVERY_HTTP_URL``, ``COLLECTIONS_POLICY``, ``CONTACT_RATE_LIMITS``...

The child prints ``READY <pid>`` on stdout once its worker polls, serves the SDK's Prometheus
metrics on ``--metrics-port`` (task counts, sticky-cache hits, sizes), and on SIGTERM stops the
worker, writes the sampling profile (``--sample-profile``, JSON: see ``Sampler``) and exits 0.

Parent: ``WorkerProcess`` starts one, waits for it, reads its RSS (``/proc/<pid>/status``
VmRSS), its CPU time, per-thread CPU and its metrics, and stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: Clock ticks per second of ``/proc/<pid>/stat`` CPU times.
_TICKS = os.sysconf("SC_CLK_TCK")


# -- the parent's side -----------------------------------------------------------------------------


def ring_env(ring: Any) -> dict[str, str]:
    """``PAYLOAD_KEYS`` / ``PAYLOAD_ACTIVE_KEY_ID`` for a child that must share ``ring``
    (a ``codec.KeyRing``) with the bench's client."""
    keys = ",".join(f"{key_id}:{base64.b64encode(key).decode()}" for key_id, key in ring.keys.items())
    return {"PAYLOAD_KEYS": keys, "PAYLOAD_ACTIVE_KEY_ID": ring.active}


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def proc_rss_kb(pid: int) -> int:
    """Resident set size of process ``pid`` in KB (``VmRSS`` of ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _stat_fields(path: Path) -> tuple[str, list[str]]:
    text = path.read_text()
    comm = text[text.index("(") + 1:text.rindex(")")]
    return comm, text[text.rindex(")") + 2:].split()


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` used so far (all its threads)."""
    _, fields = _stat_fields(Path(f"/proc/{pid}/stat"))
    return (int(fields[11]) + int(fields[12])) / _TICKS


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds of process ``pid`` by thread name (``comm``: the SDK core's Rust threads are
    named, e.g. ``tokio-runtime-w``; every Python thread is ``python``), summed per name."""
    totals: dict[str, float] = collections.defaultdict(float)
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm, fields = _stat_fields(task / "stat")
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
        totals[comm] += (int(fields[11]) + int(fields[12])) / _TICKS
    return dict(totals)


_METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition to ``{"name{labels}": value}`` (comments dropped)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = _METRIC.match(line)
        if match:
            try:
                values[match.group(1) + (match.group(2) or "")] = float(match.group(3))
            except ValueError:
                continue
    return values


def metric_sum(metrics: dict[str, float], name: str, **labels: str) -> float:
    """The sum of metric ``name`` over every label set that has ``labels``."""
    total = 0.0
    for key, value in metrics.items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        if all(f'{label}="{wanted}"' in rest for label, wanted in labels.items()):
            total += value
    return total


class WorkerProcess:
    """A benchmark worker in its own process (module docstring), started by ``start``.

    ``kind``: ``"product"`` or ``"naive"``. ``env``: extra environment (``ring_env(RING)``,
    delivery and policy settings). ``max_cached_workflows``: the SDK's sticky cache size
    (``None``: the product's default, ``build_worker``'s 1,000). ``profile``: sample the child's
    stacks and keep them (``stop`` returns them).
    """

    def __init__(self, *, kind: str, task_queue: str, address: str, database_url: str | None = None,
                 env: dict[str, str] | None = None, max_cached_workflows: int | None = None,
                 unsandboxed: bool = False, profile: bool = False, log_file: Path | None = None):
        self.kind = kind
        self.task_queue = task_queue
        self.metrics_port = free_port()
        self.profile_file: Path | None = None
        if profile:
            self.profile_file = (log_file.with_suffix(".profile.json") if log_file
                                 else Path(tempfile.mkdtemp(prefix="bench-worker-")) / "profile.json")
        self.log_file = log_file
        command = [sys.executable, "-m", "bench.worker_process", "--kind", kind, "--task-queue", task_queue,
                   "--address", address, "--metrics-port", str(self.metrics_port)]
        if database_url:
            command += ["--database-url", database_url]
        if max_cached_workflows is not None:
            command += ["--max-cached-workflows", str(max_cached_workflows)]
        if unsandboxed:
            command.append("--unsandboxed")
        if self.profile_file is not None:
            command += ["--sample-profile", str(self.profile_file)]
        self._command = command
        self._env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "LOG_LEVEL": "WARNING",
                     "METRICS_BIND_ADDRESS": "", **(env or {})}
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        """The child's process id."""
        assert self.process is not None
        return self.process.pid

    async def start(self, timeout: float = 120.0) -> WorkerProcess:
        """Start the child and wait for its ``READY`` line (its worker polls).

        Raises:
            RuntimeError: it exited first or said nothing within ``timeout`` seconds (its log
                file's tail is in the message).
        """
        stderr = self.log_file.open("ab") if self.log_file else subprocess.DEVNULL
        loop = asyncio.get_running_loop()
        self.process = await loop.run_in_executor(None, functools.partial(
            subprocess.Popen, self._command, cwd=PROJECT_ROOT, env=self._env, stdout=subprocess.PIPE, stderr=stderr,
            stdin=subprocess.DEVNULL, start_new_session=True))
        try:
            line = await asyncio.wait_for(loop.run_in_executor(None, self.process.stdout.readline), timeout)
        except TimeoutError:
            line = b""
        if not line.startswith(b"READY"):
            self.kill()
            tail = self.log_file.read_text(errors="replace")[-2000:] if self.log_file and self.log_file.exists() else ""
            raise RuntimeError(f"worker process ({self.kind}) did not start: {line!r}\n{tail}")
        return self

    def reset_profile(self) -> None:
        """Start the child's profile afresh from now (SIGUSR1; only with ``profile``)."""
        if self.profile_file is not None and self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGUSR1)

    def rss_kb(self) -> int:
        """The child's resident set size now, KB."""
        return proc_rss_kb(self.pid)

    def cpu_seconds(self) -> float:
        """The child's CPU seconds so far (user + system, all threads)."""
        return proc_cpu_seconds(self.pid)

    def thread_cpu(self) -> dict[str, float]:
        """The child's CPU seconds by thread name (``thread_cpu_seconds``)."""
        return thread_cpu_seconds(self.pid)

    def metrics(self) -> dict[str, float]:
        """The child's Temporal SDK metrics now (``parse_metrics``), ``{}`` when unreachable."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as answer:
                return parse_metrics(answer.read().decode())
        except OSError:
            return {}

    async def quiet(self, window: float = 1.0, busy: float = 0.03, settle: int = 3, longest: float = 600.0) -> float:
        """Wait until the child used under ``busy`` of a core in ``settle`` windows of ``window``
        seconds in a row; returns the seconds waited (``longest`` at most)."""
        began = time.monotonic()
        calm = 0
        while time.monotonic() - began < longest:
            cpu = self.cpu_seconds()
            await asyncio.sleep(window)
            calm = calm + 1 if self.cpu_seconds() - cpu < busy * window else 0
            if calm >= settle:
                break
        return time.monotonic() - began

    def stop(self, timeout: float = 30.0) -> dict[str, Any] | None:
        """SIGTERM the child and wait for it; its profile (``Sampler.report``) when it kept one."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            try:
                os.kill(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
            except ProcessLookupError:
                pass
        if self.profile_file is not None and self.profile_file.exists():
            return json.loads(self.profile_file.read_text())
        return None

    def kill(self) -> None:
        """SIGKILL the child (its own process group only)."""
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()


# -- the child's side ------------------------------------------------------------------------------

#: Stack leaves (file suffix, function) at which a thread waits rather than works.
_IDLE_LEAVES = {
    ("threading.py", "wait"), ("threading.py", "_wait_for_tstate_lock"), ("selectors.py", "select"),
    ("concurrent/futures/thread.py", "_worker"), ("queue.py", "get"), ("threading.py", "join"),
    ("asyncio/base_events.py", "_run_once"), ("socket.py", "accept"), ("socketserver.py", "serve_forever"),
}


class Sampler:
    """A small in-process sampling profiler (no py-spy here): every ``interval`` seconds it takes
    every thread's Python stack (``sys._current_frames``) and counts, over the samples where a
    thread was not idle (its leaf is not a wait: ``_IDLE_LEAVES``), each function's self and
    inclusive samples and the busy samples per thread kind. It needs the GIL to sample, so a
    busy interpreter is sampled less often than ``interval``: read shares, not absolute times."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.samples = 0
        self.busy_by_thread: collections.Counter[str] = collections.Counter()
        self.self_counts: collections.Counter[str] = collections.Counter()
        self.inclusive: collections.Counter[str] = collections.Counter()
        self.project: collections.Counter[str] = collections.Counter()
        self._cpu_at_reset: dict[int, float] = {}
        self._process_cpu_at_reset = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def reset(self) -> None:
        """Forget what was sampled so far and count thread CPU from now (SIGUSR1 in the child:
        the parent profiles one phase, e.g. the herd after its opening)."""
        self.samples = 0
        self.busy_by_thread.clear()
        self.self_counts.clear()
        self.inclusive.clear()
        self.project.clear()
        self._cpu_at_reset = {t.native_id: _thread_cpu(t.native_id) for t in threading.enumerate() if t.native_id}
        self._process_cpu_at_reset = proc_cpu_seconds(os.getpid())

    def cpu_by_thread(self) -> dict[str, float]:
        """CPU seconds since the last ``reset`` by Python thread kind (the name without its
        number: ``MainThread`` the event loop, ``ThreadPoolExecutor`` the activities,
        ``temporal_workflow_`` the workflow activations) and ``other`` (the SDK core's threads and
        threads that ended)."""
        kinds: dict[str, float] = collections.defaultdict(float)
        python = 0.0
        for thread in threading.enumerate():
            if not thread.native_id:
                continue
            used = _thread_cpu(thread.native_id) - self._cpu_at_reset.get(thread.native_id, 0.0)
            kinds[re.sub(r"[_-]?\d+(_\d+)?$", "", thread.name)] += used
            python += used
        process = proc_cpu_seconds(os.getpid()) - self._process_cpu_at_reset
        kinds["other"] = max(0.0, process - python)
        return {k: round(v, 2) for k, v in sorted(kinds.items(), key=lambda item: -item[1])}

    def start(self) -> None:
        """Start sampling in a daemon thread."""
        self._thread.start()

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(self.interval):
            names = {t.ident: t.name for t in threading.enumerate()}
            self.samples += 1
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                code = frame.f_code
                leaf = (code.co_filename, code.co_name)
                if any(leaf[0].endswith(suffix) and leaf[1] == name for suffix, name in _IDLE_LEAVES):
                    continue
                kind = re.sub(r"[_-]?\d+(_\d+)?$", "", names.get(ident, "?"))
                self.busy_by_thread[kind] += 1
                self.self_counts[_label(code)] += 1
                seen = set()
                while frame is not None:
                    label = _label(frame.f_code)
                    if label not in seen:
                        seen.add(label)
                        self.inclusive[label] += 1
                        if _is_project(frame.f_code.co_filename):
                            self.project[label] += 1
                    frame = frame.f_back

    def report(self, top: int = 60) -> dict[str, Any]:
        """``{"samples", "interval_s", "cpu_by_thread", "busy_by_thread", "self", "inclusive",
        "project"}``: sample counts, CPU seconds by thread kind (``cpu_by_thread``), busy samples by
        thread kind, the ``top`` functions by self and by inclusive busy samples (``file:line
        function``), and by inclusive samples among the project's own functions (``project``).
        A busy sample is wall time a thread was not waiting, on CPU or in a C call (SQLite)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        return {"samples": self.samples, "interval_s": self.interval, "cpu_by_thread": self.cpu_by_thread(),
                "busy_by_thread": dict(self.busy_by_thread),
                "self": self.self_counts.most_common(top), "inclusive": self.inclusive.most_common(top),
                "project": self.project.most_common(top)}


def _thread_cpu(native_id: int) -> float:
    """CPU seconds of this process's thread ``native_id`` (0 when it ended)."""
    try:
        _, fields = _stat_fields(Path(f"/proc/self/task/{native_id}/stat"))
    except (OSError, ValueError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _is_project(path: str) -> bool:
    """Whether ``path`` is the project's own code (not the venv's packages, not the stdlib)."""
    return path.startswith(str(PROJECT_ROOT) + "/") and "site-packages" not in path


def _label(code: Any) -> str:
    path = code.co_filename
    for marker in ("site-packages/", "/lib/python3", str(PROJECT_ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{code.co_firstlineno} {code.co_name}"


def _naive_worker(client: Any, task_queue: str, max_cached: int | None, unsandboxed: bool) -> Any:
    from concurrent.futures import ThreadPoolExecutor

    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    from bench import naive

    extra: dict[str, Any] = {} if max_cached is None else {"max_cached_workflows": max_cached}
    if unsandboxed:
        extra["workflow_runner"] = UnsandboxedWorkflowRunner()
    return Worker(client, task_queue=task_queue, workflows=[naive.NaiveLadderWorkflow], activities=naive.ACTIVITIES,
                  activity_executor=ThreadPoolExecutor(32), max_concurrent_activities=32, **extra)


def _product_worker(client: Any, settings: Any, max_cached: int | None, unsandboxed: bool) -> Any:
    from contextlib import nullcontext
    from functools import partial
    from unittest import mock

    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    from collections_domain.ops import wiring

    # The product's own wiring, unchanged; without the sandbox only the runner differs.
    swap = (mock.patch.object(wiring, "Worker", partial(Worker, workflow_runner=UnsandboxedWorkflowRunner()))
            if unsandboxed else nullcontext())
    with swap:
        activities = wiring.build_activities(settings)
        extra = {} if max_cached is None else {"max_cached_workflows": max_cached}
        return wiring.build_worker(client, settings, activities, **extra)


async def _naive_client(address: str, runtime: Any) -> Any:
    """A plain client with the payload codec of ``PAYLOAD_KEYS``: the naive worker imports
    nothing of the product but the codec (it must read what the bench's client encrypted)."""
    from temporalio.client import Client

    from collections_domain.ops import codec

    keys = os.environ.get("PAYLOAD_KEYS")
    ring = codec.KeyRing.parse(keys, os.environ.get("PAYLOAD_ACTIVE_KEY_ID") or None) if keys else None
    return await Client.connect(address, data_converter=codec.data_converter(ring), runtime=runtime)


async def _child(args: argparse.Namespace) -> None:
    from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

    sampler = Sampler() if args.sample_profile else None
    runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"127.0.0.1:{args.metrics_port}")))
    if args.kind == "naive":
        client = await _naive_client(args.address, runtime)
        worker = _naive_worker(client, args.task_queue, args.max_cached_workflows, args.unsandboxed)
    else:
        from collections_domain.client import connect
        from collections_domain.ops.logs import configure_logging
        from collections_domain.ops.settings import Settings

        overrides: dict[str, Any] = {"temporal_address": args.address, "temporal_task_queue": args.task_queue}
        if args.database_url:
            overrides["database_url"] = args.database_url
        settings = Settings(**overrides)
        configure_logging(settings.log_level, settings.log_json)  # to stderr: stdout is the READY pipe
        client = await connect(settings, runtime=runtime)
        worker = _product_worker(client, settings, args.max_cached_workflows, args.unsandboxed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if sampler is not None:
        loop.add_signal_handler(signal.SIGUSR1, sampler.reset)
    async with worker:
        if sampler is not None:
            sampler.reset()
            sampler.start()
        print(f"READY {os.getpid()}", flush=True)
        os.dup2(2, 1)  # nothing else on the pipe: the parent reads only the READY line
        await stop.wait()
        if sampler is not None:  # before the worker's threads stop
            Path(args.sample_profile).write_text(json.dumps(sampler.report()))


def main() -> None:
    """The child's entry point (module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bench.worker_process", description=__doc__.splitlines()[0])
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--address", required=True, help="Temporal frontend host:port")
    parser.add_argument("--database-url", help="the product's DATABASE_URL (product kind)")
    parser.add_argument("--kind", choices=("product", "naive"), default="product")
    parser.add_argument("--max-cached-workflows", type=int, help="sticky cache size (default: the product's)")
    parser.add_argument("--unsandboxed", action="store_true", help="UnsandboxedWorkflowRunner instead of the sandbox")
    parser.add_argument("--metrics-port", type=int, default=0, help="Prometheus metrics on 127.0.0.1:<port>")
    parser.add_argument("--sample-profile", help="write a sampling profile (JSON) here on exit")
    args = parser.parse_args()
    if not args.metrics_port:
        args.metrics_port = free_port()
    try:
        asyncio.run(_child(args))
    except KeyboardInterrupt:
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # as worker.py: the client's threads cannot abort finalization


if __name__ == "__main__":
    main()
