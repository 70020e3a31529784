"""structlog, configured once: JSON lines off a terminal, readable on one.

Call :func:`configure` at program start; modules take ``log = get_logger(__name__)``.
Event names are past tense snake case with facts as keys:
``log.info("rod_extended", rod=3, item=41, label="half_ripe")``.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from typing import Any, TextIO

import structlog

_configured = False


def _colours_available(platform: str = sys.platform) -> bool:
    """structlog colours a Windows console through colorama (tqdm's dependency there) and
    refuses ``colors=True`` without it: plain text then, never a crash at start-up."""
    return platform != "win32" or importlib.util.find_spec("colorama") is not None


def configure(level: str = "info", json: bool | None = None, stream: TextIO | None = None) -> None:
    """Set up structlog for the whole process (later calls change level and format)."""
    global _configured
    stream = stream or sys.stderr
    if json is None:
        json = not stream.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty() and _colours_available())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    _configured = True


def get_logger(name: str | None = None, **facts: Any) -> Any:
    """A bound structlog logger; configures defaults on first use."""
    if not _configured:
        configure()
    return structlog.get_logger(name).bind(**facts) if facts else structlog.get_logger(name)
