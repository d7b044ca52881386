"""Where audio and video enter and leave a pipeline: microphone, speaker, WAV files,
the local viewer page, the recorder and null sinks."""
