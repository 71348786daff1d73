"""Locksmith's settings: one schema (`schema`), its parsers (`values`), sources with provenance
(`sources`), the generated flags (`flags`) and the typed configuration (`config`).

`check(program, key, value)` is the library question a cloud-config applier asks before writing a
`KEY=value` into update.conf or the locksmithd drop-in."""

from locksmith.settings.schema import check

__all__ = ["check"]
