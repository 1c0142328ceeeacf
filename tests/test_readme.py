"""The README's drop-in change is the one the third-party app test applies, and it is small."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"


def test_readme_shows_the_tested_diff_and_it_is_five_lines() -> None:
    blocks = re.findall(r"```diff\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1, "the README's swap-in diff is gone"
    shipped = (REPO / "tests" / "apps" / "breastcancer" / "coop.diff").read_text()
    assert blocks[0] == shipped  # the README shows what tests/test_thirdparty_apps.py runs
    changed = [ln for ln in shipped.splitlines()
               if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    assert len([ln for ln in changed if ln.startswith("+")]) <= 5
    # the imports it adds resolve to the public API
    from coopflower.client import coop_mod
    from coopflower.strategy import CoordinatedStrategy, TaskConfig

    assert callable(coop_mod) and CoordinatedStrategy and TaskConfig
