"""How a command that ran LiveKit's native threads ends its process.

LiveKit's threads can call back into Python while the interpreter finalises; such a thread
is then torn down through Rust code that cannot unwind, and the process aborts ("panic in a
function that cannot unwind", exit -6: about one run in fifteen on a loaded machine). A
command that started them (``run``, ``emulate``) marks it here; once it has stopped its
sessions and written its files, :func:`exit_now_if_marked` flushes and leaves without
finalising (``agent.cli.main`` calls it).
"""

from __future__ import annotations

import os
import sys

_marked = False


def mark() -> None:
    global _marked
    _marked = True


def exit_now_if_marked(code: int) -> None:
    if _marked:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
