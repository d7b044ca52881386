from __future__ import annotations

from pipecat.frames.frames import OutputAudioRawFrame, TextFrame

from agent.media.sinks import NullSink
from tests.pipeline_helpers import Collector, run_for
from tests.test_recorder import Feed


async def test_null_sink_counts_and_passes_everything() -> None:
    feed, sink, after = Feed(0.0), NullSink(), Collector()
    await run_for([feed, sink, after], 0.3)
    assert sink.counts["StartFrame"] == 1 and sink.counts["EndFrame"] == 1
    assert after.of(OutputAudioRawFrame, TextFrame) == []
    assert [type(f).__name__ for _, f in after.frames] == ["StartFrame", "EndFrame"]
