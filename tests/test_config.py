"""Config files: a value of the wrong type is an error that names the file, the line and
the key's path; a right one comes back as the declared type."""

from __future__ import annotations

from pathlib import Path

import pytest

from bt_sorter.config import load_config
from bt_sorter.yamlio import SpecError


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        (
            "line:\n  belt_speed: 0.1\n  gate_positions: [0.5, oops, 1.1]\n",
            4,
            "config.line.gate_positions[1] must be a number, got text",
        ),
        (
            "classifier:\n  backend: tensorflow\n",
            3,
            "config.classifier.backend must be one of 'torch', 'http', 'hsv', 'mqtt', "
            "got 'tensorflow'",
        ),
        ("timings:\n  tick_hz: true\n", 3, "config.timings.tick_hz must be a number, got True"),
        (
            "sorting:\n  routes:\n    ripe: two\n",
            3,
            "config.sorting.routes.ripe must be an integer, got text",
        ),
        (
            "line:\n  gates:\n    - blocked: {median: soon}\n",
            4,
            "config.line.gates[0].blocked.median must be a number, got text",
        ),
        ("sorting:\n  reject: raw\n", 3, "config.sorting.reject must be a list, got text"),
    ],
    ids=["list-item", "choice", "bool-for-number", "mapping-value", "nested", "list"],
)
def test_a_wrong_type_names_file_line_and_key(
    body: str, line: int, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "line.yaml"
    path.write_text("# a line's config\n" + body)
    with pytest.raises(SpecError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}:{line}: {message}"


def test_values_come_back_as_the_declared_types(tmp_path: Path) -> None:
    path = tmp_path / "line.yaml"
    path.write_text(
        "timings:\n  tick_hz: 25\nline:\n  gate_positions: [0.5, 0.75, 1]\n"
        "  gates:\n    - clear: {median: 3, n: 4}\n    - {}\n    - {}\n"
    )
    config = load_config(path)
    assert config.timings.tick_hz == 25.0 and isinstance(config.timings.tick_hz, float)
    assert config.line is not None
    assert config.line.gate_positions == (0.5, 0.75, 1.0)
    assert all(isinstance(p, float) for p in config.line.gate_positions)
    clear = config.line.gates[0].clear
    assert clear is not None and isinstance(clear.median, float) and clear.n == 4
