"""Ctrl-C and SIGTERM, delivered where they are safe. A KeyboardInterrupt raised while
TensorFlow is inside C code can surface as a SystemError ("bad argument to internal
function") and end a stopped trial FAILED instead of KILLED. So inside `protected()` (a trial's
training and evaluation) a signal only sets a flag, and the trial stops at the next batch
boundary (`check`, called by a Keras callback and between prediction batches); elsewhere it
raises at once, as Python's default does."""

from __future__ import annotations

import contextlib
import signal

_state = {"protected": 0, "requested": False}


def _handler(signum, frame) -> None:
    if _state["protected"]:
        _state["requested"] = True
        return
    raise KeyboardInterrupt


def install() -> None:
    """SIGINT and SIGTERM both stop cleanly (`kill PID` like Ctrl-C)."""
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


def check() -> None:
    """Raise the interrupt that arrived while protected (at a safe point)."""
    if _state["requested"]:
        _state["requested"] = False
        raise KeyboardInterrupt


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
