"""Train/test leakage: the same picture in train and in validation or test (common when folders
are assembled by hand) inflates every variant's accuracy without a word. Exact duplicates are
found by the bytes of the decoded image; near duplicates (re-encoded, resized, slightly edited)
by a perceptual difference hash (dHash, 64 bits) within a small Hamming distance, confirmed
by the images' mean absolute pixel difference, so a similar-looking but different picture
(two handwritten 1s) is not reported. Pure: arrays in, pairs out."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_BITS = 3  # Hamming distance between dHashes that makes a candidate (<= bands - 1)
MAX_PIXEL_DIFF = 0.01  # mean |a - b| (pixels in [0, 1]) that confirms a near duplicate: re-encoded
# JPEGs differ by ~0.005; distinct handwritten digits at 16 px by 0.015 and more
BANDS = 4  # candidates share one exact 16-bit band (pigeonhole: distance <= 3 guarantees it)
CHUNK = 2048


@dataclass(frozen=True)
class Duplicate:
    split: str  # validation or test (or `all`: a folder ablab splits itself)
    index: int
    train_split: str
    train_index: int
    kind: str  # exact | near
    bits: int  # Hamming distance of the dHashes

    def describe(self, names: Mapping[str, Sequence[str]] | None = None) -> str:
        def name(split: str, i: int) -> str:
            return str(names[split][i]) if names else f"{split} image #{i}"

        return f"{name(self.split, self.index)} = {name(self.train_split, self.train_index)}" \
            f" ({self.kind})"


def _chunks(x: Any) -> Iterator[np.ndarray]:
    for i in range(0, len(x), CHUNK):
        yield np.asarray(x[i:i + CHUNK], dtype=np.float32)


def _gray_9x8(x: np.ndarray) -> np.ndarray:
    """(N, H, W, C) in [0, 1] -> (N, 8, 9) block means of the grayscale image."""
    g = x.mean(axis=-1) if x.ndim == 4 else x
    reps = (max(1, -(-8 // g.shape[1])), max(1, -(-9 // g.shape[2])))
    g = np.repeat(np.repeat(g, reps[0], axis=1), reps[1], axis=2)
    rows = np.array_split(np.arange(g.shape[1]), 8)
    cols = np.array_split(np.arange(g.shape[2]), 9)
    return np.stack([np.stack([g[:, r][:, :, c].mean(axis=(1, 2)) for c in cols], axis=1)
                     for r in rows], axis=1)


def dhash(x: np.ndarray) -> np.ndarray:
    """64-bit difference hashes: is each of 8 x 8 block means brighter than its right
    neighbour."""
    g = _gray_9x8(x)
    bits = (g[:, :, 1:] > g[:, :, :-1]).reshape(len(g), 64)
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def exact_key(x: np.ndarray) -> str:
    return hashlib.sha1(np.round(x * 255).astype(np.uint8).tobytes()).hexdigest()


@dataclass
class Index:
    """One split's hashes, for lookups."""

    images: Any
    hashes: np.ndarray
    exact: dict[str, int]
    bands: list[dict[int, list[int]]]

    @classmethod
    def of(cls, images: Any) -> Index:
        hashes: list[np.ndarray] = []
        exact: dict[str, int] = {}
        for start, block in zip(range(0, len(images), CHUNK), _chunks(images), strict=True):
            hashes.append(dhash(block))
            for i, img in enumerate(block):
                exact.setdefault(exact_key(img), start + i)
        h = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
        bands: list[dict[int, list[int]]] = [{} for _ in range(BANDS)]
        for i, v in enumerate(h.tolist()):
            for b in range(BANDS):
                bands[b].setdefault((v >> (16 * b)) & 0xFFFF, []).append(i)
        return cls(images, h, exact, bands)

    def match(self, img: np.ndarray, h: int,
              skip: int | None = None) -> tuple[int, str, int] | None:
        """The first image here equal or nearly equal to `img` (not `skip`)."""
        j = self.exact.get(exact_key(img))
        if j is not None and j != skip:
            return j, "exact", 0
        seen: set[int] = set()
        for b in range(BANDS):
            for j in self.bands[b].get((h >> (16 * b)) & 0xFFFF, []):
                if j in seen or j == skip:
                    continue
                seen.add(j)
                bits = int(bin(int(self.hashes[j]) ^ h).count("1"))
                if bits <= MAX_BITS:
                    other = np.asarray(self.images[j:j + 1], dtype=np.float32)[0]
                    if float(np.abs(other - img).mean()) <= MAX_PIXEL_DIFF:
                        return j, "near", bits
        return None


def find(splits: Mapping[str, Any], train: str = "train") -> list[Duplicate]:
    """Images of the other splits that also stand in `train`; with only one split (a folder
    ablab splits itself), pairs inside it, which may fall into different splits."""
    if train not in splits:
        return [d for name, images in splits.items() for d in _within(name, images)]
    index = Index.of(splits[train])
    out = []
    for name, images in splits.items():
        if name == train:
            continue
        for start, block in zip(range(0, len(images), CHUNK), _chunks(images), strict=True):
            for i, (img, h) in enumerate(zip(block, dhash(block).tolist(), strict=True)):
                m = index.match(img, int(h))
                if m is not None:
                    out.append(Duplicate(name, start + i, train, *m))
    return out


def _within(name: str, images: Any) -> list[Duplicate]:
    index = Index.of(images)
    out = []
    for start, block in zip(range(0, len(images), CHUNK), _chunks(images), strict=True):
        for i, (img, h) in enumerate(zip(block, index.hashes[start:start + len(block)].tolist(),
                                         strict=True)):
            m = index.match(img, int(h), skip=start + i)
            if m is not None and m[0] < start + i:  # each pair once
                out.append(Duplicate(name, start + i, name, *m))
    return out


def summary(dups: list[Duplicate], names: Mapping[str, Sequence[str]] | None = None,
            show: int = 3) -> str:
    """One line: how many, and the first few named."""
    exact = sum(d.kind == "exact" for d in dups)
    listing = "; ".join(d.describe(names) for d in dups[:show])
    more = f" and {len(dups) - show} more" if len(dups) > show else ""
    where = "also stand in train" if dups and dups[0].split != dups[0].train_split else \
        "have a duplicate in the same folder (the split may put them on both sides)"
    return (f"{len(dups)} image(s) {where} ({exact} exact, {len(dups) - exact} near): "
            f"{listing}{more}. They inflate test accuracy; remove them")
