"""Docs for people: a page per integration, in Markdown or self-contained HTML, from a config.

Pure functions of the spec: they read a `Config` (and, optionally, scripted conversations as
`Interaction`s) and return file names with their text; writing the files is the caller's.
"""

from patchbay.docs._facts import Interaction, Step
from patchbay.docs._html import render_html
from patchbay.docs._render import render_markdown

__all__ = ["Interaction", "Step", "render_html", "render_markdown"]
