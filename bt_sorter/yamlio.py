"""Safe YAML loading that remembers where every value came from.

Tree and config files are data: they are read with PyYAML's *safe* loader (no Python
objects, no tags that run code). Mappings come back as :class:`Located` dicts that
know the file and line of themselves and of each of their keys, so every error can
say ``trees/sort.yaml:12: node 'push rod': ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class SpecError(ValueError):
    """A tree or config file is invalid. The message names file, line and node."""

    def __init__(self, message: str, file: str | Path | None = None, line: int | None = None):
        self.file = str(file) if file is not None else None
        self.line = line
        self.detail = message
        where = ""
        if self.file:
            where = f"{self.file}:{line}: " if line else f"{self.file}: "
        super().__init__(where + message)


class Located(dict[str, Any]):
    """A YAML mapping with its file and line (1-based), and the line of each key."""

    file: str
    line: int
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)

    def error(self, message: str, key: str | None = None) -> SpecError:
        return SpecError(message, self.file, self.line_of(key) if key else self.line)


class LocatedList(list[Any]):
    """A YAML sequence with its file and the line of each element."""

    file: str
    line: int
    item_lines: list[int]


def _loader_for(file: str) -> type[yaml.SafeLoader]:
    class _Loader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Located:
        loader.flatten_mapping(node)
        result = Located()
        result.file = file
        result.line = node.start_mark.line + 1
        result.key_lines = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise SpecError(f"key {key!r} must be text", file, key_node.start_mark.line + 1)
            if key in result:
                raise SpecError(f"duplicate key {key!r}", file, key_node.start_mark.line + 1)
            result[key] = loader.construct_object(value_node, deep=True)
            result.key_lines[key] = key_node.start_mark.line + 1
        return result

    def construct_sequence(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> LocatedList:
        result = LocatedList(loader.construct_object(child, deep=True) for child in node.value)
        result.file = file
        result.line = node.start_mark.line + 1
        result.item_lines = [child.start_mark.line + 1 for child in node.value]
        return result

    _Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    _Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, construct_sequence)
    return _Loader


def load_text(text: str, file: str | Path = "<string>") -> Any:
    """Parse YAML text; syntax errors become :class:`SpecError` with the line."""
    try:
        return yaml.load(text, Loader=_loader_for(str(file)))  # a SafeLoader subclass
    except SpecError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise SpecError(f"YAML syntax error: {exc.problem or exc}", file, line) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"YAML error: {exc}", file) from None
    except RecursionError:
        raise SpecError("YAML is nested too deeply", file) from None


def read_spec_text(path: str | Path) -> str:
    """A tree or config file's text; a missing, unreadable or non-UTF-8 file is a SpecError."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read file: {exc.strerror or exc}", path) from None
    except UnicodeDecodeError:
        raise SpecError("file is not UTF-8 text", path) from None


def load_file(path: str | Path) -> Any:
    """Read and parse a YAML file; a missing or unreadable file is a :class:`SpecError`."""
    return load_text(read_spec_text(path), path)
