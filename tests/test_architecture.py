"""The package's layering, checked from the source: no import cycles, no upward imports, no private
names across modules, small modules with a docstring (issue 10). Function-level imports count."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from flows.codehash import ROOT, closure, direct_imports, module_file

# lower layers never import higher ones; the same layer may import itself (without cycles)
LAYERS: list[tuple[int, tuple[str, ...]]] = [
    (0, ("flows", "flows.errors", "flows.atomic", "flows.codehash", "flows.results", "flows.logs")),
    (1, ("flows.config", "flows.configfile", "flows.dataconfig", "flows.searchconfig", "flows.boards")),
    (1, ("constraints", "models")),
    # 2: every library module not named here (data, train, export, convert, csim, estimator, ...)
    (3, ("flows.context",)),
    (4, ("flows.steps", "flows.reporting")),
    (5, ("flows.flow",)),
    (6, ("flows.api",)),
    (7, ("flows.build", "flows.report", "flows.sweep")),  # the command lines
]
LIBRARY_RANK = 2
MAX_LINES = 420


def all_modules() -> list[str]:
    names = []
    for pkg in ("flows", "models", "constraints"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def rank(module: str) -> int:
    best, best_len = LIBRARY_RANK, -1
    for level, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                if prefix == "flows" and module != "flows":
                    continue  # the package itself is layer 0; its modules are ranked on their own
                best, best_len = level, len(prefix)
    return best


def graph() -> dict[str, set[str]]:
    return {m: set(direct_imports(m)) - {m} for m in all_modules()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_cycle_check_catches_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_upward_imports():
    upward = [
        f"{src} (layer {rank(src)}) imports {dst} (layer {rank(dst)})"
        for src, targets in graph().items()
        for dst in targets
        if not (src.startswith(dst + ".") or dst == "flows") and rank(dst) > rank(src)
    ]
    assert upward == []


def test_layers_are_what_the_architecture_says():
    assert rank("flows.errors") == 0
    assert rank("models.fire") == 1
    assert rank("flows.train") == LIBRARY_RANK
    assert rank("flows.steps.train") == 4
    assert rank("flows.build") == 7


def test_library_code_does_not_reach_the_steps_or_the_cli():
    for module in ("flows.train", "flows.hardware", "flows.pipeline", "flows.data"):
        reached = closure(module)
        assert not [m for m in reached if rank(m) > LIBRARY_RANK], module


def test_no_private_names_imported_across_modules():
    found = []
    for module in all_modules():
        path = module_file(module)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("flows", "models"):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.endswith("__")]
                found += [f"{module}: {node.module}.{name}" for name in private]
    assert found == []


def test_no_untyped_build_parameters():
    hits = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "flows").rglob("*.py")
        if "build: Any" in p.read_text() or "ctx: Any" in p.read_text()
    ]
    assert hits == []


@pytest.mark.parametrize("pkg", ["flows", "models", "constraints"])
def test_modules_are_small_and_say_what_they_are(pkg):
    for path in sorted((ROOT / pkg).rglob("*.py")):
        text = path.read_text()
        assert ast.get_docstring(ast.parse(text)), f"{path} has no module docstring"
        assert len(text.splitlines()) <= MAX_LINES, f"{path}: {len(text.splitlines())} lines"


def test_exceptions_live_in_errors_py():
    classes = []
    for path in (ROOT / "flows").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                getattr(b, "id", "").endswith(("Error", "Exception")) for b in node.bases
            ):
                classes.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert [c for c in classes if not c.startswith("flows/errors.py")] == []


def test_board_files_are_package_data():
    from flows.boards import CONSTRAINTS_DIR, available_boards

    assert Path(CONSTRAINTS_DIR).is_dir() and "pynq-z2" in available_boards()
    text = (ROOT / "pyproject.toml").read_text()
    assert 'constraints = ["*.json"]' in text
