"""YAML loading that remembers where every key is, so config errors name the file, the line and the key.

PyYAML's plain `safe_load` forgets node marks and silently keeps the last of two duplicate keys; this
loader builds the same Python values from the composed node tree, attaches line numbers to every
mapping and sequence, and refuses duplicate keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REVIEW_KEY = "review"


class MappingError(ValueError):
    """A mapping file is wrong. The message names the file, the line and the key, e.g.
    `mappings/fields/contact.yaml line 12: key 'transform': unknown transform 'cents_to_mony' (known: ...)`."""

    def __init__(self, file: str, line: int | None, key: str | None, message: str) -> None:
        self.file, self.line, self.key, self.message = file, line, key, message
        where = file if line is None else f"{file} line {line}"
        super().__init__(f"{where}: key '{key}': {message}" if key else f"{where}: {message}")


class LocDict(dict):
    """A mapping with `line` (where it starts) and `lines[key]` (where each key is)."""

    line: int = 0
    lines: dict[Any, int]


class LocList(list):
    line: int = 0
    lines: list[int]


# libyaml's parser when PyYAML was built with it: the same values and line marks, about 8x faster (the
# mapping files are read once per step that needs them); the pure-Python parser otherwise.
_SafeBase: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeBase):  # type: ignore[valid-type,misc]
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LocDict:
    loader.flatten_mapping(node)
    out = LocDict()
    out.line, out.lines = node.start_mark.line + 1, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {out.lines[key]})", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = line
    return out


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LocList:
    out = LocList(loader.construct_object(child, deep=True) for child in node.value)
    out.line, out.lines = node.start_mark.line + 1, [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_located(path: Path, display: str) -> Any:
    """Parse one YAML file into LocDict/LocList values; YAML syntax errors become MappingError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(display, None, None, f"cannot read file: {exc.strerror}") from exc
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader derives from SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise MappingError(display, line, None, f"invalid YAML: {exc.problem or exc.context}") from exc


_TYPE_NAMES = {
    str: "text",
    int: "integer",
    float: "number",
    bool: "true/false",
    dict: "mapping",
    list: "list",
}


def type_name(t: type | tuple[type, ...]) -> str:
    types = t if isinstance(t, tuple) else (t,)
    return " or ".join(_TYPE_NAMES.get(x, x.__name__) for x in types)


class Section:
    """Typed access to one YAML mapping, raising MappingError with the exact location on misuse."""

    def __init__(self, data: Any, file: str, path: str, line: int | None = None) -> None:
        self.file, self.path = file, path
        if not isinstance(data, dict):
            raise MappingError(
                file, getattr(data, "line", line), path or None, f"expected a mapping, got {_kind(data)}"
            )
        self.data: dict[Any, Any] = data
        self.line = getattr(data, "line", line)

    def line_of(self, key: str) -> int | None:
        return getattr(self.data, "lines", {}).get(key, self.line)

    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str | None, message: str) -> MappingError:
        line = self.line if key is None else self.line_of(key)
        return MappingError(self.file, line, self.key_path(key) if key else (self.path or None), message)

    def only(self, *allowed: str) -> None:
        # `review:` is the open-decision marker propose-mapping puts on any generated entry (contract B):
        # accepted everywhere so a file under review still loads (the dry run then shows every problem);
        # the blocking check mapping_confirmed lists every one left (mapping/review_markers.py).
        for key in self.data:
            if key not in allowed and key != REVIEW_KEY:
                raise self.error(str(key), f"unknown key (allowed: {', '.join(allowed)})")

    def get(
        self, key: str, types: type | tuple[type, ...], default: Any = None, required: bool = False
    ) -> Any:
        if key not in self.data or self.data[key] is None:
            if required:
                raise MappingError(self.file, self.line, self.key_path(key), "missing required key")
            return default
        value = self.data[key]
        wanted = types if isinstance(types, tuple) else (types,)
        # bool is an int in Python; a `true` where a number is expected is a mistake, not a 1.
        if not isinstance(value, wanted) or (isinstance(value, bool) and bool not in wanted):
            raise self.error(key, f"expected {type_name(types)}, got {_kind(value)} {value!r}")
        return value

    def sub(self, key: str, required: bool = False) -> Section | None:
        value = self.get(key, dict, required=required)
        return None if value is None else Section(value, self.file, self.key_path(key), self.line_of(key))

    def section(self, key: str) -> Section:
        """A required nested mapping."""
        value = self.get(key, dict, required=True)
        return Section(value, self.file, self.key_path(key), self.line_of(key))

    def items_of(self, key: str, required: bool = False) -> list[tuple[Any, int | None]]:
        """Elements of a list value with their line numbers."""
        value = self.get(key, list, default=[], required=required)
        lines = getattr(value, "lines", [self.line_of(key)] * len(value))
        return list(zip(value, lines, strict=True))


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return (
        _TYPE_NAMES.get(type(value), type(value).__name__)
        if not isinstance(value, dict | list)
        else ("mapping" if isinstance(value, dict) else "list")
    )
