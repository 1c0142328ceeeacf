"""The plugin imports nothing of the paper's app: its models, training recipe, MNIST data,
augmentation and handlers live in ``coopflower.app`` and the modules it uses, and the packages
a third-party app relies on never reach for them (not even lazily, inside a function)."""

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
