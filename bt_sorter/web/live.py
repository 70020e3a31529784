"""The runner's side of the live page: a snapshot at most ``rate_hz`` times a second.

:meth:`LiveWeb.update` is called every tick and costs one clock read when no snapshot is
due; when one is, it builds it (:func:`bt_sorter.web.state.snapshot`, a walk over the
nodes and a few small lists) and hands it to the server's thread, which does the rest.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from py_trees.behaviour import Behaviour

from bt_sorter.behaviours.base import Context
from bt_sorter.log import get_logger
from bt_sorter.web.server import WebServer, parse_address
from bt_sorter.web.state import Throughput, snapshot, statuses, tree_shape, walk

log = get_logger("bt_sorter.web")


class LiveWeb:
    """Feeds the live page from the tick thread without waiting on it."""

    def __init__(
        self, server: WebServer, root: Behaviour, ctx: Context, *, rate_hz: float = 10.0
    ) -> None:
        self.server = server
        self.ctx = ctx
        self.nodes = [node for node, _, _ in walk(root)]
        self.interval = 1.0 / rate_hz
        self._next = 0.0
        self.chart = Throughput()
        self.costs: deque[float] = deque(maxlen=100_000)  # seconds per published snapshot

    def update(self, force: bool = False) -> None:
        """Publish a snapshot when one is due (or when ``force``); cheap otherwise."""
        now = time.monotonic()
        if not force and now < self._next:
            return
        self._next = now + self.interval
        events = list(self.ctx.record.recent)
        self.server.publish(snapshot(self.ctx, statuses(self.nodes), events, self.chart))
        self.costs.append(time.monotonic() - now)

    def close(self) -> None:
        """Publish the final state (the page keeps showing it until the server stops), and
        log what the page cost the tick thread."""
        self.update(force=True)
        costs = sorted(self.costs)
        log.info(
            "live_page_stats",
            snapshots=len(costs),
            tick_cost_p50_ms=round(costs[len(costs) // 2] * 1000, 3),
            tick_cost_p99_ms=round(costs[int(len(costs) * 0.99)] * 1000, 3),
            tick_cost_max_ms=round(costs[-1] * 1000, 3),
            browsers=self.server.clients,
        )


def hello(root: Behaviour, ctx: Context, mode: str, title: str) -> dict[str, Any]:
    """What a page gets once on connecting: the tree's shape and what it is watching."""
    return {"mode": mode, "title": title, "tree": tree_shape(root)}


def start_live(address: str, root: Behaviour, ctx: Context, title: str) -> LiveWeb:
    """Serve the live page on ``[HOST:]PORT``; raise WebError if it cannot."""
    host, port = parse_address(address)
    server = WebServer(host, port, hello(root, ctx, "live", title))
    server.start()
    return LiveWeb(server, root, ctx)
