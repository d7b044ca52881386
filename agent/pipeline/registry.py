"""Finding processors by name, and checking their arguments before anything connects.

A pipeline file names a processor three ways: a built-in short name (``latency_probe``),
``package.module:Class``, or a name another package registered under the entry-point
group ``heygen_agent.processors``. Arguments are validated against the class's
``__init__`` signature (its annotations, through pydantic) so that a typo in a YAML file
fails at once, with the key named, instead of after a billed session has started.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
import typing
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pipecat.processors.frame_processor import FrameProcessor
from pydantic import BaseModel, ConfigDict, PydanticUserError, ValidationError, create_model

from agent.pipeline.errors import ConfigError, Problem, did_you_mean

ENTRY_POINT_GROUP = "heygen_agent.processors"

BUILTINS: dict[str, str] = {
    "transcript_logger": "agent.processors.transcript_logger:TranscriptLogger",
    "latency_probe": "agent.processors.latency_probe:LatencyProbe",
    "greeting": "agent.processors.greeting:Greeting",
    "vad_push_to_talk": "agent.processors.vad_push_to_talk:VADPushToTalk",
    # offline stand-ins for a brain: no key, no network
    "speech_length_stt": "agent.brains.speech_length_stt:SpeechLengthSTTService",
    "scripted_llm": "agent.brains.scripted_llm:ScriptedLLMService",
    "espeak_tts": "agent.brains.espeak_tts:EspeakTTSService",
}


class RegistryError(ValueError):
    """A processor that cannot be found or built. ``problems`` lists each as (argument
    name or ``None``, message); ``key`` is the first one's argument."""

    def __init__(self, message: str, key: str | None = None,
                 problems: list[tuple[str | None, str]] | None = None) -> None:
        self.problems = problems or [(key, message)]
        super().__init__("; ".join(m for _, m in self.problems))
        self.key = self.problems[0][0]


@dataclass(frozen=True)
class ProcessorSpec:
    """A processor class and the arguments it will be built with (already validated);
    ``origin`` is where a file named it, for errors (a problem with an empty message)."""

    name: str
    cls: type[FrameProcessor]
    args: dict[str, Any]
    origin: Problem | None = None
    #: where the file put it: a processor (""), or the brain's "stt", "llm" or "tts"
    role: str = ""

    def build(self) -> FrameProcessor:
        """The processor; a constructor that raises is a :class:`ConfigError` of one line
        naming the file and entry (or a :class:`RegistryError` for a spec made in code)."""
        try:
            return self.cls(**self.args)
        except Exception as exc:
            message = f"{self.name}() failed: {_one_line(exc)}"
            if self.origin is None:
                raise RegistryError(message) from None
            raise ConfigError([replace(self.origin, message=message)]) from None


def known_names() -> list[str]:
    return sorted({*BUILTINS, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})


def resolve(name: str) -> type[FrameProcessor]:
    """The class ``name`` refers to."""
    if ":" in name:
        return _load(name, name)
    if name in BUILTINS:
        return _load(BUILTINS[name], name)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return _check_class(ep.load(), name)
    known = known_names()
    close = did_you_mean(name, known)
    hint = f"; did you mean {close!r}?" if close else f"; known: {', '.join(known)}"
    raise RegistryError(f"unknown processor {name!r} (use a built-in name or module:Class){hint}")


def _load(target: str, name: str) -> type[FrameProcessor]:
    module_name, _, attr = target.partition(":")
    if os.getcwd() not in sys.path:  # like uvicorn: your own modules beside the config work
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistryError(f"cannot import {module_name!r} for {name!r}: {exc}") from None
    except Exception as exc:  # the module itself raised (or has a syntax error)
        raise RegistryError(f"importing {module_name!r} for {name!r} failed: "
                            f"{_one_line(exc)}{_where(exc)}") from None
    try:
        return _check_class(getattr(module, attr), name)
    except AttributeError:
        raise RegistryError(f"module {module_name!r} has no {attr!r}") from None


def _check_class(obj: Any, name: str) -> type[FrameProcessor]:
    if not (inspect.isclass(obj) and issubclass(obj, FrameProcessor)):
        raise RegistryError(f"{name!r} is not a Pipecat FrameProcessor class")
    return obj


def arguments_model(cls: type[FrameProcessor]) -> type[BaseModel]:
    """A pydantic model of ``cls.__init__``'s keyword arguments (its own or the one it
    inherits); ``Any`` where a parameter is untyped or its type cannot be resolved."""
    fields: dict[str, Any] = {}
    # An ``__init__`` that takes ``**kwargs`` passes them up (Pipecat's services pass
    # ``api_key`` to their base class): its bases' parameters are its parameters too.
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = list(inspect.signature(init).parameters.values())[1:]
        for parameter in parameters:
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            if parameter.name in fields:
                continue  # the subclass's own say wins
            default = ... if parameter.default is inspect.Parameter.empty else parameter.default
            fields[parameter.name] = (_resolved(parameter.annotation, init), default)
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    name = f"{cls.__name__}Arguments"
    model = create_model(name, __config__=config, **fields)
    if _complete(model):
        return model
    # A type that names types its library never defines at run time (Pipecat's service
    # settings do): such a parameter takes anything, the others are still checked.
    for key, (annotation, default) in list(fields.items()):
        alone: dict[str, Any] = {key: (annotation, default)}
        if not _complete(create_model(f"{name}_{key}", __config__=config, **alone)):
            fields[key] = (Any, default)
    return create_model(name, __config__=config, **fields)


def _complete(model: type[BaseModel]) -> bool:
    try:
        return model.model_rebuild(raise_errors=True) is not False
    except (PydanticUserError, NameError, TypeError):
        return False


def _resolved(annotation: Any, function: Any) -> Any:
    """An annotation as a type. Modules with ``from __future__ import annotations`` give
    strings, and a name imported only for type checkers (as Pipecat's own ``__init__``
    does) cannot be resolved at all: such a parameter takes anything."""
    if annotation is inspect.Parameter.empty:
        return Any
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, getattr(function, "__globals__", {}), dict(vars(typing)))
    except Exception:
        return Any


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _where(exc: BaseException) -> str:
    """`` (file.py:line)`` of the innermost frame that raised, or of a syntax error."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" ({Path(exc.filename).name}:{exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    return f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""


def _service_kinds() -> dict[str, type[FrameProcessor]]:
    """The brain's slots and the Pipecat service base each takes (imported when a brain
    is checked, not for every file)."""
    from pipecat.services.llm_service import LLMService
    from pipecat.services.stt_service import STTService
    from pipecat.services.tts_service import TTSService

    return {"stt": STTService, "llm": LLMService, "tts": TTSService}


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "AEFHILMNORSX" else f"a {kind}"


def check_role(cls: type[FrameProcessor], role: str) -> None:
    """A brain's ``stt``, ``llm`` or ``tts`` must be that kind of Pipecat service: one in
    the wrong slot would build, and then the bot would never hear, think or speak."""
    kinds = _service_kinds()
    wanted = kinds[role]
    if issubclass(cls, wanted):
        return
    actual = next((_a(k.__name__) for k in kinds.values() if issubclass(cls, k)),
                  "no Pipecat service")
    raise RegistryError(f"{cls.__name__} is {actual}, not {_a(wanted.__name__)}: "
                        f"the brain's {role} must be one")


def spec(name: str, args: dict[str, Any] | None, role: str = "") -> ProcessorSpec:
    """Resolve ``name`` (for a brain's ``role``: a service of that kind) and validate
    ``args``; raises :class:`RegistryError` naming the argument at fault."""
    cls = resolve(name)
    if role:
        check_role(cls, role)
    model = arguments_model(cls)
    try:
        validated = model.model_validate(args or {})
    except ValidationError as exc:
        problems: list[tuple[str | None, str]] = []
        for error in exc.errors():
            key = ".".join(str(p) for p in error["loc"])
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                known = list(model.model_fields)
                close = did_you_mean(key, known)
                message = f"unknown argument for {name}" + (
                    f"; did you mean {close!r}?" if close else f"; it takes {', '.join(known)}")
            problems.append((key, message))
        raise RegistryError("", problems=problems) from None
    # Only what the file set: the class keeps its own defaults for the rest.
    return ProcessorSpec(name, cls, {k: getattr(validated, k) for k in validated.model_fields_set})
