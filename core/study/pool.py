"""The local worker pool: one process per device slot, started, reaped, restarted while work
is waiting, and stopped together (SIGTERM to all at once, then SIGKILL at a deadline)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

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

    def interrupt(self, timeout_s: float = 10.0) -> None:
        """Ctrl-C reaches workers in our process group; signal them anyway (the coordinator
        alone may have been stopped). Every worker gets SIGTERM (handled like Ctrl-C: its run
        ends KILLED) at once; whatever still runs at the deadline is killed."""
        for w in self.procs.values():
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(w.proc.poll() is None
                                                  for w in self.procs.values()):
            time.sleep(0.1)
        for w in self.procs.values():
            if w.proc.poll() is None:
                w.proc.kill()
            w.proc.wait()
        self.procs.clear()
