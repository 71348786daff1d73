"""Check a `#cloud-config` document against the schema and build the typed document the appliers read.

We work from `yaml.compose`'s node tree, not `safe_load`, for two reasons: every finding names the
line of its node, and YAML 1.1 typing never reaches a string field — `reboot_strategy: off` stays the
text "off" and `permissions: 0744` the text "0744", exactly as the user wrote them.
"""

from __future__ import annotations

from typing import Any

import yaml

from locksmith.cloudconfig import content, schema, settings_check
from locksmith.cloudconfig.findings import Finding, Level
from locksmith.cloudconfig.schema import Field

_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_NULL = "tag:yaml.org,2002:null"
_WANT = {"string": "string", "bool": "bool", "int": "int", "strings": "list of strings", "struct": "struct"}
_WANT["structs"] = "list of structs"
# libyaml's composer when PyYAML was built with it (Debian's and the wheels are): about 5x faster on a
# big document, same nodes and marks.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _line_at(text: str, mark: yaml.Mark) -> int:
    # YAML also breaks lines at NEL, LS, PS and a lone CR; an editor (and the admin reading the finding) counts
    # newlines only, so the line is counted from the mark's character index rather than taken from the mark
    return text.count("\n", 0, max(0, min(mark.index, len(text)))) + 1


def normalise(key: str) -> str:
    return key.replace("-", "_")


class _Walker:
    def __init__(self, text: str) -> None:
        self._text = text
        self.findings: list[Finding] = []
        self._constructor = yaml.constructor.SafeConstructor()

    def _line(self, node: yaml.Node) -> int:
        return _line_at(self._text, node.start_mark)

    def report(self, node: yaml.Node, level: Level, message: str) -> None:
        self.findings.append(Finding(self._line(node), level, message))

    def value(self, node: yaml.Node, spec: Field, where: str) -> Any:
        """The typed value of `node`, or None (after reporting why) when it does not fit `spec`."""
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
            return None
        kind = spec.kind
        if kind == "string":
            if not isinstance(node, yaml.ScalarNode):
                return self._wrong(node, where, kind)
            text = str(node.value)
            problem = spec.check(text) if spec.check else None
            if problem is None and spec.env and not text.isprintable():
                # one Environment= or update.conf line per value: a newline would start another setting
                problem = "invalid value: control characters (newline, tab, …) cannot go into a setting"
            if problem is not None:
                self.report(node, "error", f"{where}: {problem}")
                return None
            return text
        if kind in ("bool", "int"):
            if not isinstance(node, yaml.ScalarNode) or node.tag != (_BOOL if kind == "bool" else _INT):
                return self._wrong(node, where, kind)
            return self._constructor.construct_object(node)
        if kind == "strings":
            if not isinstance(node, yaml.SequenceNode):
                return self._wrong(node, where, kind)
            items = [self.value(item, schema.Field("string"), f"{where}[{i}]") for i, item in enumerate(node.value)]
            return [item for item in items if item is not None]
        if kind == "structs":
            if not isinstance(node, yaml.SequenceNode):
                return self._wrong(node, where, kind)
            one = schema.Field("struct", struct=spec.struct)
            items = [self.value(item, one, f"{where}[{i}]") for i, item in enumerate(node.value)]
            return [item for item in items if item is not None]
        if not isinstance(node, yaml.MappingNode):
            return self._wrong(node, where, "struct")
        return self.struct(node, spec.struct or {}, where)

    def _wrong(self, node: yaml.Node, where: str, kind: str) -> None:
        self.report(node, "error", f"incorrect type for {where} (want {_WANT[kind]})")
        return None

    def struct(self, node: yaml.MappingNode, fields: dict[str, Field], where: str) -> dict[str, Any] | None:
        """The typed struct, or None (after reporting why) when a required key is missing or null."""
        out: dict[str, Any] = {}
        seen: set[str] = set()
        nulls: set[str] = set()  # set to null: as good as missing
        prefix = f"{where}." if where else ""
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.report(key_node, "error", f"incorrect type for a key in {where or 'the document'} (want string)")
                continue
            key = normalise(str(key_node.value))
            if key in seen:
                self.report(key_node, "warning", f"duplicate key {prefix}{key}: the last one counts")
            seen.add(key)
            spec = fields.get(key)
            if spec is None:
                self._unknown(key_node, key, where)
                continue
            if spec.unsupported:
                self.report(key_node, "info", f"{prefix}{key} is ignored: {spec.unsupported}")
                continue
            if spec.note:
                self.report(key_node, "info", f"{prefix}{key}: {spec.note}")
            value = self.value(value_node, spec, prefix + key)
            if value is not None:
                out[key] = value
            elif isinstance(value_node, yaml.ScalarNode) and value_node.tag == _NULL:
                nulls.add(key)
        for key, spec in fields.items():
            if spec.required and key not in out and (key not in seen or key in nulls):
                self.report(node, "error", f"missing required key {prefix}{key}")
        if any(spec.required and key not in out for key, spec in fields.items()):
            return None  # an entry without its required key is not applied; the error above says why
        self._owned(node, fields, out, where)
        if fields is schema.WRITE_FILE and "content" in out:
            self._decodes(node, out, where)
        if fields is schema.ETCD2:
            self._etcd_tls(node, out, where)
        return out

    def _etcd_tls(self, node: yaml.MappingNode, etcd2: dict[str, Any], where: str) -> None:
        """https URLs without a certificate and key: etcd would refuse to start at boot, say it now."""
        for urls, cert, key in (
            ("listen_client_urls", "cert_file", "key_file"),
            ("listen_peer_urls", "peer_cert_file", "peer_key_file"),
        ):
            https = any(u.strip().startswith("https://") for u in str(etcd2.get(urls, "")).split(","))
            if https and not (cert in etcd2 and key in etcd2):
                line = next((self._line(k) for k, _ in node.value if normalise(str(k.value)) == urls), self._line(node))
                message = f"{where}.{urls} has https URLs: set {cert} and {key} too, or etcd will not start"
                self.findings.append(Finding(line, "error", message))

    def _decodes(self, node: yaml.MappingNode, entry: dict[str, Any], where: str) -> None:
        try:
            content.decode(entry["content"], entry.get("encoding"))
        except content.ContentError as exc:
            line = next(
                (self._line(v) for k, v in node.value if normalise(str(k.value)) == "content"), self._line(node)
            )
            self.findings.append(Finding(line, "error", f"{where}.content: {exc}"))

    def _unknown(self, key_node: yaml.Node, key: str, where: str) -> None:
        place = schema.PLACES.get(key)
        name = f"{where}.{key}" if where else key
        if place is not None and place != (where or "the top level"):
            self.report(key_node, "warning", f"{name} is not read here: it belongs in {place}")
        else:
            self.report(key_node, "warning", f"unrecognized key {name!r}")

    def _owned(self, node: yaml.MappingNode, fields: dict[str, Field], out: dict[str, Any], where: str) -> None:
        """Values the agent or the engine read go through their own parsers (settings_check)."""
        by_program: dict[str, dict[str, str]] = {}
        key_of: dict[str, str] = {}
        for key, spec in fields.items():
            if spec.owner and key in out:
                program, variable = spec.owner
                by_program.setdefault(program, {})[variable] = out[key]
                key_of[variable] = key
        lines = {normalise(str(k.value)): self._line(k) for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
        for program, values in by_program.items():
            for variable, problem in settings_check.problems(program, values).items():
                key = key_of[variable]
                self.findings.append(Finding(lines.get(key, self._line(node)), "error", f"{where}.{key}: {problem}"))
                out.pop(key, None)


def validate_text(text: str) -> tuple[dict[str, Any] | None, list[Finding]]:
    """Parse and check a cloud-config text: (the typed document or None if it is unusable, the findings)."""
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = _line_at(text, mark) if mark is not None else 1
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        return None, [Finding(line, "error", f"invalid YAML: {problem}")]
    except yaml.YAMLError as exc:
        return None, [Finding(1, "error", f"invalid YAML: {exc}".splitlines()[0])]
    except RecursionError:
        return None, [Finding(1, "error", "invalid YAML: nested too deeply to read; flatten the document")]
    if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == _NULL):
        return {}, []
    walker = _Walker(text)
    if not isinstance(root, yaml.MappingNode):
        walker.report(root, "error", "incorrect type for the document (want struct)")
        return None, walker.findings
    document = walker.struct(root, schema.TOP, "") or {}  # the top level requires no key
    return document, sorted(walker.findings)
