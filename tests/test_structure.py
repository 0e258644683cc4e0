"""The shape of core/: its import graph, built from the source, has no cycle; every registry
is the single source of its names."""

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "core"


def module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the core modules it imports (top level or inside functions alike)."""
    modules = {module_name(p): p for p in CORE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                    + ([base] if base else []))
                # `from pkg import sub` imports the module pkg.sub; `from pkg import name`, pkg
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                         for a in node.names]
            else:
                continue
            for name in names:
                # `from core.data import _digits` names a module; `import core.x.y` too
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name and name != mod and name.startswith("core"):
                    graph[mod].add(name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (cyc := visit(m)):
                return cyc
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (cyc := visit(n)):
            return cyc
    return None


def test_core_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 30  # the graph really was built
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_schema_is_a_leaf():
    """The schema imports nothing of core's but dict helpers; everything else imports it."""
    graph = import_graph()
    assert graph["core.schema"] <= {"core.dicts"}
    assert graph["core.registry"] <= {"core.errors"}


@pytest.mark.parametrize("field", ["data.source", "augment.strength", "model.backbone",
                                   "model.head", "model.finetune", "model.activation",
                                   "train.optimizer", "train.lr_schedule"])
def test_unknown_registry_names_are_errors_listing_the_valid_ones(field):
    from core.axes import NAMED
    from core.config import load_experiment
    from core.errors import ConfigError

    reg = NAMED[field]
    with pytest.raises(ConfigError) as err:
        load_experiment("digits_cnn", [f"{field}=nope"])
    msg = str(err.value)
    assert field in msg
    for name in reg.names():
        assert name in msg
