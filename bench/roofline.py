"""How far from the machine's limit does a training step run? (issue 23)

1. The machine's measured peak: a large float32 matmul and a large convolution, under the
   threads TensorFlow uses by default, as FLOP/s.
2. Each model's FLOPs per training step: counted from its layers (Conv2D and Dense, forward
   2·MACs; a training step as 3x forward: the backward pass computes the gradients of both
   inputs and weights), checked against TensorFlow's own profiler on the forward graph.
3. Seconds per training step (median over steps after the first epoch's tracing) and the
   fraction of the peak it reaches: unpacked, packed as towers (K = 2, 5, 10, 20), with XLA
   (`jit_compile=True`), and with `steps_per_execution`.

    .venv/bin/python -m bench.roofline                  # ten_seed_baseline, about 6 minutes
    .venv/bin/python -m bench.roofline --ks 1,10 --quick
    .venv/bin/python -m bench.roofline --threads 2,1    # inter-op 2, intra-op 1 (fresh process)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def peak() -> dict[str, float]:
    """FLOP/s of a 2048^3 matmul and of a 3x3 convolution (batch 32, 64x64, 128 -> 128)."""
    import tensorflow as tf

    from bench import median_seconds

    a = tf.random.normal((2048, 2048))
    b = tf.random.normal((2048, 2048))
    mm = tf.function(lambda: tf.linalg.matmul(a, b))
    t_mm = median_seconds(lambda: mm().numpy(), 5, warm_up=True)
    x = tf.random.normal((32, 64, 64, 128))
    w = tf.random.normal((3, 3, 128, 128))
    conv = tf.function(lambda: tf.nn.conv2d(x, w, 1, "SAME"))
    t_conv = median_seconds(lambda: conv().numpy(), 5, warm_up=True)
    return {"matmul_gflops": 2 * 2048 ** 3 / t_mm / 1e9,
            "conv_gflops": 2 * 32 * 64 * 64 * 128 * 128 * 9 / t_conv / 1e9}


def layer_flops(model) -> float:
    """Forward FLOPs (2 x multiply-adds) of one example through the model's Conv2D and Dense
    layers (nested models included); the rest (BN, pooling, activations) is a few percent."""
    import keras

    total = 0.0
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, cout = layer.output.shape
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            total += 2.0 * h * w * cout * kh * kw * cin
        elif isinstance(layer, keras.layers.Dense):
            total += 2.0 * layer.input.shape[-1] * layer.units
    return total


def profiler_flops(model, input_shape) -> float:
    """Forward FLOPs of one example by TensorFlow's profiler (its float_operation count)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    fn = tf.function(lambda x: model(x, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec((1, *input_shape), tf.float32))
    frozen = convert_variables_to_constants_v2(concrete)
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    info = tf.compat.v1.profiler.profile(graph=frozen.graph, options=opts)
    return float(info.total_float_ops)


def step_time(exp, data, k: int, jit: bool | str, spe: int, epochs: int = 3) -> float:
    """Seconds per training step of K towers (K = 1: the plain model): the fastest epoch
    after the first (which traces and compiles), so a noisy neighbour inflates less."""
    import keras
    import tensorflow as tf

    from core.data import to_tf
    from core.models import build_model
    from core.train import make_optimizer

    towers = [build_model(exp, data.input_shape, data.n_classes) for _ in range(k)]
    for i, t in enumerate(towers):
        t.name = f"tower_{i}"
    if k == 1:
        model = towers[0]
    else:
        inputs = [keras.Input(data.input_shape) for _ in range(k)]
        model = keras.Model(inputs, [t(x) for t, x in zip(towers, inputs, strict=True)])
    bs = exp.train.batch_size
    steps = -(-len(data.y_train) // bs)
    model.compile(optimizer=make_optimizer(exp.train, steps, 1.0, epochs),
                  loss=["categorical_crossentropy"] * k if k > 1 else "categorical_crossentropy",
                  jit_compile=jit, steps_per_execution=spe)
    one = to_tf(data.x_train, data.y_train, data.n_classes, bs, 0, shuffle=True)
    train = one if k == 1 else tf.data.Dataset.zip(tuple([one] * k)).map(
        lambda *pairs: (tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)))
    times: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append((time.perf_counter() - self.t) / steps)

    model.fit(train, epochs=epochs, verbose=0, callbacks=[Clock()])
    keras.backend.clear_session()
    return min(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("ablation", nargs="?", default="ten_seed_baseline")
    ap.add_argument("--ks", default="1,2,5,10,20")
    ap.add_argument("--quick", action="store_true", help="no XLA / steps_per_execution rows")
    ap.add_argument("--threads", default="", help="INTER,INTRA op threads (fresh process)")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    import tensorflow as tf

    if args.threads:
        inter, intra = (int(x) for x in args.threads.split(","))
        tf.config.threading.set_inter_op_parallelism_threads(inter)
        tf.config.threading.set_intra_op_parallelism_threads(intra)
    from bench.pack import experiment
    from core.data import load_dataset
    from core.models import build_model

    exp = experiment(args.ablation)
    data = load_dataset(exp.data, 0)
    p = peak()
    best = max(p.values())
    model = build_model(exp, data.input_shape, data.n_classes)
    fwd = layer_flops(model)
    prof = profiler_flops(model, data.input_shape)
    per_step = 3 * fwd * exp.train.batch_size
    print(f"peak: matmul {p['matmul_gflops']:.1f} GFLOP/s, conv {p['conv_gflops']:.1f} GFLOP/s"
          f" (threads: inter {tf.config.threading.get_inter_op_parallelism_threads()}, intra "
          f"{tf.config.threading.get_intra_op_parallelism_threads()}; 0 = TensorFlow's "
          f"default, {os.cpu_count()} cores)")
    print(f"{args.ablation}: forward {fwd / 1e6:.1f} MFLOP per example by layers, "
          f"{prof / 1e6:.1f} by TensorFlow's profiler; a training step (batch "
          f"{exp.train.batch_size}, 3x forward) {per_step / 1e9:.2f} GFLOP", flush=True)
    rows = []
    settings: list[tuple[int, bool, int]] = [(k, False, 1) for k in map(int,
                                                                          args.ks.split(","))]
    if not args.quick:
        settings += [(1, True, 1), (10, True, 1), (1, False, 10), (10, False, 10)]
    for k, jit, spe in settings:
        try:
            s = step_time(exp, data, k, jit, spe)
        except Exception as err:  # noqa: BLE001 - e.g. XLA unavailable: say so, go on
            print(f"K={k} jit={jit} spe={spe}: failed ({type(err).__name__}: {err})"[:300])
            continue
        gflops = k * per_step / s / 1e9
        rows.append({"k": k, "jit": jit, "steps_per_execution": spe, "step_s": s,
                     "gflops": gflops, "fraction_of_peak": gflops * 1e9 / (best * 1e9),
                     "seeds_per_s_of_steps": k / s})
        print(f"K={k:2d} jit={str(jit):5s} spe={spe:2d}: {s * 1000:7.1f} ms per step, "
              f"{gflops:6.1f} GFLOP/s = {gflops / best:.0%} of peak", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"peak": p, "forward_flops": fwd,
                                               "profiler_flops": prof, "rows": rows},
                                              indent=1))


if __name__ == "__main__":
    main()
