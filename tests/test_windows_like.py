"""Every entry point where the POSIX-only modules are missing, as they are on Windows.

Nothing here runs on Windows. The processes run with ``tests/windowslike`` first on
PYTHONPATH: its ``sitecustomize`` makes ``resource``, ``fcntl``, ``termios``, ``pwd``,
``grp``, ``tty`` and ``pty`` unimportable in them and in every Python child they start, so
an import of one on any path these runs take fails as it would on Windows. ``sys.platform``
stays Linux: the Windows branches of the process and signal helpers are checked by calling
them with ``platform="win32"``.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_run_cli import ROOT, RUN_PY, SORT_TREE

from bt_sorter.broker import BrokerProcess, default_kind, mosquitto_path, stop_process
from bt_sorter.portable import child_kwargs, stop_signal, stop_signal_names

BLOCKER = ROOT / "tests" / "windowslike"
POSIX_ONLY = ("resource", "fcntl", "termios", "pwd", "grp", "tty", "pty")
ROUTES = {"ripe": 2, "half_ripe": 3, "raw": 4}  # config/default.yaml's sorting.routes
# Every command a user runs, by the module holding its main() (run.py: bt_sorter.app).
ENTRY_MODULES = (
    "bt_sorter.app",
    "bt_sorter.sim.__main__",
    "bt_sorter.vision.serve",
    "bt_sorter.vision.worker",
    "bt_sorter.plant",
    "bt_sorter.replay",
    "bt_sorter.vision.train",
    "bt_sorter.vision.evaluate",
    "bt_sorter.vision.calibrate",
    "bt_sorter.broker",
)


def blocked_env(log: Path | None = None) -> dict[str, str]:
    """The environment of a process (and its children) without the POSIX-only modules."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(BLOCKER), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    if log is not None:
        env["BT_SORTER_BLOCKED_LOG"] = str(log)
    return env


def run_blocked(code: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=blocked_env(), capture_output=True,
        text=True, timeout=timeout,
    )  # fmt: skip


_EVERY_MODULE = """
import importlib, pkgutil, sys, bt_sorter
for name in {posix_only!r}:
    try:
        __import__(name)
    except ImportError:
        pass
    else:
        sys.exit(f"the blocker let {{name}} through")
failed = []
for info in pkgutil.walk_packages(bt_sorter.__path__, "bt_sorter."):
    try:
        importlib.import_module(info.name)
    except Exception as exc:
        failed.append(f"{{info.name}}: {{exc!r}}")
print("\\n".join(failed) or "all imported")
"""


def test_every_module_imports_without_the_posix_only_modules() -> None:
    """Lazy imports too: bt_sorter.sim.node is imported only once the simulator runs."""
    done = run_blocked(_EVERY_MODULE.format(posix_only=POSIX_ONLY))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "all imported", done.stdout


_EVERY_HELP = """
import contextlib, importlib, io, sys
for name in {modules!r}:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            code = importlib.import_module(name).main(["--help"])
        except SystemExit as exc:
            code = exc.code
    text = out.getvalue()
    try:  # Windows writes a redirected stdout in the ANSI code page: cp1252 in the west
        text.encode("cp1252")
    except UnicodeEncodeError as exc:
        code = f"not-cp1252:{{exc.object[exc.start:exc.end]}}"
    print(name, code, (text.splitlines() or ["(nothing)"])[0])
"""


def test_every_entry_point_parses_its_command_line_without_the_posix_only_modules() -> None:
    """And its help survives ``--help > file`` on Windows: nothing outside cp1252."""
    done = run_blocked(_EVERY_HELP.format(modules=ENTRY_MODULES))
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(ENTRY_MODULES), done.stdout
    for line in lines:
        _name, code, usage = line.split(" ", 2)
        assert code == "0" and usage.startswith("usage:"), line


def _posix_only_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of each import of a POSIX-only module not inside try/except ImportError."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, guarded: bool) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for name in names:
                if name and name.partition(".")[0] in POSIX_ONLY and not guarded:
                    found.append((node.lineno, name))
        if isinstance(node, ast.Try):
            catches = any(
                h.type is not None
                and any(n in ast.unparse(h.type) for n in ("ImportError", "ModuleNotFoundError"))
                for h in node.handlers
            )
            for child in node.body:
                visit(child, guarded or catches)
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, guarded)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    visit(tree, False)
    return found


def test_no_posix_only_module_is_imported_without_a_fallback() -> None:
    """Also the imports inside functions, which an import test does not reach."""
    sources = [*sorted((ROOT / "bt_sorter").rglob("*.py")), Path(RUN_PY)]
    unguarded = {
        str(path.relative_to(ROOT)): found
        for path in sources
        if (found := _posix_only_imports(ast.parse(path.read_text("utf-8"))))
    }
    assert unguarded == {}
    # the check itself sees one
    assert _posix_only_imports(ast.parse("def f():\n    import resource\n")) == [(2, "resource")]


def test_the_builtin_line_sorts_every_item_into_its_own_bin_without_the_posix_only_modules(
    tmp_path: Path,
) -> None:
    """run.py starts amqtt (the broker Windows gets without mosquitto) and the simulator:
    all three processes run blocked, and the simulator's truth has each item in its own bin
    (every item, not "no missort": at --speed 2 the margin is 125 ms of wall time)."""
    log, ledger, summary = tmp_path / "blocked.jsonl", tmp_path / "ledger.jsonl", tmp_path / "s"
    cmd = [sys.executable, RUN_PY, "--tree", SORT_TREE, "--items", "4", "--seed", "3",
           "--speed", "2", "--viz", "none", "--broker-kind", "amqtt",
           "--ledger", str(ledger), "--summary", str(summary)]  # fmt: skip
    try:
        done = subprocess.run(
            cmd, cwd=ROOT, env=blocked_env(log), capture_output=True, text=True, timeout=240
        )
    except subprocess.TimeoutExpired as hung:
        pytest.fail(f"run.py still running after 240 s: {hung.stderr!r}"[-4000:])
    tail = f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, tail
    done.stdout.encode("cp1252")  # the summary, redirected on Windows
    started = [" ".join(json.loads(line)["argv"][1:3]) for line in log.read_text().splitlines()]
    assert sorted(started) == sorted([f"{RUN_PY} --tree", "-m bt_sorter.broker",
                                      "-m bt_sorter.sim"]), started  # fmt: skip
    items = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert len(items) == 4, tail
    assert len({item["label"] for item in items}) == 3  # seed 3: every rod has work
    assert [item["bin"] for item in items] == [ROUTES[item["label"]] for item in items], tail
    truth = json.loads(summary.read_text())["line"]
    assert (truth["correct"], truth["missorted"], truth["lost"]) == (4, 0, 0), tail
    assert truth["process"]["peak_rss_mib"] > 0  # from psutil: resource was not there


def test_run_py_with_broker_drives_an_external_line_without_the_posix_only_modules(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    """The FS scene's way: the line (here the simulator, blocked too) is already on a broker."""
    log, summary = tmp_path / "blocked.jsonl", tmp_path / "sim.json"
    sim = subprocess.Popen(
        [sys.executable, "-m", "bt_sorter.sim", "run", "--broker", broker.address, "--items",
         "3", "--seed", "1", "--speed", "2", "--summary", str(summary)],
        cwd=ROOT, env=blocked_env(log), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert sim.stdout is not None
        ready = sim.stdout.readline()  # the simulator's ready line, once subscribed
        assert '"sim_ready"' in ready, sim.stderr.read() if sim.stderr else ""
        done = subprocess.run(
            [sys.executable, RUN_PY, "--tree", SORT_TREE, "--broker", broker.address,
             "--speed", "2", "--max-items", "3", "--viz", "none"],
            cwd=ROOT, env=blocked_env(log), capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        sim.wait(120)
    finally:
        stop_process(sim, 10.0)
    started = [" ".join(json.loads(line)["argv"][1:3]) for line in log.read_text().splitlines()]
    assert sorted(started) == ["-m bt_sorter.sim", f"{RUN_PY} --tree"], started
    truth = json.loads(summary.read_text())
    assert (truth["correct"], truth["missorted"], truth["lost"]) == (3, 0, 0), truth
    # seed 1: one item of each label, each in its own bin
    assert truth["label_by_bin"] == {"ripe": {"2": 1}, "half_ripe": {"3": 1}, "raw": {"4": 1}}


# -- the Windows branches, called with platform="win32" -------------------------------------


def test_on_windows_a_child_gets_a_process_group_and_is_stopped_with_ctrl_break() -> None:
    assert child_kwargs("win32") == {"creationflags": 0x00000200}  # CREATE_NEW_PROCESS_GROUP
    assert child_kwargs("win32", posix_session=True) == {"creationflags": 0x00000200}
    assert stop_signal("win32") == 1  # CTRL_BREAK_EVENT
    assert stop_signal_names("win32") == ("SIGINT", "SIGTERM", "SIGBREAK")
    if sys.platform == "win32":  # the constants the fixed numbers stand for
        assert subprocess.CREATE_NEW_PROCESS_GROUP == 0x00000200  # type: ignore[attr-defined]
        assert signal.CTRL_BREAK_EVENT == 1  # type: ignore[attr-defined]


def test_on_posix_children_are_started_and_stopped_as_before() -> None:
    assert child_kwargs("linux") == {}  # in the terminal's group: Ctrl-C reaches them too
    assert child_kwargs("linux", posix_session=True) == {"start_new_session": True}
    assert stop_signal("linux") == signal.SIGTERM
    assert stop_signal_names("linux") == ("SIGINT", "SIGTERM")


@pytest.mark.parametrize("folder", ["ProgramFiles", "ProgramFiles(x86)"])
def test_on_windows_mosquitto_exe_is_found_where_its_installer_puts_it(
    tmp_path: Path, folder: str
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    environ = {"PATH": str(empty), "ProgramFiles": str(tmp_path / "pf"), folder: str(tmp_path)}
    assert mosquitto_path("win32", environ) is None
    assert default_kind("win32", environ) == "amqtt"
    exe = tmp_path / "mosquitto" / "mosquitto.exe"
    exe.parent.mkdir()
    exe.write_bytes(b"")
    assert mosquitto_path("win32", environ) == str(exe)
    assert default_kind("win32", environ) == "mosquitto"
    # on POSIX the Windows folder is not looked at
    assert mosquitto_path("linux", environ) != str(exe)
