"""Strict YAML configuration and data files checked by pydantic models, every problem named by file and line.

:func:`load_yaml` reads a file whose every mapping key and list item keeps its line (a repeated key is refused, not
silently last-wins), validates it with a pydantic model (``extra="forbid"``) and reports each problem as
``FILE:LINE: path.to[0].value: what is wrong`` — the line of the key or list item the problem is about.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]


class YamlFileError(ValueError):
    """A file that is not accepted; ``problems`` are ``FILE:LINE: path: message``, one per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int], problems: list[str], name: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key, line = str(key_node.value), key_node.start_mark.line + 1
            if key in seen:
                problems.append(f"{name}:{line}: {_path(loc + (key,))}: `{key}` appears twice (first on line "
                                f"{seen[key]}): keep one")
            seen[key] = line
            lines[loc + (key,)] = line
            _walk(value_node, loc + (key,), lines, problems, name)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[loc + (index,)] = item.start_mark.line + 1
            _walk(item, loc + (index,), lines, problems, name)


def _path(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "the file"


def _line(loc: Loc, lines: dict[Loc, int]) -> int:
    while loc and loc not in lines:
        loc = loc[:-1]
    return lines.get(loc, 1)


def _message(error: dict[str, Any]) -> str:
    kind, loc = error["type"], error["loc"]
    if kind == "extra_forbidden":
        return f"unknown key `{loc[-1]}`: check its spelling against the documented keys"
    if kind == "missing":
        return f"`{loc[-1]}` is missing"
    return str(error["msg"]).removeprefix("Value error, ")


def read_yaml(text: str, *, name: str) -> tuple[Any, dict[Loc, int]]:
    """The YAML document in ``text`` and the line of every key and list item (by its path).

    Raises:
        YamlFileError: not YAML, or a key repeated in one mapping.
    """
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise YamlFileError([f"{name}:{line}: not valid YAML: {getattr(exc, 'problem', None) or exc}"]) from None
    lines: dict[Loc, int] = {}
    problems: list[str] = []
    if node is not None:
        _walk(node, (), lines, problems, name)
    if problems:
        raise YamlFileError(problems)
    return data, lines


def validate(model: type[M], data: Any, *, lines: dict[Loc, int], name: str) -> M:
    """``data`` checked by ``model``.

    Raises:
        YamlFileError: listing every problem pydantic found, each with its line and path.
    """
    try:
        return model.model_validate({} if data is None else data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            at = loc[:-1] if error["type"] == "missing" else loc  # a missing key: where it belongs
            problems.append(f"{name}:{_line(at, lines)}: {_path(at)}: {_message(dict(error))}")
        raise YamlFileError(problems) from None


def load_yaml(path: Path, model: type[M], *, name: str | None = None) -> M:
    """Read ``path`` and check it with ``model`` (see the module docstring).

    Args:
        path: the file.
        model: a pydantic model (``extra="forbid"`` so unknown keys are refused).
        name: how messages name the file (default: the path as given).

    Raises:
        YamlFileError: not YAML, a repeated key, or anything the model refuses, each as ``FILE:LINE: path: …``.
    """
    shown = name or str(path)
    data, lines = read_yaml(path.read_text(encoding="utf-8"), name=shown)
    return validate(model, data, lines=lines, name=shown)
