"""JSON Schema `pattern` (an ECMA-262 regular expression) compiled with its JSON Schema meaning.

Python's `re` reads the same text differently where it matters for validation: `$` also
matches before a final newline (so `^pm_[a-z]+$` accepts "pm_x\\n"), `\\d` and `\\w` match
every Unicode digit and letter, and `.` matches "\\r". The pattern is translated once, token by
token, so the schema the LLM is shown and the check patchbay makes agree. Hand-written: no
maintained library compiles ECMA-262 patterns for Python's `re`.
"""

from __future__ import annotations

import re

__all__ = ["compile_pattern", "translate_pattern"]

# ECMA-262 WhiteSpace and LineTerminator beyond ASCII (\s under re.ASCII covers " \t\n\r\f\v").
_SPACES = "\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"
_ANY_BUT_LINE_END = "[^\\n\\r\\u2028\\u2029]"  # ECMA `.` without the s flag
# Inside a class ECMA takes these literally; Python warns they may become set operators.
_CLASS_LITERALS = frozenset("[&~|")


def _escape(pattern: str, i: int, in_class: bool) -> tuple[str, int]:
    """The translation of the escape starting at pattern[i] (a backslash) and where it ends."""
    if i + 1 >= len(pattern):
        return "\\", i + 1  # a lone trailing backslash: left for re to reject
    char = pattern[i + 1]
    if char == "s":
        return (f"\\s{_SPACES}" if in_class else f"[\\s{_SPACES}]"), i + 2
    if char == "S" and not in_class:
        return f"[^\\s{_SPACES}]", i + 2
    if char == "k" and not in_class and pattern.startswith("<", i + 2):
        end = pattern.find(">", i + 3)
        if end > 0:
            return f"(?P={pattern[i + 3 : end]})", end + 1
    return pattern[i : i + 2], i + 2


def translate_pattern(pattern: str) -> str:
    """`pattern` rewritten for Python's `re` (with re.ASCII) so it matches what ECMA-262 does."""
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        char = pattern[i]
        if char == "\\":
            text, i = _escape(pattern, i, in_class)
            out.append(text)
            continue
        if in_class:
            if char == "]":
                in_class = False
                out.append("]")
            else:
                out.append("\\" + char if char in _CLASS_LITERALS else char)
            i += 1
            continue
        if char == "[":
            if pattern.startswith("[]", i):  # ECMA: the empty class matches nothing
                out.append("(?!)")
                i += 2
            elif pattern.startswith("[^]", i):  # ECMA: any character at all
                out.append("[\\s\\S]")
                i += 3
            else:
                in_class = True
                head = "[^" if pattern.startswith("[^", i) else "["
                out.append(head)
                i += len(head)
            continue
        if char == "$":
            out.append("\\Z")  # end of the string only, never before a final newline
        elif char == ".":
            out.append(_ANY_BUT_LINE_END)
        elif char == "(" and pattern.startswith("(?<", i) and pattern[i + 3 : i + 4] not in "=!":
            out.append("(?P<")  # an ECMA named group, (?<name>...)
            i += 3
            continue
        else:
            out.append(char)
        i += 1
    return "".join(out)


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a JSON Schema pattern; use `.search` (patterns are not implicitly anchored).

    Raises re.error for a pattern that is not a valid regular expression.
    """
    return re.compile(translate_pattern(pattern), re.ASCII)
