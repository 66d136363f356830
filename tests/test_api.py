"""The declared API: every module's ``__all__`` is real, and it holds everything the lessons call."""

import ast
import importlib

import pytest

from instructlab.profiles import REPO_ROOT

PACKAGE = REPO_ROOT / "instructlab"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__"))
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.py"))


def notebook_uses(path):
    """What one text notebook takes from the kit: ``(module, name, how)`` per use, ``how`` being
    ``"from-import"`` (``from instructlab.<module> import <name>``) or ``"attribute"`` (``<alias>.<name>``
    where ``from instructlab import <module> [as <alias>]`` bound the alias)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    aliases, uses = {}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "instructlab":
                aliases.update({a.asname or a.name: a.name for a in node.names})
            elif node.module.startswith("instructlab."):
                module = node.module.split(".")[1]
                uses.update((module, a.name, "from-import") for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("instructlab.") and a.asname:
                    aliases[a.asname] = a.name.split(".")[1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            uses.add((aliases[node.value.id], node.attr, "attribute"))
    return uses


def all_notebook_uses(how):
    return sorted((path.name, module, name) for path in NOTEBOOKS
                  for module, name, kind in notebook_uses(path) if kind == how)


def test_every_module_is_checked():
    assert {"build", "formats", "masking", "metrics", "models", "train", "widgets"} <= set(MODULES)
    assert len(NOTEBOOKS) >= 6


@pytest.mark.parametrize("name", MODULES)
def test_module_declares_its_api(name):
    module = importlib.import_module(f"instructlab.{name}")
    assert hasattr(module, "__all__"), f"instructlab/{name}.py has no __all__"
    declared = module.__all__
    assert isinstance(declared, (list, tuple)) and declared, f"{name}.__all__ must be a non-empty list"
    assert all(isinstance(n, str) for n in declared), f"{name}.__all__ holds a non-string"
    duplicates = sorted({n for n in declared if declared.count(n) > 1})
    assert not duplicates, f"{name}.__all__ lists {duplicates} more than once"
    private = [n for n in declared if n.startswith("_")]
    assert not private, f"{name}.__all__ lists private names {private}"
    missing = [n for n in declared if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ lists {missing}, which instructlab.{name} does not define"


def test_notebooks_are_parsed():
    """The checks below cannot pass by finding nothing."""
    assert len(all_notebook_uses("from-import")) >= 5
    assert len(all_notebook_uses("attribute")) >= 50


@pytest.mark.parametrize("how", ["from-import", "attribute"])
def test_notebooks_use_only_the_declared_api(how):
    undeclared = []
    for notebook, module, name in all_notebook_uses(how):
        assert module in MODULES, f"{notebook} uses instructlab.{module}, which is not a module of the package"
        declared = getattr(importlib.import_module(f"instructlab.{module}"), "__all__", ())
        if name not in declared:
            undeclared.append(f"{notebook}: instructlab.{module}.{name}")
    assert not undeclared, "names the lessons use but the module's __all__ leaves out:\n" + "\n".join(undeclared)
