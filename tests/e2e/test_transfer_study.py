"""bn_trainable then finetune_policy on one store: the shared source is pretrained once."""

import pytest
from mlflow import MlflowClient

from tests.conftest import run_cli

pytestmark = pytest.mark.e2e


def test_two_studies_share_one_pretraining(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = ["--smoke", "--seeds", "1", "--tracking-uri", uri, "--storage",
              str(tmp_path / "q.journal")]
    env = {"ABLAB_MLRUNS": str(tmp_path)}
    first = run_cli("run", "bn_trainable", *common, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "pretraining digits_0_4_pretrain once" in first.stdout
    second = run_cli("run", "finetune_policy", *common, env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "pretraining" not in second.stdout
    c = MlflowClient(uri)
    pre = c.get_experiment_by_name("ablab-pretrain")
    runs = c.search_runs([pre.experiment_id], "tags.`ablab.role` = 'pretrain'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    model_uri = runs[0].data.tags["ablab.model_uri"]
    for study, n in (("bn_trainable", 2), ("finetune_policy", 3)):
        exp = c.get_experiment_by_name(study)
        trials = c.search_runs([exp.experiment_id], "tags.`ablab.role` = 'trial'")
        assert len(trials) == n
        assert {t.data.tags["ablab.pretrained_from"] for t in trials} == {model_uri}
    # the report compares the two bn_trainable variants
    out = tmp_path / "report"
    rep = run_cli("report", "bn_trainable", "--tracking-uri", uri, "--out", str(out), env=env)
    assert rep.returncode == 0, rep.stderr
    assert "bn_trainable=true" in (out / "comparisons.csv").read_text()
