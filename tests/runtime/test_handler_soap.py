"""A SOAP/XML API in a Python handler: an XML envelope out, XML parsed back, JSON to the LLM.

End to end through ToolRuntime against a real loopback SOAP service, with the pipeline's retries
and the integration's `max_response_bytes` applying to the XML exchange as to any other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from patchbay import ToolCall, ToolRuntime
from patchbay.spec import load_config_text
from patchbay.spec._call import CallContext

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
BILL_NS = "urn:example:billing"
ACTION = "urn:example:billing#GetBalance"

CONFIG = """
version: 1
integrations:
  ledger:
    base_url: {base}
    retry: {{attempts: 3, backoff_s: 0}}
    max_response_bytes: 4096
    operations:
      - {{method: POST, path: /soap}}
      - {{method: POST, path: /form}}
tools:
  get_balance:
    integration: ledger
    description: The open balance of a customer, from the ledger's SOAP service.
    parameters:
      customer_id: {{type: string}}
    handler: soap_tools:get_balance
  send_form:
    integration: ledger
    description: Posts a form and reads the raw answer.
    parameters:
      how: {{type: string}}
    handler: soap_tools:send_form
"""

# Written into the test's folder and imported by the config, as a project's handlers are.
HANDLERS = """
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from patchbay import NotFound, UpstreamUnavailable

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
BILL = "urn:example:billing"
ENVELOPE = (
    '<?xml version="1.0" encoding="utf-8"?>'
    f'<soap:Envelope xmlns:soap="{SOAP}" xmlns:b="{BILL}"><soap:Body>'
    "<b:GetBalance><b:CustomerId>{customer_id}</b:CustomerId></b:GetBalance>"
    "</soap:Body></soap:Envelope>"
)


async def get_balance(ctx, customer_id):
    xml = await ctx.client.post(
        "/soap",
        content=ENVELOPE.format(customer_id=escape(customer_id)),
        content_type="text/xml; charset=utf-8",
        headers={"SOAPAction": "urn:example:billing#GetBalance"},
        answer="text",
        safe=True,  # a query: retried and timed out as a read, although it is a POST
    )
    try:
        root = SafeET.fromstring(xml)  # defusedxml: no entity bombs, no external entities
    except (SafeET.ParseError, DefusedXmlException):
        raise UpstreamUnavailable("The ledger answered with something unreadable.") from None
    fault = root.find(f"{{{SOAP}}}Body/{{{SOAP}}}Fault")
    if fault is not None:
        if fault.findtext("faultcode", "").endswith("UnknownCustomer"):
            raise NotFound("No customer with that id.")
        raise UpstreamUnavailable("The ledger could not answer.")
    found = root.find(f"{{{SOAP}}}Body/{{{BILL}}}GetBalanceResponse")
    return {
        "customer_name": found.findtext(f"{{{BILL}}}Name"),
        "balance_cents": int(found.findtext(f"{{{BILL}}}BalanceCents")),
        "currency": found.findtext(f"{{{BILL}}}Currency"),
    }


async def send_form(ctx, how):
    if how == "form":
        raw = await ctx.client.post("/form", form={"q": "a b&c", "n": 2}, answer="bytes")
        return {"raw": raw.hex()}
    if how == "two_bodies":
        return await ctx.client.post("/form", json={"a": 1}, content="x")
    return await ctx.client.post("/form", content=b"x", headers={"Host": "elsewhere"})
"""

CUSTOMERS = {"cus_1": ("Jamie Patel & Co", 24700), "cus_<2>": ("Odd Id", 5)}


def _envelope(body: str) -> str:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP_NS}" '
        f'xmlns:b="{BILL_NS}"><soap:Body>{body}</soap:Body></soap:Envelope>'
    )


@dataclass
class Ledger:
    """The SOAP service: what reached it, and misbehaviour to put on."""

    seen: list[tuple[str, str, str]] = field(default_factory=list)  # content type, action, id
    fail_first: int = 0
    huge: bool = False
    bomb: bool = False


@pytest.fixture
async def ledger_and_runtime(tmp_path: Path) -> AsyncIterator[tuple[Ledger, ToolRuntime]]:
    ledger = Ledger()

    async def soap(request: web.Request) -> web.Response:
        text = await request.text()
        envelope = SafeET.fromstring(text)
        customer = envelope.findtext(
            f"{{{SOAP_NS}}}Body/{{{BILL_NS}}}GetBalance/{{{BILL_NS}}}CustomerId"
        )
        ledger.seen.append(
            (request.content_type, request.headers.get("SOAPAction", ""), customer or "")
        )
        if ledger.fail_first > 0:
            ledger.fail_first -= 1
            return web.Response(status=503, text="busy")
        xml = "text/xml"
        if ledger.bomb:
            bomb = (
                '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
                '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><l>&b;</l>'
            )
            return web.Response(text=bomb, content_type=xml)
        if ledger.huge:
            return web.Response(
                text=_envelope("<b:Pad>" + "x" * 8000 + "</b:Pad>"), content_type=xml
            )
        if customer not in CUSTOMERS:
            fault = (
                "<soap:Fault><faultcode>b:UnknownCustomer</faultcode>"
                "<faultstring>no</faultstring></soap:Fault>"
            )
            return web.Response(status=200, text=_envelope(fault), content_type=xml)
        name, cents = CUSTOMERS[customer]
        answer = (
            f"<b:GetBalanceResponse><b:Name>{escape(name)}</b:Name>"
            f"<b:BalanceCents>{cents}</b:BalanceCents><b:Currency>USD</b:Currency>"
            "</b:GetBalanceResponse>"
        )
        # Latin-1 on the wire: the handler's text is decoded by the answer's charset
        return web.Response(
            body=_envelope(answer).replace("utf-8", "iso-8859-1").encode("latin-1"),
            content_type=xml,
            charset="iso-8859-1",
        )

    app = web.Application()

    async def form(request: web.Request) -> web.Response:
        ledger.seen.append((request.content_type, "", ""))
        return web.Response(body=b"\x00\xff" + await request.read())

    app.router.add_post("/soap", soap)
    app.router.add_post("/form", form)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    (tmp_path / "soap_tools.py").write_text(HANDLERS)
    base = str(server.make_url("")).rstrip("/")
    config = load_config_text(CONFIG.format(base=base), base_dir=tmp_path, env={})
    runtime = ToolRuntime(config, sinks=[])
    yield ledger, runtime
    await runtime.close()
    await server.close()


async def _balance(runtime: ToolRuntime, customer_id: str):  # type: ignore[no-untyped-def]
    call = ToolCall("get_balance", {"customer_id": customer_id}, CallContext(id="c-1"))
    return await runtime.execute(call)


async def test_a_soap_call_becomes_json_for_the_llm(
    ledger_and_runtime: tuple[Ledger, ToolRuntime],
) -> None:
    ledger, runtime = ledger_and_runtime
    result = await _balance(runtime, "cus_1")
    assert result.ok, result
    assert result.result == {
        "customer_name": "Jamie Patel & Co",
        "balance_cents": 24700,
        "currency": "USD",
    }
    assert ledger.seen == [("text/xml", ACTION, "cus_1")]
    # the argument is escaped into the envelope, not spliced into its markup
    odd = await _balance(runtime, "cus_<2>")
    assert odd.ok and odd.result["customer_name"] == "Odd Id"
    assert ledger.seen[-1][2] == "cus_<2>"


async def test_a_soap_fault_is_the_handlers_error(
    ledger_and_runtime: tuple[Ledger, ToolRuntime],
) -> None:
    _, runtime = ledger_and_runtime
    result = await _balance(runtime, "cus_404")
    assert result.ok is False and result.error is not None
    assert result.error.code == "not_found"


async def test_retries_apply_to_the_xml_exchange(
    ledger_and_runtime: tuple[Ledger, ToolRuntime],
) -> None:
    ledger, runtime = ledger_and_runtime
    ledger.fail_first = 2
    result = await _balance(runtime, "cus_1")
    assert result.ok, result
    assert result.meta["attempts"] == 3
    assert len(ledger.seen) == 3


async def test_max_response_bytes_caps_a_text_answer(
    ledger_and_runtime: tuple[Ledger, ToolRuntime],
) -> None:
    ledger, runtime = ledger_and_runtime
    ledger.huge = True
    result = await _balance(runtime, "cus_1")
    assert result.ok is False and result.error is not None
    assert result.error.code == "upstream_unavailable"
    assert "x" * 100 not in repr(result)


async def test_an_entity_bomb_is_refused_by_the_handlers_parser(
    ledger_and_runtime: tuple[Ledger, ToolRuntime],
) -> None:
    ledger, runtime = ledger_and_runtime
    ledger.bomb = True
    result = await _balance(runtime, "cus_1")
    assert result.ok is False and result.error is not None
    assert result.error.code == "upstream_unavailable"
    assert "unreadable" in result.error.message


async def test_a_form_body_out_and_bytes_back(
    ledger_and_runtime: tuple[Ledger, ToolRuntime],
) -> None:
    ledger, runtime = ledger_and_runtime
    result = await runtime.execute(ToolCall("send_form", {"how": "form"}, CallContext(id="c-1")))
    assert result.ok, result
    assert bytes.fromhex(result.result["raw"]) == b"\x00\xffq=a+b%26c&n=2"
    assert ledger.seen == [("application/x-www-form-urlencoded", "", "")]


@pytest.mark.parametrize("how", ["two_bodies", "reserved_header"])
async def test_a_handlers_body_mistake_sends_nothing(
    ledger_and_runtime: tuple[Ledger, ToolRuntime], how: str
) -> None:
    ledger, runtime = ledger_and_runtime
    result = await runtime.execute(ToolCall("send_form", {"how": how}, CallContext(id="c-1")))
    assert result.ok is False and result.error is not None
    assert result.error.code == "internal"
    assert ledger.seen == []
