"""Text that is safe to print: secrets redacted, and text from outside bounded and escaped.

Secrets: values under keys named like a secret (password, token, private key material, …) are
replaced; every occurrence of a registered secret value (e.g. the etcd password once the config is
parsed: `add_secret(...)`) is replaced inside any string, however short, including exception text;
PEM private-key blocks and the password part of `scheme://user:pass@host` URLs are replaced too.
The one registry, `SECRETS`, is the log set-up's redactor (`locksmith.logging`) and what `scrub` uses
for the lines a program prints itself.

Kept apart from the log set-up so a program that only prints (the bootloader tool, two runs on every
boot) or that never logs through structlog does not import structlog and asyncio to scrub one line:
on a slow machine that import is seconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

REDACTED = "[REDACTED]"

_SECRET_KEY = re.compile(
    r"(?i)(passw(or)?d|passphrase|secret|token|credential|authorization|cookie|api[_-]?key"
    r"|private[_-]?key|key[_-]?(material|data|pem|contents?)$|^pem$)"
)
_PEM_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|$)", re.S)
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@")
# `password='x'` / `"token": "x"` inside reprs and messages.
_INLINE_SECRET = re.compile(
    r"(?i)\b(\w*(?:passw(?:or)?d|passphrase|secret|token|api[_-]?key)\w*['\"]?\s*[=:]\s*)(['\"]?)[^'\"\s,)}\]]+\2"
)


class SecretRedactor:
    """Removes secrets from text, and from a log event dict as a structlog processor (module docstring)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []  # longest first, so a secret containing another is replaced whole
        self._secret_keys: dict[str, bool] = {}  # a program logs a few dozen key names: each judged once
        for value in secrets:
            self.add(value)

    def add(self, value: str) -> None:
        """Redact every occurrence of `value` from now on (empty values are ignored)."""
        if value and value not in self._secrets:
            self._secrets = sorted([*self._secrets, value], key=len, reverse=True)

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
        return {key: self._clean(key, value) for key, value in event_dict.items()}

    def _clean(self, key: str, value: Any) -> Any:
        secret_key = self._secret_keys.get(key)
        if secret_key is None:
            secret_key = self._secret_keys[key] = bool(_SECRET_KEY.search(key))
        if secret_key and value not in (None, ""):
            return REDACTED
        if type(value) is str:  # nearly every value: checked first, before the slower ABC checks below
            return self.scrub(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, Mapping):
            return {k: self._clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._clean(key, v) for v in value]
        return self.scrub(value if isinstance(value, str) else str(value))

    def scrub(self, text: str) -> str:
        """`text` with registered secrets, PEM private keys and URL passwords replaced."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        # Each pattern only where it could match (every log line passes here, most values are short
        # words): a PEM block has its dashes, a URL password its '@', an inline secret its '=' or ':'.
        if "-----" in text:
            text = _PEM_PRIVATE_KEY.sub("[REDACTED PRIVATE KEY]", text)
        if "@" in text:
            text = _URL_PASSWORD.sub(rf"\1{REDACTED}@", text)
        if "=" in text or ":" in text:
            text = _INLINE_SECRET.sub(rf"\1\2{REDACTED}\2", text)
        return text


SECRETS = SecretRedactor()


def add_secret(value: str) -> None:
    """Never print `value` (e.g. a password read from the config) from now on, in any log line."""
    SECRETS.add(value)


def scrub(text: str) -> str:
    """`text` without the registered secrets, PEM private keys and URL passwords: for what a program
    prints itself (an error line on stderr) rather than logs."""
    return SECRETS.scrub(text)


# How much of a text from outside (a D-Bus body, a config line, a stored value) a log line or an error
# message carries: enough to recognise it, never enough to flood the journal or forge lines.
OUTSIDE_TEXT_LIMIT = 200


def outside_text(value: object, limit: int = OUTSIDE_TEXT_LIMIT) -> str:
    """`value` as text safe to put in a log line or a one-line message: every character that is not
    printable (newlines, escape sequences, line separators, lone surrogates) is shown escaped, and
    anything past `limit` characters is cut, saying how much was dropped."""
    text = value if isinstance(value, str) else str(value)
    # Escape only what we keep: a 5 MB body is cut before any work on all of it.
    head = text[:limit]
    shown = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in head)
    if len(text) > limit:
        shown += f"...({len(text) - limit} more characters)"
    return shown
