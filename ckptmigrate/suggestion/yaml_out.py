"""The suggestion as a YAML map, commented by section, UNCERTAIN rules marked."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..compare import Kind

if TYPE_CHECKING:
    from .model import Section, SuggestedRule, Suggestion


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")

_PLAIN_BLOCK = re.compile(r"[A-Za-z0-9_][^:#'\"{}\[\],]*[^:#'\"{}\[\], ]")


def _scalar(value: Any, flow: bool = False) -> str:
    """YAML for one value: plain where YAML reads it back as the same text, else quoted."""
    import yaml

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v, True) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_scalar(v, True)}" for k, v in value.items()) + "}"
    text = str(value)
    plain = _PLAIN.fullmatch(text) or (not flow and _PLAIN_BLOCK.fullmatch(text))
    if plain and yaml.safe_load(text) == text:
        return text
    return "'" + text.replace("'", "''") + "'"


def yaml_rules(rules: list[SuggestedRule], comments: bool = False) -> str:
    lines = ["version: 1", "rules:"]
    section: Section | None = None
    for rule in rules:
        if comments and rule.section is not section:
            section = rule.section
            lines.append(f"  # -- {section.title}")
        if comments and rule.uncertain:
            lines.append(f"  # UNCERTAIN: {' '.join(rule.uncertain.split())}")
        items = list(rule.body.items())
        for i, (key, value) in enumerate(items):
            lead = "  - " if i == 0 else "    "
            lines.append(f"{lead}{key}: {_scalar(value)}")
    if not rules:
        lines[-1] = "rules: []"
    return "\n".join(lines) + "\n"


def _headline(suggestion: Suggestion) -> str:
    """What the map achieves, counting only what it copies from the checkpoint: a target
    variable an ``init`` rule creates is matched by the prediction but learned nothing,
    so it is listed as initialised, never counted as matched."""
    from ..names import variable_path

    report = suggestion.predicted
    assert report is not None
    inits = {r.body["init"]["name"] for r in suggestion.rules if "init" in r.body}
    copied = fresh = copied_params = 0
    fresh_names = []
    for f in report.findings:
        if f.kind is not Kind.MATCHED or f.target is None:
            continue
        if variable_path(f.checkpoint_name or "") in inits:
            fresh += 1
            fresh_names.append(variable_path(f.name))
        else:
            copied += 1
            copied_params += f.target.num_elements
    text = (
        f"copies {copied} of {report.target_variables} target variables from the checkpoint "
        f"({copied_params:,} of {report.target_parameters:,} parameters)"
    )
    if fresh:
        shown = ", ".join(fresh_names[:10]) + (" ..." if fresh > 10 else "")
        text += f"; {fresh} start fresh (init rules, nothing learned): {shown}"
    return text


def render_yaml(suggestion: Suggestion) -> str:
    """The map, headed by what it was suggested for and what it leaves wrong.

    No schema line: the installed schema's path is machine-local, and maps are committed
    (mappings/README.md shows the line to add for an editor).
    """
    head = [
        f"# Suggested by `ckptmigrate suggest`: {suggestion.checkpoint} -> {suggestion.target}.",
        "# Review before use, the UNCERTAIN rules first.",
    ]
    head += [f"# Note: {n}." for n in suggestion.notes if n.startswith("starts from")]
    if suggestion.predicted is not None:
        head.append(f"# With this map: {_headline(suggestion)}.")
        problems = [
            f
            for f in suggestion.predicted.findings
            if f.kind in (Kind.MISSING, Kind.SHAPE_MISMATCH, Kind.DTYPE_MISMATCH)
        ]
        for f in problems[:10]:
            head.append(f"# still {f.kind.label}: {f.name}")
    if suggestion.uncertain:
        head.append(f"# {len(suggestion.uncertain)} rule(s) marked UNCERTAIN.")
    body = yaml_rules(list(suggestion.rules), comments=True)
    version, rest = body.split("\n", 1)
    description = f"description: {_scalar(suggestion.description)}"
    return "\n".join([*head, version, description, rest])
