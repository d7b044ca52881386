"""The project's own FrameProcessors, each small and named for what it does."""
