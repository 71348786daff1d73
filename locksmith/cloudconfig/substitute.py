"""`$private_ipv4`, `$public_ipv4`, `$private_ipv6`, `$public_ipv6` in user data, as CoreOS replaced them.

Values come from the datasource's metadata; `COREOS_PRIVATE_IPV4` (etc.) in the environment wins, as a
way to give them where no metadata exists. `\\$private_ipv4` stands for the literal text. A variable with
no value is left as written and reported, rather than silently replaced by nothing as CoreOS did.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

NAMES = ("private_ipv4", "public_ipv4", "private_ipv6", "public_ipv6")
_VARIABLE = re.compile(r"(\\?)\$(" + "|".join(NAMES) + r")\b")


def values_from(metadata: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    values = {name: metadata[name] for name in NAMES if metadata.get(name)}
    values.update({name: environ[f"COREOS_{name.upper()}"] for name in NAMES if environ.get(f"COREOS_{name.upper()}")})
    return values


def substitute(text: str, values: Mapping[str, str]) -> tuple[str, dict[str, int]]:
    """(the text with the variables replaced, name -> line of its first use for those without a value)."""
    missing: dict[str, int] = {}

    def replace(match: re.Match[str]) -> str:
        escaped, name = match.group(1), match.group(2)
        if escaped:
            return f"${name}"
        if name in values:
            return values[name]
        missing.setdefault(name, text.count("\n", 0, match.start()) + 1)
        return match.group(0)

    return _VARIABLE.sub(replace, text), missing
