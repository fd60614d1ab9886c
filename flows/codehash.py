"""The hash of the code behind a step: its module's source and every first-party module it imports.

The step cache keys each step with this hash (beside its config and the outputs of the steps before
it), so a flow that was edited or upgraded reruns exactly the steps whose code changed, and never
returns an artifact that older code produced. Imports are read from the source (`ast`), including
imports inside functions; only `flows.*` and `models.*` count as first-party.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

from flows import __version__

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = ("flows", "models", "constraints")


def module_file(name: str) -> Path | None:
    """The source file of a first-party module or package name, or None."""
    parts = name.split(".")
    if parts[0] not in FIRST_PARTY:
        return None
    base = ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _resolve(name: str) -> str | None:
    """The longest first-party module prefix of a dotted name ('flows.train.train' -> 'flows.train')."""
    while name:
        if module_file(name) is not None:
            return name
        name = name.rpartition(".")[0]
    return None


@cache
def direct_imports(name: str) -> frozenset[str]:
    """First-party modules that `name` imports anywhere in its source (package parents included)."""
    path = module_file(name)
    if path is None:
        return frozenset()
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for target in targets:
            resolved = _resolve(target)
            if resolved and resolved != name:
                found.add(resolved)
    return frozenset(found)


def closure(name: str) -> list[str]:
    """`name` and every first-party module reachable through its imports, sorted."""
    seen, todo = set(), [name]
    while todo:
        mod = todo.pop()
        if mod in seen or module_file(mod) is None:
            continue
        seen.add(mod)
        todo.extend(direct_imports(mod))
    return sorted(seen)


@cache
def code_hash(module: str) -> str:
    """Hash of fireflow's version and the sources of `module`'s import closure."""
    h = hashlib.sha256(__version__.encode())
    for mod in closure(module):
        h.update(mod.encode())
        h.update(module_file(mod).read_bytes())
    return h.hexdigest()[:16]
