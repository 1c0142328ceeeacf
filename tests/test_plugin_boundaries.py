"""The plugin imports nothing of the paper's app: its models, training recipe, MNIST data,
augmentation and handlers live in ``coopflower.app`` and the modules it uses, and the packages
a third-party app relies on never reach for them (not even lazily, inside a function). And the
other way round: the paper app imports of coopflower's plugin only what a third party can,
the exported names of its public modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "coopflower"
PLUGIN = ("strategy", "client", "crypto", "fusion", "ledger", "storage")
PAPER = ("coopflower.models", "coopflower.training", "coopflower.data", "coopflower.augment",
         "coopflower.app", "coopflower.demo", "coopflower.simulate")


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


@pytest.mark.parametrize("package", PLUGIN)
def test_the_plugin_does_not_import_the_paper_app(package: str) -> None:
    found = [f"{path.relative_to(ROOT.parent)}:{line}: {name}"
             for path in sorted((ROOT / package).rglob("*.py"))
             for line, name in _imports(path)
             if any(name == p or name.startswith(p + ".") for p in PAPER)]
    assert not found, "the plugin imports the paper app:\n" + "\n".join(found)


# what a third-party app may import of coopflower: these modules' exported names (``__all__``)
PUBLIC = ("coopflower.client", "coopflower.client.stages", "coopflower.client.ivhe_mod",
          "coopflower.client.fusion_mod", "coopflower.strategy", "coopflower.fusion",
          "coopflower.ledger", "coopflower.storage")


def _coopflower_names(path: Path) -> list[tuple[int, str, str]]:
    """(line, module, name) of every ``from coopflower... import name`` in ``path`` (and
    (line, module, "") of every plain ``import coopflower...``)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, "") for a in node.names
                    if a.name.startswith("coopflower")]
        elif (isinstance(node, ast.ImportFrom) and node.module and node.level == 0
              and node.module.startswith("coopflower")):
            out += [(node.lineno, node.module, a.name) for a in node.names]
    return out


def test_the_paper_app_uses_only_the_public_plugin_api() -> None:
    import importlib

    found = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        for line, module, name in _coopflower_names(path):
            if any(module == p or module.startswith(p + ".") for p in PAPER):
                continue  # the app's own modules: its models, training, data, itself
            exported = (getattr(importlib.import_module(module), "__all__", ())
                        if module in PUBLIC else ())
            if not name or name not in exported:
                found.append(f"{path.relative_to(ROOT.parent)}:{line}: {module}.{name}")
    assert not found, "the paper app reaches past the public API:\n" + "\n".join(found)
