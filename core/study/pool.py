"""The local worker pool: one process per device slot, started, reaped, restarted while work
is waiting, and stopped together (SIGTERM to all at once, then SIGKILL at a deadline); and the
one supervision loop over it that `ablab run` and `ablab worker` share."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from rich.console import Console

from core.study.queue import worker_id

MAX_CRASHES_PER_SLOT = 10


@dataclass
class WorkerProc:
    slot: int
    env: dict[str, str]
    proc: subprocess.Popen
    log: Path

    @property
    def id(self) -> str:
        return worker_id(self.proc.pid)


@dataclass
class Pool:
    cmd: list[str]
    slots: list[dict[str, str]]
    log_dir: Path
    procs: dict[int, WorkerProc] = field(default_factory=dict)
    crashes: int = 0
    started: int = 0

    def start(self, slot: int) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"worker-{slot}.log"
        env = {**os.environ, **self.slots[slot], "PYTHONUNBUFFERED": "1",
               "ABLAB_WORKER_INDEX": str(slot)}
        with open(log, "a") as fh:
            proc = subprocess.Popen(self.cmd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        self.procs[slot] = WorkerProc(slot, self.slots[slot], proc, log)
        self.started += 1

    def fill(self) -> None:
        """Start a worker on every slot that has none."""
        for slot in range(len(self.slots)):
            if slot not in self.procs:
                self.start(slot)

    def live_ids(self) -> set[str]:
        return {w.id for w in self.procs.values()}

    def reap(self) -> list[WorkerProc]:
        """Workers that exited since the last call (crashed or done)."""
        gone = [w for w in self.procs.values() if w.proc.poll() is not None]
        for w in gone:
            del self.procs[w.slot]
            if w.proc.returncode != 0:
                self.crashes += 1
        return gone

    def crash_looping(self) -> bool:
        return self.crashes > MAX_CRASHES_PER_SLOT * len(self.slots)

    def wait(self) -> None:
        for w in self.procs.values():
            w.proc.wait()
        self.procs.clear()

    def interrupt(self, timeout_s: float = 10.0, signum: int = signal.SIGINT) -> None:
        """Ctrl-C reaches workers in our process group; signal them anyway (the coordinator
        alone may have been stopped). Every worker gets `signum` at once: SIGINT, a person's
        stop (its run ends KILLED), or SIGTERM, a preemption passed on (its trial goes back
        to the queue); whatever still runs at the deadline is killed."""
        for w in self.procs.values():
            if w.proc.poll() is None:
                w.proc.send_signal(signum)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(w.proc.poll() is None
                                                  for w in self.procs.values()):
            time.sleep(0.1)
        for w in self.procs.values():
            if w.proc.poll() is None:
                w.proc.kill()
            w.proc.wait()
        self.procs.clear()


class WorkerPool(Protocol):
    """What supervision needs of a pool (a stand-in in tests runs its workers in-process)."""

    cmd: list[str]
    log_dir: Path
    procs: dict[int, WorkerProc]

    def fill(self) -> None: ...
    def live_ids(self) -> set[str]: ...
    def reap(self) -> list[WorkerProc]: ...
    def crash_looping(self) -> bool: ...
    def wait(self) -> None: ...
    def interrupt(self, timeout_s: float = 10.0, signum: int = signal.SIGINT) -> None: ...


PoolFactory = Callable[[list[str], list[dict[str, str]], Path], WorkerPool]


@dataclass
class Supervisor:
    """One loop over a pool, for the coordinator of `ablab run` and for `ablab worker`
    alike: each round reaps the workers that exited (a crash is reported with its log),
    stops when the pool keeps crashing, and asks `step` what else to do; `step` returns
    False when the work is done. Ctrl-C stops every worker before it propagates."""

    pool: WorkerPool
    console: Console
    poll_s: float = 1.0
    sleep: Callable[[float], None] = time.sleep

    def reap(self) -> list[WorkerProc]:
        """The workers that crashed since the last round (exits with 0 are just gone)."""
        crashed = [w for w in self.pool.reap() if w.proc.returncode != 0]
        for w in crashed:
            self.console.print(f"[yellow]worker on slot {w.env.get('ABLAB_SLOT', w.slot)} "
                               f"(pid {w.proc.pid}) exited with {w.proc.returncode}; see "
                               f"{w.log}[/]")
        if crashed and self.pool.crash_looping():
            raise RuntimeError(f"workers keep crashing; see logs in {self.pool.log_dir}")
        return crashed

    def run(self, step: Callable[[list[WorkerProc]], bool], stop_workers: bool = True) -> None:
        from core.signals import Preempted

        try:
            while step(self.reap()):
                self.sleep(self.poll_s)
        except KeyboardInterrupt as stop:
            if stop_workers:  # a preemption is passed on as one
                self.pool.interrupt(signum=signal.SIGTERM if isinstance(stop, Preempted)
                                    else signal.SIGINT)
            raise
