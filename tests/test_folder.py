"""A folder of one's own images: its shape checked before any run, decoded once into a cache
every process reuses, streamed from disk when large."""

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from core.data import _folder as folder
from core.data import load_dataset, to_tf
from core.data._rows import Rows
from core.errors import ConfigError
from core.schema import DataConfig
from tests.conftest import run_cli

DIGITS = load_digits()


def make_folder(root, splits=("train", "validation", "test"), classes=(0, 1, 2), per_class=8,
                size=24):
    """JPEGs of digits, a folder per class (inside train/ validation/ test/ when given); each
    split has its own images (no leakage)."""
    for k, s in enumerate(splits or [""]):
        for c in classes:
            d = root / s / str(c)
            d.mkdir(parents=True, exist_ok=True)
            mine = np.flatnonzero(DIGITS.target == c)[k * per_class:(k + 1) * per_class]
            for i, idx in enumerate(mine):
                img = (DIGITS.images[idx] / 16 * 255).astype("uint8")
                Image.fromarray(img).resize((size, size)).convert("RGB").save(d / f"{i}.jpg")
    return root


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ABLAB_CACHE", str(tmp_path / "cache"))


def cfg(root, **kw) -> DataConfig:
    return DataConfig(source="folder", path=str(root), image_size=8, **kw)


@pytest.mark.parametrize(("build", "message"), [
    (lambda r: None, "does not exist"),
    (lambda r: r.mkdir(), "is empty"),
    (lambda r: make_folder(r, splits=None, classes=(0,)), "needs at least two classes"),
    (lambda r: make_folder(r, classes=(0,)), "needs at least two classes"),
    (lambda r: make_folder(r, splits=("train",)), "has train/ but no test/ folder"),
    (lambda r: (make_folder(r), [f.unlink() for f in (r / "test" / "2").iterdir()]),
     "class '2' has no images in"),
])
def test_a_bad_folder_is_a_config_error_naming_it(tmp_path, build, message):
    root = tmp_path / "photos"
    build(root)
    with pytest.raises(ConfigError, match=message) as err:
        folder.scan(cfg(root))
    assert str(root) in str(err.value)


def test_files_that_are_not_images_are_skipped_and_counted(tmp_path):
    root = make_folder(tmp_path / "photos")
    (root / "train" / "0" / "Thumbs.db").write_bytes(b"\0" * 64)
    (root / "test" / "1" / "notes.txt").write_text("hi")
    index = folder.scan(cfg(root))
    assert sorted(p.name for p in index.skipped) == ["Thumbs.db", "notes.txt"]
    assert index.n_images == 3 * 3 * 8


def test_a_truncated_jpeg_is_named_or_skipped(tmp_path):
    root = make_folder(tmp_path / "photos")
    broken = root / "train" / "1" / "broken.jpg"
    broken.write_bytes((root / "train" / "1" / "0.jpg").read_bytes()[:200])  # truncated
    with pytest.raises(ConfigError, match="broken.jpg") as err:
        folder.check(cfg(root))
    assert "on_corrupt=skip" in str(err.value) and "1 image(s)" in str(err.value)
    from rich.console import Console

    console = Console(record=True, width=200)
    folder.check(cfg(root, on_corrupt="skip"), console)
    said = console.export_text()
    assert said.count("\n") == 1 and said.startswith("warning: data.path: skipped 1 ")
    assert "broken.jpg" in said  # one line, in ablab's words (no Python warning)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_dataset(cfg(root, on_corrupt="skip"))
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 3 * 3 * 8


def test_the_cache_is_built_once_and_rebuilt_when_the_folder_changes(tmp_path):
    root = make_folder(tmp_path / "photos")
    first = folder.check(cfg(root))
    again = folder.check(cfg(root))
    assert first.built and not again.built and first.folder == again.folder
    assert folder.check(cfg(root).model_copy(update={"image_size": 12})).built  # new settings
    extra = root / "train" / "0" / "extra.jpg"
    extra.write_bytes((root / "train" / "0" / "0.jpg").read_bytes())
    assert folder.check(cfg(root)).built  # new content


def test_cached_images_equal_a_direct_decode(tmp_path):
    root = make_folder(tmp_path / "photos", splits=None)
    ds = load_dataset(cfg(root))
    assert ds.pipeline == "memory" and ds.x_train.dtype == np.float32
    assert ds.x_train.shape[1:] == (8, 8, 3) and 0 <= ds.x_train.min() <= ds.x_train.max() <= 1
    cache = folder.check(cfg(root))
    x, y, ok = cache.arrays("all")
    files = folder.scan(cfg(root)).files["all"]
    for i in (0, 7, 20):
        np.testing.assert_array_equal(x[i], folder._decode(files[i][0], 8, 3))
        assert y[i] == files[i][1]
    assert ok.all()


def test_rows_read_what_they_select():
    base = np.random.default_rng(0).integers(0, 256, (20, 4, 4, 3), dtype=np.uint8)
    rows = Rows(base).take(np.array([5, 2, 9, 2]))
    np.testing.assert_allclose(rows[:], base[[5, 2, 9, 2]] / 255, rtol=1e-6)
    np.testing.assert_allclose(rows[1], base[2] / 255, rtol=1e-6)
    assert rows.shape == (4, 4, 4, 3) and rows.float_bytes() == 4 * 48 * 4
    np.testing.assert_allclose(rows.take([3, 0]).materialize(), base[[2, 5]] / 255, rtol=1e-6)


def test_a_large_folder_streams_with_labels_aligned(tmp_path, monkeypatch):
    import core.data as data

    root = make_folder(tmp_path / "photos", splits=None, per_class=20)
    monkeypatch.setattr(data, "STREAM_ABOVE_MB", 0)  # every folder counts as large
    ds = load_dataset(cfg(root))
    assert ds.pipeline == "stream" and isinstance(ds.x_train, Rows)
    batches = list(to_tf(ds.x_train, ds.y_train, 3, 16, seed=1, shuffle=True))
    assert sum(len(b[1]) for b in batches) == len(ds.y_train)
    lookup = {ds.x_train[i].tobytes(): ds.y_train[i] for i in range(len(ds.y_train))}
    for xb, yb in batches:  # every image arrives with its own label
        for img, onehot in zip(xb.numpy(), yb.numpy(), strict=True):
            assert lookup[img.tobytes()] == onehot.argmax()
    again = [b[1].numpy() for b in to_tf(ds.x_train, ds.y_train, 3, 16, seed=1, shuffle=True)]
    assert all(np.array_equal(a, b[1].numpy()) for a, b in zip(again, batches, strict=True))


BAD_FOLDERS = {
    "missing": (lambda r: None, "does not exist"),
    "empty": (lambda r: r.mkdir(), "is empty"),
    "one class": (lambda r: make_folder(r, splits=None, classes=(0,)), "at least two classes"),
    "one class, split": (lambda r: make_folder(r, classes=(0,)), "at least two classes"),
    "no test/": (lambda r: make_folder(r, splits=("train", "validation")), "no test/ folder"),
    "empty class": (lambda r: (make_folder(r), [f.unlink() for f in (r / "test" / "1").iterdir()]),
                    "class '1' has no images"),
    "truncated": (lambda r: (make_folder(r), (r / "test" / "0" / "cut.jpg").write_bytes(
        (r / "test" / "0" / "0.jpg").read_bytes()[:150])), "cut.jpg"),
}


@pytest.mark.parametrize("case", list(BAD_FOLDERS))
def test_ablab_train_on_a_bad_folder_exits_2_before_any_run(tmp_path, case):
    build, message = BAD_FOLDERS[case]
    root = tmp_path / "photos"
    build(root)
    db = tmp_path / "store" / "mlflow.db"
    proc = run_cli("train", "digits_cnn", "--set", "data.source=folder", "--set",
                   f"data.path={root}", "--tracking-uri", f"sqlite:///{db}",
                   env={"ABLAB_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = " ".join(proc.stderr.split())
    assert err.startswith("error:") and message in err and str(root) in err
    assert "Traceback" not in proc.stderr + proc.stdout
    from mlflow import MlflowClient

    runs = MlflowClient(f"sqlite:///{db}").search_runs(
        [e.experiment_id for e in MlflowClient(f"sqlite:///{db}").search_experiments()])
    assert runs == []  # no MLflow run was created


def test_a_test_image_copied_into_train_is_named(tmp_path):
    """Leakage: the same picture in train/ and test/ is found (exactly, or re-encoded), named
    in one warning line, and kept beside the cache so it is found once."""
    from rich.console import Console

    root = make_folder(tmp_path / "photos")
    clean = Console(record=True, width=300)
    folder.check(cfg(root), clean)
    assert "stand in train" not in clean.export_text()  # 72 distinct digits: nothing found
    (root / "train" / "1" / "copied.jpg").write_bytes((root / "test" / "1" / "3.jpg").read_bytes())
    Image.open(root / "test" / "2" / "5.jpg").save(root / "train" / "2" / "again.jpg",
                                                    quality=85)  # re-encoded
    console = Console(record=True, width=300)
    cache = folder.check(cfg(root), console)
    said = [line for line in console.export_text().splitlines() if "stand in train" in line]
    assert len(said) == 1 and said[0].startswith("warning: data.path: 2 image(s)")
    assert "test/1/3.jpg = train/1/copied.jpg (exact)" in said[0]
    assert "test/2/5.jpg = train/2/again.jpg" in said[0]
    assert (cache.folder / "duplicates.json").exists()


def test_leakage_finds_planted_copies_and_no_lookalikes():
    from core.config import load_experiment
    from core.data import leakage

    d = load_dataset(load_experiment("digits_cnn").data)
    assert leakage.find({"train": d.x_train, "validation": d.x_val, "test": d.x_test}) == []
    x_test = d.x_test.copy()
    x_test[5] = d.x_train[17]
    x_test[6] = np.clip(d.x_train[40] + np.random.default_rng(0).normal(0, 0.005,
                                                                       d.x_train[40].shape), 0, 1)
    found = {(x.index, x.train_index, x.kind) for x in leakage.find({"train": d.x_train,
                                                                    "test": x_test})}
    assert found == {(5, 17, "exact"), (6, 40, "near")}


def test_ablab_train_and_the_data_card_name_a_leaked_test_image(tmp_path):
    root = make_folder(tmp_path / "photos")
    (root / "train" / "2" / "copied.jpg").write_bytes((root / "test" / "2" / "4.jpg").read_bytes())
    env = {"ABLAB_CACHE": str(tmp_path / "cache"), "COLUMNS": "100"}
    sets = ["--set", "data.source=folder", "--set", f"data.path={root}", "--set",
            "data.image_size=8", "--set", "train.epochs=1"]
    proc = run_cli("train", "digits_cnn", *sets, "--tracking-uri",
                   f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = " ".join(proc.stdout.split())
    assert "warning: data.path: 1 image(s) also stand in train" in out
    assert "test/2/4.jpg = train/2/copied.jpg (exact)" in out
    proc = run_cli("data", "digits_cnn", *sets, "--out", str(tmp_path / "card"), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    card = (tmp_path / "card" / "data.html").read_text()
    assert "1 duplicate(s) across splits" in card and "train/2/copied.jpg" in card
    assert "images per class and split" in " ".join(proc.stdout.split())
    for png in ("class_counts.png", "examples.png", "augment_moderate.png",
                "augment_extreme.png"):
        assert (tmp_path / "card" / png).exists(), png


def test_the_card_and_every_run_name_a_folder_by_one_digest(tmp_path, tracking_uri):
    """Issue 30: the data card said a3476dfe and the run's MLflow dataset input e53a2c11 for
    one folder. Both now come from core.data.card.data_digest, which leaves out where the
    decoded cache lives (it differs per machine)."""
    from mlflow import MlflowClient

    from core.data.card import build
    from core.runner import run_trial
    from core.trial import Trial
    from tests.conftest import tiny

    make_folder(tmp_path / "imgs")
    exp = tiny(data={"source": "folder", "path": str(tmp_path / "imgs"), "max_samples": None},
               train={"epochs": 1})
    card, _ = build(exp.data)
    c = MlflowClient(tracking_uri)
    res = run_trial(Trial.new(exp, 0, "digest"), c=c)
    inputs = c.get_run(res.run_id).inputs.dataset_inputs
    assert [i.dataset.digest for i in inputs] == [card.digest]
