"""A local stand-in for HeyGen's streaming service, for tests and the demo."""
