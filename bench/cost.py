"""Issue 30: what measuring a trial's cost (core/cost.py: parameters, FLOPs, latency at batch 1,
throughput, memory, weights' size) adds to a trial of `ten_seed_baseline` (32x32 digits,
3 conv blocks, 20 epochs). Goal: <= 3% of the trial's time. Also prints the counted FLOPs
against TensorFlow's profiler for every shipped backbone (tests/test_cost.py asserts 5%).

    .venv/bin/python -m bench.cost
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    import numpy as np

    from bench import median_seconds
    from core import cost, seeding
    from core.ablation.spec import expand_variants, load_ablation
    from core.data import load_dataset
    from core.train import fit

    exp = expand_variants(load_ablation("ten_seed_baseline"))[0][0].exp
    seeding.seed_everything(0, exp.train.deterministic)
    data = load_dataset(exp.data)
    res = fit(exp, data, 0)
    x = np.asarray(data.x_test[:cost.THROUGHPUT_BATCH], "float32")
    measure = median_seconds(lambda: cost.measure(res.model, x, len(data.y_train),
                                                  res.epochs_run, res.train_time_s), 5,
                             warm_up=True)
    first = median_seconds(lambda: cost.measure(res.model, x, len(data.y_train),
                                                res.epochs_run, res.train_time_s), 1)
    m = cost.measure(res.model, x, len(data.y_train), res.epochs_run, res.train_time_s)
    print(f"ten_seed_baseline trial: training {res.train_time_s:.1f} s ({res.epochs_run} epochs)")
    print(f"cost.measure: {measure * 1000:.0f} ms median of 5 ({first * 1000:.0f} ms once more) "
          f"= {measure / res.train_time_s:.2%} of the training time")
    print({k: round(v, 3) for k, v in m.items()})
    from core.config import load_experiment
    from core.models import build_model
    from tests.test_cost import profiler_flops

    for backbone in ("cnn", "mobilenetv3small", "efficientnetb0", "resnet50"):
        e = load_experiment("digits_cnn", [f"model.backbone={backbone}", "data.image_size=32"])
        model = build_model(e, (32, 32, 3), 10)
        mine, _ = cost.count_flops(model)
        ref = profiler_flops(model, (32, 32, 3))
        print(f"{backbone}: counted {mine:,} FLOPs, profiler {ref:,} ({mine / ref - 1:+.2%})")


if __name__ == "__main__":
    main()
