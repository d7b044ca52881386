"""HeyGen streaming avatars in Pipecat voice pipelines."""

__version__ = "0.1.0"
