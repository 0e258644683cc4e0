import pytest

from core.config import load_experiment, parse_sets
from core.errors import ConfigError
from core.schema import Experiment
from core.trial import trial_hash
from tests.conftest import run_cli, tiny


def test_shipped_experiments_load():
    for name in ("digits_cnn", "synthetic_cnn"):
        exp = load_experiment(name)
        assert exp.name == name
        assert isinstance(exp, Experiment)
    assert load_experiment("digits_cnn").data.image_size == 16


def test_base_inheritance_chain(tmp_path):
    (tmp_path / "parent.yaml").write_text("base: digits_cnn\ntrain:\n  epochs: 3\n")
    (tmp_path / "child.yaml").write_text("base: parent\nmodel:\n  head: gap_dense\n")
    exp = load_experiment(tmp_path / "child.yaml")
    assert exp.name == "child"
    assert exp.train.epochs == 3  # from parent
    assert exp.model.head == "gap_dense"  # own
    assert exp.data.image_size == 16  # from digits_cnn
    assert exp.train.lr == load_experiment("digits_cnn").train.lr


def test_circular_base_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b\n")
    (tmp_path / "b.yaml").write_text("base: a\n")
    with pytest.raises(ConfigError, match="circular"):
        load_experiment(tmp_path / "a.yaml")


def test_set_overrides_are_typed_and_accept_aliases():
    exp = load_experiment("digits_cnn", ["train.lr=3e-4", "model.batchnorm=false",
                                         "head=flatten_dense", "batch_size=64"])
    assert exp.train.lr == pytest.approx(3e-4) and isinstance(exp.train.lr, float)
    assert exp.model.batchnorm is False
    assert exp.model.head == "flatten_dense"
    assert exp.train.batch_size == 64
    assert parse_sets(["augment.ops.rotation=0.1"]) == {"augment": {"ops": {"rotation": 0.1}}}


@pytest.mark.parametrize(("sets", "expected"), [
    (["train.lr_rate=0.1"], "did you mean train.lr?"),
    (["trian.lr=0.1"], "did you mean train"),
    (["model.hed=gap"], "did you mean model.head?"),
    (["train.lr=-1"], "train.lr"),
    (["model.head=gapp"], "model.head"),
    (["train.batch_size=0"], "train.batch_size"),
    (["data.source=digitz"], "did you mean digits?"),
])
def test_bad_fields_name_the_field(sets, expected):
    with pytest.raises(ConfigError) as err:
        load_experiment("digits_cnn", sets)
    assert expected in str(err.value)


def test_unknown_experiment_suggests_closest():
    with pytest.raises(ConfigError, match="digits_cnn"):
        load_experiment("digits_cn")


def test_malformed_set():
    with pytest.raises(ConfigError, match="key=value"):
        parse_sets(["train.lr"])


def test_trial_hash_identity():
    a = tiny()
    assert trial_hash(a, 0) == trial_hash(tiny(), 0)
    assert trial_hash(a, 0) != trial_hash(a, 1)
    assert trial_hash(a, 0) != trial_hash(tiny(train={"lr": 0.02}), 0)
    # names and descriptions do not change results, so they do not change identity
    assert trial_hash(a, 0) == trial_hash(tiny(name="renamed", description="x"), 0)


@pytest.mark.parametrize("bad", ["train.lr_rate=0.1", "train.lr=-1"])
def test_cli_config_error_exits_2_and_writes_nothing(tmp_path, bad):
    db = tmp_path / "store" / "mlflow.db"
    proc = run_cli("train", "digits_cnn", "--set", bad, "--tracking-uri", f"sqlite:///{db}")
    assert proc.returncode == 2, proc.stderr
    assert "train.lr" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not db.exists()  # no MLflow store, so certainly no run


def test_trial_hash_follows_the_pretraining_source(tmp_path):
    from core.pretrain import source

    src = tmp_path / "source.yaml"
    src.write_text("base: digits_cnn\ntrain: {epochs: 3}\n")
    target = tiny(model={"weights": f"pretrain:{src}"})
    before = trial_hash(target, 0, source(str(src)).hash)
    src.write_text("base: digits_cnn\ntrain: {epochs: 4}\n")
    assert trial_hash(target, 0, source(str(src)).hash) != before
    with pytest.raises(ValueError, match="source's hash"):
        trial_hash(target, 0)


def test_set_of_an_axis_that_cannot_act_exits_2_naming_what_it_needs():
    proc = run_cli("train", "digits_cnn", "--set", "rotation=0.3")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = " ".join(proc.stderr.split())
    assert "augment.ops.rotation=0.3 has no effect" in err
    assert "augment.strength=custom" in err and "augment.strength=none" in err
    assert "Traceback" not in proc.stderr
