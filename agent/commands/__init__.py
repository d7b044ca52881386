"""One module per ``heygen-agent`` command: each adds its parser and its handler.

The exit codes are here, once, for the command line and every command (the README lists
them): 0 ok, 1 error, 2 usage, 3 a bad pipeline file, 130 and 143 a signal.
"""

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
