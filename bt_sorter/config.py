"""Line configuration: load ``config/*.yaml`` into typed, validated objects.

One file describes one line: its broker, the controller's timings, which label goes to
which rod, the classifier, and optionally what is known of the line beforehand (``line:``).
The controller learns the line's timings from its events (:mod:`bt_sorter.linemodel`);
a ``line:`` section is only a prior it confirms or overrules, and may be absent. Every
field has a realistic default, so a file only states what differs. Errors name the file
and the line.

All durations are in seconds of *line time*. ``--speed X`` runs the line X times faster
than real time; programs turn line time into wall time with :class:`bt_sorter.clock.LineClock`
(every duration divides by X), so the values here never change with the speed.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bt_sorter import protocol
from bt_sorter.coerce import WrongTypeError, convert
from bt_sorter.topology import Topology
from bt_sorter.yamlio import Located, SpecError, load_file

REPO_ROOT = Path(__file__).resolve().parent.parent  # the folder that holds bt_sorter/
DEFAULT_CONFIG = Path("config/default.yaml")


def find_data(path: str | Path, root: Path = REPO_ROOT) -> Path:
    """Where a relative data path (``config/...``, ``models/...``, ``trees/...``) is.

    The working folder first, then the repository root (the folder that holds
    ``bt_sorter/``); an absolute path is taken as is. When neither has it, the
    working-folder path is returned, so the error names what the user wrote.
    """
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    beside = root / path
    return beside if beside.exists() else path


@dataclass(frozen=True)
class TlsConfig:
    """TLS towards the broker; off unless ``enabled``."""

    enabled: bool = False
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    insecure: bool = False


@dataclass(frozen=True)
class TopicsConfig:
    """The line's topics on a broker it may share with other lines (docs/plant.md).

    ``prefix: line3`` gives ``line3/aa``, ``line3/bb`` and ``line3/status``; no prefix is the
    FS scene's ``aa``/``bb`` (status ``bt_sorter/status``). ``commands``, ``feedback`` and
    ``status`` name a topic outright (a gateway with names of its own).
    """

    prefix: str | None = None
    commands: str | None = None
    feedback: str | None = None
    status: str | None = None

    def line_name(self) -> str:
        """The line's name on a shared broker: its prefix, else its status topic."""
        return self.prefix or self.resolve().status

    def resolve(self) -> protocol.Topics:
        """The topics to use; ``ValueError`` when a name is not a valid topic."""
        base = protocol.line_topics(self.prefix)
        return protocol.Topics(
            commands=self.commands or base.commands,
            feedback=self.feedback or base.feedback,
            status=self.status or base.status,
        )


@dataclass(frozen=True)
class BrokerConfig:
    """Where the line's MQTT broker is and how to connect to it."""

    host: str = "127.0.0.1"
    port: int = 21883
    client_id: str = "bt_sorter"
    keepalive: int = 50
    clean_session: bool = False
    username: str | None = None
    password: str | None = None
    tls: TlsConfig = field(default_factory=TlsConfig)
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    reconnect_min_delay: float = 0.5
    reconnect_max_delay: float = 10.0


@dataclass(frozen=True)
class MeasuredTime:
    """One learned time: median and spread (MAD scaled to a standard deviation), samples."""

    median: float  # seconds of belt running since the feed command
    spread: float = 0.0
    n: int = 0


@dataclass(frozen=True)
class GateTimes:
    """When an item's head blocks a gate and its tail clears it, since its feed."""

    blocked: MeasuredTime | None = None
    clear: MeasuredTime | None = None


@dataclass(frozen=True)
class LineConfig:
    """What is known of the line beforehand: a prior the controller confirms, never trusts.

    Two forms, both optional, key by key. Times (what ``run.py --calibrate`` writes): the
    picture and each gate's edges in seconds of belt running since the feed command.
    Metres (an older config, a drawing): the keys of the simulator's line
    (:class:`bt_sorter.sim.geometry.LineGeometry`, :data:`METRE_KEYS`), turned into
    expected times where belt speed and positions allow. Either is used only once a
    measurement has confirmed it (it then counts towards "the line is measured", so the
    pipelined tree learns for fewer items); a measurement that disagrees wins and is
    reported as ``geometry_mismatch``. Windows always come from measurements.
    """

    picture: MeasuredTime | None = None
    gates: tuple[GateTimes, ...] = ()
    belt_speed: float | None = None  # m/s
    item_length: float | None = None  # m, along the belt
    feed_zone: float | None = None
    camera_position: float | None = None
    gate_positions: tuple[float, ...] | None = None
    rod_offset: float | None = None
    rod_window: float | None = None
    belt_length: float | None = None
    rod_stroke_time: float | None = None
    feeder_stroke_time: float | None = None
    camera_delay: float | None = None


METRE_KEYS = tuple(
    f.name for f in dataclasses.fields(LineConfig) if f.name not in ("picture", "gates")
)


@dataclass(frozen=True)
class Timings:
    """The controller's timings (the course controller's values by default)."""

    tick_hz: float = 50.0
    belt_start_wait: float = 2.0  # after starting the belt, before the first feed
    feed_hold: float = 1.5  # rod 1 stays out this long
    feed_back: float = 1.0  # after retracting rod 1 it counts as back
    push_hold: float = 1.0  # a classifying rod stays out this long
    push_back: float = 1.0  # after retracting it counts as back
    stop_wait: float = 1.0  # on exit: rods back, this long, then the belt stops

    def feeder_cycle(self) -> float:
        """Seconds from one feed to the next: rod 1 held out, then back."""
        return self.feed_hold + self.feed_back


DEFAULT_THRESHOLD = 0.6  # for a classifier whose model names no threshold (the HSV rule)


@dataclass(frozen=True)
class SortingConfig:
    """Which label goes to which rod; anything else (or a weak answer) to bin 1.

    ``reject``: classes the line sends to bin 1 on purpose. Every class the classifier
    answers must be in ``routes`` or ``reject``, and each of those a class it answers:
    checked once the classifiers are loaded (:mod:`bt_sorter.routes`, ``run.py --check``).
    """

    routes: dict[str, int] = field(default_factory=lambda: {"ripe": 2, "half_ripe": 3, "raw": 4})
    # None: the model's own (its checkpoint's meta.threshold, chosen by its rule on held-out
    # domains), else DEFAULT_THRESHOLD; settled once the classifiers are loaded
    # (bt_sorter.routes.settle_threshold)
    confidence_threshold: float | None = None
    reject: tuple[str, ...] = ()

    @property
    def threshold(self) -> float:
        """The confidence under which an answer goes to bin 1."""
        c = self.confidence_threshold
        return DEFAULT_THRESHOLD if c is None else c


@dataclass(frozen=True)
class ClassifierConfig:
    """Which classifier back end answers the question "what is in this picture"."""

    backend: Literal["torch", "http", "hsv", "mqtt"] = "torch"
    model: str = "models/resnet18_tomato.pth"
    url: str = "http://127.0.0.1:8088/aisim_tf_pre"
    timeout: float = 2.0  # s per attempt (HTTP); retries are the tree's (trees/classify.yaml)
    # mqtt: classifier workers on an MQTT 5 broker (python -m bt_sorter.vision.worker)
    broker: str | None = None  # HOST:PORT of the workers' broker; None: the line's broker
    reply_timeout: float = 1.0  # line s a request may wait for a worker's answer (mqtt)
    fallback: Literal["hsv", "reject"] = "hsv"
    threads: int = 1  # torch intra-op threads of the in-process back end
    device: Literal["auto", "cpu", "cuda"] = "auto"  # torch back end: auto = CUDA if seen
    # issue 24: keep the pictures vision sent to bin 1 (doubted, or no confident label) in
    # this folder, <folder>/<best guess>/<name>.jpg, for an operator to label; None: off
    keep_doubted: str | None = None
    keep_doubted_max: int = 2000  # files in that folder at most; past it, none are kept


@dataclass(frozen=True)
class Limits:
    """What one message or picture may cost, and how much may wait; beyond these, input is
    refused as bad input (a payload, a picture) or dropped and counted (a full queue).

    Pictures are checked from their header before any pixel is decoded, everywhere a
    picture is decoded (controller back ends, service, training and evaluation).
    """

    payload_bytes: int = 4 * 1024 * 1024  # a bb payload over this is refused unparsed
    picture_side: int = 4096  # px, width or height, from the picture's header
    picture_pixels: int = 8_000_000  # width x height, from the header (8 MP: 24 MB decoded)
    decode_pixels: int = 16_000_000  # pixels being decoded at once in one process
    queue_events: int = 2000  # feedback events waiting for the next tick
    queue_bytes: int = 32 * 1024 * 1024  # picture bytes waiting for the next tick


@dataclass(frozen=True)
class FaultConfig:
    """Faults the simulator injects (all off by default)."""

    drop_rate: float = 0.0  # share of bb messages not sent
    duplicate_rate: float = 0.0  # share of bb messages sent twice
    malformed_rate: float = 0.0  # share of extra malformed payloads on bb
    corrupt_picture_rate: float = 0.0  # share of pictures with broken bytes
    missing_picture_rate: float = 0.0  # share of items whose picture is never sent
    flicker_rate: float = 0.0  # share of gate passages with an extra off/on flicker
    stuck_item: int | None = None  # this item (1-based) sticks on the belt
    stall_belt_at: float | None = None  # line time at which the belt stalls for good
    belt_drift_at: float | None = None  # line time at which the belt's speed changes
    belt_drift_factor: float = 1.0  # ... to this share of belt_speed (0.8: 20 % slower)


@dataclass(frozen=True)
class SimConfig:
    """The built-in simulated line."""

    items: int = 30
    seed: int = 1
    speed: float = 4.0  # default time-lapse of the built-in line for run.py
    mix: dict[str, float] = field(
        default_factory=lambda: {"ripe": 1.0, "half_ripe": 1.0, "raw": 1.0}
    )
    silence_timeout: float = 60.0  # s of line time without a command: the simulator ends
    picture_size: int = 256
    faults: FaultConfig = field(default_factory=FaultConfig)


@dataclass(frozen=True)
class Config:
    """A whole line configuration."""

    broker: BrokerConfig = field(default_factory=BrokerConfig)
    topology: Topology = field(default_factory=Topology)  # gates and rods (FS scene's)
    line: LineConfig | None = None  # absent: the controller knows nothing of the line
    timings: Timings = field(default_factory=Timings)
    sorting: SortingConfig = field(default_factory=SortingConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    limits: Limits = field(default_factory=Limits)
    sim: SimConfig = field(default_factory=SimConfig)
    source: str = "<defaults>"

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


def load_config(path: str | Path | None = None) -> Config:
    """Load and validate a config file (the built-in default when ``path`` is None).

    A relative path is looked up in the working folder, then the repository root
    (:func:`find_data`).
    """
    path = find_data(path if path is not None else DEFAULT_CONFIG)
    data = load_file(path)
    if data is None:
        data = Located()
        data.file, data.line, data.key_lines = str(path), 1, {}
    if not isinstance(data, Located):
        raise SpecError("a config file must be a mapping of sections", path, 1)
    config = build(Config, data, "config")
    config = dataclasses.replace(config, source=str(path))
    validate(config, data)
    return config


def config_error(config: Config, message: str, section: str, *keys: str) -> SpecError:
    """An error about ``config`` that names its file and the line of ``section``/``keys``
    (for checks made after loading, e.g. by the simulator)."""
    path = Path(config.source)
    data = load_file(path) if path.is_file() else None
    return _failer(config, data if isinstance(data, Located) else None)(message, section, *keys)


def _failer(config: Config, data: Located | None) -> Callable[..., SpecError]:
    """``fail(message, section, *keys)``: an error at the deepest of ``section``, ``keys``
    that the file ``data`` (of ``config``) has, else at its top."""

    def fail(message: str, section: str, *keys: str) -> SpecError:
        """An error at the deepest of ``section``, ``keys`` the file has (else its top)."""
        node = data
        if node is None or section not in node or not isinstance(node[section], Located):
            return SpecError(message, config.source)
        node = node[section]
        for key in keys[:-1]:
            if key not in node or not isinstance(node[key], Located):
                return node.error(message, key if key in node else None)
            node = node[key]
        last = keys[-1] if keys and keys[-1] in node else None
        return node.error(message, last)

    return fail


def check_shape(config: Config, data: Located) -> None:
    """The ``topology:`` and ``line:`` sections of ``data``, the file ``config`` was built
    from (a line file: :func:`bt_sorter.sim.geometry.load_line`)."""
    _validate_shape(config, _failer(config, data))


def _validate_shape(config: Config, fail: Callable[..., SpecError]) -> None:
    """The ``topology:`` section, and the ``line:`` section against it."""
    problems = config.topology.problems()
    if problems:
        key = "gates" if problems[0].startswith("gates") else "rod_gates"
        raise fail(f"topology: {'; '.join(problems)}", "topology", key)
    if config.line is not None:
        _validate_line(config.line, config.topology, fail)


def validate(config: Config, data: Located | None = None) -> None:
    """Cross-field checks that types alone cannot express."""
    fail = _failer(config, data)
    _validate_shape(config, fail)
    rods = config.topology.classifying_rods
    for label, rod in config.sorting.routes.items():
        if rod not in rods:
            raise fail(
                f"sorting.routes: label {label!r} goes to rod {rod}, but the line's classifying "
                f"rods are {', '.join(map(str, rods))} (topology: {config.topology.describe()})",
                "sorting",
                "routes",
                label,
            )
    for label in config.sorting.reject:
        if label in config.sorting.routes:
            raise fail(
                f"sorting.reject: {label!r} has a route too; it must be one or the other",
                "sorting",
                "reject",
            )
    if not 0 <= config.sorting.threshold <= 1:
        raise fail("sorting.confidence_threshold must be within 0..1", "sorting")
    try:
        config.broker.topics.resolve()
    except ValueError as exc:
        raise fail(f"broker.topics: {exc}", "broker") from None
    if config.classifier.reply_timeout <= 0:
        raise fail("classifier.reply_timeout must be positive", "classifier")
    if config.classifier.keep_doubted is not None and not config.classifier.keep_doubted.strip():
        raise fail("classifier.keep_doubted must name a folder (or be left out: off)",
                   "classifier", "keep_doubted")  # fmt: skip
    if config.classifier.keep_doubted_max <= 0:
        raise fail("classifier.keep_doubted_max must be a positive number of files",
                   "classifier", "keep_doubted_max")  # fmt: skip
    if config.timings.tick_hz <= 0:
        raise fail("timings.tick_hz must be positive", "timings")
    for name, value in dataclasses.asdict(config.limits).items():
        if value <= 0:
            raise fail(f"limits.{name} must be positive", "limits")
    if config.limits.decode_pixels < config.limits.picture_pixels:
        raise fail("limits.decode_pixels must be at least limits.picture_pixels", "limits")
    for name, value in dataclasses.asdict(config.sim.faults).items():
        if name.endswith("_rate") and not 0 <= value <= 1:
            raise fail(f"sim.faults.{name} must be within 0..1", "sim")
    if config.sim.faults.belt_drift_factor <= 0:
        raise fail("sim.faults.belt_drift_factor must be positive", "sim")


def _validate_line(line: LineConfig, topology: Topology, fail: Callable[..., SpecError]) -> None:
    """The ``line:`` section: the keys it states must describe a line in feed order, with
    as many gates as ``topology:`` declares."""
    shape = f"the line has {topology.gates} gates (topology: {topology.describe()})"
    if line.gates and len(line.gates) != topology.gates:
        raise fail(f"line.gates: {len(line.gates)} gates given, but {shape}", "line", "gates")
    times = [line.picture] if line.picture else []
    for gate in line.gates:
        if gate.blocked and gate.clear and gate.clear.median < gate.blocked.median:
            raise fail("line.gates: an item clears a gate after it blocks it", "line")
        times += [t for t in (gate.blocked, gate.clear) if t is not None]
    if any(t.median <= 0 or t.spread < 0 or t.n < 0 for t in times):
        raise fail("line: times must be positive, spreads and counts not negative", "line")
    if line.gate_positions is not None:
        if len(line.gate_positions) != topology.gates:
            raise fail(
                f"line.gate_positions: {len(line.gate_positions)} positions, but {shape}",
                "line",
                "gate_positions",
            )
        if list(line.gate_positions) != sorted(line.gate_positions):
            raise fail("line.gate_positions must increase downstream", "line")


def build(cls: type, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a YAML mapping, checking every key and type."""
    if not isinstance(data, Located):
        raise SpecError(f"{where} must be a mapping", getattr(data, "file", None))
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name != "source"}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise data.error(f"{where}: unknown key {key!r} (known: {known})", key)
        kwargs[key] = _field(hints[key], value, f"{where}.{key}", data, key)
    return cls(**kwargs)


def _field(hint: Any, value: Any, where: str, parent: Located, key: str) -> Any:
    """``value`` of ``parent[key]`` as type ``hint`` (:func:`bt_sorter.coerce.convert`:
    list → tuple, int → float); a wrong type is an error at the key's line."""
    try:
        return convert(hint, value, build=lambda cls, v, path: build(cls, v, where + path))
    except WrongTypeError as exc:
        raise parent.error(f"{where}{exc.path} must be {_expected(exc)}", key) from None


_EXPECTED = {float: "a number", int: "an integer", tuple: "a list", dict: "a mapping"}


def _expected(exc: WrongTypeError) -> str:
    """What a value should have been, and what it was: ``a number, got text``."""
    kind = typing.get_origin(exc.hint) or exc.hint
    if kind is Literal:
        choices = ", ".join(repr(a) for a in typing.get_args(exc.hint))
        return f"one of {choices}, got {exc.value!r}"
    return f"{_EXPECTED.get(kind, getattr(kind, '__name__', str(kind)))}, got {_kind(exc.value)}"


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "text" if isinstance(value, str) else repr(value)
