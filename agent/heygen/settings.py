"""Where the project finds its HeyGen credentials and base URLs.

Every place that connects (the clients, the YAML builder, the CLI) resolves them here, so
the rule is the same everywhere: an explicit setting wins, then the environment, then
the default. HeyGen's two APIs take different keys (a HeyGen key does not work with
LiveAvatar), so each :class:`Service` has its own variables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from agent.heygen.protocol import interactive
from agent.heygen.protocol.liveavatar import rest as liveavatar


@dataclass(frozen=True)
class Service:
    """One API: its name in messages, its environment variables, its default URL."""

    name: str
    env_api_key: str
    env_base_url: str
    default_base_url: str


HEYGEN = Service("HeyGen", "HEYGEN_API_KEY", "HEYGEN_BASE_URL", interactive.DEFAULT_BASE_URL)
LIVEAVATAR = Service(
    "LiveAvatar", "LIVEAVATAR_API_KEY", "LIVEAVATAR_BASE_URL", liveavatar.DEFAULT_BASE_URL
)

ENV_API_KEY = HEYGEN.env_api_key
ENV_BASE_URL = HEYGEN.env_base_url


def resolve_api_key(explicit: str | None = None, service: Service = HEYGEN) -> str | None:
    """The API key to use, or ``None`` when neither the caller nor the environment has one."""
    if explicit:
        return explicit
    return os.environ.get(service.env_api_key) or None


#: Said of a base URL that is not one. It never repeats the value: a key pasted into the
#: wrong setting would otherwise be printed.
NOT_A_BASE_URL = "expected an http:// or https:// URL with no user, query or fragment"


def is_base_url(url: str) -> bool:
    """Scheme and host (a port, a path): the API's paths are appended to it, so a query or
    a fragment would swallow them, and a user part is a secret in the wrong place."""
    parts = urlsplit(url)
    return (parts.scheme in ("http", "https") and bool(parts.hostname)
            and not (parts.query or parts.fragment or "@" in parts.netloc))


def resolve_base_url(explicit: str | None = None, service: Service = HEYGEN) -> str:
    """The REST base URL, checked and without a trailing slash."""
    where = "base_url" if explicit else service.env_base_url
    url = (explicit or os.environ.get(service.env_base_url) or service.default_base_url)
    url = url.rstrip("/")
    if not is_base_url(url):
        raise ValueError(f"{service.name} {where}: {NOT_A_BASE_URL}")
    return url
