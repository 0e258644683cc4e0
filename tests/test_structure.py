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
    assert graph["core.registry"] <= {"core.errors", "core.plugins"}
    assert graph["core.plugins"] <= {"core.errors", "core.paths", "core.lifecycle"}


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


# ----------------------------------------------------------------------------- layers

EDGE = {"core.cli", "core.cli_options", "core.inventory", "core.ui", "core.server",
        "core.data_command"}
STRATEGIES = ("core.ablation", "core.search")
ENGINE = ("core.study",)
REPORT = {"core.ablation.report", "core.ablation.figures", "core.ablation.html"}
PURE = {"core.ablation.analysis", "core.ablation.render", "core.ablation.figures",
        "core.ablation.html", "core.stats", "core.sequential", "core.outcome"}


def layer(mod: str) -> int:
    """3: the command line and other edges; 2: the strategies (ablations, searches); 1: the
    study engine they share; 0: the library below (data, models, training, tracking, the
    trial lifecycle, statistics)."""
    if mod in EDGE or mod.startswith("core.launch"):
        return 3
    if mod.startswith(STRATEGIES):
        return 2
    if mod.startswith(ENGINE):
        return 1
    return 0


def test_imports_point_down_the_layers():
    bad = [f"{a} -> {b}" for a, deps in import_graph().items() for b in deps
           if layer(b) > layer(a)]
    assert bad == []


def test_strategies_do_not_import_each_other():
    graph = import_graph()
    bad = [f"{a} -> {b}" for a, deps in graph.items() for b in deps
           if a.startswith(STRATEGIES) and b.startswith(STRATEGIES)
           and a.split(".")[1] != b.split(".")[1]]
    assert bad == []


def test_the_coordinator_and_workers_import_no_report_code():
    graph = import_graph()
    running = [m for m in graph if m.startswith(ENGINE)] + ["core.ablation.study",
                                                           "core.ablation.handler"]
    bad = [f"{a} -> {b}" for a in running for b in graph[a] if b in REPORT]
    assert bad == []


def test_pure_modules_touch_no_store():
    graph = import_graph()
    bad = [f"{a} -> {b}" for a in PURE for b in graph[a]
           if b == "core.tracking" or b.startswith(ENGINE) or b == "core.ablation.runs"]
    assert bad == []


def test_the_layer_rules_catch_a_bad_import():
    assert layer("core.study.coordinator") < layer("core.ablation.study") < layer("core.cli")
    assert layer("core.runner") == 0


# ----------------------------------------------------------------------------- size, names

MAX_LINES = 450


def test_no_module_is_over_the_line_limit():
    long = {str(p.relative_to(CORE.parent)): n for p in CORE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def string_constants() -> dict[str, list[str]]:
    """Module -> every string constant in it (docstrings and f-string parts included)."""
    out = {}
    for p in CORE.rglob("*.py"):
        out[module_name(p)] = [n.value for n in ast.walk(ast.parse(p.read_text()))
                               if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return out


def code_strings() -> dict[str, list[str]]:
    """Module -> its string constants that are not docstrings (what the code writes)."""
    out = {}
    for p in CORE.rglob("*.py"):
        tree = ast.parse(p.read_text())
        docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)
                and isinstance(n.value, ast.Constant)}
        out[module_name(p)] = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
                               and isinstance(n.value, str) and id(n) not in docs]
    return out


def test_every_tag_name_is_spelled_in_one_module():
    """Every "ablab." tag, attr and metric name is a bare constant of core/names.py (as
    MLflow keeps mlflow_tags.py); every other module says names.X or lifecycle.X."""
    where = {m for m, values in code_strings().items()
             if any(v.startswith("ablab.") for v in values)}
    assert where == {"core.names"}, where
    assert import_graph()["core.names"] == set()  # no imports: a leaf anyone may read


def test_the_outcome_names_are_spelled_in_one_module():
    """Each outcome's name is written only in core/lifecycle.py; every other module says
    Outcome.DIVERGED, ..."""
    from core.lifecycle import Outcome

    consts = string_constants()
    for o in Outcome:
        where = {m for m, values in consts.items() if o.value in values}
        assert where == {"core.lifecycle"}, (o.value, where)
