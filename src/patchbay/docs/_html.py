"""HTML pages: one self-contained file per integration (inline CSS, no scripts, no assets).

Every piece of text from the config (descriptions, messages, examples) is user text and goes
through `html.escape`; nothing is inserted unescaped but the fixed markup below.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from html import escape

from patchbay.docs._facts import Interaction, Page, ToolDoc, pages
from patchbay.docs._render import DEFAULT_WORDS, as_json, step_summary
from patchbay.spec import Config

__all__ = ["render_html"]

_CSS = """
:root { --ink:#1d2330; --muted:#5b6475; --line:#e3e6ec; --accent:#3a5bd9; --bg:#f6f7f9;
  --read:#1f7a4d; --write:#b4531a; }
* { box-sizing: border-box; }
body { margin:0; font:16px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
  color:var(--ink); background:var(--bg); }
header { background:#fff; border-bottom:1px solid var(--line); padding:28px 0 18px; }
main, .wrap { max-width:980px; margin:0 auto; padding:0 28px; }
h1 { margin:0 0 6px; font-size:30px; }
h2 { margin:0; font-size:22px; font-family:ui-monospace,SFMono-Regular,Menlo,monospace; }
h3 { margin:22px 0 8px; font-size:13px; letter-spacing:.06em; text-transform:uppercase;
  color:var(--muted); }
p { margin:8px 0; }
.meta { color:var(--muted); margin:0 0 12px; }
nav a { display:inline-block; margin:4px 6px 0 0; padding:3px 10px; border:1px solid var(--line);
  border-radius:999px; color:var(--accent); text-decoration:none; font-size:14px;
  font-family:ui-monospace,Menlo,monospace; background:#fff; }
section.tool, section.talks { background:#fff; border:1px solid var(--line); border-radius:10px;
  padding:22px 26px; margin:22px 0; }
.head { display:flex; align-items:center; gap:12px; flex-wrap:wrap; }
.badge { font-size:12px; padding:2px 8px; border-radius:6px; color:#fff; }
.read { background:var(--read); } .write { background:var(--write); }
.call { font-family:ui-monospace,Menlo,monospace; font-size:13px; color:var(--muted); }
.when { border-left:4px solid var(--accent); background:#eef2fd; padding:8px 12px;
  border-radius:0 6px 6px 0; }
table { width:100%; border-collapse:collapse; font-size:14px; margin:4px 0 8px; }
th, td { text-align:left; vertical-align:top; padding:6px 10px;
  border-bottom:1px solid var(--line); }
th { background:#f1f3f7; font-weight:600; }
code, pre { font-family:ui-monospace,SFMono-Regular,Menlo,monospace; font-size:13px; }
td code { background:#f1f3f7; padding:1px 5px; border-radius:4px; }
pre { background:#1d2330; color:#e8ebf2; padding:12px 14px; border-radius:8px; overflow:auto; }
ul.words { margin:0; padding-left:18px; } ul.words li { margin:0; }
ol li, ul li { margin:4px 0; }
footer { color:var(--muted); font-size:13px; padding:10px 0 40px; }
"""


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], code_first: bool = True) -> str:
    """A table of escaped text; the first column in code type."""
    out = ["<table><thead><tr>"]
    out += [f"<th>{escape(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for row in rows:
        cells = [escape(c) for c in row]
        if code_first and cells:
            cells[0] = f"<code>{cells[0]}</code>"
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _words(items: Sequence[str]) -> str:
    if not items:
        return escape(DEFAULT_WORDS)
    return '<ul class="words">' + "".join(f"<li>{escape(w)}</li>" for w in items) + "</ul>"


def _tool(doc: ToolDoc) -> str:
    kind = "write" if doc.write else "read"
    out = [
        f'<section class="tool" id="{escape(doc.name)}"><div class="head">',
        f"<h2>{escape(doc.name)}</h2>",
        f'<span class="badge {kind}">{kind}</span>',
        f'<span class="call">{escape(doc.kind)}</span></div>',
        f"<p>{escape(doc.description.strip())}</p>",
    ]
    if doc.when:
        out.append(f'<p class="when"><strong>When:</strong> {escape(doc.when.strip())}</p>')
    out.append("<h3>Inputs</h3>")
    if doc.inputs:
        rows = [(i.name, i.type, i.required, i.description, i.rules) for i in doc.inputs]
        out.append(_table(["name", "type", "required", "description", "rules"], rows))
    else:
        out.append("<p>No arguments.</p>")
    if doc.require:
        out.append(f"<p>Give {escape(', '.join(doc.require))} together.</p>")
    out.append("<h3>Outputs</h3>")
    if doc.outputs:
        if doc.root:
            out.append(f"<p>Read from <code>{escape(doc.root)}</code> of the API's answer.</p>")
        out.append(_table(["field", "from the answer"], doc.outputs))
    else:
        out.append("<p>The API's answer (or the handler's result), trimmed for the LLM.</p>")
    if doc.returns is not None:
        schema = json.dumps(doc.returns, indent=2, ensure_ascii=False)
        out.append(f"<p>What the LLM receives (JSON Schema):</p><pre>{escape(schema)}</pre>")
    for example in doc.examples:
        body = json.dumps(example.answer.body, indent=2, ensure_ascii=False)
        out.append(
            f"<p>Example: <code>{escape(as_json(example.args))}</code> → "
            + ("the handler returns" if doc.handler else f"the API answers {example.answer.status}")
            + f":</p><pre>{escape(body)}</pre>"
        )
    out.append("<h3>Errors</h3><table><thead><tr><th>code</th><th>when</th>")
    out.append("<th>words the LLM hears</th></tr></thead><tbody>")
    for error in doc.errors:
        out.append(
            f"<tr><td><code>{escape(error.code)}</code></td><td>{escape(error.when)}</td>"
            f"<td>{_words(error.words)}</td></tr>"
        )
    out.append("</tbody></table>")
    if doc.api_messages:
        out.append("<p>The API's error codes and the words the LLM hears for them:</p>")
        out.append(_table(["API code", "words"], doc.api_messages))
    out.append("<h3>Limits</h3>")
    out.append(_table(["limit", "value"], doc.limits, code_first=False))
    if doc.interactions:
        out.append("<h3>Example interactions</h3><ul>")
        for interaction, step in doc.interactions:
            summary = step_summary(step)
            out.append(
                f"<li><strong>{escape(interaction.name)}</strong>: "
                f"<code>{escape(as_json(dict(step.args)))}</code>"
                + (f" {escape(summary)}" if summary else "")
                + "</li>"
            )
        out.append("</ul>")
    out.append("</section>")
    return "\n".join(out)


def _conversation(interaction: Interaction) -> str:
    out = [f"<h3>{escape(interaction.name)}</h3>"]
    if interaction.description:
        out.append(f"<p>{escape(interaction.description.strip())}</p>")
    out.append("<ol>")
    for step in interaction.steps:
        summary = step_summary(step)
        out.append(
            f"<li><code>{escape(step.tool)}</code> <code>{escape(as_json(dict(step.args)))}</code>"
            + (f" {escape(summary)}" if summary else "")
            + "</li>"
        )
    out.append("</ol>")
    return "\n".join(out)


def page_html(page: Page) -> str:
    """One integration's page as a self-contained HTML document."""
    facts = []
    if page.base_url:
        facts.append(f"Base URL <code>{escape(page.base_url)}</code>")
    if page.auth:
        facts.append(f"auth: {escape(page.auth)}")
    nav = "".join(f'<a href="#{escape(t.name)}">{escape(t.name)}</a>' for t in page.tools)
    body = "\n".join(_tool(t) for t in page.tools)
    talks = ""
    if page.interactions:
        talks = (
            '<section class="talks"><h2>Scripted conversations</h2>'
            + "\n".join(_conversation(i) for i in page.interactions)
            + "</section>"
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(page.name)}: tools</title><style>{_CSS}</style></head><body>"
        f'<header><div class="wrap"><h1>{escape(page.name)}</h1>'
        f'<p class="meta">{"; ".join(facts)}</p><nav>{nav}</nav></div></header>'
        f"<main>{body}{talks}</main>"
        '<footer class="wrap">Generated by patchbay docs from the config.</footer>'
        "</body></html>\n"
    )


def render_html(config: Config, interactions: Iterable[Interaction] = ()) -> dict[str, str]:
    """Each page's file name (`billing.html`) and its HTML."""
    return {f"{page.name}.html": page_html(page) for page in pages(config, interactions)}
