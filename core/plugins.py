"""The user's own code by import path: `module:function` wherever a registered name is accepted.

A plugin is a plain function in the project folder (imported from there first) or in any
installed package. Each kind has one signature, checked when a config is validated, so a
missing module, a missing function or a wrong signature is a config error (exit 2) before any
MLflow run exists:

- data.source: `load(options, data_config)` -> `(x, y, class_names)`, images NHWC of any
  size (uint8, or float in [0, 1]), resized to data.image_size and data.channels
- model.backbone: `build(options, input_shape)` -> a Keras model, images -> features
- model.head: `head(options, features)` -> a tensor (ablab's classifier Dense follows)
- augment.strength: `policy(options)` -> a list of Keras preprocessing layers
- train.optimizer: `make(options, learning_rate)` -> a Keras optimizer
- train.lr_schedule: `schedule(options, lr, total_steps)` -> a float or a LearningRateSchedule
- train.fit: `fit(model, data, config, callbacks)` -> the history, {metric: [per epoch]}

`options` is the section's `options:` mapping (`model.options`, `data.options`, ...), validated
by the pydantic model the plugin declares: the annotation of its `options` parameter, else a
class named `Options` beside the function. Without one the plugin gets the plain dict. Plugin
options are axes like any other (`vary: {model.options.width: [32, 64]}`).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import inspect
import subprocess
import sys
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from core.errors import ConfigError

# What each plugin kind is called with: the argument names of its one signature.
SIGNATURES: dict[str, tuple[str, ...]] = {
    "data.source": ("options", "data_config"),
    "model.backbone": ("options", "input_shape"),
    "model.head": ("options", "features"),
    "augment.strength": ("options",),
    "train.optimizer": ("options", "learning_rate"),
    "train.lr_schedule": ("options", "lr", "total_steps"),
    "train.fit": ("model", "data", "config", "callbacks"),
}


def is_path(name: object) -> bool:
    """`module:function` (a registered name never holds a colon)."""
    return isinstance(name, str) and ":" in name and not name.startswith("pretrain:")


def _import(module: str):
    """The module, from the project folder first (as `python -m` would from there)."""
    from core import paths

    root = str(paths.root())
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module(module)


@cache
def load(path: str, field: str) -> Callable:
    """`module:function` -> the function, its signature checked against `field`'s kind."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{field}: {path!r} is not an import path; expected module:function "
                          "(e.g. mymodels:small_cnn)")
    try:
        module = _import(module_name)
    except ModuleNotFoundError as err:
        raise ConfigError(f"{field}: cannot import {module_name!r} for {path} ({err}); it is "
                          "looked up in the project folder, then installed packages") from None
    except Exception as err:  # noqa: BLE001 - the module's own error, in one line
        raise ConfigError(f"{field}: importing {module_name!r} for {path} raised "
                          f"{type(err).__name__}: {err}") from None
    fn = module
    for part in attr.split("."):
        if not hasattr(fn, part):
            names = [n for n in dir(fn) if not n.startswith("_")]
            hint = difflib.get_close_matches(part, names, n=1)
            raise ConfigError(f"{field}: {module_name} has no {attr!r}"
                              + (f"; did you mean {module_name}:{hint[0]}?" if hint else ""))
        fn = getattr(fn, part)
    if not callable(fn):
        raise ConfigError(f"{field}: {path} is not a function")
    expected = SIGNATURES[field]
    try:
        inspect.signature(fn).bind(*expected)
    except TypeError:
        raise ConfigError(f"{field}: {path} must take ({', '.join(expected)}); it takes "
                          f"{inspect.signature(fn)}") from None
    except ValueError:
        pass  # a builtin without a signature: trust it
    return fn


def options_model(fn: Callable) -> type[BaseModel] | None:
    """The pydantic model that validates a plugin's options, if it declares one."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    ann = params["options"].annotation if "options" in params else inspect.Parameter.empty
    if isinstance(ann, str):  # `from __future__ import annotations`
        ann = getattr(sys.modules.get(fn.__module__), ann, None)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    beside = getattr(sys.modules.get(fn.__module__), "Options", None)
    if isinstance(beside, type) and issubclass(beside, BaseModel):
        return beside
    return None


def bind(fn: Callable, options: Mapping[str, Any], section: str, path: str) -> Any:
    """The plugin's options: its Options model built from the keys it declares (the section's
    other plugins may declare the rest), or the plain dict."""
    model = options_model(fn)
    if model is None:
        return dict(options)
    mine = {k: v for k, v in options.items() if k in model.model_fields}
    try:
        return model.model_validate(mine)
    except ValidationError as err:
        e = err.errors()[0]
        where = ".".join(str(p) for p in e["loc"])
        got = f" (got {e['input']!r})" if "input" in e and not isinstance(e["input"], dict) \
            else ""
        raise ConfigError(f"{section}.options.{where}: {e['msg']}{got} [{path}]") from None


def check_options(section: str, options: Mapping[str, Any], plugins: dict[str, Callable]) -> None:
    """Every key of `section.options` is declared by a plugin of that section (unless one of
    them takes a plain dict), and every declared value validates."""
    if options and not plugins:
        raise ConfigError(f"{section}.options: set ({', '.join(options)}), but no field of "
                          f"{section} names a module:function plugin; options are its settings")
    models = {path: options_model(fn) for path, fn in plugins.items()}
    for path, fn in plugins.items():
        bind(fn, options, section, path)
    if any(m is None for m in models.values()):
        return
    known = {k for m in models.values() if m for k in m.model_fields}
    for key in options:
        if key not in known:
            hint = difflib.get_close_matches(key, sorted(known), n=1)
            raise ConfigError(f"{section}.options.{key}: not an option of "
                              f"{', '.join(plugins)}"
                              + (f"; did you mean {section}.options.{hint[0]}?" if hint else "")
                              + f" (its options: {', '.join(sorted(known)) or 'none'})")


def option_fields(plugins: dict[str, Callable]) -> list[tuple[str, Any, str]]:
    """(name, FieldInfo, plugin path) of every declared option, for `ablab axes`."""
    out = []
    for path, fn in plugins.items():
        model = options_model(fn)
        for name, info in (model.model_fields.items() if model else ()):
            out.append((name, info, path))
    return out


def digest(fn: Callable) -> str:
    """The sha256 (12 hex) of the file that defines a plugin: what code trained a run."""
    src = inspect.getsourcefile(fn) or ""
    try:
        return hashlib.sha256(Path(src).read_bytes()).hexdigest()[:12]
    except OSError:
        return "unknown"


def code_tags(named: Mapping[str, str]) -> dict[str, str]:
    """What code trained a run, from {field: module:function} of its plugins: one digest
    over them all ("builtin" when there are none), each plugin's own, the project's commit."""
    from core import lifecycle, paths

    each = {field: f"{path}@{digest(load(path, field))}" for field, path in sorted(
        named.items())}
    blob = "\n".join(each.values())
    tags = {lifecycle.CODE: hashlib.sha256(blob.encode()).hexdigest()[:12] if each
            else "builtin",
            **{lifecycle.CODE_PREFIX + field: v for field, v in each.items()}}
    commit = git_commit(str(paths.root()))
    if commit:
        tags[lifecycle.GIT_COMMIT] = commit
    return tags


@cache
def git_commit(folder: str) -> str | None:
    """The project's git commit (with '+dirty' for uncommitted changes), if it is a repo."""
    try:
        head = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", folder, "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return head.stdout.strip()[:12] + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None
