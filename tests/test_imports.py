"""The import structure of the project (see ARCHITECTURE.md, "Import direction").

``models`` imports nothing of ours; ``pipelines.core`` imports only ``models``;
``pipelines.datasets`` imports only ``pipelines.core``; a task imports core, datasets and models,
never another task; only a task's own package and the entry points that dispatch by name
(``pipelines.compare``, ``pipelines.export``) import a task. Every module also imports on its own,
whatever was imported before it.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = ("models", "pipelines")
ENTRY_POINTS = {"pipelines.compare", "pipelines.export"}
SHARED = {"pipelines.core", "pipelines.datasets"}
# Cycles that exist and are being removed (issue 21); a new one fails the test.
KNOWN_CYCLES: list[set[str]] = []


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def our_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in OURS
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "__main__.py"
    }


def imports_of(name: str, path: Path) -> set[str]:
    """Modules of ours that ``path`` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {m for m in found if m.split(".")[0] in OURS}


def area(module: str) -> str:
    """``models``, ``pipelines.core``, ``pipelines.datasets``, ``pipelines.<task>``, or the
    top-level module (``pipelines``, ``pipelines.compare`` ...)."""
    parts = module.split(".")
    return parts[0] if parts[0] == "models" else ".".join(parts[:2])


def test_import_direction():
    modules = our_modules()
    tasks = {
        f"pipelines.{folder.name}"
        for folder in (ROOT / "pipelines").iterdir()
        if (folder / "__init__.py").exists()
    } - SHARED
    wrong = []
    for name, path in modules.items():
        source = area(name)
        for target in {area(m) for m in imports_of(name, path)} - {source}:
            allowed = {
                "models": set(),
                "pipelines.core": {"models"},
                "pipelines.datasets": {"pipelines.core"},
            }.get(source)
            if allowed is not None and target not in allowed:
                wrong.append(f"{name} -> {target}")
            elif target in tasks and source not in ENTRY_POINTS:
                wrong.append(f"{name} -> {target} (only a task's own package imports it)")
    assert not wrong, "imports against the direction:\n" + "\n".join(sorted(wrong))


def import_cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = {stack.pop()}
            while module not in component:
                component.add(stack.pop())
            if len(component) > 1:
                cycles.append(component)

    for module in graph:
        if module not in index:
            visit(module)
    return cycles


def test_no_new_import_cycles():
    """Module-level and deferred (inside a function) imports count alike: deferring an import
    hides a cycle from Python, not from the reader. A package's own ``__init__`` is not an edge."""
    modules = our_modules()
    graph = {
        name: {
            target
            for target in imports_of(name, path)
            if target in modules and target != name and not name.startswith(target + ".")
        }
        for name, path in modules.items()
    }
    new = [cycle for cycle in import_cycles(graph) if cycle not in KNOWN_CYCLES]
    assert not new, f"import cycles: {new}"


def test_every_module_imports_on_its_own():
    """Each module is imported after every module of ours is forgotten (third-party packages
    stay loaded, so this takes seconds), then the session's own modules and the registries our
    imports fill (Keras serializables, TFDS builders) are put back as they were."""
    from keras.src.saving import object_registration
    from tensorflow_datasets.core import registered

    registries = [
        object_registration.GLOBAL_CUSTOM_OBJECTS,
        object_registration.GLOBAL_CUSTOM_NAMES,
        *(value for value in vars(registered).values() if isinstance(value, dict)),
    ]
    saved = [dict(registry) for registry in registries]
    session = {name: module for name, module in sys.modules.items() if is_ours(name)}
    failures = {}
    try:
        for name in sorted(our_modules()):
            forget_our_modules(registered)
            try:
                importlib.import_module(name)
            except Exception as exc:  # noqa: BLE001  (any failure to import is the finding)
                failures[name] = f"{type(exc).__name__}: {exc}"
    finally:
        forget_our_modules(registered)
        sys.modules.update(session)
        for registry, contents in zip(registries, saved, strict=True):
            registry.clear()
            registry.update(contents)
    assert not failures, failures


def is_ours(module: str) -> bool:
    return module.split(".")[0] in OURS


def forget_our_modules(registered) -> None:
    for name in [m for m in sys.modules if is_ours(m)]:
        del sys.modules[name]
    for registry in (registered._DATASET_REGISTRY, registered._ABSTRACT_DATASET_REGISTRY):
        for builder, cls in list(registry.items()):
            if is_ours(cls.__module__):
                del registry[builder]
