"""A realistic folder of one's own photos, made by the project (no download), and what it costs
to train on it: peak RSS of the training process, and images/s of the input pipeline against
images/s the model consumes.

    .venv/bin/python bench/folder_stream.py make --out /tmp/ablab-parts     # 20,000 JPEGs, 224 px
    /usr/bin/time -v .venv/bin/python bench/folder_stream.py train --folder /tmp/ablab-parts

`make` writes train/ validation/ test/ folders of the synthetic defect images, each drawn at
224 px with a random rotation, flip, brightness and JPEG quality. `train` builds the decoded
cache (timed), measures the tf.data pipeline alone over the training split, then trains a
digits_cnn-size model (2 conv blocks, width 32) for a fixed number of steps at 224 px and
reports both throughputs and the process's peak RSS. In memory as float32 the 20,000 images
would take 20,000 x 224 x 224 x 3 x 4 B = 12 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make(out: Path, n: int, size: int, seed: int) -> None:
    from PIL import Image, ImageEnhance

    from core.data._synthetic import make_images

    rng = np.random.default_rng(seed)
    splits = {"train": int(n * 0.7), "validation": int(n * 0.1)}
    splits["test"] = n - sum(splits.values())
    t0 = time.perf_counter()
    done = 0
    for split, count in splits.items():
        for start in range(0, count, 500):
            k = min(500, count - start)
            x, y = make_images(k, 64, 0.3, int(rng.integers(1 << 30)))
            for i in range(k):
                img = Image.fromarray((x[i] * 255).astype("uint8")).convert("RGB")
                img = img.resize((size, size), Image.Resampling.BICUBIC)
                img = img.rotate(float(rng.uniform(-20, 20)), fillcolor=(128, 128, 128))
                if rng.random() < 0.5:
                    img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                img = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.7, 1.3)))
                folder = out / split / ("defect" if y[i] else "normal")
                folder.mkdir(parents=True, exist_ok=True)
                img.save(folder / f"{split}_{start + i:05d}.jpg",
                         quality=int(rng.integers(70, 95)))
            done += k
        print(f"{split}: {count} images", flush=True)
    print(f"wrote {done} JPEGs at {size} px to {out} in {time.perf_counter() - t0:.0f} s")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train(folder: Path, size: int, steps: int, batch: int) -> dict:
    from core.config import experiment_from_dict
    from core.data import check, load_dataset, to_tf
    from core.seeding import quiet_tensorflow, seed_everything

    quiet_tensorflow()
    exp = experiment_from_dict({
        "name": "bench", "data": {"source": "folder", "path": str(folder), "image_size": size},
        "model": {"depth": 2, "width": 32}, "train": {"epochs": 1, "batch_size": batch}})
    out: dict = {"images": None, "image_size": size, "batch_size": batch, "steps": steps}
    t0 = time.perf_counter()
    cache = check(exp.data)
    out["cache_build_s"] = round(time.perf_counter() - t0, 1)
    out["cache_built_now"] = cache.built
    out["images"] = cache.index.n_images
    out["rss_after_cache_mb"] = round(peak_rss_mb())
    ds = load_dataset(exp.data)
    out["pipeline"] = ds.pipeline
    out["train_images"] = len(ds.y_train)
    seed_everything(0, "strict")
    pipe = to_tf(ds.x_train, ds.y_train, ds.n_classes, batch, 0, shuffle=True)
    t0 = time.perf_counter()
    seen = 0
    for xb, _ in pipe.take(steps):
        seen += len(xb)
    out["pipeline_images_per_s"] = round(seen / (time.perf_counter() - t0), 1)
    import keras

    from core.models import build_model
    from core.train import compile_model

    model = build_model(exp, ds.input_shape, ds.n_classes)
    compile_model(model, exp, steps)
    model.fit(pipe.take(2), epochs=1, verbose=0)  # trace once outside the timing
    t0 = time.perf_counter()
    model.fit(pipe.take(steps), epochs=1, verbose=0)
    out["model_images_per_s"] = round(steps * batch / (time.perf_counter() - t0), 1)
    out["peak_rss_mb"] = round(peak_rss_mb())
    out["in_memory_float32_gb"] = round(cache.index.n_images * size * size * 3 * 4 / 1e9, 1)
    keras.backend.clear_session()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--n", type=int, default=20_000)
    m.add_argument("--size", type=int, default=224)
    m.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("train")
    t.add_argument("--folder", type=Path, required=True)
    t.add_argument("--size", type=int, default=224)
    t.add_argument("--steps", type=int, default=30)
    t.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    if args.cmd == "make":
        make(args.out, args.n, args.size, args.seed)
    else:
        print(json.dumps(train(args.folder, args.size, args.steps, args.batch), indent=2))


if __name__ == "__main__":
    main()
