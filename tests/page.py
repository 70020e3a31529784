"""The page as a person sees it, read from a real headless browser (shared by the web tests).

Without chromium the browser tests are skipped, unless ``BT_SORTER_REQUIRE_BROWSER=1``
(set by ``.ci/run``, which installs it): then a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

import pytest
from headless import Chromium, find_chromium

needs_browser = pytest.mark.skipif(
    find_chromium() is None and os.environ.get("BT_SORTER_REQUIRE_BROWSER") != "1",
    reason="chromium is not installed (apt-get install chromium)",
)

PAGE_FACTS = """JSON.stringify({
  link: document.getElementById('link').textContent,
  mode: document.getElementById('mode').textContent,
  rate: Number(document.getElementById('rate').textContent),
  fed: Number(document.getElementById('count-fed').textContent),
  resolved: Number(document.getElementById('count-resolved').textContent),
  sorted: Number(document.getElementById('count-sorted').textContent),
  bins: Object.fromEntries([...document.querySelectorAll('#bin-counts td')]
                           .map(td => [td.id.replace('bin-', ''), Number(td.textContent)])),
  nodes: [...document.querySelectorAll('#tree .node')]
         .map(g => [g.dataset.name, g.dataset.status]),
  thumbs: [...document.querySelectorAll('.thumb')].map(t => ({
    item: Number(t.dataset.item), label: t.querySelector('.label').textContent,
    where: t.querySelector('.where').textContent,
    width: t.querySelector('img') ? t.querySelector('img').naturalWidth : 0})),
  items: [...document.querySelectorAll('#line .item')]
         .map(g => [Number(g.dataset.item), g.dataset.label]),
  gates: [...document.querySelectorAll('#line [data-gate]')].length,
  rods: [...document.querySelectorAll('#line [data-rod]')].length,
  events: document.querySelectorAll('#events li').length,
})"""


def page_facts(browser: Chromium) -> dict:
    return json.loads(browser.evaluate(PAGE_FACTS))


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2.0):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout} s")
