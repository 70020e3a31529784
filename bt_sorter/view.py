"""The live view: the tree with its status marks and the facts an operator needs.

On a terminal the view is redrawn in place (cursor home, clear to the end) at most
``redraw_hz`` times a second; off a terminal a ``tree_snapshot`` log event carries the
same text every ``snapshot_every`` wall seconds. :meth:`LiveView.update` is called every
tick and costs one clock read when nothing is due.
"""

from __future__ import annotations

import sys
import time
from typing import Literal, TextIO

import py_trees

from bt_sorter.blackboard import Blackboard, Outcome
from bt_sorter.log import get_logger

Viz = Literal["ascii", "unicode", "none"]
VIZ_CHOICES: tuple[str, ...] = ("ascii", "unicode", "none")

_HOME_CLEAR = "\x1b[H\x1b[J"
log = get_logger("bt_sorter.view")


def tree_text(root: py_trees.behaviour.Behaviour, viz: Viz = "ascii") -> str:
    """The tree drawn with status marks (``viz`` "unicode" uses box-drawing characters)."""
    if viz == "unicode":
        return str(py_trees.display.unicode_tree(root, show_status=True))
    return str(py_trees.display.ascii_tree(root, show_status=True))


def facts(bb: Blackboard) -> dict[str, object]:
    """The blackboard facts an operator needs, as plain values."""
    outcomes = bb.items.done.outcomes  # counted as items resolve: no recount per draw
    return {
        "tick": bb.tick,
        "line_time": round(bb.now, 2),
        "connected": bb.connected,
        "belt": "running" if bb.belt_running else "stopped",
        "in_flight": [
            {"id": i.id, "zone": i.zone, "label": i.label, "rod": i.rod} for i in bb.items
        ],
        "last_label": bb.last_label,
        "fed": bb.items.fed,
        "sorted": outcomes[Outcome.SORTED],
        "rejected": outcomes[Outcome.REJECTED],
        "lost": outcomes[Outcome.LOST],
        "bad_inputs": bb.bad_inputs,
        "alarms": list(bb.alarms),
    }


def facts_text(bb: Blackboard) -> str:
    """:func:`facts` as a few short lines."""
    f = facts(bb)
    items = (
        ", ".join(
            f"#{i['id']} zone {i['zone']} {i['label'] or '?'}"
            + (f" -> rod {i['rod']}" if i["rod"] else "")
            for i in f["in_flight"]  # type: ignore[attr-defined]
        )
        or "none"
    )
    lines = [
        f"tick {f['tick']}  line time {f['line_time']:.2f} s  "
        f"{'connected' if f['connected'] else 'OFFLINE (tree held)'}  belt {f['belt']}",
        f"in flight: {items}",
        f"last label: {f['last_label'] or '-'}",
        f"fed {f['fed']}  sorted {f['sorted']}  rejected {f['rejected']}  lost {f['lost']}  "
        f"bad inputs {f['bad_inputs']}",
    ]
    if f["alarms"]:
        lines.append(f"ALARMS: {'; '.join(f['alarms'])}")  # type: ignore[arg-type]
    return "\n".join(lines)


class LiveView:
    """Draws the tree and the blackboard facts to a terminal, or logs snapshots."""

    def __init__(
        self,
        root: py_trees.behaviour.Behaviour,
        bb: Blackboard,
        viz: Viz = "ascii",
        stream: TextIO | None = None,
        *,
        redraw_hz: float = 10.0,
        snapshot_every: float = 5.0,
    ) -> None:
        if viz not in VIZ_CHOICES:
            raise ValueError(f"viz must be one of {', '.join(VIZ_CHOICES)}, got {viz!r}")
        self.root = root
        self.bb = bb
        self.viz = viz
        self.stream = stream or sys.stdout
        self.terminal = _isatty(self.stream)
        self.interval = 1.0 / redraw_hz if self.terminal else snapshot_every
        self._next = 0.0
        self.draws = 0

    def text(self) -> str:
        return tree_text(self.root, self.viz) + "\n" + facts_text(self.bb)

    def update(self, force: bool = False) -> None:
        """Draw when due (or when ``force``); cheap otherwise."""
        if self.viz == "none":
            return
        now = time.monotonic()
        if not force and now < self._next:
            return
        self._next = now + self.interval
        self.draws += 1
        if self.terminal:
            self.stream.write(_HOME_CLEAR + self.text() + "\n")
            self.stream.flush()
        else:
            log.info("tree_snapshot", tree=tree_text(self.root, self.viz), **facts(self.bb))

    def close(self) -> None:
        """Draw the final state once."""
        self.update(force=True)


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
