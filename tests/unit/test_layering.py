"""The layering of the code: private names stay in their module, imports run one way.

Every .py file of the project's packages is parsed with `ast` (nothing is imported):

- no module imports another module's private name (`from features.x import _name`), uses one
  through a module alias (`x._name`), or patches one by name (`setattr(x, "_name", ...)`);
- `features` never imports `training`, `serving` or `cli`; `training` never imports `serving`
  or `cli`.

`KNOWN` lists the breaches that other work is still removing, each with its owner. A listed
breach that no longer occurs fails the test too, so the list shrinks as that work lands.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: The folders scanned; every import from one of these packages is ours.
SCANNED = ("features", "training", "serving", "cli", "bench", "tests")
#: Top-level packages a stage may not import (its downstream stages).
FORBIDDEN = {
    "features": ("training", "serving", "cli"),
    "training": ("serving", "cli"),
}

#: Breaches still to be removed by other work, as `path: breach` -> who removes it.
KNOWN: dict[str, str] = {}


def _python_files() -> Iterator[Path]:
    for folder in SCANNED:
        base = ROOT / folder
        if base.is_dir():
            yield from sorted(p for p in base.rglob("*.py") if ".venv" not in p.parts)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _ours(module: str) -> bool:
    return module.split(".")[0] in SCANNED


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _absolute(node: ast.ImportFrom, here: str, is_package: bool) -> str:
    """The absolute module an import reads from (`from . import x` resolved against `here`)."""
    if not node.level:
        return node.module or ""
    base = here.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def breaches(source: str, here: str, is_package: bool = False) -> list[str]:
    """The layering breaches in the source of module `here`, as short texts."""
    tree = ast.parse(source)
    found: list[str] = []
    aliases: set[str] = set()  # local names bound to one of our modules
    imported: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _ours(alias.name):
                    imported.append(alias.name)
                    aliases.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, here, is_package)
            if not _ours(module):
                continue
            imported.append(module)
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"from {module} import {alias.name}")
                elif _is_module(f"{module}.{alias.name}"):
                    aliases.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            target = _dotted(node.value)
            if target is not None and target.split(".")[0] in aliases:
                found.append(f"{target}.{node.attr}")
        elif isinstance(node, ast.Call) and _patches_private(node, aliases):
            target, name = _dotted(node.args[0]), node.args[1]
            assert isinstance(name, ast.Constant)
            found.append(f"setattr({target}, {name.value!r})")
    stage = here.split(".")[0]
    for module in imported:
        if module.split(".")[0] in FORBIDDEN.get(stage, ()):
            found.append(f"{stage} imports {module}")
    return found


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    return None


def _patches_private(node: ast.Call, aliases: set[str]) -> bool:
    """`setattr(module, "_name", ...)` or `monkeypatch.setattr(module, "_name", ...)`."""
    func = node.func
    named = (isinstance(func, ast.Name) and func.id == "setattr") or (
        isinstance(func, ast.Attribute) and func.attr == "setattr"
    )
    if not named or len(node.args) < 2:
        return False
    target, name = _dotted(node.args[0]), node.args[1]
    return (
        target is not None
        and target.split(".")[0] in aliases
        and isinstance(name, ast.Constant)
        and isinstance(name.value, str)
        and _private(name.value)
    )


@functools.cache
def all_breaches() -> frozenset[str]:
    """Every breach in the scanned folders, as `path: breach`."""
    return frozenset(
        f"{path.relative_to(ROOT).as_posix()}: {breach}"
        for path in _python_files()
        for breach in breaches(
            path.read_text(encoding="utf-8"), _module_name(path), path.name == "__init__.py"
        )
    )


def test_no_private_name_crosses_a_module_and_imports_run_one_way() -> None:
    found = all_breaches()
    new = sorted(found - set(KNOWN))
    assert not new, "layering breaches (make the name public, or import downstream):\n" + "\n".join(
        new
    )


def test_known_breaches_are_still_there() -> None:
    """A breach removed from the code is removed from `KNOWN` too."""
    gone = sorted(set(KNOWN) - all_breaches())
    assert not gone, "fixed: remove these from KNOWN in tests/unit/test_layering.py:\n" + "\n".join(
        gone
    )


def test_the_checker_sees_each_kind_of_breach() -> None:
    """The checker finds what it looks for (a checker that finds nothing proves nothing)."""
    sample = (
        "from features.reader import sources\n"
        "from features.synthetic import _T\n"
        "import features.reader.sources as src\n"
        "from training.scorer import ModelSpec\n"
        "x = sources._hidden\n"
        "y = src._other\n"
        "setattr(sources, '_BATCH', 1)\n"
        "z = ModelSpec._fields\n"
        "from . import _sibling\n"
    )
    found = breaches(sample, "features.sample")
    assert sorted(found) == sorted(
        [
            "from features.synthetic import _T",
            "sources._hidden",
            "src._other",
            "setattr(sources, '_BATCH')",
            "features imports training.scorer",
            "from features import _sibling",
        ]
    )
