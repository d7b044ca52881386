from __future__ import annotations

from pipecat.frames.frames import OutputAudioRawFrame, OutputImageRawFrame, StartFrame

from agent.media.sinks import NullSink
from tests.pipeline_helpers import Collector, run_until
from tests.test_recorder import Feed


async def test_null_sink_counts_and_passes_everything() -> None:
    feed, sink, after = Feed(0.2), NullSink(), Collector()

    async def played() -> None:
        await after.until(lambda: after.count(StartFrame) == 1)
        await feed.play()

    await run_until([feed, sink, after], played(), "the feed played")
    assert sink.counts["StartFrame"] == 1 and sink.counts["EndFrame"] == 1
    assert sink.counts["OutputImageRawFrame"] == sink.counts["OutputAudioRawFrame"] == 5
    assert len(after.of(OutputImageRawFrame)) == len(after.of(OutputAudioRawFrame)) == 5
    names = [type(f).__name__ for _, f in after.frames]
    assert (names[0], names[-1], len(names)) == ("StartFrame", "EndFrame", 12)
