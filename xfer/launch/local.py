"""Trials on this node: every GPU busy, trials packed side by side, crash-safe reruns.

The devices (``cluster.devices``: every visible GPU by default, ``CUDA_VISIBLE_DEVICES`` respected) are
cut into fixed groups of ``cluster.gpus_per_trial`` (``xfer.launch.placement``). Each group runs one trial at a time as that many
processes (``python -m xfer.trial.rank``, one per GPU, pinned to the group's GPUs, with the trial's own
rendezvous port); a queue hands a freed group the next trial at once. The global batch is the
recipe's whatever the group size: detectron2's IMS_PER_BATCH is global.

Safety. A launcher runs a trial only while it holds the lock in the trial's folder (``xfer.store.locks``, which
a SLURM job takes too), so two launchers on one sweep never run a trial twice; the lock dies with its
holder. The trial's processes die with the launcher, even a ``kill -9``-ed one, and the same command
resumes from detectron2's last checkpoint and skips finished trials. Ctrl-C asks running trials to checkpoint and stop, waits
``cluster.stop_grace_s``, then kills; a second Ctrl-C kills at once. A failing trial stops only itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

import xfer
from xfer.launch.placement import groups, per_trial, resolve_devices
from xfer.report import status as st
from xfer.store import locks
from xfer.store.files import FAILURE, PROGRESS, read_json, record_failure
from xfer.store.state import finished
from xfer.trial.dist import free_port
from xfer.trial.rank import INTERRUPTED

POLL_S = 0.5
RANK_FAILED_GRACE_S = 5.0  # when one rank fails the others may wait in a collective forever: kill them then
LINES_EVERY_S = 30.0  # without a terminal: a progress line this often
_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b(: .*)?$")


@dataclass(frozen=True)
class Job:
    """A trial for this node: its folder (holding ``trial.yaml``) and how to name it."""

    dir: Path
    label: str


@dataclass
class Running:
    job: Job
    devices: tuple[str, ...]
    port: int
    procs: list[subprocess.Popen]
    lock: locks.TrialLock
    started: float
    kill_at: float | None = None


def error_line(text: str) -> str:
    """The cause the log's last traceback ends with: the first line after its stack that is not indented, as
    Python prints ``SomeError: message`` whatever the exception is named (``WeightsNotLoaded: ...``); else the
    last line that reads like one."""
    found, in_stack = "", False
    for line in text.splitlines():
        if line.startswith("Traceback (most recent call last):"):
            in_stack = True
        elif in_stack and line.strip() and not line.startswith((" ", "\t")):
            found, in_stack = line.strip(), False
    if found:
        return found
    named = [line.strip() for line in text.splitlines() if _ERROR_LINE.match(line.strip())]
    return named[-1] if named else ""


def tail(path: Path, lines: int = 20, reach: int = 200) -> str:
    """The log's last ``lines`` lines, reaching back to the start of its last traceback if there is one."""
    try:
        last = path.read_text(errors="replace").splitlines()[-reach:]
    except FileNotFoundError:
        return ""
    starts = [i for i, line in enumerate(last) if line.startswith("Traceback (most recent call last)")]
    first = min(starts[-1], len(last) - lines) if starts else len(last) - lines
    return "\n".join(last[max(first, 0) :])


def diagnose(trial_dir: Path, codes: list[int]) -> tuple[str, str]:
    """(cause, log tail) of a failed trial, from the rank that failed first in kind: an exception
    (exit status > 0) explains more than a kill (< 0), which may only be xfer stopping the others."""
    ranks = sorted((r for r, c in enumerate(codes) if c), key=lambda r: (codes[r] < 0, r))
    rank = ranks[0]
    text = tail(trial_dir / f"rank{rank}.out")
    code = codes[rank]
    if code < 0:
        name = signal.Signals(-code).name
        oom = " (out of memory? the kernel's OOM killer sends SIGKILL)" if -code == signal.SIGKILL else ""
        return f"rank {rank} killed by {name}{oom}", text
    return error_line(text) or f"rank {rank} exited with status {code}", text


def verdict(trial_dir: Path, codes: list[int], stopping: bool) -> str:
    """How a trial whose processes all ended stands: done once its ``result.json`` is written and readable,
    whatever the exit codes (a rank failing in teardown does not undo it); stopped when asked to stop or
    every rank exited cleanly; otherwise failed."""
    if finished(trial_dir):
        return "done"
    if stopping or all(c in (0, INTERRUPTED) for c in codes):
        return "stopped"
    return "failed"


class Runner:
    """The queue, the device groups and the running trials of one launcher on this node."""

    def __init__(self, jobs: list[Job], slots: list[tuple[str, ...]], device: str, grace_s: float, view) -> None:
        self.queue = list(jobs)
        self.free = list(slots)
        self.device = device
        self.grace_s = grace_s
        self.view = view
        self.running: list[Running] = []
        self.statuses = {j.dir: st.TrialStatus(j.label) for j in jobs}
        self.t0 = time.time()
        self.signals = 0  # Ctrl-C (SIGINT), SIGTERM or SIGHUP received
        self.handled = 0

    @property
    def stopping(self) -> bool:
        return self.signals > 0

    def loop(self) -> None:
        while self.running or (self.queue and not self.stopping):
            self._on_signals()
            self._reap()
            if not self.stopping:
                self._fill()
            self.view.update(self)
            time.sleep(POLL_S)

    @contextlib.contextmanager
    def signals_handled(self):
        """Stop requests become a counter the loop acts on; nothing outlives this block."""
        caught = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        old = {s: signal.signal(s, self._count) for s in caught}
        try:
            yield self
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
            for run in self.running:  # only after a bug in the loop: leave no process behind
                self._kill(run)

    def _count(self, signum, frame) -> None:
        self.signals += 1

    def _on_signals(self) -> None:
        if self.signals == self.handled:
            return
        now = time.time()
        if self.handled == 0:
            self.view.event(f"stopping: {len(self.running)} running trial(s) save a checkpoint and exit "
                            f"(killed after {self.grace_s:g} s; Ctrl-C again to kill now)")  # fmt: skip
            for run in self.running:
                for p in run.procs:
                    if p.poll() is None:
                        p.send_signal(signal.SIGTERM)
                run.kill_at = min(run.kill_at or now + self.grace_s, now + self.grace_s)
        else:
            for run in self.running:
                run.kill_at = now
        self.handled = self.signals

    def _fill(self) -> None:
        for job in list(self.queue):
            if not self.free:
                return
            status = self.statuses[job.dir]
            lock = locks.take(job.dir)
            if lock is None:  # another launcher, or a SLURM job, trains it
                status.state = "elsewhere"
                continue
            self.queue.remove(job)
            if finished(job.dir):  # finished by another launcher meanwhile
                lock.release()
                status.state = "done"
                self.view.finished(job, st.refresh(status, job.dir))
                continue
            failure = job.dir / FAILURE
            if status.state == "elsewhere" and failure.exists() and failure.stat().st_mtime >= self.t0:
                lock.release()  # failed under another launcher during this run: not run twice
                status.state = "failed"
                self.view.finished(job, st.refresh(status, job.dir))
                continue
            self._start(job, self.free.pop(0), lock)

    def _port(self) -> int:
        taken = {run.port for run in self.running}
        port = free_port()
        while port in taken:
            port = free_port()
        return port

    def _start(self, job: Job, devices: tuple[str, ...], lock: locks.TrialLock) -> None:
        for stale in (FAILURE, PROGRESS):
            (job.dir / stale).unlink(missing_ok=True)
        port = self._port()
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(len(devices)),
               "LOCAL_WORLD_SIZE": str(len(devices)), "XFER_LAUNCHER_PID": str(os.getpid()),
               "XFER_DEVICES": ",".join(devices)}  # fmt: skip
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(xfer.__file__).parents[1]), env.get("PYTHONPATH")]))
        # One OpenMP thread per process unless told otherwise, as torchrun does: spinning OpenMP threads of
        # processes that share cores (two trials, two launchers) slowed smoke trials 12-fold on 2 cores.
        env.setdefault("OMP_NUM_THREADS", "1")
        if self.device == "cuda":
            env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
        procs = []
        for rank in range(len(devices)):
            with open(job.dir / f"rank{rank}.out", "ab") as out:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "xfer.trial.rank", str(job.dir.resolve())],
                    env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C reaches the launcher only; it decides what the trial gets
                ))  # fmt: skip
        self.running.append(Running(job, devices, port, procs, lock, time.time()))
        status = self.statuses[job.dir]
        status.state, status.devices = "running", list(devices)
        self.view.event(f"start   {job.label} on {','.join(devices)} (port {port}); log {job.dir / 'log.txt'}")

    def _kill(self, run: Running) -> None:
        for p in run.procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)  # the rank and its data-loader workers
        for p in run.procs:
            p.wait()

    def _reap(self) -> None:
        now = time.time()
        for run in list(self.running):
            codes = [p.poll() for p in run.procs]
            if run.kill_at is None and any(c not in (None, 0) for c in codes):
                run.kill_at = now + RANK_FAILED_GRACE_S
            if None in codes and run.kill_at is not None and now >= run.kill_at:
                self._kill(run)
                codes = [p.poll() for p in run.procs]
            if None not in codes:
                self._finish(run, codes)

    def _finish(self, run: Running, codes: list[int]) -> None:
        self.running.remove(run)
        self.free.append(run.devices)
        self.free.sort(key=lambda g: g[0])
        job, status = run.job, self.statuses[run.job.dir]
        status.state = verdict(job.dir, codes, self.stopping)
        if status.state == "done" and any(codes):
            self.view.event(f"warning {job.label}: a process exited with status {codes} after result.json was "
                            "written; the trial is done")  # fmt: skip
        elif status.state == "failed":
            cause, text = diagnose(job.dir, codes)
            record_failure(job.dir, cause, text, exit_codes=codes, devices=list(run.devices))
            status.cause = cause
        run.lock.release()
        self.view.finished(job, st.refresh(status, job.dir), time.time() - run.started)


class View:
    """The sweep as it runs: a live table on a terminal; otherwise a line per event and a progress
    line every :data:`LINES_EVERY_S`. Either way, one line per finished trial with its AP."""

    def __init__(self, console, live: bool) -> None:
        self.console = console
        self.live = None
        self._last_lines = time.time()
        if live:
            from rich.live import Live

            self.live = Live(console=console, auto_refresh=False, transient=True)

    def __enter__(self):
        if self.live:
            self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.live:
            self.live.stop()

    def event(self, line: str) -> None:
        self.console.print(line, markup=False)

    def finished(self, job: Job, status: st.TrialStatus, seconds: float | None = None) -> None:
        took = f" in {st.duration(seconds)}" if seconds else ""
        if status.state == "done":
            self.event(f"done    {job.label}  {st.metrics_header(status.metrics)} {st.ap_line(status.metrics)}{took}")
        elif status.state == "failed":
            detail = str((read_json(job.dir / FAILURE) or {}).get("detail", ""))
            lines = "\n".join(f"    | {line}" for line in detail.splitlines()[-15:])
            self.event(f"failed  {job.label}{took}: {status.cause}\n  log tail ({job.dir}):\n{lines}")
        else:
            where = f" at {status.iteration}/{status.max_iter}" if status.iteration is not None else ""
            self.event(f"stopped {job.label}{where}; run the same command to resume")

    def update(self, runner: Runner) -> None:
        statuses = [st.refresh(s, d) if s.state in ("running", "elsewhere") else s for d, s in runner.statuses.items()]
        if self.live:
            self.live.update(st.table(statuses, st.counts(statuses)), refresh=True)
        elif time.time() - self._last_lines >= LINES_EVERY_S and runner.running:
            self._last_lines = time.time()
            busy = "; ".join(f"{s.label} {st.describe(s)}" for s in statuses if s.state == "running")
            self.event(f"progress: {st.counts(statuses)} | {busy}")


@dataclass(frozen=True)
class Outcome:
    statuses: list[st.TrialStatus]
    interrupted: bool  # stopped by Ctrl-C or a signal: unfinished trials resume on the next run

    @property
    def failed(self) -> list[st.TrialStatus]:
        return [s for s in self.statuses if s.state == "failed"]


def run(jobs: list[Job], cluster: DictConfig, device: str, console=None) -> Outcome:
    """Run ``jobs`` (folders with ``trial.yaml``) on this node's devices; return where each ended."""
    devices = resolve_devices(cluster.devices, device)
    slots = groups(devices, per_trial(cluster.gpus_per_trial, len(devices)))
    console = console or st.console()
    live = cluster.progress == "live" or (cluster.progress == "auto" and console.is_terminal)
    with View(console, live) as view:
        runner = Runner(jobs, slots, device, float(cluster.stop_grace_s), view)
        if len(slots) > 1 or len(slots[0]) > 1:
            view.event(f"{len(jobs)} trial(s) on {len(devices)} {device} device(s): {len(slots)} at a time, "
                       f"{len(slots[0])} process(es) each")  # fmt: skip
        with runner.signals_handled():
            runner.loop()
    statuses = [runner.statuses[j.dir] for j in jobs]
    console.print(st.table(statuses, f"{len(jobs)} trial(s): {st.counts(statuses)}"))
    return Outcome(statuses, runner.stopping)
