"""Fault matrix: each of the simulator's faults alone, N items, for each tree.

Most rows run ``run.py`` on the built-in line with one fault flag passed through
``--sim-arg``. The broker-restart row runs the parts itself (mosquitto, the simulator,
``run.py --broker``) so that it can stop the broker mid-run and start a new one on the
same port. Each run keeps its record (``--record``) and the simulator's ledger
(``--ledger``), which tell a classifier error from a wrong push. Writes a Markdown table
(with the targets, their definitions and every miss with its evidence) and prints it.

    python bench/faults.py --items 30 --speed 10 --out docs/reliability.md
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml

from bt_sorter import protocol
from bt_sorter.broker import start_broker
from bt_sorter.config import DEFAULT_CONFIG, load_config
from bt_sorter.sim.process import start_simulator

ROOT = Path(__file__).resolve().parent.parent
TREES = ("trees/sort.yaml", "trees/sort_pipelined.yaml")
EXIT_ABORTED = 3
RUN_TIMEOUT = 900.0  # wall s for one run before the bench gives up on it
RESTART_PAUSE = 1.0  # wall s between stopping the broker and starting the new one
RETRY_STORM = 10  # classify_failed events for one item that count as a retry storm
KEEP_MARK = "<!-- kept by bench/faults.py -->"  # what follows it in --out survives a rerun
GRACE_S = 30.0  # wall s run.py may run on once the simulator (the line) has ended


@dataclass(frozen=True)
class Row:
    """One fault alone: its name for ``--rows``, its label, the simulator's flags."""

    name: str
    label: str
    sim_args: tuple[str, ...] = ()
    stops: bool = False  # the line must stop safely (exit 3) instead of running on
    restart: bool = False  # the broker is restarted mid-run


ROWS: tuple[Row, ...] = (
    Row("none", "none (baseline)"),
    Row("drop1", "1% dropped bb", ("--drop-rate=0.01",)),
    Row("drop5", "5% dropped bb", ("--drop-rate=0.05",)),
    Row("dup5", "5% duplicated bb", ("--duplicate-rate=0.05",)),
    Row("malformed5", "5% malformed bb", ("--malformed-rate=0.05",)),
    Row("corrupt10", "10% corrupt pictures", ("--corrupt-picture-rate=0.1",)),
    Row("missing10", "10% missing pictures", ("--missing-picture-rate=0.1",)),
    Row("flicker5", "5% gate flicker", ("--flicker-rate=0.05",)),
    Row("restart", "broker restart mid-run", restart=True),
    Row("stuck", "stuck item (item 5)", ("--stuck-item=5",), stops=True),
    Row("stall", "stalled belt at 60 s", ("--stall-belt-at=60",), stops=True),
)


@dataclass
class Result:
    """What one run left behind: run.py's summary (with the simulator's under ``line``)."""

    tree: str
    row: Row
    summary: dict[str, Any]
    record: list[dict[str, Any]]
    ledger: list[dict[str, Any]]
    wall_s: float
    command: str
    recovery: str = "–"
    notes: list[str] = field(default_factory=list)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def run_py(tree: str, args: argparse.Namespace, workdir: Path) -> list[str]:
    """run.py's arguments common to every row (record and summary in ``workdir``).

    With ``--no-geometry`` the controller's config is config/default.yaml without its
    ``line:`` section: the controller learns the line (the simulator's line is the same).
    """
    cmd = [
        sys.executable, "run.py", "--tree", tree, "--items", str(args.items),
        "--seed", str(args.seed), "--speed", str(args.speed), "--viz", "none",
        "--summary", str(workdir / "summary.json"), "--record", str(workdir / "record.jsonl"),
        "--log-level", "warning",
    ]  # fmt: skip
    if args.no_geometry:
        config = workdir / "no_line.yaml"
        data = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
        data.pop("line", None)
        config.write_text(yaml.safe_dump(data), encoding="utf-8")
        cmd += ["--config", str(config)]
    return cmd


def load_summary(workdir: Path, done: subprocess.CompletedProcess[str] | None) -> dict[str, Any]:
    path = workdir / "summary.json"
    if path.exists():
        summary: dict[str, Any] = json.loads(path.read_text("utf-8"))
        return summary
    tail = done.stderr[-1500:] if done is not None and done.stderr else ""
    code = done.returncode if done is not None else None
    return {"exit_code": code, "stop_reason": "no summary", "alarms": [], "error": tail}


def run_row(tree: str, row: Row, args: argparse.Namespace, workdir: Path) -> Result:
    """One row on the built-in line: ``run.py --sim-arg=<fault flag>``."""
    cmd = [*run_py(tree, args, workdir), "--ledger", str(workdir / "ledger.jsonl")]
    if args.no_geometry:
        cmd.append("--builtin")  # --config alone would mean an external line
    cmd += [f"--sim-arg={flag}" for flag in row.sim_args]
    started = time.monotonic()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        done = None
    result = Result(
        tree,
        row,
        load_summary(workdir, done),
        read_jsonl(workdir / "record.jsonl"),
        read_jsonl(workdir / "ledger.jsonl"),
        time.monotonic() - started,
        shlex.join(["python", *cmd[1:]]),
    )
    if done is None:
        result.notes.append(f"run.py killed after {RUN_TIMEOUT:.0f} s")
    return result


class Monitor:
    """A bystander MQTT client that notes the wall time of every command and feedback."""

    def __init__(self, host: str, port: int, feeds_wanted: int = 0) -> None:
        self.commands: list[tuple[float, str]] = []
        self.first_feedback: float | None = None
        self.feeds = 0
        self.feeds_wanted = feeds_wanted
        self.enough_feeds = threading.Event()
        self.first_command = threading.Event()
        subscribed = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench_{time.time_ns()}")
        client.on_connect = lambda c, *_: c.subscribe(
            [(protocol.COMMAND_TOPIC, 0), (protocol.FEEDBACK_TOPIC, 0)]
        )
        client.on_subscribe = lambda *_: subscribed.set()
        client.on_message = self._on_message
        client.connect(host, port)
        client.loop_start()
        self.client = client
        if not subscribed.wait(10.0):
            self.stop()
            raise RuntimeError(f"monitor could not subscribe on {host}:{port}")

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        if message.topic == protocol.FEEDBACK_TOPIC:
            if self.first_feedback is None:
                self.first_feedback = now
            return
        command = protocol.parse_command(message.payload)
        self.commands.append((now, str(command)))
        self.first_command.set()
        if command == protocol.push(1):
            self.feeds += 1
            if self.feeds_wanted and self.feeds >= self.feeds_wanted:
                self.enough_feeds.set()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def restart_row(tree: str, row: Row, args: argparse.Namespace, workdir: Path) -> Result:
    """Broker, simulator and ``run.py --broker`` started here; the broker restarts mid-run.

    The restart comes once the controller has fed a third of the items: the broker is
    stopped, and after ``RESTART_PAUSE`` s a new one starts on the same port.
    """
    ledger, sim_summary = workdir / "ledger.jsonl", workdir / "sim.json"
    broker = start_broker()
    port, proc, sim = broker.port, None, None
    started = time.monotonic()
    try:
        sim = start_simulator(
            broker.address, summary=sim_summary, items=args.items, seed=args.seed,
            speed=args.speed, ledger=ledger,
        )  # fmt: skip
        cmd = run_py(tree, args, workdir)
        cmd[cmd.index("--items")] = "--max-items"
        cmd += ["--broker", broker.address]
        before = Monitor(broker.host, port, feeds_wanted=max(1, args.items // 3))
        with (workdir / "run.log").open("w") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True)
        while not before.enough_feeds.wait(0.5) and proc.poll() is None:
            pass  # wakes twice a second only to notice a run.py that ended early
        before.stop()
        feeds_before = before.feeds
        result_note = ""
        if proc.poll() is not None:
            result_note = f"run.py ended (exit {proc.returncode}) before the restart"
        broker.stop()
        down = time.monotonic()
        time.sleep(RESTART_PAUSE)
        broker = start_broker(port=port)
        up, up_wall = time.monotonic(), time.time()
        after = Monitor(broker.host, port)
        truth = sim.wait(RUN_TIMEOUT)
        try:
            code = proc.wait(GRACE_S)
        except subprocess.TimeoutExpired:
            proc.terminate()  # run.py writes its summary on SIGTERM
            code = proc.wait(30.0)
            result_note += (
                f"; run.py still running {GRACE_S:.0f} s after the simulator ended: SIGTERM"
            )
        after.stop()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if sim is not None:
            sim.stop()
        broker.stop()
    summary = load_summary(workdir, None)
    if summary.get("exit_code") is None:
        summary["exit_code"] = code
    summary["line"] = truth
    result = Result(
        tree, row, summary, read_jsonl(workdir / "record.jsonl"), read_jsonl(ledger),
        time.monotonic() - started, "python bench/faults.py --rows restart",
    )  # fmt: skip
    if result_note:
        result.notes.append(result_note.removeprefix("; "))
    first = after.commands[0][0] if after.commands else None
    firsts = ", ".join(name for _t, name in after.commands[:3])
    result.notes.append(f"first commands after restart: {firsts or 'none'}")
    if first is None:
        result.recovery = "never"
        result.notes.append("no controller command after the restart")
    else:
        result.recovery = f"{first - up:.2f} s"
    sim_back = "never" if after.first_feedback is None else f"{after.first_feedback - up:.2f} s"
    result.notes.append(
        f"restart after {feeds_before} feeds; broker down {up - down:.1f} s; simulator "
        f"reconnected {sim_reconnect(sim_summary, up_wall)}, its first bb after restart {sim_back}"
    )
    return result


def sim_reconnect(sim_summary: Path, up_wall: float) -> str:
    """Seconds from the new broker's start to the simulator's second ``broker_connected``."""
    log = sim_summary.with_name(sim_summary.name + ".log")
    stamps = []
    for line in log.read_text("utf-8", errors="replace").splitlines() if log.exists() else []:
        if '"broker_connected"' in line:
            stamp = json.loads(line)["timestamp"].replace("Z", "+00:00")
            stamps.append(datetime.fromisoformat(stamp).timestamp())
    return "never" if len(stamps) < 2 else f"{stamps[1] - up_wall:.2f} s after it started"


def before_alarm(record: list[dict[str, Any]], n: int = 4) -> str:
    """The last ``n`` events other than gate edges before the alarm, compactly."""
    events = [e for e in record if e["event"] != "gate_edge"]
    at = next((i for i, e in enumerate(events) if e["event"] == "alarm_raised"), len(events))
    return " → ".join(compact(e) for e in events[max(0, at - n) : at + 1])


def compact(event: dict[str, Any]) -> str:
    facts = ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("event", "confidence"))
    return f"{event['event']}({facts})"


def first_event(record: list[dict[str, Any]], item: int, name: str) -> str:
    return next((compact(e) for e in record if e["event"] == name and e.get("item") == item), "")


def routes() -> dict[str, int]:
    return dict(load_config().sorting.routes)


def unresolved_ids(result: Result) -> list[int]:
    """Real items (fed by the simulator) the controller never resolved."""
    fed = result.summary.get("line", {}).get("items", 0) - result.summary.get("line", {}).get(
        "not_fed", 0
    )
    return [i for i in result.summary.get("in_flight_at_stop", []) if i <= fed]


def missorts(result: Result, route: dict[str, int]) -> list[str]:
    """Each item pushed into a bin 2-4 not its own, with the record's account of it."""
    classified = {e["item"]: e for e in result.record if e["event"] == "item_classified"}
    pushed = {e["item"]: e for e in result.record if e["event"] == "rod_extended"}
    out = []
    for item in result.ledger:
        where = item.get("bin")
        if not isinstance(where, int) or where == 1 or where == route.get(item["label"], 1):
            continue
        said = classified.get(item["id"], {}).get("label")
        push = pushed.get(item["id"])
        cause = "classifier" if said is not None and said != item["label"] else "push"
        out.append(
            f"{cause}: item {item['id']} ({item['label']}) in bin {where} ({item['why']}); "
            f"controller classified it {said!r}, "
            f"{'pushed it with rod ' + str(push['rod']) if push else 'never pushed it'}"
        )
    return out


def assess(result: Result, route: dict[str, int]) -> tuple[list[str], list[str]]:
    """The table cells of one run, and the targets it misses (with evidence)."""
    s, row = result.summary, result.row
    line = s.get("line") or {}
    bins = line.get("bins", {})
    fed = line.get("items", 0) - line.get("not_fed", 0)
    wrong = missorts(result, route)
    ctl_lost = s.get("outcomes", {}).get("lost", 0) + len(unresolved_ids(result))
    sim_lost = line.get("lost", 0)
    stopped = int(s.get("exit_code") == EXIT_ABORTED or bool(s.get("alarms")))
    misses: list[str] = []
    binned = sum(bins.get(b, 0) for b in ("1", "2", "3", "4", "jam"))
    if not line:
        misses.append("no simulator summary: " + str(s.get("error", ""))[-300:])
    elif fed != binned and not row.stops:
        misses.append(f"{fed - binned} fed items not in a bin or jam (sim bins {bins})")
    unaccounted = unresolved_ids(result)
    if unaccounted and not row.stops:  # lost *with a reason* is accounted for; silence is not
        misses.append(f"controller never resolved items {unaccounted}")
    empty = [e["item"] for e in result.record if e["event"] == "feed_empty"]
    real = [i for i in empty if i <= fed]
    if real:
        misses.append(f"controller took feeds {real} as empty; the simulator fed "
                      f"{fed} items: real items counted as empty feeds")  # fmt: skip
    misses += [f"missort by {w}" for w in wrong if w.startswith("push")]
    if line.get("jammed"):
        jams = [f"item {i['id']}: {i['why']}" for i in result.ledger if i.get("bin") == "jam"]
        misses.append(f"jammed: {'; '.join(jams)}")
    events = [e["event"] for e in result.record]
    if row.stops:
        order = ("belt_stopped", "alarm_raised")
        if s.get("exit_code") != EXIT_ABORTED or not all(e in events for e in order):
            misses.append(f"no safe stop: exit {s.get('exit_code')}, record has "
                          f"{[e for e in order if e in events]} of {list(order)}")  # fmt: skip
    elif stopped or s.get("exit_code") != 0:
        misses.append(f"line stopped: exit {s.get('exit_code')}, alarms {s.get('alarms')}; "
                      f"record to the stop: {before_alarm(result.record)}")  # fmt: skip
    note = list(result.notes)
    faults = [e["reason"] for e in result.record if e["event"] == "line_fault"]
    if s.get("alarms") and not faults:
        note.append("no line_fault in the record (tree failure, not LineHealthy)")
    if s.get("alarms"):
        note.append("alarm: " + "; ".join(s["alarms"]))
    if s.get("reasons"):
        note.append("bin 1/lost: " + ", ".join(f"{k} ×{v}" for k, v in s["reasons"].items()))
    note += [f"missort by {w.split(':')[0]}" for w in wrong if w.startswith("classifier")]
    retries = Counter(e["item"] for e in result.record if e["event"] == "classify_failed")
    if retries and max(retries.values()) > RETRY_STORM:
        item, count = retries.most_common(1)[0]
        note.append(f"classify_failed ×{count} for item {item}")
        first = first_event(result.record, item, "classify_failed")
        misses.append(f"item {item}: classify_failed {count} times, no give-up: {first}")
    missing = sum(1 for e in result.record if e["event"] == "edge_missing")
    if missing:
        note.append(f"edge_missing ×{missing}")
    if s.get("bad_inputs"):
        note.append(f"bad inputs {s['bad_inputs']}")
    if s.get("unmatched_edges"):
        note.append(f"unmatched edges {s['unmatched_edges']}")
    cells = [
        result.tree.removeprefix("trees/"),
        row.label,
        str(fed),
        str(line.get("correct", "?")),
        str(len(wrong)),
        str(bins.get("1", "?")),
        f"{sim_lost} / {ctl_lost}",
        str(line.get("jammed", "?")),
        str(stopped),
        str(s.get("exit_code")),
        result.recovery,
        "; ".join(note) or "–",
        "ok" if not misses else "**MISS**",
    ]
    return cells, misses


HEAD = (
    "tree", "fault", "items fed", "correct", "missorted", "rejected (bin 1)",
    "lost (sim / ctl)", "jammed", "line stops", "exit code", "recovery", "note", "targets",
)  # fmt: skip

DEFINITIONS = f"""\
Definitions:

- *items fed*: items the simulator put on the belt (its stack minus `not_fed`);
  *correct*, *rejected (bin 1)*, *jammed* are the simulator's truth.
- *missorted*: items pushed into a bin 2-4 that is not their own (an item of a sorted
  class that ends in bin 1 is a rejection, not a missort). The note says whether the
  classifier was wrong (record's `item_classified` label ≠ the ledger's true label).
- *lost (sim / ctl)*: the simulator's items still on the belt or stuck at the end / the
  controller's items resolved as `lost` plus real items it never resolved.
- *line stops*: 1 if run.py exited with code {EXIT_ABORTED} or raised an alarm.
- *recovery* (broker restart only): wall seconds from the new broker accepting
  connections to the first controller command on the command topic, seen by a bystander
  client subscribed to the new broker (it subscribes within milliseconds of the start).
  The broker is stopped once the controller has fed a third of the items and restarted
  on the same port after {RESTART_PAUSE:.0f} s.

Targets, checked per row (column *targets*): every fed item is in a bin 1-4 or jam and the
controller resolved every one as sorted, rejected or lost *with a reason* (except stuck
item / stalled belt, where the fault holds items); no missort by a wrong push (only the
classifier may be wrong); no jam; the line keeps running (exit 0, no alarm) in every row
except stuck item / stalled belt, which must stop safely: exit {EXIT_ABORTED} with
`belt_stopped` and `alarm_raised` in the record (the abort branch retracts all rods in the
step before `belt_stopped`; the record has no
event of its own for that). The note says when the alarm came without a `line_fault`.
"""


def table(results: list[Result], command: str) -> str:
    """The Markdown report: table, definitions, targets, misses with evidence."""
    route = routes()
    lines = ["# Reliability: the fault matrix", "", f"Generated by `{command}`.", ""]
    lines += ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    all_misses: list[tuple[Result, list[str]]] = []
    for result in results:
        cells, misses = assess(result, route)
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        if misses:
            all_misses.append((result, misses))
    lines += ["", DEFINITIONS, "## Rows that miss a target", ""]
    if not all_misses:
        lines.append("None.")
    for result, misses in all_misses:
        lines.append(f"- {result.tree} / {result.row.label} (`{result.command}`):")
        lines += [f"  - {m}" for m in misses]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=30, help="items per run (default 30)")
    parser.add_argument("--speed", type=float, default=10.0, help="line speed-up (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the stack and the faults")
    parser.add_argument("--trees", nargs="+", default=list(TREES), help="tree files")
    parser.add_argument("--rows", nargs="+", choices=[r.name for r in ROWS],
                        help="rows to run (default all)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "docs/reliability.md")
    parser.add_argument("--keep", type=Path, help="keep each run's record and ledger here")
    parser.add_argument(
        "--no-geometry",
        action="store_true",
        help="give the controller no line: section (it learns the line)",
    )
    args = parser.parse_args(argv)
    rows = [r for r in ROWS if args.rows is None or r.name in args.rows]
    command = shlex.join(["python", "bench/faults.py", *(argv or sys.argv[1:])])
    results = []
    with tempfile.TemporaryDirectory(prefix="bt_faults_") as tmp:
        base = args.keep or Path(tmp)
        for tree in args.trees:
            for row in rows:
                workdir = base / Path(tree).stem / row.name
                workdir.mkdir(parents=True, exist_ok=True)
                for old in workdir.iterdir():
                    old.unlink()
                runner = restart_row if row.restart else run_row
                try:
                    result = runner(tree, row, args, workdir)
                except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                    failed = {"exit_code": None, "alarms": [], "error": repr(exc)}
                    result = Result(tree, row, failed, [], [], 0.0, "bench/faults.py")
                results.append(result)
                print(f"{tree} {row.name}: exit {result.summary.get('exit_code')}, "
                      f"{result.wall_s:.0f} s wall", file=sys.stderr, flush=True)  # fmt: skip
    report = table(results, command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    old = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
    kept = old[old.index(KEEP_MARK) :] if KEEP_MARK in old else ""  # other benches' sections
    args.out.write_text(report + ("\n" + kept if kept else ""), encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
