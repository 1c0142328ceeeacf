"""The README's drop-in snippet runs: its imports and constructions, as a user would paste them."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_swap_snippet_imports_and_builds() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README lost its Python snippet"
    # everything but the lines that need a running Flower grid (`grid`, `arrays`)
    runnable = "\n".join(
        line for block in blocks for line in block.splitlines()
        if "grid=" not in line and not line.lstrip().startswith("#")
    )
    namespace: dict[str, object] = {}
    exec(compile(runnable, str(README), "exec"), namespace)  # noqa: S102 - our own README
    from flwr.clientapp import ClientApp
    from flwr.serverapp.strategy import FedAvg

    assert isinstance(namespace["strategy"], FedAvg)  # a drop-in for FedAvg
    assert isinstance(namespace["app"], ClientApp)
