"""The code in docs/guides/*.md runs as written: each guide's python blocks, in order, in a fresh process
(guides register adapters, recipes and renderers; a subprocess keeps them out of the other tests)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDES = sorted((ROOT / "docs" / "guides").glob("*.md"))
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.stem)
def test_guide_code_runs(guide: Path, tmp_path: Path) -> None:
    blocks = BLOCK.findall(guide.read_text())
    assert blocks, f"{guide.name} has no python block"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-W", "error", "-c", "\n".join(blocks)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
