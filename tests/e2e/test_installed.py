"""ablab as a user gets it: the wheel built from this checkout, installed (not editable) into a
new virtualenv, used from a folder outside the repository: `ablab init`, then `ablab run` of
the project's own ablations through spawned workers, ending in reports.

The new virtualenv reuses the suite's installed dependencies through a .pth line (no second
TensorFlow download); ablab itself comes only from the wheel: the suite's editable install is
a finder that a .pth-added folder does not activate, and the test checks where `core` is
imported from."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def tracked_modules() -> set[str]:
    out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "core"], capture_output=True,
                         text=True, check=True).stdout.split()
    return {p for p in out if p.endswith(".py")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(ROOT)], check=True, capture_output=True,
                   cwd=out)
    return next(out.glob("ablab-*.whl"))


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> Path:
    env = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    py = env / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True,
                          check=True).stdout.strip()
    (Path(site) / "suite-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True)
    return env


def site_files(venv: Path) -> set[str]:
    lib = next((venv / "lib").glob("python3*")) / "site-packages"
    return {str(p.relative_to(lib)) for p in lib.rglob("*")
            if "__pycache__" not in p.parts}


def test_the_wheel_holds_every_tracked_module_and_the_examples(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = tracked_modules() - names
    assert not missing, f"not in the wheel: {sorted(missing)}"
    for f in ("core/examples/experiments/digits_cnn.yaml", "core/examples/ablations/head.yaml",
              "core/examples/searches/lr_batch.yaml", "core/template/project/mymodel.py",
              "core/template/project/dot-gitignore"):
        assert f in names


def test_init_and_run_from_a_folder_outside_the_repository(venv, tmp_path):
    """Must hold 1 and 2 of issue 28: the installed `ablab`, a project of the user's own
    model varied over its own option and over its own training loop, through spawned
    workers, to a report, writing only inside the project folder."""
    ablab = str(venv / "bin" / "ablab")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ABLAB_", "MLFLOW_"))} | {"TF_CPP_MIN_LOG_LEVEL": "3"}
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import core.cli, core; "
                            "print(core.__file__)"], capture_output=True, text=True, env=env,
                           cwd=tmp_path, check=True).stdout.strip()
    assert where.startswith(str(venv)), where  # the wheel's copy, not the checkout
    before = site_files(venv)

    def cli(*args, cwd):
        r = subprocess.run([ablab, *args], capture_output=True, text=True, env=env, cwd=cwd,
                           timeout=900)
        assert r.returncode == 0, f"ablab {' '.join(args)}:\n{r.stdout}\n{r.stderr}"
        return r.stdout

    cli("init", "proj", cwd=tmp_path)
    proj = tmp_path / "proj"
    sub = proj / "ablations"  # a subfolder: the project is found upward, as git finds a repo
    out = cli("run", "width", "--smoke", "--seeds", "2", "--workers", "2", cwd=sub)
    assert "model.options.width=16" in out and "verdict" in out
    out = cli("run", "fit", "--smoke", "--seeds", "2", "--workers", "2", cwd=proj)
    assert "train.fit=mymodel:clipped_fit" in out and "verdict" in out
    import pandas as pd

    for study, comparisons in (("width", 2), ("fit", 1)):
        assert (proj / "reports" / study / "index.html").is_file()
        table = pd.read_csv(proj / "reports" / study / "comparisons.csv")
        assert len(table) == comparisons and table["verdict"].notna().all()
    assert (proj / "mlruns" / "mlflow.db").is_file()
    assert list((proj / "mlruns" / "logs").iterdir())  # the spawned workers' logs
    assert site_files(venv) == before, "ablab wrote under site-packages"
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "reports").exists()

    from mlflow import MlflowClient

    c = MlflowClient(f"sqlite:///{proj / 'mlruns' / 'mlflow.db'}")
    exp = c.get_experiment_by_name("fit")
    runs = c.search_runs([exp.experiment_id], "tags.`ablab.role` = 'trial'")
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    own = [r for r in runs if "train.fit" in r.data.tags.get("ablab.code.train.fit", "")
           or r.data.params.get("train.fit") == "mymodel:clipped_fit"]
    assert len(own) == 2
    assert all(r.data.tags["ablab.code.train.fit"].startswith("mymodel:clipped_fit@")
               for r in own)


def test_the_container_installs_the_wheel_and_its_worker_starts(venv, tmp_path):
    """The Containerfile installs what this test installs (the wheel, at the constraints'
    versions) and checks `ablab worker --help` at build time; no container engine runs here,
    so the same check runs against the same wheel in the virtualenv."""
    steps = (ROOT / "Containerfile").read_text()
    assert "pip wheel --no-deps -w /dist ." in steps
    assert 'pip install -c /tmp/constraints.txt "$(ls /dist/ablab-*.whl)[gpu,postgres]"' in steps
    assert "ablab worker --help" in steps
    r = subprocess.run([str(venv / "bin" / "ablab"), "worker", "--help"], capture_output=True,
                       text=True, cwd=tmp_path)
    assert r.returncode == 0 and "Serve one study's queue" in r.stdout, r.stderr
