"""Cost metrics (core/cost.py): FLOPs counted per layer against TensorFlow's profiler on every
shipped backbone and head, parameters against Keras, and the measured ones present and sane
on a real trial run, beside the environment fingerprint (core/fingerprint.py)."""

from __future__ import annotations

import pytest

from core import cost, fingerprint, names
from core.models import BACKBONES, HEADS
from tests.conftest import tiny


def profiler_flops(model, shape) -> int:
    """TensorFlow's own count: the v1 profiler's float_operation over the frozen graph of one
    inference call (the workaround keras#18391 points to)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    fn = tf.function(lambda x: model(x, training=False))
    graph = convert_variables_to_constants_v2(
        fn.get_concrete_function(tf.TensorSpec([1, *shape], tf.float32))).graph
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    return tf.compat.v1.profiler.profile(graph=graph, options=opts).total_float_ops


# keras.applications backbones whose blocks use hard-swish / swish and squeeze-excitation:
# the profiler counts the elementwise ops of those activations (Mul, Add, Relu6 inside
# hard_sigmoid), which ablab's rules leave free like ReLU: 2-3% apart, inside the 5% bound.
# Every backbone on the gap head, every head on the project's CNN: all registered ones.
@pytest.mark.parametrize("backbone, head", [(b, "gap") for b in BACKBONES.names()]
                         + [("cnn", h) for h in HEADS.names() if h != "gap"])
def test_counted_flops_match_tensorflows_profiler(backbone, head):
    from core.models import build_model

    size = 32
    exp = tiny(data={"image_size": size}, model={"backbone": backbone, "head": head,
                                                  "depth": 2, "width": 8})
    model = build_model(exp, (size, size, 3), 10)
    counted, unknown = cost.count_flops(model)
    assert unknown == []
    assert counted == pytest.approx(profiler_flops(model, (size, size, 3)), rel=0.05)


def test_params_and_a_plugin_layer_that_cannot_be_counted_is_named():
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="c")(inputs)
    x = keras.layers.UnitNormalization()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    counted, unknown = cost.count_flops(model)
    assert unknown == ["UnitNormalization"]
    assert counted == 2 * 9 * 3 * 4 * 36 + 4 * 36 + 2 * 144 * 2 + 2
    p = cost.params(model)
    assert p[names.N_PARAMS] == model.count_params() == p[names.N_PARAMS_TRAINABLE]


def test_a_trial_run_logs_its_costs_and_its_fingerprint(tracking_uri):
    from mlflow import MlflowClient

    from core.runner import run_trial
    from core.trial import Trial

    c = MlflowClient(tracking_uri)
    res = run_trial(Trial.new(tiny(), 0, "cost"), c=c)
    m = c.get_run(res.run_id).data.metrics
    for key in (names.N_PARAMS, names.N_PARAMS_TRAINABLE, names.FLOPS, names.LATENCY,
                names.THROUGHPUT, names.PEAK_RSS, names.MODEL_SIZE, names.TRAIN_RATE,
                names.TRAIN_TIME):
        assert key in m and m[key] > 0, key
    assert m[names.MODEL_SIZE] == pytest.approx(m[names.N_PARAMS] * 4 / 2**20)
    tags = c.get_run(res.run_id).data.tags
    assert tags[names.FP_ISA] == fingerprint.isa(fingerprint._cpuinfo()[1])
    assert tags[names.FP_ONEDNN] in ("on", "off") and tags[names.FP_GPU] == "none"
    parts = {k: v for k, v in tags.items() if k.startswith(names.FP_PREFIX)}
    assert tags[names.FINGERPRINT] == fingerprint.digest(
        {**parts, names.DETERMINISTIC: tags[names.DETERMINISTIC]})


def test_the_isa_is_the_widest_the_cpu_reports():
    assert fingerprint.isa({"sse4_2", "avx", "avx2", "avx512f"}) == "avx512"
    assert fingerprint.isa({"sse4_2", "avx", "avx2"}) == "avx2"
    assert fingerprint.isa({"fp", "asimd"}) == "neon"
    assert fingerprint.isa(set()) == "baseline"
