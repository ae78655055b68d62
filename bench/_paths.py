"""What every bench script needs because `bench/features.py` shares its name with the package.

A script run as `python bench/X.py` has bench/ first on sys.path, where `features` is
bench/features.py, not the package.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent


def bench_features() -> ModuleType:
    """bench/features.py (its snapshot check, CPU counters and `measure` of a fresh child),
    loaded by path under another name."""
    spec = importlib.util.spec_from_file_location("bench_features", HERE / "features.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def use_package() -> None:
    """Drop bench/ from sys.path, so that `import features` imports the package."""
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
