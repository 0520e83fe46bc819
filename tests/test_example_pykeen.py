"""examples/pykeen_to_gekc.py runs (PyKEEN trains for a few epochs: slow)."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "pykeen_to_gekc.py"


@pytest.mark.slow
def test_pykeen_to_gekc_runs():
    pytest.importorskip("pykeen")
    args = [sys.executable, str(EXAMPLE), "--epochs", "2", "--finetune", "1", "--dim", "4"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "exact mean log-likelihood" in done.stdout and "under the schema" in done.stdout
    # the compiled scores equal PyKEEN's (to float rounding)
    line = next(x for x in done.stdout.splitlines() if x.startswith("max |φ - PyKEEN score|"))
    assert float(line.rsplit(" ", 1)[1]) < 1e-4
