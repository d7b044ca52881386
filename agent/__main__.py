"""``python -m agent``: the command line of :mod:`agent.cli`, so the agent runs without an
installed entry point; a Ctrl-C during the (slow) imports is an exit code, not a traceback.
"""

import sys

try:
    from agent.cli import main
except KeyboardInterrupt:  # Ctrl-C before anything started: an exit code, no traceback
    sys.exit(130)

sys.exit(main())
