"""Adversarial values: what a confused model or a hostile caller may put in a tool's arguments.

Every value carries a short label, so a failure can be reported as a one-line reproducer
(`create_payment {"amount": "huge_int"}`) instead of a 100 KB dump.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

Labelled = tuple[str, Any]


def deep_list(depth: int) -> list[Any]:
    """A list nested `depth` levels deep (built in a loop: recursion would hit the limit)."""
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def deep_object(depth: int) -> dict[str, Any]:
    """An object nested `depth` levels deep."""
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


HUGE_INT = 10**5000  # Python refuses to write it as text (int_max_str_digits)
BIG_TEXT = "a" * 100_000
UNKNOWN_KEYS = {f"extra_{n}": n for n in range(5000)}

# Values whatever the parameter: wrong types, broken text, path and URL syntax, huge things.
ANY: tuple[Labelled, ...] = (
    ("lone_surrogate", "\ud800"),
    ("surrogate_inside", "ab\udfffcd"),
    ("nul", "\x00"),
    ("crlf", "a\r\nX-Injected: 1"),
    ("escape_seq", "\x1b[31mred"),
    ("del_char", "a\x7fb"),
    ("bell_tab_vt", "\x07\t\x0b"),
    ("trailing_newline", "abc\n"),
    ("dotdot", ".."),
    ("dot", "."),
    ("pct_dotdot", "%2e%2e"),
    ("pct_dotdot_upper", "%2E%2E"),
    ("question", "?"),
    ("query_injection", "x?admin=1"),
    ("hash", "#"),
    ("slash", "/"),
    ("traversal", "../../admin"),
    ("encoded_slash", "a%2Fb"),
    ("backslash", "..\\..\\x"),
    ("empty", ""),
    ("spaces", "   "),
    ("huge_int", HUGE_INT),
    ("neg_huge_int", -HUGE_INT),
    ("int_2_64", 2**64),
    ("nan", float("nan")),
    ("inf", float("inf")),
    ("neg_inf", float("-inf")),
    ("float_max", 1.7976931348623157e308),
    ("neg_zero", -0.0),
    ("tiny_float", 5e-324),
    ("true", True),
    ("false", False),
    ("none", None),
    ("zero", 0),
    ("negative", -1),
    ("fraction", 1.5),
    ("empty_list", []),
    ("empty_object", {}),
    ("list_of_str", ["a", "b"]),
    ("deep_list_1000", deep_list(1000)),
    ("deep_object_1000", deep_object(1000)),
    ("deep_list_5000", deep_list(5000)),
    ("object_nan", {"n": float("nan")}),
    ("object_huge_int", {"n": HUGE_INT}),
    ("object_surrogates", {"\ud800": "\udfff"}),
    ("object_control_key", {"a\r\nb": 1}),
    ("big_text_100k", BIG_TEXT),
    ("big_list_10k", list(range(10_000))),
    ("arabic_digits", "\u0661\u0662\u0663"),
    ("fullwidth_digits", "\uff11\uff12\uff13"),
    ("superscript_two", "\u00b2"),
    ("numeric_string", "42"),
    ("rtl_override", "\u202eabc"),
    ("zero_width", "a\u200bb"),
    ("emoji", "\U0001f4b3"),
    ("html", "<script>alert(1)</script>"),
    ("template", "{call.id}"),
    ("jmespath", "`true`"),
    ("sql", "' OR 1=1 --"),
    ("phone_ext", "+15551234567 ext. 12"),
    ("phone_x", "+1 555 123 4567x9"),
)


def _mutations(valid: Any) -> list[Labelled]:
    """Near misses of a valid value: the ones most likely to slip past a validator."""
    if isinstance(valid, bool):
        return [("int_for_bool", 1), ("text_for_bool", "true")]
    if isinstance(valid, int):
        return [
            ("valid_as_text", str(valid)),
            ("valid_as_float", float(valid)),
            ("valid_plus_fraction", valid + 0.5),
            ("bool_for_int", True),
            ("valid_arabic_digits", str(valid).translate(_ARABIC)),
            ("valid_times_huge", valid * HUGE_INT),
        ]
    if isinstance(valid, str):
        return [
            ("valid_trailing_newline", valid + "\n"),
            ("valid_leading_space", " " + valid),
            ("valid_trailing_nul", valid + "\x00"),
            ("valid_trailing_crlf", valid + "\r\n"),
            ("valid_then_dotdot", valid + "/../x"),
            ("valid_then_query", valid + "?x=1"),
            ("valid_then_hash", valid + "#f"),
            ("valid_then_surrogate", valid + "\ud800"),
            ("valid_control_char", valid + "\x01"),
            ("valid_fullwidth_digits", valid.translate(_FULLWIDTH)),
            ("valid_repeated_100k", (valid * (100_000 // max(1, len(valid)) + 1))[:100_000]),
            ("valid_in_list", [valid]),
        ]
    return [("valid_in_list", [valid])]


_ARABIC = str.maketrans(
    "0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669"
)
_FULLWIDTH = str.maketrans("0123456789", "".join(chr(0xFF10 + n) for n in range(10)))

# Keys an object of arguments may carry besides the declared ones.
ODD_KEYS: tuple[Labelled, ...] = (
    ("key_lone_surrogate", "\ud800"),
    ("key_empty", ""),
    ("key_nul", "a\x00b"),
    ("key_big", "k" * 10_000),
    ("key_proto", "__proto__"),
    ("key_dotted", "args.amount"),
)


class ArgumentMaker:
    """Adversarial argument sets for one tool's parameters, from a seeded generator."""

    def __init__(
        self, rng: random.Random, params: dict[str, Any], valid: Callable[[str], Any]
    ) -> None:
        self.rng = rng
        self.params = params
        self.valid = valid
        self._near = {name: _mutations(valid(name)) for name in params}

    def make(self) -> tuple[dict[str, Any], dict[str, str]]:
        """Arguments, and the label of what went into each (for a reproducer)."""
        args: dict[str, Any] = {}
        labels: dict[str, str] = {}
        # Half the sets are valid but for one argument, so that one reaches request building.
        odd_one = (
            self.rng.choice(list(self.params)) if self.params and self.rng.random() < 0.5 else None
        )
        for name in self.params:
            draw = self.rng.random()
            if odd_one is not None:
                draw = 0.45 + draw * 0.55 if name == odd_one else (0.3 if draw < 0.9 else 0.0)
            if draw < 0.2:
                continue
            if draw < 0.45:
                label, value = "valid", self.valid(name)
            elif draw < 0.7:
                label, value = self.rng.choice(self._near[name])
            else:
                label, value = self.rng.choice(ANY)
            args[name] = value
            labels[name] = label
        extra = self.rng.random()
        if extra < 0.02:
            args.update(UNKNOWN_KEYS)
            labels["*"] = "5000_unknown_keys"
        elif extra < 0.06:
            label, key = self.rng.choice(ODD_KEYS)
            args[key] = self.rng.choice(ANY)[1]
            labels[label] = "odd_key"
        return args, labels
