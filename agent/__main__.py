import sys

try:
    from agent.cli import main
except KeyboardInterrupt:  # Ctrl-C before anything started: an exit code, no traceback
    sys.exit(130)

sys.exit(main())
