"""Reading a pipeline file: YAML with positions, ``${VAR}`` interpolation, validation,
processor resolution, and every problem reported as ``file:line:column: key: message``.

Values are never echoed in errors: a file's strings may hold secrets once interpolated.
"""

from __future__ import annotations

import os
import re
import typing
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from agent.media.wav_file import WavFileError, probe_wav
from agent.pipeline.errors import ConfigError, Problem, did_you_mean
from agent.pipeline.registry import ProcessorSpec, RegistryError, spec
from agent.pipeline.schema import PipelineFile, WavInput

Path_ = tuple[str | int, ...]
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
#: More values than any pipeline file needs: past it, YAML aliases are expanding without
#: bound (a "billion laughs" file), and walking them would hang the command.
MAX_VALUES = 100_000


class _TooLarge(Exception):
    def __init__(self, node: yaml.Node) -> None:
        self.node = node


class _Marks:
    """Where each key and value of the document is: 1-based (line, column)."""

    def __init__(self) -> None:
        self.key: dict[Path_, tuple[int, int]] = {}
        self.value: dict[Path_, tuple[int, int]] = {}
        #: keys written twice in one mapping: YAML keeps the last silently, we say so
        self.duplicates: list[tuple[Path_, tuple[int, int], int]] = []

    def walk(self, node: yaml.Node, path: Path_ = ()) -> None:
        if len(self.value) >= MAX_VALUES:
            raise _TooLarge(node)
        self.value[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                child = (*path, str(key_node.value))
                where = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if child in self.key:
                    self.duplicates.append((child, where, self.key[child][0]))
                self.key[child] = where
                self.walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.walk(item, (*path, index))

    def at(self, path: Path_, *, key: bool = False) -> tuple[int, int]:
        """The position of ``path``, or of its nearest ancestor that exists."""
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            tables = (self.key, self.value) if key and end == len(path) else (self.value,)
            for table in tables:
                if prefix in table:
                    return table[prefix]
        return (1, 1)


def load_pipeline_file(path: str | Path) -> PipelineFile:
    file, _ = _load(Path(path), resolve_processors=False)
    return file


def load_agent_file(
    path: str | Path, *, check_input: bool = True
) -> tuple[PipelineFile, list[ProcessorSpec]]:
    """The validated file and its processors, resolved and their arguments checked: all a
    run needs, so that a mistake is found before anything connects. With ``check_input``
    a WAV input must be a playable WAV (``run --input-wav`` replaces it, so it does not)."""
    return _load(Path(path), resolve_processors=True, check_input=check_input)


def resolve_path(path: str | Path, base: Path) -> Path:
    """Relative paths in a file are relative to the file, not to where it is run from,
    so a file means the same thing whoever runs it from wherever."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def _load(
    path: Path, *, resolve_processors: bool, check_input: bool = False
) -> tuple[PipelineFile, list[ProcessorSpec]]:
    name = str(path)

    def fail(message: str, line: int = 1, column: int = 1, key: str = "") -> ConfigError:
        return ConfigError([Problem(name, line, column, key, message)])

    if path.is_dir():
        raise fail("is a directory, not a pipeline file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise fail("no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read it: {exc}") from None
    def not_yaml(exc: yaml.YAMLError) -> ConfigError:
        if isinstance(exc, yaml.MarkedYAMLError):
            mark = exc.problem_mark or exc.context_mark
            line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            return fail(f"not valid YAML: {exc.problem or exc.context}", line, column)
        # the reader's: characters YAML does not allow
        line, column = _line_column(text, getattr(exc, "position", 0))
        return fail(f"not valid YAML: {str(exc).splitlines()[0]}", line, column)

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise not_yaml(exc) from None
    if node is None:
        raise fail("the file is empty; it needs at least a 'heygen' section")
    marks = _Marks()
    try:
        marks.walk(node)
    except _TooLarge as exc:
        mark = exc.node.start_mark
        raise fail(f"more than {MAX_VALUES} values: YAML aliases that expand without bound",
                   mark.line + 1, mark.column + 1) from None
    try:
        data = yaml.safe_load(text)  # composes again, then constructs (tags fail here)
    except yaml.YAMLError as exc:
        raise not_yaml(exc) from None
    if data is None:
        raise fail("the file is empty; it needs at least a 'heygen' section")
    if not isinstance(data, dict):
        raise fail("the top level must be a mapping of sections (heygen, input, outputs...)")

    problems = [
        Problem(name, line, column, _display(path), f"duplicate key; already set on line {first}")
        for path, (line, column), first in marks.duplicates
    ]
    said = len(problems)
    data = _interpolate(data, (), problems, marks, name)
    try:
        file: PipelineFile | None = PipelineFile.model_validate(data)
    except ValidationError as exc:
        # A setting whose ${VAR} is unset was already said once; its empty stand-in
        # failing validation would only say it again.
        unset = {p.key for p in problems[said:]}
        problems += [problem for problem in (_problem(e, data, marks, name) for e in exc.errors())
                     if problem.key not in unset]
        file = None
    specs: list[ProcessorSpec] = []
    if resolve_processors:
        # Checked even when the rest of the file is wrong: one pass shows every problem.
        entries = file.processors if file is not None else _alone(data, "processors", [])
        named: list[tuple[Path_, str, Any]] = [
            (("processors", index), "", entry) for index, entry in enumerate(entries)]
        brain = file.brain if file is not None else None
        for role in ("stt", "llm", "tts"):
            entry = getattr(brain, role, None)
            if entry is not None:
                named.append((("brain", role), role, entry))
        base_dir = path.resolve().parent
        for at, role, entry in named:
            line, column = marks.at((*at, "name"))
            origin = Problem(name, line, column, _display((*at, "name")), "")
            try:
                found = spec(entry.name, entry.args, role)
                specs.append(replace(_with_paths_from(found, base_dir), origin=origin,
                                     role=role))
            except RegistryError as exc:
                for key, message in exc.problems:
                    where: Path_ = (*at, "args", key) if key else (*at, "name")
                    line, column = marks.at(where, key=key is not None)
                    problems.append(Problem(name, line, column, _display(where), message))
    source = file.input if file is not None else _alone(data, "input", None)
    if check_input and isinstance(source, WavInput):
        try:
            probe_wav(resolve_path(source.path, path.resolve().parent))
        except WavFileError as exc:
            line, column = marks.at(("input", "path"))
            problems.append(Problem(name, line, column, "input.path", str(exc)))
    if problems:
        problems.sort(key=lambda p: (p.line, p.column))
        raise ConfigError(problems)
    assert file is not None
    return file, specs


def _with_paths_from(processor: ProcessorSpec, base_dir: Path) -> ProcessorSpec:
    """A processor's ``path`` / ``*_path`` arguments are relative to the file too."""
    args = {
        key: str(resolve_path(value, base_dir))
        if isinstance(value, str) and (key == "path" or key.endswith("_path")) else value
        for key, value in processor.args.items()
    }
    return replace(processor, args=args)


def _line_column(text: str, position: int) -> tuple[int, int]:
    """1-based line and column of a character offset."""
    line_start = text.rfind("\n", 0, position) + 1
    return text.count("\n", 0, position) + 1, position - line_start + 1


def _alone(data: dict[str, Any], section: str, otherwise: Any) -> Any:
    """One section of a file whose other sections are wrong, when it is valid by itself
    (else it was reported): its own checks still run, so one pass shows every problem."""
    if data.get(section) is None:
        return otherwise
    try:
        return getattr(PipelineFile.model_validate({section: data[section]}), section)
    except ValidationError:
        return otherwise


def _interpolate(
    value: Any, path: Path_, problems: list[Problem], marks: _Marks, name: str
) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, (*path, str(k)), problems, marks, name)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*path, i), problems, marks, name) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        variable, default = match.group(1), match.group(2)
        found = os.environ.get(variable)
        if found is not None and (found or default is None):
            return found
        if default is not None:
            return default
        line, column = marks.at(path)
        problems.append(Problem(name, line, column, _display(path),
                                f"environment variable {variable} is not set"))
        return ""

    return _VAR.sub(substitute, value)


def _problem(error: Any, data: Any, marks: _Marks, name: str) -> Problem:
    path = _data_path(tuple(error["loc"]), data)
    kind = error["type"]
    message = _message(error, path)
    if kind == "missing":
        line, column = marks.at(path[:-1], key=True)
    else:
        line, column = marks.at(path, key=kind == "extra_forbidden")
    return Problem(name, line, column, _display(path), message)


def _data_path(loc: Path_, data: Any) -> Path_:
    """pydantic's ``loc`` without the tags of unions (``input.wav.path`` → ``input.path``)."""
    path: list[str | int] = []
    current = data
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            current = current[part]
        elif not last:
            continue  # a union member's tag, not a key in the file
        path.append(part)
    return tuple(path)


def _message(error: Any, path: Path_) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        fields = _fields_at(PipelineFile, path[:-1])
        close = did_you_mean(str(path[-1]), fields)
        if close:
            return f"unknown key; did you mean {close!r}?"
        return "unknown key" + (f"; expected one of: {', '.join(fields)}" if fields else "")
    if kind == "missing":
        return "required key is missing"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        expected = error.get("ctx", {}).get("expected_tags", "")
        return f"'type' must be one of {expected}"
    if kind == "literal_error" or kind == "enum":
        return f"expected {error.get('ctx', {}).get('expected', error['msg'])}"
    if kind == "value_error":  # our own validators: their words, not "Value error, ..."
        return str(error.get("ctx", {}).get("error", error["msg"]))
    return str(error["msg"])


def _fields_at(model: Any, path: Path_) -> list[str]:
    """The field names allowed at ``path`` of the schema (for did-you-mean)."""
    current: Any = model
    for part in path:
        current = _unwrap(current, part)
        if current is None:
            return []
    candidates = [current] if _is_model(current) else [
        a for a in typing.get_args(current) if _is_model(a)]
    names: list[str] = []
    for candidate in candidates:
        names += [n for n in candidate.model_fields if n not in names]
    return names


def _unwrap(current: Any, part: str | int) -> Any:
    for arg in [current, *_flatten(current)]:
        if _is_model(arg) and isinstance(part, str) and part in arg.model_fields:
            return arg.model_fields[part].annotation
        origin = typing.get_origin(arg)
        if isinstance(part, int) and origin is list:
            return typing.get_args(arg)[0]
    return None


def _flatten(annotation: Any) -> list[Any]:
    out: list[Any] = []
    for arg in typing.get_args(annotation):
        out.append(arg)
        out += _flatten(arg)
    return out


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _display(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
