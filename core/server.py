"""`ablab server`: what a team shares when a study outgrows one machine. A PostgreSQL 15
cluster in a data folder (initialised on first use, run as an unprivileged user, listening on
one address), its databases `mlflow` and `optuna`, and an MLflow tracking server on top that
also serves the artifacts, so workers need no shared filesystem. With `--postgres URL` an
existing PostgreSQL server is used instead. Ctrl-C stops what it started; a second start reuses
the data folder."""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from core.errors import ConfigError
from core.login import ADMIN, Login, needs_login

PG_USER = "ablab"  # the database role ablab creates in a cluster of its own
DATABASES = ("mlflow", "optuna")


def pg_binary(name: str) -> str:
    """initdb / pg_ctl: on PATH, or in Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(Path(folder, name), os.X_OK):
            return str(Path(folder, name))
    raise ConfigError(f"PostgreSQL's {name} was not found: install the PostgreSQL server "
                      "(Debian: apt install postgresql) or give an existing one with "
                      "--postgres postgresql://USER:PASSWORD@HOST:PORT")


def os_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, its processes run as the `postgres` user
    (Debian's package creates it). None: run as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ConfigError("PostgreSQL refuses to run as root and there is no unprivileged "
                          "user `postgres` to run it as: create one (useradd postgres) or run "
                          "`ablab server` as a normal user") from None
    return "postgres"


def _as(user: str | None, cmd: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


@dataclass
class LocalPostgres:
    root: Path  # the cluster's folder
    port: int
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        self.user = os_user()

    @property
    def password_file(self) -> Path:
        return self.root.parent / "postgres.password"

    def url(self, db: str = "postgres") -> str:
        pw = self.password_file.read_text().strip()
        return f"postgresql://{PG_USER}:{pw}@{self.host}:{self.port}/{db}"

    def init(self) -> bool:
        """initdb on first use (False: the folder already holds a cluster)."""
        if (self.root / "PG_VERSION").exists():
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.password_file.exists():
            self.password_file.write_text(secrets.token_urlsafe(18))
            self.password_file.chmod(0o600)
        if self.user:
            info = pwd.getpwnam(self.user)
            os.chown(self.root, info.pw_uid, info.pw_gid)
            self.root.chmod(0o700)
            _reachable_by(self.root, info.pw_uid)
        pwfile = self.root.parent / ".pwfile"
        pwfile.write_text(self.password_file.read_text())
        if self.user:
            os.chown(pwfile, pwd.getpwnam(self.user).pw_uid, -1)
        try:
            _run(_as(self.user, [pg_binary("initdb"), "-D", str(self.root), "-U", PG_USER,
                                 "-E", "UTF8", "--auth-local=trust",
                                 "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]),
                 "initdb")
        finally:
            pwfile.unlink(missing_ok=True)
        return True

    def running(self) -> bool:
        return subprocess.run(_as(self.user, [pg_binary("pg_ctl"), "-D", str(self.root),
                                              "status"]), capture_output=True).returncode == 0

    def start(self) -> None:
        log = self.root.parent / "postgres.log"
        if self.user:
            log.touch()
            os.chown(log, pwd.getpwnam(self.user).pw_uid, -1)
        opts = (f"-c listen_addresses={self.host} -p {self.port} "
                "-c unix_socket_directories=''")
        _run(_as(self.user, [pg_binary("pg_ctl"), "-D", str(self.root), "-l", str(log), "-w",
                             "-t", "60", "-o", opts, "start"]),
             f"PostgreSQL (log: {log})")

    def stop(self) -> None:
        subprocess.run(_as(self.user, [pg_binary("pg_ctl"), "-D", str(self.root), "-m",
                                       "fast", "-w", "stop"]), capture_output=True)


def _reachable_by(path: Path, uid: int) -> None:
    """The unprivileged user must be able to walk to its cluster's folder."""
    for parent in path.parents:
        st = parent.stat()
        if st.st_uid != uid and not st.st_mode & 0o001:
            raise ConfigError(f"--data: {parent} is not searchable by the user that runs "
                              f"PostgreSQL (uid {uid}); choose a data folder it can reach, "
                              "e.g. under /srv or /tmp")


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ConfigError(f"{what} failed: " + " / ".join(tail))


def with_db(url: str, db: str) -> str:
    u = urlparse(url)
    return urlunparse(u._replace(path=f"/{db}"))


def ensure_databases(url: str, names=DATABASES) -> None:
    import psycopg

    from core.study.queue import redact

    try:
        con = psycopg.connect(with_db(url, "postgres"), connect_timeout=10, autocommit=True)
    except psycopg.Error as err:
        raise ConfigError(f"PostgreSQL at {redact(url)} cannot be reached: "
                          f"{str(err).strip().splitlines()[0]}") from None
    with con:
        for name in names:
            if con.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                           (name,)).fetchone() is None:
                con.execute(f'CREATE DATABASE "{name}"')


def start_mlflow(backend: str, artifacts: Path, host: str, port: int, log: Path,
                 login: Login | None = None):
    artifacts.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
           "--serve-artifacts", "--artifacts-destination", artifacts.resolve().as_uri(),
           "--host", host, "--port", str(port), "--workers", "2"]
    env = dict(os.environ)
    if login is not None:
        cmd += ["--app-name", "basic-auth"]
        env.update(login.server_env())
    with open(log, "a") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 180) -> None:
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text().strip().splitlines()[-5:]
            raise ConfigError("the MLflow server exited: " + " / ".join(tail))
        try:
            if requests.get(f"{url}/health", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise ConfigError(f"the MLflow server did not answer at {url} within {timeout_s:.0f} s "
                      f"(log: {log})")


def serve(data: Path, port: int, pg_port: int, postgres: str | None, host: str,
          console, auth: bool | None = None) -> None:
    """Start everything, print what workers need, wait for Ctrl-C, stop what was started.
    `auth`: MLflow's login (default: on when `host` is not a loopback address)."""
    data = data.resolve()
    data.mkdir(parents=True, exist_ok=True)
    login = Login(data) if (needs_login(host) if auth is None else auth) else None
    pg = None
    if postgres is None:
        pg = LocalPostgres(data / "postgres", pg_port, host)
        fresh = pg.init()
        if pg.running():
            raise ConfigError(f"PostgreSQL in {pg.root} is already running: another "
                              "`ablab server` uses this data folder")
        console.print(("initialised" if fresh else "reusing") + f" PostgreSQL in {pg.root}; "
                      f"starting it on {host}:{pg_port}...")
        pg.start()
        postgres = pg.url()
    mlflow = None
    try:
        ensure_databases(postgres)
        log = data / "mlflow-server.log"
        url = f"http://{host}:{port}"
        console.print(f"starting the MLflow server on {url} (log: {log})...")
        mlflow = start_mlflow(with_db(postgres, "mlflow"), data / "artifacts", host, port,
                              log, login)
        wait_healthy(url, mlflow, log)
        storage = with_db(postgres, "optuna")
        if login is not None:
            console.print(f"MLflow asks for a login: user {ADMIN}, password in "
                          f"{login.credentials} (mode 600). Clients: copy it to "
                          "~/.mlflow/credentials, or export MLFLOW_TRACKING_USERNAME="
                          f"{ADMIN} MLFLOW_TRACKING_PASSWORD=<the password>.", soft_wrap=True,
                          highlight=False)
        console.print(f"\n[bold]ablab server ready[/]\n  --tracking-uri {url}\n  --storage "
                      f"{storage}\n\nOn any machine:\n  ablab run STUDY --no-workers "
                      f"--tracking-uri {url} --storage '{storage}'\n  ablab worker STUDY "
                      f"--tracking-uri {url} --storage '{storage}' --wait\nCtrl-C stops "
                      "the server" + (" and PostgreSQL." if pg else "."), highlight=False,
                      soft_wrap=True)
        while mlflow.poll() is None:
            time.sleep(1)
        raise ConfigError(f"the MLflow server exited (code {mlflow.returncode}); see {log}")
    except KeyboardInterrupt:
        console.print("\nstopping...")
    finally:
        if mlflow is not None and mlflow.poll() is None:
            os.killpg(mlflow.pid, signal.SIGTERM)
            try:
                mlflow.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(mlflow.pid, signal.SIGKILL)
        if pg is not None:
            pg.stop()
        console.print("stopped.")
