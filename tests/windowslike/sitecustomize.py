"""Make the POSIX-only standard modules unimportable in this interpreter, as on Windows.

Put this folder first on ``PYTHONPATH``: Python imports ``sitecustomize`` at start-up, so
the process and every Python child it starts (they inherit the environment) behave as on
Windows for these imports: ``import resource`` raises ModuleNotFoundError. ``sys.platform``
stays what it is; only the imports are blocked, except from psutil, which picks its backend
by ``sys.platform`` (its Linux one imports ``resource``; on Windows it loads ``_pswindows``,
which needs none of them). With ``BT_SORTER_BLOCKED_LOG`` set, each
process appends one JSON line to that file (pid, command line): proof it ran blocked.
"""

from __future__ import annotations

import builtins
import importlib.abc
import json
import os
import sys
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

POSIX_ONLY = frozenset({"resource", "fcntl", "termios", "pwd", "grp", "tty", "pty"})
PLATFORM_BACKENDS = ("psutil",)  # packages whose POSIX backend is never loaded on Windows


def _importer() -> str:
    """The name of the module whose import statement is being served."""
    frame = sys._getframe(2)
    skip = ("importlib", __name__)
    while frame is not None and frame.f_globals.get("__name__", "").startswith(skip):
        frame = frame.f_back
    return frame.f_globals.get("__name__", "") if frame is not None else ""


class PosixOnlyBlocker(importlib.abc.MetaPathFinder):
    """A finder first on ``sys.meta_path`` that refuses the POSIX-only modules."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> None:
        if fullname in POSIX_ONLY and not _importer().startswith(PLATFORM_BACKENDS):
            raise _blocked(fullname, _importer())


def _blocked(name: str, importer: str) -> ModuleNotFoundError:
    return ModuleNotFoundError(f"No module named {name!r} (blocked in {importer})", name=name)


_import = builtins.__import__


def _guarded_import(
    name: str,
    globals: dict[str, Any] | None = None,  # builtins.__import__'s own names
    locals: Mapping[str, Any] | None = None,
    fromlist: Sequence[str] = (),
    level: int = 0,
) -> ModuleType:
    """``import resource`` fails even once psutil has loaded it (it is then in sys.modules)."""
    if level == 0 and name.partition(".")[0] in POSIX_ONLY:
        importer = (globals or {}).get("__name__", "")
        if not importer.startswith(PLATFORM_BACKENDS):
            raise _blocked(name, importer)
    return _import(name, globals, locals, fromlist, level)


sys.meta_path.insert(0, PosixOnlyBlocker())
builtins.__import__ = _guarded_import
for _name in POSIX_ONLY:  # imported before this ran (none is, on CPython 3.11): forget them
    sys.modules.pop(_name, None)

_log = os.environ.get("BT_SORTER_BLOCKED_LOG")
if _log:
    with open(_log, "a", encoding="utf-8") as _file:
        _file.write(json.dumps({"pid": os.getpid(), "argv": sys.orig_argv}) + "\n")
