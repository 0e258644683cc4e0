"""Device slots without a GPU: the env each worker process gets (CUDA_VISIBLE_DEVICES, the
memory cap, the slot's name), and the cap applied inside the worker."""

import pytest

from core.study import slots


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(slots, "list_gpus", lambda: [("0", 81920), ("1", 40960)])


def test_one_slot_per_gpu_with_its_memory(two_gpus):
    s = slots.device_slots()
    assert [x["CUDA_VISIBLE_DEVICES"] for x in s] == ["0", "1"]
    assert [x["ABLAB_SLOT"] for x in s] == ["gpu0", "gpu1"]
    assert [int(x["ABLAB_GPU_MEMORY_MB"]) for x in s] == [int(81920 * 0.9), int(40960 * 0.9)]


def test_per_gpu_shares_each_gpu(two_gpus):
    s = slots.device_slots(per_gpu=2)
    assert [x["CUDA_VISIBLE_DEVICES"] for x in s] == ["0", "0", "1", "1"]
    assert [x["ABLAB_SLOT"] for x in s] == ["gpu0/0", "gpu0/1", "gpu1/0", "gpu1/1"]
    caps = [int(x["ABLAB_GPU_MEMORY_MB"]) for x in s]
    assert caps == [int(81920 * 0.9 / 2)] * 2 + [int(40960 * 0.9 / 2)] * 2
    assert sum(caps[:2]) < 81920  # the shares of one GPU fit in it


def test_chosen_gpus_and_a_worker_count(two_gpus):
    s = slots.device_slots(workers=3, per_gpu=1, gpus=["1"])
    assert [x["CUDA_VISIBLE_DEVICES"] for x in s] == ["1", "1", "1"]


def test_cpu_only(monkeypatch):
    monkeypatch.setattr(slots, "list_gpus", lambda: [])
    assert slots.device_slots() == [{"CUDA_VISIBLE_DEVICES": "-1", "ABLAB_SLOT": "cpu"}]
    assert [x["ABLAB_SLOT"] for x in slots.device_slots(workers=2)] == ["cpu/0", "cpu/1"]


def test_the_pool_hands_each_process_its_slot(two_gpus, tmp_path):
    """Real processes: each one sees its own CUDA_VISIBLE_DEVICES and memory cap."""
    import sys

    from core.study.pool import Pool

    cmd = [sys.executable, "-c", "import os; print(os.environ['CUDA_VISIBLE_DEVICES'], "
           "os.environ['ABLAB_GPU_MEMORY_MB'], os.environ['ABLAB_SLOT'], "
           "os.environ['ABLAB_WORKER_INDEX'])"]
    pool = Pool(cmd, slots.device_slots(per_gpu=2), tmp_path)
    pool.fill()
    pool.wait()
    seen = sorted((tmp_path / f"worker-{i}.log").read_text().split() for i in range(4))
    assert seen == [["0", "36864", "gpu0/0", "0"], ["0", "36864", "gpu0/1", "1"],
                    ["1", "18432", "gpu1/0", "2"], ["1", "18432", "gpu1/1", "3"]]


def test_the_worker_caps_tensorflow_to_its_share(monkeypatch):
    """configure_gpus asks TensorFlow for a logical GPU of the slot's size (checked with a
    stand-in GPU list, since this machine has none)."""
    import tensorflow as tf

    from core import seeding

    calls = []
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind: ["GPU:0"])
    monkeypatch.setattr(tf.config, "set_logical_device_configuration",
                        lambda gpu, cfg: calls.append((gpu, cfg[0].memory_limit)))
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth",
                        lambda gpu, on: calls.append((gpu, "growth")))
    seeding.configure_gpus(18432)
    seeding.configure_gpus(None)
    assert calls == [("GPU:0", 18432), ("GPU:0", "growth")]
