"""The wire format of the FS sorting line (docs/line-protocol.md).

This is the only module that spells topic names and payload keys. Everything else
talks in the typed commands and events defined here:

* the controller builds command payloads with :func:`encode_command` and parses
  feedback with :func:`parse_feedback`;
* the simulator parses commands with :func:`parse_command` and builds feedback with
  :func:`encode_gate` and :func:`encode_picture`.

Parsing never raises on bad input: it returns :class:`BadInput` with a reason.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
from dataclasses import dataclass
from typing import Any

COMMAND_TOPIC = "aa"
FEEDBACK_TOPIC = "bb"
DEFAULT_PORT = 21883
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024

GATE_KEYS = {"first_switch": 1, "second_switch": 2, "third_switch": 3}
_GATE_NAMES = {v: k for k, v in GATE_KEYS.items()}
_ROD_WORDS = {1: "first", 2: "second", 3: "third", 4: "fourth"}
_ROD_NUMBERS = {v: k for k, v in _ROD_WORDS.items()}
ROD_COUNT = 4
GATE_COUNT = 3


class Action(enum.Enum):
    """What a command asks the line to do."""

    PUSH = "push"
    PULL = "pull"
    BELT_RUN = "run"
    BELT_STOP = "stop"


@dataclass(frozen=True, slots=True)
class Command:
    """One command on the command topic.

    ``rod`` is 1..4 for a single rod, 0 for all rods, ``None`` for belt commands.
    """

    action: Action
    rod: int | None = None

    def __post_init__(self) -> None:
        if self.action in (Action.PUSH, Action.PULL):
            if self.rod is None or not 0 <= self.rod <= ROD_COUNT:
                raise ValueError(f"rod must be 0 (all) or 1..{ROD_COUNT}, got {self.rod!r}")
        elif self.rod is not None:
            raise ValueError("belt commands take no rod")

    def __str__(self) -> str:
        if self.rod is None:
            return f"belt_{self.action.value}"
        return f"rod{self.rod or '_all'}_{self.action.value}"


def push(rod: int) -> Command:
    """Extend ``rod`` (1..4, or 0 for all rods)."""
    return Command(Action.PUSH, rod)


def pull(rod: int) -> Command:
    """Retract ``rod`` (1..4, or 0 for all rods)."""
    return Command(Action.PULL, rod)


BELT_RUN = Command(Action.BELT_RUN)
BELT_STOP = Command(Action.BELT_STOP)
ALL_PULL = pull(0)


@dataclass(frozen=True, slots=True)
class GateEdge:
    """Gate ``gate`` (1..3) became blocked (``blocked=True``) or clear."""

    gate: int
    blocked: bool


@dataclass(frozen=True, slots=True)
class Picture:
    """A camera picture: the encoded bytes (JPEG or PNG) as sent by the line."""

    data: bytes


@dataclass(frozen=True, slots=True)
class BadInput:
    """A payload that could not be understood, and why."""

    reason: str
    excerpt: str = ""


Feedback = GateEdge | Picture | BadInput


def kind_of(event: Feedback) -> str:
    """The kind of a feedback event, for counts: ``gate_edge``, ``picture`` or ``bad_input``."""
    if isinstance(event, GateEdge):
        return "gate_edge"
    return "picture" if isinstance(event, Picture) else "bad_input"


def encode_command(command: Command) -> bytes:
    """The payload for ``command`` on :data:`COMMAND_TOPIC`."""
    if command.action is Action.BELT_RUN:
        body: dict[str, str] = {"conveyor": "run"}
    elif command.action is Action.BELT_STOP:
        body = {"conveyor": "stop"}
    else:
        word = "all" if command.rod == 0 else _ROD_WORDS[command.rod or 0]
        body = {"rod_control": f"{word}_{command.action.value}"}
    return json.dumps(body).encode()


def parse_command(payload: bytes) -> Command | BadInput:
    """Parse one payload from :data:`COMMAND_TOPIC` (the line's side)."""
    obj = _load_object(payload)
    if isinstance(obj, BadInput):
        return obj
    if len(obj) != 1:
        return BadInput("command must have exactly one key", _excerpt(payload))
    ((key, value),) = obj.items()
    if not isinstance(value, str):
        return BadInput(f"{key!r} must be a string", _excerpt(payload))
    if key == "conveyor":
        if value == "run":
            return BELT_RUN
        if value == "stop":
            return BELT_STOP
        return BadInput(f"unknown conveyor command {value!r}", _excerpt(payload))
    if key == "rod_control":
        word, _, action = value.partition("_")
        rod = 0 if word == "all" else _ROD_NUMBERS.get(word)
        if rod is None or action not in ("push", "pull"):
            return BadInput(f"unknown rod command {value!r}", _excerpt(payload))
        return Command(Action(action), rod)
    return BadInput(f"unknown command key {key!r}", _excerpt(payload))


def encode_gate(gate: int, blocked: bool) -> bytes:
    """The feedback payload for an edge of gate ``gate`` (1..3)."""
    return json.dumps({_GATE_NAMES[gate]: bool(blocked)}).encode()


def encode_picture(data: bytes) -> bytes:
    """The feedback payload for a camera picture (already encoded as JPEG or PNG)."""
    return json.dumps({"image": base64.b64encode(data).decode("ascii")}).encode()


def parse_feedback(payload: bytes, max_bytes: int = MAX_PAYLOAD_BYTES) -> list[Feedback]:
    """Parse one payload from :data:`FEEDBACK_TOPIC` into events, in key order.

    Booleans may be JSON (``true``) or Python-style (``True``). Anything else
    (non-JSON, unknown keys, wrong types, pictures that are not JPEG/PNG base64)
    becomes one :class:`BadInput` for the offending key; good keys still count.
    A payload over ``max_bytes`` is one :class:`BadInput`, refused before any decoding.
    """
    obj = _load_object(payload, max_bytes)
    if isinstance(obj, BadInput):
        return [obj]
    if not obj:
        return [BadInput("empty object", _excerpt(payload))]
    events: list[Feedback] = []
    for key, value in obj.items():
        if key in GATE_KEYS:
            if isinstance(value, bool):
                events.append(GateEdge(GATE_KEYS[key], value))
            else:
                events.append(BadInput(f"{key!r} must be a boolean", _excerpt(payload)))
        elif key == "image":
            events.append(_parse_picture(value))
        else:
            events.append(BadInput(f"unknown key {key!r}", _excerpt(payload)))
    return events


_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _parse_picture(value: Any) -> Picture | BadInput:
    if not isinstance(value, str):
        return BadInput("'image' must be a base64 string")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        return BadInput(f"'image' is not valid base64: {exc}")
    if not (data.startswith(_JPEG_MAGIC) or data.startswith(_PNG_MAGIC)):
        return BadInput("'image' is neither JPEG nor PNG", repr(data[:16]))
    return Picture(data)


# Python-style literals outside of JSON strings: "..." (with escapes) is kept as is.
_PY_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"|\b(True|False|None)\b')
_PY_TO_JSON = {"True": "true", "False": "false", "None": "null"}


def _load_object(payload: bytes, max_bytes: int = MAX_PAYLOAD_BYTES) -> dict[str, Any] | BadInput:
    if len(payload) > max_bytes:
        return BadInput(f"payload over the limit: {len(payload)} bytes, limit {max_bytes}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return BadInput("payload is not UTF-8", _excerpt(payload))
    try:
        obj = _json_or_python_literals(text)
    except ValueError as exc:
        return BadInput(f"payload is not JSON: {exc}", _excerpt(payload))
    except RecursionError:
        return BadInput("payload is nested too deeply", _excerpt(payload))
    if not isinstance(obj, dict):
        return BadInput("payload is not a JSON object", _excerpt(payload))
    return obj


def _json_or_python_literals(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        fixed = _PY_LITERAL.sub(lambda m: _PY_TO_JSON.get(m.group(1) or "", m.group(0)), text)
        if fixed == text:
            raise
        return json.loads(fixed)


def _excerpt(payload: bytes, limit: int = 80) -> str:
    text = payload[:limit].decode("utf-8", errors="replace")
    return text + ("…" if len(payload) > limit else "")
