"""A one-node SLURM for the cluster tests, started by the test: munged, slurmctld and slurmd
as root on ports of their own, two fake GPUs (character devices like /dev/null, in gres.conf),
and its state in a temporary folder. `make system-deps` installs Debian's slurm-wlm and munge.
ProctrackType=proctrack/linuxproc and TaskPlugin=task/none need no cgroups; slurm 22.05 has
no "disabled" cgroup plugin, so cgroup/v1 is named and never used."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.launch.slurm import KILL_WAIT_S


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _munged() -> subprocess.Popen | None:
    """munged, unless one answers (it runs as the munge user; the package made its key)."""
    if subprocess.run(["munge", "-n"], capture_output=True).returncode == 0:
        return None
    run = Path("/run/munge")
    run.mkdir(parents=True, exist_ok=True)
    shutil.chown(run, "munge", "munge")
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        subprocess.run(["mungekey", "--create", "--keyfile", str(key)], check=True)
        shutil.chown(key, "munge", "munge")
        key.chmod(0o600)
    proc = subprocess.Popen(["runuser", "-u", "munge", "--", "/usr/sbin/munged",
                             "--foreground"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while subprocess.run(["munge", "-n"], capture_output=True).returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail("munged did not start (see /var/log/munge/munged.log)")
        time.sleep(0.2)
    return proc


@contextlib.contextmanager
def cluster(folder: Path) -> Iterator[dict[str, str]]:
    """Start it; yields the environment its commands need (SLURM_CONF)."""
    if not (shutil.which("slurmctld") and shutil.which("munged")):
        pytest.fail("SLURM is not installed (make system-deps installs slurm-wlm and munge)")
    if os.geteuid() != 0:
        pytest.skip("a one-node SLURM needs root (CI and make test run as root)")
    host = socket.gethostname()
    folder.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool", "dev"):
        (folder / sub).mkdir(exist_ok=True)
    for i in (0, 1):
        dev = folder / "dev" / f"nvidia{i}"
        if not dev.exists():
            os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))
    conf = folder / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=ablabtest", f"SlurmctldHost={host}", "SlurmUser=root",
        f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}", "AuthType=auth/munge",
        f"StateSaveLocation={folder / 'state'}", f"SlurmdSpoolDir={folder / 'spool'}",
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
        f"SlurmdPidFile={folder / 'slurmd.pid'}",
        f"SlurmctldLogFile={folder / 'slurmctld.log'}",
        f"SlurmdLogFile={folder / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none", "SchedulerType=sched/backfill",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core", "GresTypes=gpu",
        "ReturnToService=2", "MpiDefault=none", f"KillWait={KILL_WAIT_S}",
        f"NodeName={host} CPUs={os.cpu_count() or 2} RealMemory=4000 Gres=gpu:2 "
        "State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP", ""]))
    (folder / "gres.conf").write_text(
        f"NodeName={host} Name=gpu File={folder / 'dev'}/nvidia[0-1]\n")
    (folder / "cgroup.conf").write_text("CgroupPlugin=cgroup/v1\n")
    env = {**os.environ, "SLURM_CONF": str(conf)}
    munge = _munged()
    daemons = [subprocess.Popen([d, "-D"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
               for d in ("slurmctld", "slurmd")]
    try:
        deadline = time.monotonic() + 60
        while "idle" not in subprocess.run(["sinfo", "-h", "-o", "%T"], env=env,
                                           capture_output=True, text=True).stdout:
            if time.monotonic() > deadline:
                log = (folder / "slurmctld.log").read_text()[-2000:]
                pytest.fail(f"the one-node SLURM did not come up:\n{log}")
            time.sleep(0.5)
        yield {"SLURM_CONF": str(conf)}
    finally:
        subprocess.run(["scancel", "--user", "root"], env=env, capture_output=True)
        for p in daemons:
            p.terminate()
        for p in daemons:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=20)
            if p.poll() is None:
                p.kill()
        if munge is not None:
            munge.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                munge.wait(timeout=10)
