"""Where the project finds its HeyGen credentials and base URL.

Every place that connects (the client, the YAML builder, the CLI) resolves them here, so
the rule is the same everywhere: an explicit setting wins, then the environment, then
the default.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from agent.heygen.protocol.interactive import DEFAULT_BASE_URL

ENV_API_KEY = "HEYGEN_API_KEY"
ENV_BASE_URL = "HEYGEN_BASE_URL"


def resolve_api_key(explicit: str | None = None) -> str | None:
    """The API key to use, or ``None`` when neither the caller nor the environment has one."""
    if explicit:
        return explicit
    return os.environ.get(ENV_API_KEY) or None


#: Said of a base URL that is not one. It never repeats the value: a key pasted into the
#: wrong setting would otherwise be printed.
NOT_A_BASE_URL = "expected an http:// or https:// URL"


def is_base_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def resolve_base_url(explicit: str | None = None) -> str:
    """The REST base URL, checked and without a trailing slash."""
    where = "base_url" if explicit else ENV_BASE_URL
    url = (explicit or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL).rstrip("/")
    if not is_base_url(url):
        raise ValueError(f"HeyGen {where}: {NOT_A_BASE_URL}")
    return url
