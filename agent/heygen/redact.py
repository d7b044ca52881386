"""Keeping secrets out of logs and error messages.

API keys, session tokens and LiveKit tokens must never reach a log line or an exception
text: sessions are billed, and logs get pasted into issue trackers. A :class:`Redactor`
learns each secret as the client sees it and scrubs any text before it leaves.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import SecretStr

MASK = "[redacted]"
#: Query parameters that carry credentials (the voice-chat URL has ``session_token``).
_SECRET_PARAM = re.compile(r"(token|key|secret|password|auth)", re.IGNORECASE)
#: Shorter strings are not treated as secrets: masking them would mangle ordinary text.
_MIN_SECRET_LENGTH = 6


class Redactor:
    """A set of known secrets, replaced by :data:`MASK` in any text."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add(self, secret: str | SecretStr | None) -> None:
        if isinstance(secret, SecretStr):
            secret = secret.get_secret_value()
        if secret and len(secret) >= _MIN_SECRET_LENGTH:
            self._secrets.add(secret)

    def add_url(self, url: str | SecretStr | None) -> None:
        """A URL that may carry a credential: the values of its credential-like query
        parameters, and the URL whole."""
        if isinstance(url, SecretStr):
            url = url.get_secret_value()
        if not url:
            return
        self.add(url)
        for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
            if _SECRET_PARAM.search(name):
                self.add(value)

    def __call__(self, text: str) -> str:
        # Longest first, so a secret that contains another is masked whole.
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text


def redact_url(url: str) -> str:
    """``url`` with the values of credential-like query parameters masked."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = [
        (name, MASK if _SECRET_PARAM.search(name) else value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(query, safe="[]")))
