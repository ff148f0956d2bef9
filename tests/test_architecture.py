"""The direction of imports (README, "The map"): read from the code itself, so a wrong one fails here.

- a service never imports another service: services talk through events only;
- the runtime never imports a service: it is what every service stands on;
- ``contracts`` imports nothing of duban but itself, and no library but pydantic (other systems
  use it alone);
- inside the runtime, its subpackages stand on each other in one order (``es`` at the bottom,
  ``tools`` at the top), so none imports one above it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ROOT / "services"
#: The runtime's subpackages from the bottom up: each may import those before it, never after.
RUNTIME_ORDER = ["observe", "es", "http", "bus", "read", "tools"]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, by its absolute name (relative imports resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def service_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "services" else None


def test_no_service_imports_another_and_the_runtime_imports_none():
    wrong = []
    for path in python_files(SERVICES):
        own = path.relative_to(SERVICES).parts[0]
        for module in imported_modules(path):
            other = service_of(module)
            if other is None or other == own or other == "runtime" or not (SERVICES / other).is_dir():
                continue
            wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert wrong == []


def test_contracts_stand_alone_on_pydantic():
    stdlib = set(sys.stdlib_module_names)
    wrong = []
    for path in python_files(ROOT / "contracts"):
        for module in imported_modules(path):
            top = module.split(".")[0]
            if top in stdlib or top in {"contracts", "pydantic", "__future__", ""}:
                continue
            wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert wrong == []


def test_the_runtime_subpackages_import_only_those_below_them():
    runtime = SERVICES / "runtime"
    wrong = []
    for path in python_files(runtime):
        parts = path.relative_to(runtime).parts
        if len(parts) < 2:
            continue  # service.py and settings.py stand above and below them all
        level = RUNTIME_ORDER.index(parts[0])
        for module in imported_modules(path):
            names = module.split(".")
            if names[:2] != ["services", "runtime"] or len(names) < 3 or names[2] not in RUNTIME_ORDER:
                continue
            if RUNTIME_ORDER.index(names[2]) > level:
                wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert wrong == []


def test_the_check_sees_a_wrong_import():
    """The checks above read real imports: one written on purpose makes them fail."""
    wrong = SERVICES / "tracking" / "_architecture_probe.py"
    wrong.write_text("from services.intake.domain import Matter\nfrom ..notify import projections\n")
    try:
        found = imported_modules(wrong)
        assert "services.intake.domain" in found and "services.notify.projections" in found
        with pytest.raises(AssertionError):
            test_no_service_imports_another_and_the_runtime_imports_none()
    finally:
        wrong.unlink()
