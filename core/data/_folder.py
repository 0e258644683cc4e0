"""A person's own images: `train/ validation/ test/` with a folder per class, or one folder per
class that ablab splits (stratified, seeded)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from core.data._base import Pool, register, resize
from core.errors import ConfigError
from core.schema import DataConfig

SPLIT_DIRS = ("train", "validation", "test")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read(paths: list[Path], cfg: DataConfig) -> tuple[list[np.ndarray], list[Path]]:
    from PIL import Image, UnidentifiedImageError

    images, bad = [], []
    for p in paths:
        try:
            with Image.open(p) as im:
                im.load()
                arr = np.asarray(im.convert("RGB" if cfg.channels == 3 else "L"), "float32")
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            bad.append(p)
            continue
        images.append(resize(arr[None] / 255.0, cfg.image_size, cfg.channels)[0])
    return images, bad


def _load_tree(root: Path, names: list[str], cfg: DataConfig, bad: list[Path]):
    xs, ys = [], []
    for label, name in enumerate(names):
        d = root / name
        files = sorted(f for f in d.rglob("*") if f.is_file()) if d.is_dir() else []
        imgs, b = _read(files, cfg)
        bad.extend(b)
        xs.extend(imgs)
        ys.extend([label] * len(imgs))
    if not xs:
        raise ConfigError(f"data.path: no readable images under {root}")
    return np.stack(xs), np.array(ys, "int32")


@register("folder")
def load(cfg: DataConfig) -> Pool:
    root = Path(cfg.path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"data.path: {root} is not a folder")
    bad: list[Path] = []
    if (root / "train").is_dir():
        names = [d.name for d in _class_dirs(root / "train")]
        missing = [s for s in ("test",) if not (root / s).is_dir()]
        if missing:
            raise ConfigError(f"data.path: {root} has train/ but no {missing[0]}/ folder")
        splits = {s: _load_tree(root / s, names, cfg, bad) for s in SPLIT_DIRS
                  if (root / s).is_dir()}
        pool = Pool(class_names=names, splits=splits)
    else:
        names = [d.name for d in _class_dirs(root)]
        if len(names) < 2:
            raise ConfigError(f"data.path: {root} needs one folder per class (found {names})")
        x, y = _load_tree(root, names, cfg, bad)
        pool = Pool(x, y, names)
    if bad:
        listing = ", ".join(str(p) for p in bad[:10]) + (" ..." if len(bad) > 10 else "")
        if cfg.on_corrupt == "error":
            raise ConfigError(
                f"data.path: {len(bad)} file(s) are not readable images: {listing}. "
                "Remove them or set data.on_corrupt=skip.")
        warnings.warn(f"skipped {len(bad)} unreadable file(s): {listing}", stacklevel=2)
    return pool
