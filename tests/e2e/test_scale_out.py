"""The scale-out recipe as README tells it, for real: `ablab server` brings up PostgreSQL 15 and
an MLflow server that serves artifacts behind a login; a coordinator only enqueues; three
`ablab worker` processes in three empty folders (no file of the project's) do the work on
PostgreSQL-backed Optuna storage with heartbeats; one is SIGKILLed mid-trial."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.e2e

STUDY = """# 2 variants x 3 seeds, tiny
base: digits_cnn
set: {data.image_size: 8, train.epochs: 2, model.depth: 1, data.max_samples: 400}
vary:
  head: [gap, gap_dense]
seeds: 3
"""
FAST_HEARTBEAT = {"ABLAB_HEARTBEAT_S": "2", "ABLAB_GRACE_S": "6"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(args, cwd, env=None, log=None):
    return subprocess.Popen([sys.executable, "-m", "core.cli", *args], cwd=cwd,
                            env={**os.environ, **(env or {})}, stdout=log or subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


@pytest.fixture(scope="module")
def server():
    if not (shutil.which("initdb") or list(Path("/usr/lib/postgresql").glob("*/bin/initdb"))):
        pytest.fail("PostgreSQL's initdb is not installed (make system-deps installs it)")
    # PostgreSQL runs as an unprivileged user, who must reach its folder: not under pytest's
    # private tmp (0700 when run as root)
    data = Path(tempfile.mkdtemp(prefix="ablab-server-", dir="/tmp"))
    data.chmod(0o755)
    port, pg_port = free_port(), free_port()
    log = open(data / "server.out", "w+")  # noqa: SIM115
    # --auth: the login a server off loopback has (tests listen on 127.0.0.1 only)
    proc = _spawn(["server", "--data", str(data), "--port", str(port), "--pg-port",
                   str(pg_port), "--auth"], ROOT, log=log)
    deadline = time.monotonic() + 240
    text = ""
    while "ablab server ready" not in text:
        assert proc.poll() is None and time.monotonic() < deadline, text
        time.sleep(0.5)
        text = (data / "server.out").read_text()
    storage = text.split("--storage ", 1)[1].split()[0]
    creds = data / "mlflow.credentials"
    assert creds.stat().st_mode & 0o777 == 0o600
    password = creds.read_text().split("mlflow_tracking_password = ", 1)[1].split()[0]
    login = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": password}
    before = {k: os.environ.get(k) for k in login}
    os.environ.update(login)  # this process's MlflowClient, and every process it starts
    yield {"uri": f"http://127.0.0.1:{port}", "storage": storage, "data": data, "proc": proc,
           "login": login}
    for k, v in before.items():
        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C stops MLflow and PostgreSQL
    proc.wait(timeout=60)
    text = (data / "server.out").read_text()
    assert "stopped." in text, text
    assert not _listening(port) and not _listening(pg_port)
    shutil.rmtree(data, ignore_errors=True)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _trial_runs(c, name):
    exp = c.get_experiment_by_name(name)
    return c.search_runs([exp.experiment_id], "tags.`ablab.role` = 'trial'", max_results=500)


def test_workers_on_three_machines_share_postgres_and_the_server(server, tmp_path):
    study = tmp_path / "team.yaml"
    study.write_text(STUDY)
    common = ["--tracking-uri", server["uri"], "--storage", server["storage"]]
    proc = run_cli("run", str(study), "--no-workers", *common)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "queued" in proc.stdout
    # three "machines": empty folders, no project files, artifacts only through the server
    folders = [Path(tempfile.mkdtemp(dir=tmp_path)) for _ in range(3)]
    workers = [_spawn(["worker", "team", *common, "--wait"], cwd=f, env={
        **FAST_HEARTBEAT, "ABLAB_MLRUNS": str(f / "mlruns")}) for f in folders]
    c = MlflowClient(server["uri"])
    deadline = time.monotonic() + 300
    victim = None
    while victim is None:  # SIGKILL a worker while its trial runs
        assert time.monotonic() < deadline
        exp = c.get_experiment_by_name("team")
        running = [r for r in c.search_runs([exp.experiment_id], "attributes.status = "
                                            "'RUNNING' and tags.`ablab.role` = 'trial'")
                   ] if exp else []
        for r in running:
            pid = int(r.data.tags["ablab.worker"].rsplit(":", 1)[1])
            victim = next((w for w in workers if w.pid == pid), None)
            if victim:
                killed_run = r.info.run_id
                break
        time.sleep(0.2)
    victim.kill()
    for w in workers:
        if w is not victim:
            out, _ = w.communicate(timeout=600)
            assert w.returncode == 0, out
    runs = _trial_runs(c, "team")
    finished = [r for r in runs if r.info.status == "FINISHED"]
    cells = {(r.data.tags["ablab.variant"], r.data.tags["ablab.seed"]) for r in finished}
    assert len(finished) == 6 and len(cells) == 6  # every cell exactly once
    assert not [r for r in runs if r.info.status == "RUNNING"]
    dead = c.get_run(killed_run)
    assert dead.info.status in ("KILLED", "FAILED")
    assert "worker stopped" in dead.data.tags["ablab.end_reason"]
    assert all(not list(f.iterdir()) or {p.name for p in f.iterdir()} <= {"mlruns"}
               for f in folders)  # nothing of the study's written beside the workers
    for r in finished:  # artifacts come back through the server
        local = c.download_artifacts(r.info.run_id, "config.yaml", str(tmp_path / r.info.run_id))
        assert "seed:" in Path(local).read_text()
    out = tmp_path / "report"
    rep = run_cli("report", str(study), "--tracking-uri", server["uri"], "--out", str(out))
    assert rep.returncode == 0, rep.stdout + rep.stderr
    for f in ("summary.md", "comparisons.csv", "per_seed.png", "confusion_matrices.png"):
        assert (out / f).exists(), f
    assert "head=gap_dense" in (out / "summary.md").read_text()


def test_the_server_asks_for_a_login(server):
    """Unauthenticated REST calls get 401; ablab says what to set; with the credentials (from
    MLflow's variables, or the credentials file in ~/.mlflow) it works."""
    import requests

    search = f"{server['uri']}/api/2.0/mlflow/experiments/search?max_results=1"
    assert requests.get(search, timeout=10).status_code == 401
    assert requests.get(search, timeout=10, auth=("admin", "wrong")).status_code == 401
    ok = requests.get(search, timeout=10, auth=("admin",
                                                 server["login"]["MLFLOW_TRACKING_PASSWORD"]))
    assert ok.status_code == 200
    anonymous = {k: "" for k in server["login"]}
    proc = run_cli("list", "--tracking-uri", server["uri"], "--storage", server["storage"],
                   env=anonymous)
    assert proc.returncode == 2 and "asks for a login" in " ".join(proc.stderr.split())
    home = Path(tempfile.mkdtemp())
    (home / ".mlflow").mkdir()
    shutil.copy(server["data"] / "mlflow.credentials", home / ".mlflow" / "credentials")
    proc = run_cli("list", "--tracking-uri", server["uri"], "--storage", server["storage"],
                   env={**anonymous, "HOME": str(home)})
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_server_off_loopback_turns_its_login_on():
    from core.login import needs_login

    assert needs_login("0.0.0.0") and needs_login("10.1.2.3") and needs_login("login-node")
    assert not needs_login("127.0.0.1") and not needs_login("localhost")
    assert not needs_login("::1")
