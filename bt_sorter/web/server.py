"""The web server: serves the page and pushes snapshots to every browser, in its own thread.

The server is aiohttp on an event loop of its own thread. The controller's tick thread
never waits on it: :meth:`WebServer.publish` hands over a snapshot (a plain dict) with
one thread-safe call and returns; the web thread serialises it once and every browser's
websocket gets the newest one (a slow browser skips snapshots, it never queues them).

Loopback by default. Any other address needs a token (``BT_SORTER_WEB_TOKEN`` in the
environment, or given): the page, its websocket and its pictures then answer only to
``?token=...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from bt_sorter import address
from bt_sorter.log import get_logger

STATIC = Path(__file__).resolve().parent / "static"
TOKEN_ENV = "BT_SORTER_WEB_TOKEN"
PICTURES_KEPT = 64
log = get_logger("bt_sorter.web")

Command = Callable[[dict[str, Any]], None]


class WebError(ValueError):
    """The web view cannot start as asked (bad address, missing token, port in use)."""


def parse_address(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` -> (host, port); loopback unless a host is given."""
    try:
        return address.parse_address(text, "--web")
    except ValueError as exc:
        raise WebError(str(exc)) from None


class WebServer:
    """The page, its assets, ``/ws`` (snapshots out, commands in) and ``/picture/ID``."""

    def __init__(
        self,
        host: str,
        port: int,
        hello: dict[str, Any],
        *,
        token: str | None = None,
        on_command: Command | None = None,
    ) -> None:
        token = token or os.environ.get(TOKEN_ENV) or None
        if not address.is_loopback(host) and not token:
            raise WebError(
                f"--web on {host} (not loopback) needs a token: set {TOKEN_ENV} in the "
                "environment, then open the page with ?token=..."
            )
        self.host, self.port, self.token = host, port, token
        self.on_command = on_command
        self._hello = json.dumps({"type": "hello", **hello}, default=str)
        self._latest = ""
        self._version = 0
        self._pictures: OrderedDict[int, bytes] = OrderedDict()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None  # set (and replaced) on each snapshot
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopping: asyncio.Event | None = None
        self._sent: dict[int, int] = {}  # browser -> the snapshot version it was last sent
        self.clients = 0
        self.published = 0

    # -- lifecycle (controller side) ----------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Bind and serve in a daemon thread; raise :class:`WebError` if it cannot."""
        self._thread = threading.Thread(target=self._serve, name="bt_sorter-web", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise WebError(f"web server did not start within {timeout} s")
        if self._error is not None:
            raise WebError(f"web server on {self.host}:{self.port}: {self._error}")
        log.info("web_started", url=self.url)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = f"?token={self.token}" if self.token else ""
        return f"http://{host}:{self.port}/{query}"

    def publish(self, snapshot: dict[str, Any]) -> None:
        """Hand the newest snapshot to the web thread; never blocks, never raises."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed in between
            loop.call_soon_threadsafe(self._take, snapshot)

    def call(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the web thread's loop."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn)

    def stop(self, timeout: float = 5.0) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the web thread --------------------------------------------------------------------

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to start() when it happens while binding
            self._error = exc
            if self._ready.is_set():
                log.error("web_server_failed", error=repr(exc))
        finally:
            self._ready.set()
            loop.close()

    async def _main(self) -> None:
        self._changed = asyncio.Event()
        self._stopping = asyncio.Event()
        app = web.Application(middlewares=[self._guard])
        app.add_routes(
            [
                web.get("/", self._page),
                web.get("/ws", self._ws),
                web.get("/picture/{item:[0-9]+}", self._picture),
                web.static("/static", STATIC, follow_symlinks=False),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        try:
            site = web.TCPSite(self._runner, self.host, self.port)
            await site.start()
            if self.port == 0:  # an ephemeral port: say which
                self.port = int(self._runner.addresses[0][1])
            self._loop = asyncio.get_running_loop()
            self._ready.set()
            await self._stopping.wait()
            await self._flush(1.0)
        finally:
            await self._runner.cleanup()

    async def _flush(self, timeout: float) -> None:
        """Give every browser the last snapshot (the run's final state) before closing."""
        deadline = asyncio.get_running_loop().time() + timeout
        while any(v != self._version for v in self._sent.values()):
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.02)

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.token and not request.path.startswith("/static/"):
            given = request.query.get("token", "")
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                raise web.HTTPForbidden(text="token required: open the page with ?token=...")
        response = await handler(request)
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    async def _page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    async def _picture(self, request: web.Request) -> web.StreamResponse:
        data = self._pictures.get(int(request.match_info["item"]))
        if data is None:
            raise web.HTTPNotFound()
        kind = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
        return web.Response(body=data, content_type=kind)

    def _take(self, snapshot: dict[str, Any]) -> None:
        """On the web thread: keep the pictures, serialise once, wake every browser."""
        thumbs = []
        for thumb in snapshot.get("thumbnails", ()):
            picture = thumb.get("picture")
            if isinstance(picture, bytes | bytearray):
                self._pictures[thumb["id"]] = bytes(picture)
                self._pictures.move_to_end(thumb["id"])
            thumbs.append({k: v for k, v in thumb.items() if k != "picture"})
        while len(self._pictures) > PICTURES_KEPT:
            self._pictures.popitem(last=False)
        message = {"type": "state", **snapshot, "thumbnails": thumbs}
        self._latest = json.dumps(message, default=str, separators=(",", ":"))
        self._version += 1
        self.published += 1
        if self._changed is not None:
            self._changed.set()  # wakes every browser waiting on this one
            self._changed = asyncio.Event()

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=64 * 1024)
        await ws.prepare(request)
        self.clients += 1
        feeder = asyncio.ensure_future(self._feed(ws))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT or self.on_command is None:
                    continue
                try:
                    command = json.loads(msg.data)
                except ValueError:
                    continue
                if isinstance(command, dict):
                    try:
                        self.on_command(command)
                    except Exception as exc:  # a bad command must not close the page
                        log.warning("web_command_failed", command=command, error=repr(exc))
        finally:
            feeder.cancel()
            self.clients -= 1
        return ws

    async def _feed(self, ws: web.WebSocketResponse) -> None:
        """Send the hello, then the newest snapshot whenever there is a newer one."""
        try:
            await ws.send_str(self._hello)
            seen = self._sent[id(ws)] = 0
            while not ws.closed:
                changed = self._changed
                if self._version != seen:
                    seen = self._version
                    await ws.send_str(self._latest)
                    self._sent[id(ws)] = seen
                elif changed is not None:
                    await changed.wait()
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass
        finally:
            self._sent.pop(id(ws), None)
