"""One way from what a file says to the type the code declares.

Config sections (:func:`bt_sorter.config.build`, dataclass fields), tree parameters
(:meth:`bt_sorter.behaviours.base.Param.check`) and Groot2 XML attributes, which are all
text (the Groot2 reader's ``_typed``), come through :func:`convert`. It checks and converts
one value and raises :class:`WrongTypeError` with what was expected and where inside the
value; each caller words the error and names the file, line and node, which only it knows.

Declared types: ``int``, ``float`` (an int is taken as a float), ``bool``, ``str``, ``list``,
``Literal[...]``, ``tuple[X, ...]`` (from a list), ``dict[K, V]``, ``X | Y`` or a tuple of
types ``(X, Y)`` (the first that takes the value), ``X | None`` and dataclasses (through
the caller's ``build``). A bool is never taken as a number.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any, Literal

Build = Callable[[type, Any, str], Any]  # (dataclass, value, path inside the value) -> object


class WrongTypeError(ValueError):
    """``value`` is not a ``hint``; ``path`` is where inside the value given (``[2]``,
    ``.ripe``), empty for the value itself."""

    def __init__(self, hint: Any, value: Any, path: str = "") -> None:
        super().__init__(f"{path or 'value'}: {value!r} is not {hint!r}")
        self.hint, self.value, self.path = hint, value, path


def convert(
    hint: Any,
    value: Any,
    *,
    text: bool = False,
    sep: str = ";",
    build: Build | None = None,
    path: str = "",
) -> Any:
    """``value`` as type ``hint`` (list -> tuple, int -> float); :class:`WrongTypeError` where it
    is not one. ``text``: ``value`` is text to be read as the type (an XML attribute:
    ``true``/``false``, numbers, lists separated by ``sep``, a Literal's choice by its
    text). ``build(cls, value, path)`` makes a dataclass (the caller's own checks)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if isinstance(hint, tuple) or origin in (types.UnionType, typing.Union):
        choices = hint if isinstance(hint, tuple) else args
        if value is None and type(None) in choices:
            return None
        first: WrongTypeError | None = None
        for choice in (c for c in choices if c is not type(None)):
            try:
                return convert(choice, value, text=text, sep=sep, build=build, path=path)
            except WrongTypeError as exc:
                first = first or exc
        raise first or WrongTypeError(hint, value, path)
    if origin is Literal:
        if text:
            value = next((a for a in args if str(a) == value), value)
        if value not in args:
            raise WrongTypeError(hint, value, path)
        return value
    if dataclasses.is_dataclass(hint):
        if build is None:
            raise TypeError(f"{hint!r} needs a build function")  # a programming error
        return build(hint, value, path)  # type: ignore[arg-type]
    if origin is tuple or hint is list:
        if text:
            value = value.split(sep) if value else []
        if not isinstance(value, list):
            raise WrongTypeError(hint, value, path)
        if hint is list:
            return value
        return tuple(
            convert(args[0], v, text=text, sep=sep, build=build, path=f"{path}[{i}]")
            for i, v in enumerate(value)
        )
    if origin is dict:
        if not isinstance(value, dict):
            raise WrongTypeError(hint, value, path)
        return {
            convert(args[0], k, build=build, path=path): convert(
                args[1], v, build=build, path=f"{path}.{k}"
            )
            for k, v in value.items()
        }
    if hint in (int, float):
        return _number(hint, _read(hint, value) if text else value, path)
    if hint is bool and text:
        if value.lower() not in ("true", "false"):
            raise WrongTypeError(hint, value, path)
        return value.lower() == "true"
    if isinstance(hint, type):
        if not isinstance(value, hint):
            raise WrongTypeError(hint, value, path)
        return value
    raise TypeError(f"type {hint!r} is not supported")  # a programming error


def _number(hint: type, value: Any, path: str) -> Any:
    """An int (never a bool), or a float from an int or a float."""
    kinds = int if hint is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise WrongTypeError(hint, value, path)
    return float(value) if hint is float else value


def _read(hint: type, text: str) -> Any:
    """``text`` read as a number of type ``hint`` (left as text where it is none)."""
    try:
        return hint(text)
    except ValueError:
        return text
