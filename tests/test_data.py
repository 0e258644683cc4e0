import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from core.data import SOURCES, cache_key, load_dataset, to_tf
from core.data._synthetic import make_images
from core.errors import ConfigError
from core.schema import DataConfig


def _sizes(ds):
    return len(ds.y_train), len(ds.y_val), len(ds.y_test)


def test_digits_shapes_and_split():
    cfg = DataConfig(source="digits", image_size=12, channels=3)
    ds = load_dataset(cfg)
    assert ds.x_train.shape[1:] == (12, 12, 3)
    assert ds.x_train.dtype == np.float32
    assert ds.x_train.min() >= 0.0 and ds.x_train.max() <= 1.0
    assert ds.n_classes == 10
    assert sum(_sizes(ds)) == 1797
    assert abs(len(ds.y_test) / 1797 - cfg.test_fraction) < 0.01
    # stratified: every class in every split
    for y in (ds.y_train, ds.y_val, ds.y_test):
        assert set(np.unique(y)) == set(range(10))


def test_split_is_fixed_across_seeds_unless_asked():
    cfg = DataConfig(source="digits", image_size=8)
    a, b = load_dataset(cfg, seed=0), load_dataset(cfg, seed=5)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert cache_key(cfg, 0) == cache_key(cfg, 5)
    vary = DataConfig(source="digits", image_size=8, vary_split_with_seed=True)
    c, d = load_dataset(vary, seed=0), load_dataset(vary, seed=5)
    assert not np.array_equal(c.y_test, d.y_test)
    assert cache_key(vary, 0) != cache_key(vary, 5)


def test_train_fraction_and_classes():
    full = load_dataset(DataConfig(source="digits", image_size=8))
    half = load_dataset(DataConfig(source="digits", image_size=8, train_fraction=0.5))
    assert abs(len(half.y_train) - len(full.y_train) / 2) <= 1
    np.testing.assert_array_equal(half.y_test, full.y_test)
    sub = load_dataset(DataConfig(source="digits", image_size=8, classes=[5, 6, 7, 8, 9]))
    assert sub.class_names == ["5", "6", "7", "8", "9"]
    assert set(np.unique(sub.y_train)) == set(range(5))


def test_synthetic_is_seeded_and_imbalanced():
    x1, y1 = make_images(200, 16, 0.25, seed=3)
    x2, y2 = make_images(200, 16, 0.25, seed=3)
    np.testing.assert_array_equal(x1, x2)
    assert 0.15 < y1.mean() < 0.35
    ds = load_dataset(DataConfig(source="synthetic", image_size=16, n_samples=300,
                                 defect_rate=0.3))
    assert ds.class_names == ["no_defect", "defect"]
    assert ds.x_train.shape[1:] == (16, 16, 3)
    assert x1.shape == (200, 16, 16)
    # defects are visible: a blob or scratch (+-0.45) stands out of the texture (+-0.15)
    deviation = np.abs(x1 - np.median(x1, axis=(1, 2), keepdims=True)).max(axis=(1, 2))
    assert deviation[y1 == 1].mean() > deviation[y1 == 0].mean() + 0.1


def _digit_pngs(root, per_class=12, classes=(0, 1, 2)):
    d = load_digits()
    for c in classes:
        (root / str(c)).mkdir(parents=True)
        for i, idx in enumerate(np.where(d.target == c)[0][:per_class]):
            img = (d.images[idx] / 16 * 255).astype("uint8")
            Image.fromarray(img).resize((16, 16)).save(root / str(c) / f"{i}.png")


def test_folder_one_folder_per_class(tmp_path):
    _digit_pngs(tmp_path)
    ds = load_dataset(DataConfig(source="folder", path=str(tmp_path), image_size=8))
    assert ds.class_names == ["0", "1", "2"]
    assert sum(_sizes(ds)) == 36
    assert ds.x_train.shape[1:] == (8, 8, 3)


def test_folder_presplit(tmp_path):
    for split in ("train", "validation", "test"):
        _digit_pngs(tmp_path / split, per_class=4)
    ds = load_dataset(DataConfig(source="folder", path=str(tmp_path), image_size=8))
    assert _sizes(ds) == (12, 12, 12)


def test_every_source_is_registered():
    assert {"digits", "synthetic", "folder", "keras:mnist", "keras:fashion_mnist",
            "keras:cifar10"} <= set(SOURCES)
    with pytest.raises(ConfigError, match="did you mean digits"):
        SOURCES["digitz"]


def test_tf_pipeline_batches_and_seeded_shuffle():
    ds = load_dataset(DataConfig(source="digits", image_size=8, max_samples=200))

    def first_labels(seed):
        batch = next(iter(to_tf(ds.x_train, ds.y_train, 10, 16, seed, shuffle=True)))
        return batch[1].numpy().argmax(1), batch[0].shape

    (a, shape), (b, _), (c, _) = first_labels(1), first_labels(1), first_labels(2)
    assert shape == (16, 8, 8, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
