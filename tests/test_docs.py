"""Every Python block of README.md and docs/*.md runs as written.

A file's blocks form one session (later blocks use names the earlier ones define), so each file's
blocks run, concatenated, in a fresh interpreter from the repository root."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), re.S | re.M)


@pytest.mark.parametrize("path", [p for p in DOCS if python_blocks(p)], ids=lambda p: p.name)
def test_python_blocks_run(path):
    code = "\n".join(python_blocks(path))
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{path.name}: a Python block failed:\n{done.stderr[-3000:]}"
