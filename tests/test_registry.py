from __future__ import annotations

import pytest

from agent.pipeline.registry import RegistryError, resolve, spec
from agent.processors.latency_probe import LatencyProbe
from agent.processors.transcript_logger import TranscriptLogger


def test_builtins_by_short_name() -> None:
    assert resolve("latency_probe") is LatencyProbe
    built = spec("transcript_logger", {"path": "out/t.jsonl"}).build()
    assert isinstance(built, TranscriptLogger) and str(built.path) == "out/t.jsonl"


def test_module_colon_class_and_typed_arguments() -> None:
    s = spec("examples.keyword_alert:KeywordAlert", {"keywords": ["weather"]})
    assert s.args == {"keywords": ["weather"]}
    assert s.build().keywords == ["weather"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "name,args,match,key",
    [
        ("latency_prob", {}, "unknown processor.*did you mean 'latency_probe'", None),
        ("nowhere.module:Thing", {}, "cannot import 'nowhere.module'", None),
        ("examples.keyword_alert:Nope", {}, "has no 'Nope'", None),
        ("pathlib:Path", {}, "not a Pipecat FrameProcessor", None),
        ("examples.keyword_alert:KeywordAlert", {}, "Field required", "keywords"),
        ("examples.keyword_alert:KeywordAlert", {"keywords": ["x"], "case_sensitiv": True},
         "did you mean 'case_sensitive'", "case_sensitiv"),
        ("examples.keyword_alert:KeywordAlert", {"keywords": 3}, "valid list", "keywords"),
        ("latency_probe", {"log": "loud"}, "valid boolean", "log"),
    ],
)
def test_errors_name_what_is_wrong(
    name: str, args: dict[str, object], match: str, key: str | None
) -> None:
    with pytest.raises(RegistryError, match=match) as caught:
        spec(name, args)
    assert caught.value.key == key


def test_entry_points_are_searched(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    import agent.pipeline.registry as registry

    point = EntryPoint("alert", "examples.keyword_alert:KeywordAlert", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [point])
    assert resolve("alert").__name__ == "KeywordAlert"
    assert "alert" in registry.known_names()


def test_every_bad_argument_is_reported() -> None:
    with pytest.raises(RegistryError) as caught:
        spec("examples.keyword_alert:KeywordAlert", {"keywords": 3, "extra": 1})
    assert [k for k, _ in caught.value.problems] == ["keywords", "extra"]


def test_a_pipecat_service_whose_types_pipecat_leaves_undefined_is_checked_not_a_traceback(
) -> None:
    """Pipecat's LLM services take settings whose annotations name types Pipecat never
    defines at run time; their arguments are still checked (those fields take anything)."""
    found = spec("pipecat.services.openai.llm:OpenAILLMService",
                 {"api_key": "sk-test", "model": "gpt-4o-mini"})
    assert found.args == {"api_key": "sk-test", "model": "gpt-4o-mini"}
    with pytest.raises(RegistryError) as caught:
        spec("pipecat.services.openai.llm:OpenAILLMService", {"api_kye": "sk-test"})
    assert "did you mean 'api_key'" in str(caught.value.problems)
