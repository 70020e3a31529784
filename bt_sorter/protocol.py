"""The wire format of the FS sorting line (docs/line-protocol.md).

This is the only module that spells topic names and payload keys. Everything else
talks in the typed commands and events defined here:

* the controller builds command payloads with :func:`encode_command` and parses
  feedback with :func:`parse_feedback`;
* the simulator parses commands with :func:`parse_command` and builds feedback with
  :func:`encode_gate` and :func:`encode_picture`.

Several lines may share one broker (docs/plant.md): each line's topics are
:class:`Topics`, built by :func:`line_topics` from a prefix (``line3`` → ``line3/aa``,
``line3/bb``, ``line3/status``); no prefix is the FS scene's bare ``aa`` and ``bb``.
Classifier workers answer requests on :data:`CLASSIFY_REQUEST_TOPIC` (MQTT 5
request/response) and each line publishes a retained :func:`encode_line_status`.

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
STATUS_TOPIC = "bt_sorter/status"  # the FS scene's line (no prefix): alarms and status
STATUS_LEAF = "status"  # a prefixed line's status topic: <prefix>/status
CLASSIFY_REQUEST_TOPIC = "bt_sorter/classify/request"
CLASSIFY_REPLY_ROOT = "bt_sorter/classify/reply"
WORKER_STATUS_ROOT = "bt_sorter/workers"
DEFAULT_WORKER_GROUP = "classifiers"
DEFAULT_PORT = 21883
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024

# Gates and rods are named by ordinal words. The FS scene has gates first..third and
# rods first..fourth; a line of another shape (bt_sorter/topology.py) extends the same
# pattern (fourth_switch, fifth_push, ...): this project's extension, docs/topology.md.
_ORDINALS = (
    "first", "second", "third", "fourth", "fifth", "sixth",
    "seventh", "eighth", "ninth", "tenth", "eleventh", "twelfth",
)  # fmt: skip
MAX_RODS = len(_ORDINALS)  # rod 1 (the feeder) .. rod 12
MAX_GATES = MAX_RODS - 1
_ROD_WORDS = {n: word for n, word in enumerate(_ORDINALS, start=1)}
_ROD_NUMBERS = {v: k for k, v in _ROD_WORDS.items()}
GATE_KEYS = {f"{word}_switch": n for n, word in enumerate(_ORDINALS[:MAX_GATES], start=1)}
_GATE_NAMES = {v: k for k, v in GATE_KEYS.items()}
ROD_COUNT = 4  # the FS scene's: rod 1 feeder, rods 2..4 classifying
GATE_COUNT = 3  # the FS scene's


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
            if self.rod is None or not 0 <= self.rod <= MAX_RODS:
                raise ValueError(f"rod must be 0 (all) or 1..{MAX_RODS}, got {self.rod!r}")
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


@dataclass(frozen=True, slots=True)
class Topics:
    """One line's topics: commands (controller → line), feedback (line → controller), status."""

    commands: str = COMMAND_TOPIC
    feedback: str = FEEDBACK_TOPIC
    status: str = STATUS_TOPIC

    def __post_init__(self) -> None:
        for name in (self.commands, self.feedback, self.status):
            reason = topic_name_problem(name)
            if reason:
                raise ValueError(reason)
        if len({self.commands, self.feedback, self.status}) != 3:
            raise ValueError(f"a line's topics must differ, got {self}")


def line_topics(prefix: str | None) -> Topics:
    """The topics of the line named ``prefix`` (``None``: the FS scene's ``aa``/``bb``)."""
    if prefix is None:
        return FS_TOPICS
    if not prefix or prefix.endswith("/"):
        raise ValueError(f"topic prefix {prefix!r} must be a non-empty name without a trailing /")
    return Topics(
        commands=f"{prefix}/{COMMAND_TOPIC}",
        feedback=f"{prefix}/{FEEDBACK_TOPIC}",
        status=f"{prefix}/{STATUS_LEAF}",
    )


def topic_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a topic a line publishes on (wildcards, $, empty), or None."""
    if not name:
        return "a topic name must not be empty"
    if "+" in name or "#" in name:
        return f"topic {name!r} must not contain the wildcards + or #"
    if name.startswith("$"):
        return f"topic {name!r} must not start with $ (reserved by brokers)"
    if "\x00" in name or len(name.encode("utf-8")) > 65535:
        return f"topic {name[:40]!r} is not a valid MQTT topic"
    return None


FS_TOPICS = Topics()


def shared_subscription(group: str, topic: str) -> str:
    """The MQTT 5 shared subscription of ``group`` to ``topic`` (``$share/<group>/<topic>``)."""
    if not group or any(c in group for c in "/+#"):
        raise ValueError(f"share group {group!r} must be a non-empty name without / + #")
    return f"$share/{group}/{topic}"


def classify_reply_topic(client_id: str) -> str:
    """Where the workers answer the controller ``client_id``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", client_id) or "_"
    return f"{CLASSIFY_REPLY_ROOT}/{safe}"


# Where plant status looks for retained statuses: prefixed lines (one or two levels deep),
# the FS scene's line, and the workers. A line with a status topic of its own is added by hand.
PLANT_STATUS_FILTERS = (
    f"+/{STATUS_LEAF}",
    f"+/+/{STATUS_LEAF}",
    STATUS_TOPIC,
    f"{WORKER_STATUS_ROOT}/+",
)


def worker_status_topic(worker_id: str) -> str:
    """The retained presence of classifier worker ``worker_id``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", worker_id) or "_"
    return f"{WORKER_STATUS_ROOT}/{safe}"


# -- classification answers (the course service's JSON, also sent by MQTT workers) ------


def classify_result(label: str, confidence: float, doubt: str = "") -> dict[str, Any]:
    """One result of the course's answer: ``{"label", "confidence"}``, plus ``"doubt"`` (why
    the picture is unlike any the model was trained for) only when the answer is doubted;
    a course client reads label and confidence and ignores it."""
    result: dict[str, Any] = {"label": label, "confidence": round(float(confidence), 6)}
    if doubt:
        result["doubt"] = doubt
    return result


def encode_classify_answer(
    label: str | None, confidence: float = 0.0, error: str = "", doubt: str = "", **extra: Any
) -> bytes:
    """The course's answer: ``{"results": [{"label", "confidence"}], "code", "error"}``
    (the result as :func:`classify_result` makes it, ``doubt`` included when given).

    ``label=None`` is a refusal: code 1, no results, ``error`` says why. ``extra`` keys
    (e.g. which worker answered) ride along; readers ignore keys they do not know.
    """
    if label is None:
        body: dict[str, Any] = {"results": [], "code": 1, "error": error or "refused"}
    else:
        body = {"results": [classify_result(label, confidence, doubt)], "code": 0, "error": ""}
    return json.dumps({**body, **extra}).encode()


# -- plant status (retained, one per line) -------------------------------------------------

LINE_STATES = ("running", "offline", "stopped", "aborted")


def encode_line_status(
    state: str,
    *,
    line: str,
    counts: dict[str, int],
    alarm: str | None = None,
    items_per_minute: float | None = None,
    **facts: Any,
) -> bytes:
    """A line's retained status: state, counts, last alarm, throughput (items/min, line time)."""
    if state not in LINE_STATES:
        raise ValueError(f"line state must be one of {LINE_STATES}, got {state!r}")
    body = {
        "kind": "line_status",
        "line": line,
        "state": state,
        "counts": counts,
        "alarm": alarm,
        "items_per_minute": items_per_minute,
        **facts,
    }
    return json.dumps(body, default=str).encode()


def parse_line_status(payload: bytes) -> dict[str, Any] | BadInput:
    """A retained line status as a dict, or BadInput when the payload is not one."""
    obj = _load_object(payload)
    if isinstance(obj, BadInput):
        return obj
    if obj.get("kind") != "line_status" or obj.get("state") not in LINE_STATES:
        return BadInput("not a line status", _excerpt(payload))
    if not isinstance(obj.get("counts"), dict):
        return BadInput("line status without counts", _excerpt(payload))
    return obj


def encode_worker_status(worker: str, group: str, **facts: Any) -> bytes:
    """A classifier worker's retained presence (cleared by its will when it dies)."""
    return json.dumps({"kind": "worker_status", "worker": worker, "group": group, **facts}).encode()


def parse_worker_status(payload: bytes) -> dict[str, Any] | BadInput:
    """A retained worker presence as a dict, or BadInput."""
    obj = _load_object(payload)
    if isinstance(obj, BadInput):
        return obj
    if obj.get("kind") != "worker_status" or not isinstance(obj.get("worker"), str):
        return BadInput("not a worker status", _excerpt(payload))
    return obj


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
