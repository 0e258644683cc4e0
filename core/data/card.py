"""A data card: what a study trains and tests on, as the model sees it. Images per class and
split (a table and a bar plot), the images' sizes before resizing, a grid of examples per class,
a grid of augmented views of the same images for each augmentation policy, and what was left
out (files that are not images, unreadable images) or leaks (duplicates across splits).
`ablab data EXPERIMENT` prints and writes it; a study's report has it as its "Data" section."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.data._base import Dataset
from core.paths import cache_dir
from core.schema import AugmentConfig, DataConfig

SPLITS = ("train", "validation", "test")
EXAMPLES = 8  # per class in the examples grid
VIEWS = 6  # augmented views per image (the first column is the image itself)
VERSION = "1"  # part of a kept card's key: a card drawn differently is drawn again


@dataclass
class DataCard:
    name: str
    digest: str  # identifies the data: its config (and a folder's files) and split seed
    counts: pd.DataFrame  # one row per class, a column per split, and the total
    sizes: dict[str, int]  # "W x H" before resizing -> images (a sample of a folder's files)
    image_size: int
    skipped: list[str] = field(default_factory=list)  # not images by their name
    unreadable: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # leakage, described

    def lines(self) -> list[str]:
        """What to say about it in prose, for the console, markdown and HTML alike."""
        sizes = ", ".join(f"{k} ({v})" for k, v in list(self.sizes.items())[:6]) or "-"
        out = [f"{self.name}: {int(self.counts['total'].sum())} images in "
               f"{len(self.counts)} classes, resized to {self.image_size} x "
               f"{self.image_size}; sizes before resizing: {sizes}"]
        if self.skipped:
            out.append(f"{len(self.skipped)} file(s) skipped, not images by their name: "
                       + ", ".join(self.skipped[:10]))
        if self.unreadable:
            out.append(f"{len(self.unreadable)} unreadable image(s) left out: "
                       + ", ".join(self.unreadable[:10]))
        out.append(f"{len(self.duplicates)} duplicate(s) across splits"
                   + (": " + "; ".join(self.duplicates[:10]) if self.duplicates else
                      " (exact or near): none found"))
        return out


def name_of(cfg: DataConfig) -> str:
    return Path(cfg.path).name if cfg.source == "folder" and cfg.path else cfg.source


def digest_of(cfg: DataConfig, extra: str = "") -> str:
    blob = cfg.model_dump_json() + extra
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def data_digest(cfg: DataConfig, key: str, split: int) -> str:
    """The one digest of a data set, on its card and on every run's MLflow dataset input: its
    config, its files (a folder's key: names, sizes, mtimes, image settings; not where it is
    cached, which differs per machine) and its split seed."""
    return digest_of(cfg, f"{key}#{split}")


def counts(ds: Dataset) -> pd.DataFrame:
    ys = {"train": ds.y_train, "validation": ds.y_val, "test": ds.y_test}
    table = pd.DataFrame({s: np.bincount(np.asarray(y, int), minlength=ds.n_classes)
                          for s, y in ys.items()}, index=pd.Index(ds.class_names, name="class"))
    table["total"] = table.sum(axis=1)
    return table


def native_sizes(cfg: DataConfig, files: list[Path], total: int,
                 sample: int = 2000) -> dict[str, int]:
    """Sizes before resizing: a folder's files (their headers, up to `sample` of them), or
    what a built-in source ships."""
    if cfg.source == "folder":
        from PIL import Image

        seen: Counter[str] = Counter()
        step = max(1, len(files) // sample)
        for f in files[::step]:
            try:
                with Image.open(f) as im:
                    seen[f"{im.size[0]} x {im.size[1]}"] += 1
            except OSError:
                continue
        return dict(seen.most_common())
    shipped = {"digits": "8 x 8", "keras:mnist": "28 x 28", "keras:fashion_mnist": "28 x 28",
               "keras:cifar10": "32 x 32"}
    return {shipped.get(cfg.source, f"{cfg.image_size} x {cfg.image_size} (generated)"): total}


def build(cfg: DataConfig, console: Any = None) -> tuple[DataCard, Dataset]:
    """Load the data as a trial would (after the source's checks) and describe it."""
    from core.data import check, load_dataset

    cache = check(cfg, console)
    ds = load_dataset(cfg)
    skipped: list[str] = []
    unreadable: list[str] = []
    dups: list[str] = []
    files: list[Path] = []
    extra = ""
    index = getattr(cache, "index", None)
    if index is not None:  # a folder: its files, what was left out, what leaks
        from core.data import _folder, leakage

        files = [f for items in index.files.values() for f, _ in items]
        skipped = [str(p.relative_to(index.root)) for p in index.skipped]
        unreadable = list(cache.bad)
        names = _folder.names_of(index)
        dups = [leakage.Duplicate(**d).describe(names) for d in _folder.duplicates(cache)]
        extra = cache.key
    else:  # a built-in source: its arrays, by index
        from core.data import leakage

        dups = [d.describe() for d in leakage.find(
            {"train": ds.x_train, "validation": ds.x_val, "test": ds.x_test})]
    table = counts(ds)
    from core.data import split_seed

    card = DataCard(name_of(cfg), data_digest(cfg, extra, split_seed(cfg, 0)), table,
                    native_sizes(cfg, files, int(table["total"].sum())), cfg.image_size,
                    skipped, unreadable, dups)
    return card, ds


# ----------------------------------------------------------------------------- figures



def _show(ax, img: np.ndarray) -> None:
    img = np.clip(np.asarray(img, np.float32), 0, 1)
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_counts(card: DataCard, path: Path) -> Path:
    from core.plots import plt, save

    table = card.counts[[s for s in SPLITS if s in card.counts]]
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(table) + 3), 3.6))
    table.plot.bar(ax=ax, width=0.8)
    ax.set_ylabel("images")
    ax.set_title(f"{card.name}: images per class and split")
    ax.grid(axis="y", alpha=0.3)
    return save(fig, path)


def samples(ds: Dataset, per_class: int) -> list[list[np.ndarray]]:
    """The first `per_class` training images of each class (the same ones everywhere)."""
    y = np.asarray(ds.y_train, int)
    out = []
    for c in range(ds.n_classes):
        idx = np.flatnonzero(y == c)[:per_class]
        out.append([np.asarray(ds.x_train[int(i):int(i) + 1], np.float32)[0] for i in idx])
    return out


def plot_examples(ds: Dataset, path: Path, per_class: int = EXAMPLES) -> Path:
    from core.plots import plt, save

    rows = samples(ds, per_class)
    fig, axes = plt.subplots(len(rows), per_class, squeeze=False,
                             figsize=(1.1 * per_class + 1.5, 1.1 * len(rows) + 0.6))
    for r, (name, imgs) in enumerate(zip(ds.class_names, rows, strict=True)):
        for k in range(per_class):
            ax = axes[r][k]
            if k < len(imgs):
                _show(ax, imgs[k])
            else:
                ax.axis("off")
        axes[r][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(f"examples per class, as the model sees them ({ds.input_shape[0]} px)",
                 fontsize=10)
    return save(fig, path)


def plot_augmented(ds: Dataset, aug: AugmentConfig, path: Path, views: int = VIEWS,
                   seed: int = 0) -> Path:
    """One image per class (up to 8 classes), then `views - 1` views through the policy's
    Keras preprocessing layers, as training applies them."""
    import keras

    from core.augment import layers as policy_layers
    from core.plots import plt, save

    layers = policy_layers(aug, seed=seed)
    rows = [imgs[0] for imgs in samples(ds, 1) if imgs][:8]
    fig, axes = plt.subplots(len(rows), views, squeeze=False,
                             figsize=(1.1 * views + 1, 1.1 * len(rows) + 0.6))
    pipe = keras.Sequential(layers) if layers else None
    for r, img in enumerate(rows):
        batch = np.repeat(img[None], views - 1, axis=0)
        seen = np.asarray(pipe(batch, training=True)) if pipe is not None else batch
        for k, view in enumerate([img, *seen]):
            _show(axes[r][k], view)
    axes[0][0].set_title("image", fontsize=8)
    fig.suptitle(f"augment.strength={aug.strength}: {views - 1} training views", fontsize=10)
    return save(fig, path)


def write(card: DataCard, ds: Dataset, out: Path,
          policies: dict[str, AugmentConfig]) -> list[Path]:
    """The card's files in `out`: class_counts.csv, data.json and its plots."""
    out.mkdir(parents=True, exist_ok=True)
    card.counts.to_csv(out / "class_counts.csv")
    (out / "data.json").write_text(json.dumps({
        "name": card.name, "digest": card.digest, "image_size": card.image_size,
        "sizes": card.sizes, "not_images": card.skipped, "unreadable": card.unreadable,
        "duplicates": card.duplicates,
        "counts": card.counts.reset_index().to_dict("records")}, indent=2, default=int))
    plots = [plot_counts(card, out / "class_counts.png"),
             plot_examples(ds, out / "examples.png")]
    for name, aug in policies.items():
        if aug.strength != "none":
            plots.append(plot_augmented(ds, aug, out / f"augment_{name}.png"))
    return plots


def load(folder: Path) -> DataCard:
    """A card written by `write`, read back."""
    d = json.loads((folder / "data.json").read_text())
    counts = pd.DataFrame(d["counts"]).set_index("class")
    return DataCard(d["name"], d["digest"], counts, d["sizes"], d["image_size"],
                    d["not_images"], d["unreadable"], d["duplicates"])


def cached(cfg: DataConfig, policies: dict[str, AugmentConfig], out: Path,
           console: Any = None) -> tuple[DataCard, list[Path]]:
    """The card of this data and these policies in `out`: made once per machine (it loads
    the data and draws every policy's views, seconds with TensorFlow) and copied from
    $ABLAB_CACHE/cards afterwards, as every report of a study and its reruns need it."""
    import shutil

    from core.data import check

    cache = check(cfg, console)
    blob = json.dumps({k: v.model_dump(mode="json") for k, v in sorted(policies.items())})
    key = digest_of(cfg, VERSION + getattr(cache, "key", "") + blob)
    home = cache_dir() / "cards"
    kept = home / key
    if not (kept / "data.json").exists():
        card, ds = build(cfg, console)
        tmp = home / f"{key}.{os.getpid()}.tmp"
        write(card, ds, tmp, policies)
        if tmp.exists() and not kept.exists():
            tmp.rename(kept)
        shutil.rmtree(tmp, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    for f in kept.iterdir():
        shutil.copy(f, out / f.name)
    plots = [out / "class_counts.png", out / "examples.png"] + [
        out / f"augment_{n}.png" for n, a in policies.items() if a.strength != "none"]
    return load(out), plots
