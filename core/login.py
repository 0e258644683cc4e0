"""The team server's login: MLflow's basic authentication, on whenever `ablab server` listens
on an address other than loopback (or when asked). The admin password is generated once and
kept beside the PostgreSQL password, mode 600, in MLflow's own credentials-file format, so
clients read it as MLflow does: `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`, or
the file copied to ~/.mlflow/credentials. Unauthenticated requests get 401."""

from __future__ import annotations

import configparser
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

ADMIN = "admin"


def needs_login(host: str) -> bool:
    """Anything but a loopback address is reachable from other machines."""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: other machines may resolve it
        return True


def _secret_file(path: Path, make) -> str:
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(make())
    path.chmod(0o600)
    return path.read_text()


@dataclass(frozen=True)
class Login:
    """The login's files in the server's data folder."""

    data: Path

    @property
    def credentials(self) -> Path:
        return self.data / "mlflow.credentials"

    @property
    def config(self) -> Path:
        return self.data / "mlflow-auth.ini"

    def password(self) -> str:
        text = _secret_file(self.credentials, lambda: (
            f"[mlflow]\nmlflow_tracking_username = {ADMIN}\n"
            f"mlflow_tracking_password = {secrets.token_urlsafe(18)}\n"))
        cp = configparser.ConfigParser()
        cp.read_string(text)
        return cp["mlflow"]["mlflow_tracking_password"]

    def server_env(self) -> dict[str, str]:
        """What `mlflow server --app-name basic-auth` needs: its config (the admin and a user
        store in the data folder) and a stable key for its CSRF protection."""
        cp = configparser.ConfigParser()
        cp["mlflow"] = {
            "default_permission": "READ",
            "database_uri": f"sqlite:///{(self.data / 'mlflow-auth.db').resolve()}",
            "admin_username": ADMIN, "admin_password": self.password(),
            "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
            # a password's PBKDF2 check once a minute per worker process, not per request:
            # a study's workers log every epoch (3x the throughput, MLflow's own figure)
            "auth_cache_ttl_seconds": "60"}
        if not self.config.exists():
            self.config.touch(mode=0o600)
        with open(self.config, "w") as fh:
            cp.write(fh)
        key = _secret_file(self.data / "mlflow-flask.secret", lambda: secrets.token_hex(32))
        return {"MLFLOW_AUTH_CONFIG_PATH": str(self.config),
                "MLFLOW_FLASK_SERVER_SECRET_KEY": key.strip()}
