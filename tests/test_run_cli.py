"""run.py as a user runs it: a subprocess against a real mosquitto and the simulator process."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bt_sorter import protocol
from bt_sorter.behaviours import REGISTRY
from bt_sorter.broker import BrokerProcess, free_port
from bt_sorter.sim.process import start_simulator

ROOT = Path(__file__).resolve().parent.parent
RUN_PY = str(ROOT / "run.py")
SORT_TREE = str(ROOT / "trees" / "sort.yaml")


def run_py(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """``python run.py ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, RUN_PY, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


class CommandObserver:
    """A paho client on the command topic; keeps every command with its arrival time."""

    def __init__(self, broker: BrokerProcess) -> None:
        self.commands: list[tuple[float, protocol.Command | protocol.BadInput]] = []
        self._changed = threading.Condition()
        subscribed = threading.Event()
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        client.on_connect = lambda c, *_: c.subscribe(protocol.COMMAND_TOPIC)
        client.on_subscribe = lambda *_: subscribed.set()
        client.on_message = self._on_message
        client.connect(broker.host, broker.port)
        client.loop_start()
        self._client = client
        assert subscribed.wait(10.0), "observer could not subscribe"

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._changed:
            self.commands.append((time.monotonic(), protocol.parse_command(msg.payload)))
            self._changed.notify_all()

    def wait_for(
        self, command: protocol.Command, after: float = 0.0, timeout: float = 30.0
    ) -> bool:
        """True once ``command`` has arrived later than monotonic time ``after``."""
        with self._changed:
            return self._changed.wait_for(
                lambda: any(c == command and t > after for t, c in self.commands), timeout
            )

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class Controller:
    """``run.py`` running in the background; its stderr (JSON log lines) kept as it comes."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, RUN_PY, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        self.stdout = ""
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.log.append(line)
                self._changed.notify_all()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        self.stdout = self.process.stdout.read()

    def events(self, name: str) -> list[dict[str, Any]]:
        """The structured log events called ``name`` so far."""
        with self._changed:
            lines = list(self.log)
        out = []
        for line in lines:
            if f'"{name}"' in line:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") == name:
                    out.append(event)
        return out

    def wait_for_log(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def stop(self, sig: signal.Signals, timeout: float = 30.0) -> int:
        self.process.send_signal(sig)
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(timeout=5.0)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_tail(self) -> str:
        return "".join(self.log[-30:])


@pytest.fixture
def observer(broker: BrokerProcess) -> Iterator[CommandObserver]:
    obs = CommandObserver(broker)
    yield obs
    obs.close()


def test_ctrl_c_stops_the_line_safely(
    broker: BrokerProcess, observer: CommandObserver, tmp_path: Path
) -> None:
    summary = tmp_path / "summary.json"
    sim = start_simulator(broker.address, summary=tmp_path / "sim.json", items=3, speed=4)
    controller = Controller(
        "--tree", SORT_TREE, "--broker", broker.address, "--speed", "4",
        "--viz", "none", "--summary", str(summary),
    )  # fmt: skip
    try:
        assert observer.wait_for(protocol.BELT_RUN, timeout=60.0), controller.log_tail()
        assert observer.wait_for(protocol.push(1), timeout=60.0)  # feeding: the line runs
        interrupted_at = time.monotonic()
        code = controller.stop(signal.SIGINT)
        assert observer.wait_for(protocol.BELT_STOP, after=interrupted_at, timeout=5.0)
    finally:
        controller.kill()
        sim.stop()

    assert code == 130
    after = [c for t, c in observer.commands if t > interrupted_at]
    assert protocol.ALL_PULL in after
    first_pull = after.index(protocol.ALL_PULL)
    # all rods back first, then the belt stops, and nothing else moves after that
    assert after[first_pull:] == [protocol.ALL_PULL, protocol.BELT_STOP]
    assert json.loads(summary.read_text())["stop_reason"] == "sigint"


def test_check_prints_the_tree_and_exits_0_without_a_broker() -> None:
    nowhere = f"127.0.0.1:{free_port()}"

    done = run_py("--tree", SORT_TREE, "--check", "--broker", nowhere)

    assert done.returncode == 0, done.stderr
    for node in ("sorting line", "line is moving", "push rod at its gate", "raise alarm"):
        assert node in done.stdout
    assert "ok" in done.stdout.splitlines()[-1]


INVALID_TREES = {
    "unknown_node": (
        "root:\n  sequence: s\n  children:\n    - StartBelt: go\n    - NoSuchLeaf: x\n",
        5,
        "NoSuchLeaf",
    ),
    "bad_parameter": (
        "root:\n  sequence: s\n  children:\n    - StartBelt: go\n    - Wait: w\n"
        "      seconds: long\n",
        6,
        "seconds",
    ),
    "missing_include": (
        "root:\n  sequence: s\n  children:\n    - StartBelt: go\n"
        "    - include: no_such_subtree.yaml\n",
        5,
        "no_such_subtree.yaml",
    ),
    "yaml_syntax_error": (
        "root:\n  sequence: s\n  children: [\n    - StartBelt: go\n",
        4,
        "YAML",
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID_TREES))
def test_invalid_tree_exits_2_naming_file_and_line(case: str, tmp_path: Path) -> None:
    text, line, word = INVALID_TREES[case]
    tree = tmp_path / f"{case}.yaml"
    tree.write_text(text)

    done = run_py("--tree", str(tree), "--check")

    assert done.returncode == 2
    assert f"{tree}:{line}:" in done.stderr
    assert word in done.stderr
    assert "Traceback" not in done.stderr


INVALID_CONFIGS = {
    "unknown_key": ("timings:\n  tick_hz: 50\n  tick_hzz: 5\n", 3, "tick_hzz"),
    "wrong_type": ("broker:\n  port: 1883\ntimings:\n  tick_hz: fast\n", 4, "tick_hz"),
}


@pytest.mark.parametrize("case", sorted(INVALID_CONFIGS))
def test_invalid_config_exits_2_naming_file_and_line(case: str, tmp_path: Path) -> None:
    text, line, word = INVALID_CONFIGS[case]
    config = tmp_path / f"{case}.yaml"
    config.write_text(text)

    done = run_py("--tree", SORT_TREE, "--config", str(config), "--check")

    assert done.returncode == 2
    assert f"{config}:{line}:" in done.stderr
    assert word in done.stderr
    assert "Traceback" not in done.stderr


def test_help_lists_every_leaf_with_its_parameters() -> None:
    done = run_py("--help")

    assert done.returncode == 0
    sections = re.split(r"\n  (?=[A-Z]\w*: )", done.stdout)
    by_leaf = {s.split(":", 1)[0]: s for s in sections[1:]}
    assert REGISTRY, "no leaves registered"
    for name, leaf in REGISTRY.items():
        assert name in by_leaf, f"{name} missing from --help"
        for param in leaf.params:
            assert f"{param.name} (" in by_leaf[name], f"{name}.{param.name} missing from --help"


def test_unreachable_broker_keeps_retrying_and_sigterm_stops_with_exit_130(
    tmp_path: Path,
) -> None:
    config = tmp_path / "quick_retry.yaml"
    config.write_text("broker:\n  reconnect_min_delay: 0.2\n  reconnect_max_delay: 0.5\n")
    summary = tmp_path / "summary.json"
    controller = Controller(
        "--tree", SORT_TREE, "--config", str(config), "--broker", f"127.0.0.1:{free_port()}",
        "--max-items", "2", "--speed", "4", "--viz", "none", "--summary", str(summary),
    )  # fmt: skip
    try:
        started = controller.wait_for_log(lambda: bool(controller.events("runner_started")), 40)
        assert started, controller.log_tail()
        failures = len(controller.events("broker_connect_failed"))
        retried = controller.wait_for_log(
            lambda: len(controller.events("broker_connect_failed")) > failures + 1, 10.0
        )
        assert retried, controller.log_tail()
        assert controller.process.poll() is None, controller.log_tail()
        code = controller.stop(signal.SIGTERM)
    finally:
        controller.kill()

    assert code == 130, controller.log_tail()
    stopped = controller.events("line_stopped")
    assert stopped and stopped[-1]["reason"] == "sigterm"
    assert json.loads(summary.read_text())["stop_reason"] == "sigterm"
    assert not controller.events("runner_failed")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_signal_while_first_connecting_exits_130_without_a_traceback(
    sig: signal.Signals,
) -> None:
    controller = Controller(
        "--tree", SORT_TREE, "--broker", f"127.0.0.1:{free_port()}", "--viz", "none",
    )  # fmt: skip
    try:
        connecting = controller.wait_for_log(
            lambda: bool(controller.events("broker_connecting")), 30.0
        )
        assert connecting, controller.log_tail()
        code = controller.stop(sig)
    finally:
        controller.kill()

    assert "Traceback" not in "".join(controller.log)
    assert code == 130


@pytest.mark.parametrize(
    "model", ["models/no_such_model.pth", "broken.pth"], ids=["missing", "broken"]
)
def test_check_loads_the_model_and_fails_the_way_the_run_would(model: str, tmp_path: Path) -> None:
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint at all")
    model_path = model if model.startswith("models/") else str(tmp_path / model)
    config = tmp_path / "line.yaml"
    config.write_text(f"classifier:\n  backend: torch\n  model: {model_path}\n")

    done = run_py("--tree", SORT_TREE, "--config", str(config), "--check")

    assert done.returncode == 2, done.stdout
    assert "error: classifier 'torch'" in done.stderr and Path(model).name in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("option", [["--items", "3"], ["--seed", "2"], ["--ledger", "l.jsonl"]])
def test_builtin_line_options_on_an_external_line_are_refused_with_exit_2(
    option: list[str],
) -> None:
    nowhere = f"127.0.0.1:{free_port()}"

    done = run_py("--tree", SORT_TREE, "--broker", nowhere, "--viz", "none", *option)

    assert done.returncode == 2
    assert f"error: {option[0]}: for the built-in line only" in done.stderr
    assert "broker_connecting" not in done.stderr  # refused before anything started


@pytest.mark.parametrize(
    ("params", "line", "word"),
    [
        ("      seconds: 1.0\n      timing: belt_start_wait\n", 4, "exactly one"),
        ("", 4, "exactly one"),
        ("      timing: belt_start_wiat\n", 5, "belt_start_wait"),
    ],
    ids=["both", "neither", "unknown_timing"],
)
def test_wait_takes_seconds_or_a_config_timing_by_name(
    params: str, line: int, word: str, tmp_path: Path
) -> None:
    tree = tmp_path / "wait.yaml"
    tree.write_text("root:\n  sequence: s\n  children:\n    - Wait: run up\n" + params)

    done = run_py("--tree", str(tree), "--check")

    assert done.returncode == 2
    assert f"{tree}:{line}:" in done.stderr and word in done.stderr


def test_config_models_and_trees_are_found_in_the_working_folder_then_the_repository(
    tmp_path: Path,
) -> None:
    def run_here() -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, RUN_PY, "--tree", "trees/sort.yaml", "--check"]
        return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)

    elsewhere = run_here()  # nothing in tmp_path: the repository's tree, config and model

    assert elsewhere.returncode == 0, elsewhere.stderr
    assert f"config {ROOT / 'config' / 'default.yaml'}: ok" in elsewhere.stdout

    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "default.yaml").write_text("timings:\n  tick_hzz: 5\n")

    here = run_here()  # the working folder's config comes first

    assert here.returncode == 2
    assert "config/default.yaml:2:" in here.stderr and "tick_hzz" in here.stderr


def test_record_rotation_options_need_a_record_and_positive_values(tmp_path: Path) -> None:
    """Issue 22: a rotation option without --record, or a bound that is not positive, is
    refused before anything starts (exit 2, saying which)."""
    base = [sys.executable, RUN_PY, "--tree", "trees/sort.yaml", "--viz", "none"]
    cases = [
        (["--record-max-bytes", "100000"], "need --record FILE"),
        (
            ["--record", str(tmp_path / "r.jsonl"), "--record-keep", "0"],
            "argument --record-keep: must be at least 1",
        ),
    ]
    for extra, why in cases:
        result = subprocess.run([*base, *extra], cwd=ROOT, capture_output=True, text=True,
                                timeout=60)  # fmt: skip
        assert result.returncode == 2 and why in result.stderr, result.stderr


# Issue 23: each tried by the reporter (a traceback and exit 1, or a value that silently
# became the default), and one of each program's numeric options.
RUN = [RUN_PY, "--tree", SORT_TREE, "--check"]
OUT_OF_RANGE = [
    ([*RUN, "--speed", "-2"], "argument --speed: must be above 0, got '-2'"),
    ([*RUN, "--speed", "0"], "argument --speed: must be above 0, got '0'"),
    ([*RUN, "--items", "0"], "argument --items: must be at least 1, got '0'"),
    ([*RUN, "--speed", "nan"], "argument --speed: must be a finite number, got 'nan'"),
    ([*RUN, "--max-items", "2.5"], "argument --max-items: must be an integer, got '2.5'"),
    (["-m", "bt_sorter.sim", "--speed", "0"], "argument --speed: must be above 0"),
    (["-m", "bt_sorter.sim", "--drop-rate", "1.5"], "argument --drop-rate: must be at most 1"),
    (["-m", "bt_sorter.vision.serve", "--port", "70000"], "argument --port: must be at most"),
    (["-m", "bt_sorter.vision.serve", "--http-threads", "0"], "argument --http-threads: must"),
    (["-m", "bt_sorter.harness", "--scenarios", "0"], "argument --scenarios: must be at least 1"),
    (["-m", "bt_sorter.harness", "--seed", "-1"], "argument --seed: must be at least 0"),
]


def _case_id(value: object) -> str:
    """``run.py --speed -2``, ``bt_sorter.sim --speed 0``, ...; the messages get no id."""
    if not isinstance(value, list):
        return ""
    program = "run.py" if value[0] == RUN_PY else value[1]
    return f"{program} {' '.join(value[-2:])}"


@pytest.mark.parametrize(("argv", "message"), OUT_OF_RANGE, ids=_case_id)
def test_a_number_out_of_range_exits_2_naming_the_option(argv: list[str], message: str) -> None:
    """Refused by argparse before anything starts: exit 2, the option and the value, no
    traceback."""
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_every_numeric_option_is_read_by_a_bounded_type() -> None:
    """No ``type=int`` or ``type=float`` left on a command line: each goes through
    ``bt_sorter.argtypes``, so no option takes 0 or a negative number it cannot use."""
    bare = re.compile(r"[^d]type=(int|float)\b")  # not numpy's dtype=
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in [ROOT / "run.py", *(ROOT / "bt_sorter").rglob("*.py")]
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if bare.search(line)
    ]
    assert found == []


def test_the_line_programs_do_not_import_psutil() -> None:
    """psutil is a dev and bench dependency (a runtime one only on Windows, where
    ``resource`` is missing): the controller, the simulator and the services run without."""
    programs = (
        "run, bt_sorter.app, bt_sorter.sim.__main__, bt_sorter.vision.serve, "
        "bt_sorter.vision.worker, bt_sorter.harness.__main__, bt_sorter.plant"
    )
    code = f"import sys, {programs}; print('psutil' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
