"""Ctrl-C, SIGTERM and SIGUSR1, delivered where they are safe. A KeyboardInterrupt raised while
TensorFlow is inside C code can surface as a SystemError ("bad argument to internal
function") and end a stopped trial FAILED instead of KILLED. So inside `protected()` (a trial's
training and evaluation) a signal only sets a flag, and the trial stops at the next batch
boundary (`check`, called by a Keras callback and between prediction batches); elsewhere it
raises at once, as Python's default does.

A worker (`ablab worker`, `preemptible()`) tells two stops apart: Ctrl-C (SIGINT) is a person
stopping it, and its trial ends killed; SIGTERM and SIGUSR1 are what SLURM (preemption,
requeue, the warning before a time limit) and Kubernetes (eviction) send, and raise
`Preempted`: the trial ends preempted and goes back to the queue (core.lifecycle)."""

from __future__ import annotations

import contextlib
import signal

PREEMPTING = (signal.SIGTERM, signal.SIGUSR1)
_state: dict = {"protected": 0, "requested": None, "preemptible": False}


class Preempted(KeyboardInterrupt):
    """The worker was told to stop by its cluster: its trial returns to the queue. `run_ids`:
    the runs it stopped, whose checkpoints the queue names (core.runner sets them)."""

    run_ids: tuple[str, ...] = ()


def _stop(signum: int) -> KeyboardInterrupt:
    if _state["preemptible"] and signum in PREEMPTING:
        return Preempted(signal.Signals(signum).name)
    return KeyboardInterrupt()


def _handler(signum, frame) -> None:
    if _state["protected"]:
        _state["requested"] = signum
        return
    raise _stop(signum)


def install() -> None:
    """SIGINT and SIGTERM both stop cleanly (`kill PID` like Ctrl-C)."""
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


def preemptible() -> None:
    """This process is a worker: SIGTERM and SIGUSR1 mean preemption (`Preempted`)."""
    install()
    signal.signal(signal.SIGUSR1, _handler)
    _state["preemptible"] = True


def preempting() -> bool:
    """A preemption arrived and waits for a safe point (a checkpoint is due before it)."""
    signum = _state["requested"]
    return signum is not None and _state["preemptible"] and signum in PREEMPTING


def check() -> None:
    """Raise the interrupt that arrived while protected (at a safe point)."""
    signum = _state["requested"]
    if signum is not None:
        _state["requested"] = None
        raise _stop(signum)


@contextlib.contextmanager
def protected():
    _state["protected"] += 1
    try:
        yield
    finally:
        _state["protected"] -= 1
    if not _state["protected"]:
        check()


def keras_callback():
    """Stops model.fit at the next batch boundary after Ctrl-C or SIGTERM."""
    import keras

    return keras.callbacks.LambdaCallback(on_train_batch_end=lambda *a, **k: check(),
                                          on_test_batch_end=lambda *a, **k: check())
