"""One module per ``heygen-agent`` command: each adds its parser and its handler."""
