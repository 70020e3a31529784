"""A headless Chromium driven over the DevTools protocol: for the page's tests and screenshots.

Debian's ``chromium`` (``apt-get install chromium``), started with a fresh profile and
everything that would reach the internet turned off; the page's DevTools websocket is
spoken with aiohttp's client. Only what the tests need: open a URL, evaluate an
expression, wait until one holds, take a screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bt_sorter.portable import child_kwargs

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--remote-debugging-port=0",
    "--remote-debugging-address=127.0.0.1",
)


def find_chromium() -> str | None:
    """The chromium executable, or None when it is not installed."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserError(RuntimeError):
    """The browser did not start, or a DevTools call failed."""


class Chromium:
    """One headless browser with one page, opened at ``url``."""

    def __init__(self, url: str, *, width: int = 1500, height: int = 1000) -> None:
        exe = find_chromium()
        if exe is None:
            raise BrowserError("chromium is not installed (apt-get install chromium)")
        self._profile = tempfile.TemporaryDirectory(
            prefix="bt_sorter_chromium_", ignore_cleanup_errors=True
        )
        profile = Path(self._profile.name)
        self._proc = subprocess.Popen(
            [exe, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **child_kwargs(posix_session=True),  # its helpers go with it on close (POSIX)
        )
        self._loop = asyncio.new_event_loop()
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        try:
            port = self._devtools_port(profile / "DevToolsActivePort", timeout=60.0)
            self._loop.run_until_complete(self._connect(port, timeout=30.0))
        except BaseException:
            self.close()
            raise

    def _devtools_port(self, path: Path, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrowserError(f"chromium exited with {self._proc.returncode}")
            try:
                first = path.read_text().splitlines()[0]
                return int(first)
            except (OSError, IndexError, ValueError):
                time.sleep(0.1)
        raise BrowserError(f"chromium did not open its DevTools port within {timeout} s")

    async def _connect(self, port: int, timeout: float) -> None:
        self._session = aiohttp.ClientSession()
        deadline = time.monotonic() + timeout
        while True:
            async with self._session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json(content_type=None)
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                break
            if time.monotonic() > deadline:
                raise BrowserError("chromium has no page")
            await asyncio.sleep(0.1)
        self._ws = await self._session.ws_connect(
            pages[0]["webSocketDebuggerUrl"], max_msg_size=64 * 1024 * 1024
        )

    async def _call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        assert self._ws is not None
        call_id = next(self._ids)
        await self._ws.send_str(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            msg = await self._ws.receive(timeout=60.0)
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise BrowserError(f"DevTools connection ended ({msg.type})")
            data = json.loads(msg.data)
            if data.get("id") == call_id:
                if "error" in data:
                    raise BrowserError(f"{method}: {data['error']}")
                return dict(data.get("result", {}))

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools call (e.g. ``Page.navigate``); its result."""
        return self._loop.run_until_complete(self._call(method, params))

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-able values)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r}: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60.0, every: float = 0.2) -> Any:
        """Poll ``expression`` until it is truthy; its value. Raise on timeout (a hang)."""
        deadline = time.monotonic() + timeout
        value: Any = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except BrowserError:
                value = None
            if value:
                return value
            time.sleep(every)
        raise BrowserError(f"{expression!r} did not hold within {timeout} s (last: {value!r})")

    def screenshot(self, path: str | Path) -> Path:
        """The page as a PNG (the whole page, not only the window)."""
        metrics = self.call("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics.get("contentSize") or {}
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": True}
        if size:
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": size["width"],
                "height": size["height"],
                "scale": 1,
            }
        data = self.call("Page.captureScreenshot", **params)["data"]
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(data))
        return out

    def close(self) -> None:
        try:
            if self._ws is not None:
                self._loop.run_until_complete(self._ws.close())
            if self._session is not None:
                self._loop.run_until_complete(self._session.close())
        finally:
            self._loop.close()
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(10)
            # Chromium's helper processes outlive the browser for a moment and keep writing
            # to the profile: end the whole group, then remove the profile.
            if hasattr(os, "killpg"):  # POSIX only; the profile cleanup ignores errors anyway
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
            self._profile.cleanup()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
