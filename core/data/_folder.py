"""A person's own images: `train/ validation/ test/` with a folder per class, or one folder per
class that ablab splits (stratified, seeded).

Three steps, each once per machine and folder content:
- `scan`: the files, by name. Everything that can be wrong with the folder's shape is an error
  here, before an MLflow run exists: a path that is missing or empty, fewer than two classes, a
  class without images in a split, a split folder missing. Files that are not images by their
  extension (Thumbs.db, .DS_Store, notes) are skipped and counted.
- the decoded cache: every image decoded once (parallel), resized, stored as uint8 at the
  configured size in a memmap under $ABLAB_CACHE/folders (<project>/mlruns/cache), keyed by the
  file list, sizes and mtimes and the image settings. Every worker and trial on the machine
  reads it; a changed folder gets a new key. Unreadable images are an error listing them, or
  skipped with `data.on_corrupt=skip`.
- loading: `Rows` of the memmap, read on demand, so a folder far larger than memory streams
  through tf.data (see core.data.to_tf); small ones are read into memory.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.data import leakage
from core.data._base import Pool, register
from core.data._rows import RowFile, Rows
from core.errors import ConfigError
from core.paths import cache_dir
from core.schema import DataConfig

SPLIT_DIRS = ("train", "validation", "test")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
DECODED: dict[str, int] = {}  # cache key -> images this process decoded (tests, logs)
_LOCK = threading.Lock()


def cache_root() -> Path:
    return cache_dir() / "folders"


@dataclass
class FolderIndex:
    root: Path
    class_names: list[str]
    files: dict[str, list[tuple[Path, int]]]  # split ("all" when unsplit) -> (file, label)
    skipped: list[Path] = field(default_factory=list)  # not images by their name

    @property
    def n_images(self) -> int:
        return sum(len(v) for v in self.files.values())


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(folder: Path, skipped: list[Path]) -> list[Path]:
    out: list[Path] = []
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        (out if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
         else skipped).append(f)
    return out


def scan(cfg: DataConfig) -> FolderIndex:
    root = Path(cfg.path or "").expanduser()
    if not root.exists():
        raise ConfigError(f"data.path: {root} does not exist; point data.path at a folder "
                          "with one folder per class (or train/ validation/ test/ of them)")
    if not root.is_dir():
        raise ConfigError(f"data.path: {root} is a file, not a folder of images")
    skipped: list[Path] = []
    if (root / "train").is_dir():
        names = [d.name for d in _class_dirs(root / "train")]
        if len(names) < 2:
            raise ConfigError(f"data.path: {root / 'train'} needs at least two classes, one "
                              f"folder each (found {len(names)}: "
                              f"{', '.join(names) or 'loose files only'})")
        if not (root / "test").is_dir():
            raise ConfigError(f"data.path: {root} has train/ but no test/ folder; add "
                              "test/ with a folder per class (validation/ is optional: "
                              "without it ablab takes data.val_fraction of train/)")
        splits = [s for s in SPLIT_DIRS if (root / s).is_dir()]
        files: dict[str, list[tuple[Path, int]]] = {}
        for s in splits:
            extra = sorted({d.name for d in _class_dirs(root / s)} - set(names))
            if extra:
                raise ConfigError(f"data.path: {root / s} has class folders train/ lacks: "
                                  f"{', '.join(extra)}")
            files[s] = []
            for label, name in enumerate(names):
                imgs = _images(root / s / name, skipped) if (root / s / name).is_dir() else []
                if not imgs:
                    raise ConfigError(f"data.path: class {name!r} has no images in "
                                      f"{root / s}; every class needs images in every split")
                files[s] += [(f, label) for f in imgs]
    else:
        names = [d.name for d in _class_dirs(root)]
        files = {"all": []}
        for label, name in enumerate(names):
            imgs = _images(root / name, skipped)
            if not imgs:
                raise ConfigError(f"data.path: class folder {root / name} has no images")
            files["all"] += [(f, label) for f in imgs]
        if not names and not any(p.is_file() for p in root.iterdir()):
            raise ConfigError(f"data.path: {root} is empty; put one folder per class in it")
        if len(names) < 2:
            raise ConfigError(f"data.path: {root} needs at least two classes, one folder each "
                              f"(found {len(names)}: {', '.join(names) or 'loose files only'})")
    return FolderIndex(root, names, files, skipped)


def cache_key(index: FolderIndex, cfg: DataConfig) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([cfg.image_size, cfg.channels, index.class_names]).encode())
    for split in sorted(index.files):
        for f, label in index.files[split]:
            st = f.stat()
            h.update(f"{split}\0{f.relative_to(index.root)}\0{label}\0{st.st_size}\0"
                     f"{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def _decode(path: Path, size: int, channels: int) -> np.ndarray | None:
    """One image as uint8 (size, size, channels), resized with antialiasing; None when it
    cannot be read (truncated, not really an image)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as f:
            f.load()
            im = f.convert("RGB" if channels == 3 else "L")
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
            arr = np.asarray(im, np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None
    return arr if channels == 3 else arr[..., None]


@dataclass
class Cache:
    folder: Path
    key: str
    built: bool  # decoded now (False: read from disk)
    bad: list[str]
    index: FolderIndex | None = None

    def arrays(self, split: str) -> tuple[RowFile, np.ndarray, np.ndarray]:
        """(images read on demand, labels, readable mask) of one split."""
        x = RowFile(self.folder / f"x_{split}.npy")
        return x, np.load(self.folder / f"y_{split}.npy"), np.load(self.folder / f"ok_{split}.npy")


def build_cache(index: FolderIndex, cfg: DataConfig, progress=None) -> Cache:
    """The decoded cache of this folder content and image settings: found, or built once
    (under a file lock, so concurrent workers wait for the first instead of decoding too)."""
    key = cache_key(index, cfg)
    folder = cache_root() / key
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        meta = folder / "meta.json"
        if meta.exists():
            return Cache(folder, key, False, json.loads(meta.read_text())["bad"])
        tmp = folder.with_name(key + ".building")
        tmp.mkdir(exist_ok=True)
        bad: list[str] = []
        shape = (cfg.image_size, cfg.image_size, cfg.channels)
        for split, items in index.files.items():
            path = tmp / f"x_{split}.npy"
            row = int(np.prod(shape))
            with open(path, "wb") as fh:  # header, then rows written in place (not mapped:
                np.lib.format.write_array_header_1_0(  # mapped pages would count as RSS)
                    fh, {"descr": "|u1", "fortran_order": False, "shape": (len(items), *shape)})
                start = fh.tell()
                fh.truncate(start + row * len(items))
            ok = np.zeros(len(items), bool)
            fd = os.open(path, os.O_WRONLY)

            def one(i: int, ok=ok, items=items, fd=fd, start=start, row=row) -> None:
                img = _decode(items[i][0], cfg.image_size, cfg.channels)
                if img is not None:
                    os.pwrite(fd, np.ascontiguousarray(img).tobytes(), start + i * row)
                    ok[i] = True
                if progress:
                    progress()

            try:
                with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
                    list(pool.map(one, range(len(items))))  # PIL decodes outside the GIL
            finally:
                os.close(fd)
            np.save(tmp / f"y_{split}.npy", np.array([lab for _, lab in items], np.int32))
            np.save(tmp / f"ok_{split}.npy", ok)
            bad += [str(items[i][0]) for i in np.flatnonzero(~ok)]
        (tmp / "meta.json").write_text(json.dumps({
            "root": str(index.root), "images": index.n_images, "bad": bad,
            "image_size": cfg.image_size, "channels": cfg.channels}))
        tmp.rename(folder)
        with _LOCK:
            DECODED[key] = DECODED.get(key, 0) + index.n_images
        return Cache(folder, key, True, bad)


def corrupt_error(bad: list[str]) -> ConfigError:
    listing = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
    return ConfigError(f"data.path: {len(bad)} image(s) cannot be read: {listing}. Remove or "
                       "replace them, or set data.on_corrupt=skip to leave them out")


def check(cfg: DataConfig, console=None) -> Cache:
    """Before any run: the folder's shape, then its decoded cache (built once, with a
    progress bar on the console), then its unreadable images."""
    index = scan(cfg)
    say = console.print if console is not None else (lambda *a, **k: None)
    if index.skipped:
        names = ", ".join(p.name for p in index.skipped[:5])
        say(f"data.path: skipped {len(index.skipped)} file(s) that are not images by their "
            f"name ({names}{' ...' if len(index.skipped) > 5 else ''})")
    key = cache_key(index, cfg)
    if (cache_root() / key / "meta.json").exists() or console is None:
        cache = build_cache(index, cfg)
    else:
        from rich.progress import Progress

        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(f"decoding {index.n_images} images of {index.root} (once)",
                                total=index.n_images)
            cache = build_cache(index, cfg, lambda: bar.advance(task))
        say(f"decoded {index.n_images} images into {cache.folder}")
    if cache.bad and cfg.on_corrupt == "error":
        raise corrupt_error(cache.bad)
    cache.index = index
    dups = duplicates(cache)
    if dups:
        say("warning: data.path: " + leakage.summary(
            [leakage.Duplicate(**d) for d in dups], names_of(index)), soft_wrap=True)
    if cache.bad:
        say(f"warning: data.path: skipped {len(cache.bad)} unreadable image(s) "
            f"(data.on_corrupt=skip): {', '.join(cache.bad[:10])}"
            + (" ..." if len(cache.bad) > 10 else ""), soft_wrap=True)
    return cache


def names_of(index: FolderIndex) -> dict[str, list[str]]:
    """Each split's files, relative to the folder, in cache order."""
    return {s: [str(f.relative_to(index.root)) for f, _ in items]
            for s, items in index.files.items()}


def duplicates(cache: Cache) -> list[dict]:
    """Images of validation/ or test/ that also stand in train/ (or pairs inside a folder
    ablab splits itself), found once per cache and kept beside it."""
    path = cache.folder / "duplicates.json"
    if path.exists():
        return json.loads(path.read_text())
    assert cache.index is not None
    splits = {}
    for split in cache.index.files:
        rows, _, ok = cache.arrays(split)
        splits[split] = _Readable(Rows(rows), ok)
    found = [dataclasses.asdict(d) for d in leakage.find(splits)]
    path.write_text(json.dumps(found))
    return found


class _Readable:
    """A split's rows for the leakage check: unreadable images read as blank, and never
    match (their exact key is that of a black image, so a real black image might: rare)."""

    def __init__(self, rows: Rows, ok: np.ndarray):
        self.rows, self.ok = rows, ok

    def __len__(self) -> int:
        return len(self.ok)

    def __getitem__(self, key: slice) -> np.ndarray:
        x = np.asarray(self.rows[key], dtype=np.float32)
        bad = ~self.ok[key]
        if bad.any():  # a distinct value per bad row: never equal to anything
            x[bad] = -1.0 - np.arange(bad.sum(), dtype=np.float32)[:, None, None, None]
        return x


@register("folder", check=check)
def load(cfg: DataConfig) -> Pool:
    cache = check(cfg)  # unreadable images were reported by the check, before any run
    parts: dict[str, tuple[Rows, np.ndarray]] = {}
    index = cache.index
    assert index is not None  # check() scanned the folder
    for split in index.files:
        rows, y, ok = cache.arrays(split)
        keep = np.flatnonzero(ok)
        parts[split] = (Rows(rows, keep), y[keep])
    info = {"data_cache": str(cache.folder), "data_key": cache.key,
            "data_decoded_here": str(DECODED.get(cache.key, 0))}  # 0: read, not decoded
    if "all" in parts:
        x, labels = parts["all"]
        return Pool(x, labels, index.class_names, info=info)
    return Pool(class_names=index.class_names, splits=parts, info=info)
