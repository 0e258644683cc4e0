"""Loading experiments: YAML with `base:` inheritance, dotted `--set` overrides, validation.

Validation happens here, before TensorFlow or MLflow is touched, so a bad field costs nothing
and leaves no trace in the tracking store: the schema (types, ranges, unknown keys with the
closest valid one), the registries (names), and the axes (an explicitly set axis must act).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from core import paths
from core.axes import check_acts, check_names, resolve_path
from core.dicts import deep_merge, flatten, set_dotted
from core.errors import ConfigError
from core.schema import Experiment, all_paths


def parse_value(text: str) -> Any:
    """`--set` values are YAML scalars: 3e-4, true, [1, 2], relu."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_sets(sets: list[str] | None) -> dict[str, Any]:
    """['train.lr=3e-4', 'head=gap'] -> nested overrides; aliases resolve to dotted paths."""
    out: dict[str, Any] = {}
    for item in sets or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r} (e.g. --set train.lr=3e-4)")
        key, _, raw = item.partition("=")
        set_dotted(out, resolve_path(key.strip()), parse_value(raw.strip()))
    return out


def closest_key(bad: str, model: type[BaseModel] = Experiment) -> str | None:
    """The valid dotted key nearest to `bad`, for 'did you mean' hints."""
    candidates = all_paths(model)
    sections = {p.split(".")[0] for p in candidates if "." in p}
    candidates += sorted(sections)
    match = difflib.get_close_matches(bad, candidates, n=1, cutoff=0.5)
    if not match:
        leaf = bad.rsplit(".", 1)[-1]
        by_leaf = {p.rsplit(".", 1)[-1]: p for p in candidates}
        leaf_match = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.6)
        return by_leaf[leaf_match[0]] if leaf_match else None
    return match[0]


def format_validation_error(err: ValidationError, source: str, model: type[BaseModel]) -> str:
    lines = [f"Invalid config ({source}):"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not isinstance(p, int))
        if e["type"] == "extra_forbidden":
            hint = closest_key(loc, model)
            msg = f"  {loc}: unknown key"
            if hint:
                msg += f"; did you mean {hint}?"
        else:
            got = e.get("input")
            text = e["msg"].removeprefix("Value error, ")
            msg = f"  {loc}: {text}" if loc else f"  {text}"
            if not isinstance(got, dict):
                msg += f" (got {got!r})"
        lines.append(msg)
    return one_line(lines)


def one_line(lines: list[str]) -> str:
    """'Invalid config (src):' and its problems: one line when there is one problem."""
    if len(lines) == 2:
        return f"{lines[0]} {lines[1].strip()}"
    return "\n".join(lines)


def validate_model(model: type[BaseModel], data: dict[str, Any], source: str) -> Any:
    """Any pydantic model (experiment, ablation, search) with readable errors."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, model)) from None


def validate(data: dict[str, Any], source: str, explicit: Iterable[str] = ()) -> Experiment:
    """A raw experiment dict -> Experiment: schema, registry names, and every path in
    `explicit` (what the person set by --set, set:, vary:, grid: or space:) must act."""
    exp = validate_model(Experiment, data, source)
    try:
        check_names(exp)
        check_acts(exp, explicit)
    except ConfigError as err:
        raise ConfigError(one_line([f"Invalid config ({source}):", *(
            f"  {line}" for line in str(err).splitlines())])) from None
    return exp


SINGULAR = {"experiments": "experiment", "ablations": "ablation", "searches": "search"}


def find_file(name_or_path: str | Path, kind: str) -> Path:
    """A path to a YAML file, or a name (with or without .yaml) in the project's folder of
    `kind` (experiments, ablations, searches), then in ablab's shipped examples."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p.resolve()
    folders = paths.search_dirs(kind)
    for folder in folders:
        for cand in (folder / f"{name_or_path}.yaml", folder / f"{name_or_path}.yml"):
            if cand.is_file():
                return cand.resolve()
    if p.is_file():
        return p.resolve()
    known = sorted({q.stem for folder in folders for q in folder.glob("*.y*ml")})
    hint = difflib.get_close_matches(str(name_or_path), known, n=1)
    msg = f"No {SINGULAR[kind]} named {str(name_or_path)!r} in {folders[0]}."
    if hint:
        msg += f" Did you mean {hint[0]!r}?"
    msg += f" Known: {', '.join(known) or '(none)'}." + paths.project_hint()
    raise ConfigError(msg)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def load_raw(name_or_path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Resolve `base:` chains (relative to the file, then experiments/) into one dict."""
    path = find_file(name_or_path, "experiments")
    if path in _seen:
        raise ConfigError(f"{path}: circular base: chain {' -> '.join(map(str, _seen))}")
    data = read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        data.setdefault("name", path.stem)
        return data
    base_path = path.parent / f"{base}.yaml"
    parent = load_raw(base_path if base_path.exists() else base, (*_seen, path))
    merged = deep_merge(parent, data)
    merged["name"] = data.get("name", path.stem)
    return merged


def load_experiment(name_or_path: str | Path, sets: list[str] | None = None) -> Experiment:
    overrides = parse_sets(sets)
    raw = deep_merge(load_raw(name_or_path), overrides)
    src = str(name_or_path) + (f" with --set {' '.join(sets)}" if sets else "")
    return validate(raw, src, flatten(overrides))


def experiment_from_dict(data: dict[str, Any], source: str = "config") -> Experiment:
    return validate(data, source)
