"""Markdown pages: one per integration, from the facts in `_facts` (pure: config in, text out)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from patchbay.docs._facts import Interaction, Page, Step, ToolDoc, pages
from patchbay.spec import Config

__all__ = ["DEFAULT_WORDS", "as_json", "render_markdown", "step_summary"]

DEFAULT_WORDS = "patchbay's default words for the code"


def as_json(value: Any) -> str:
    """Compact JSON for examples: one line, non-ASCII kept."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _cell(text: str) -> str:
    # A `|` would end the cell and a line break the row: both are escaped, whatever the text.
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip() or " "


def _table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _code(text: str) -> str:
    """Inline code that survives backticks in the text."""
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def step_summary(step: Step) -> str:
    """The expectation and faults of a step, in a few words."""
    parts = []
    if step.faults:
        parts.append("with faults " + as_json(list(step.faults)))
    if step.expect:
        parts.append("expects " + as_json(dict(step.expect)))
    return "; ".join(parts)


def _tool(doc: ToolDoc) -> list[str]:
    out = [f"## {doc.name}", "", doc.description.strip(), ""]
    if doc.when:
        out += [f"**When the agent calls it:** {doc.when.strip()}", ""]
    kind = "write" if doc.write else "read"
    out += [f"**Calls:** {_code(doc.kind)} ({kind})", ""]
    out += ["### Inputs", ""]
    if doc.inputs:
        out += _table(
            ["name", "type", "required", "description", "rules"],
            [(i.name, i.type, i.required, i.description, i.rules) for i in doc.inputs],
        )
    else:
        out += ["No arguments.", ""]
    if doc.require:
        out += [f"Give {', '.join(doc.require)} together.", ""]
    out += ["### Outputs", ""]
    if doc.outputs:
        if doc.root:
            out += [f"Read from {_code(doc.root)} of the API's answer.", ""]
        out += _table(["field", "from the answer"], doc.outputs)
    else:
        out += ["The API's answer (or the handler's result), trimmed to what the LLM needs.", ""]
    if doc.returns is not None:
        schema = json.dumps(doc.returns, indent=2, ensure_ascii=False)
        out += ["What the LLM receives (JSON Schema):", "", "```json", schema, "```", ""]
    for example in doc.examples:
        out += [
            f"Example: arguments {_code(as_json(example.args))} → "
            + (
                "the handler returns:"
                if doc.handler
                else f"the API answers {example.answer.status}:"
            ),
            "",
            "```json",
            json.dumps(example.answer.body, indent=2, ensure_ascii=False),
            "```",
            "",
        ]
    out += ["### Errors", ""]
    out += _table(
        ["code", "when", "words the LLM hears"],
        [(e.code, e.when, "; ".join(e.words) or DEFAULT_WORDS) for e in doc.errors],
    )
    if doc.api_messages:
        out += ["The API's error codes and the words the LLM hears for them:", ""]
        out += _table(["API code", "words"], doc.api_messages)
    out += ["### Limits", ""]
    out += _table(["limit", "value"], doc.limits)
    if doc.interactions:
        out += ["### Example interactions", ""]
        for interaction, step in doc.interactions:
            summary = step_summary(step)
            out.append(
                f"- {_code(interaction.name)}: {_code(as_json(dict(step.args)))}"
                + (f" {summary}" if summary else "")
            )
        out.append("")
    return out


def _conversation(interaction: Interaction) -> list[str]:
    out = [f"### {interaction.name}", ""]
    if interaction.description:
        out += [interaction.description.strip(), ""]
    for n, step in enumerate(interaction.steps, 1):
        summary = step_summary(step)
        out.append(
            f"{n}. {_code(step.tool)} {_code(as_json(dict(step.args)))}"
            + (f" {summary}" if summary else "")
        )
    return [*out, ""]


def page_markdown(page: Page) -> str:
    """One integration's page as Markdown."""
    out = [f"# {page.name}", ""]
    facts = []
    if page.base_url:
        facts.append(f"base URL {_code(page.base_url)}")
    if page.auth:
        facts.append(f"auth: {page.auth}")
    if facts:
        text = "; ".join(facts)
        out += [text[:1].upper() + text[1:] + ".", ""]
    out += ["Tools: " + ", ".join(f"[{t.name}](#{t.name.lower()})" for t in page.tools), ""]
    for tool in page.tools:
        out += _tool(tool)
    if page.interactions:
        out += ["## Scripted conversations", ""]
        for interaction in page.interactions:
            out += _conversation(interaction)
    return "\n".join(out).rstrip() + "\n"


def render_markdown(config: Config, interactions: Iterable[Interaction] = ()) -> dict[str, str]:
    """Each page's file name (`billing.md`) and its Markdown."""
    return {f"{page.name}.md": page_markdown(page) for page in pages(config, interactions)}
