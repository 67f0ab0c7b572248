"""Contact fields inside object arguments are masked in body logs, as top-level ones are."""

from __future__ import annotations

import json
import logging

import pytest

from patchbay.observe._bodies import BodyLogger
from patchbay.spec import Tool

TOOL = Tool.model_validate(
    {
        "name": "ship",
        "integration": "b",
        "description": "Ship.",
        "request": {"method": "POST", "path": "/ship", "body": "{args.to}"},
        "parameters": {
            "to": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "reach": {"type": "string", "format": "e164", "required": False},
                },
            }
        },
    }
)


def test_a_nested_phone_field_is_masked_by_its_name(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("patchbay.bodies.nested-test")
    with caplog.at_level(logging.INFO, logger=logger.name):
        BodyLogger("redacted", logger=logger).log(
            "ship", TOOL, "c-1", "ok", {"to": {"city": "Oslo", "reach": "2 7 1 8"}}, {"ok": 1}
        )
    (record,) = caplog.records
    line = json.loads(record.getMessage().removeprefix("bodies "))
    assert line["arguments"]["to"]["city"] == "Oslo"
    assert line["arguments"]["to"]["reach"] != "2 7 1 8"
