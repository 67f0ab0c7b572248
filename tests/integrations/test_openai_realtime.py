"""OpenAI Realtime helper against the example billing API, with server events shaped as the API's.

Every server event fixture is checked against the `openai` package's own Realtime event models,
and every client event patchbay produces is parsed by them too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from patchbay import CallContext, ToolRuntime
from patchbay.integrations.openai_realtime import (
    RealtimeToolBridge,
    handle_server_event,
    session_tools_payload,
)
from patchbay.spec import parameters_schema
from patchbay.testing import BillingServer

from .example_calls import (
    EXAMPLE_CONFIG,
    LOOKUP_ARGS,
    PAYMENT_ARGS,
    assert_charged_once,
    assert_lookup_heard,
    assert_payment_heard,
)

rt = pytest.importorskip("openai.types.realtime")

_SERVER_EVENT_MODELS: dict[str, Any] = {
    "response.created": rt.ResponseCreatedEvent,
    "response.output_item.added": rt.ResponseOutputItemAddedEvent,
    "response.function_call_arguments.delta": rt.ResponseFunctionCallArgumentsDeltaEvent,
    "response.function_call_arguments.done": rt.ResponseFunctionCallArgumentsDoneEvent,
    "response.output_item.done": rt.ResponseOutputItemDoneEvent,
    "response.done": rt.ResponseDoneEvent,
}
_CLIENT_EVENT_MODELS: dict[str, Any] = {
    "conversation.item.create": rt.ConversationItemCreateEvent,
    "response.create": rt.ResponseCreateEvent,
    "session.update": rt.SessionUpdateEvent,
}
_AUDIO = {"output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"}}
_USAGE = {
    "total_tokens": 412,
    "input_tokens": 380,
    "output_tokens": 32,
    "input_token_details": {"text_tokens": 310, "audio_tokens": 70, "cached_tokens": 0},
    "output_token_details": {"text_tokens": 32, "audio_tokens": 0},
}


def _server(event: dict[str, Any]) -> dict[str, Any]:
    """A fixture event, after the openai package's model of that event accepted it."""
    _SERVER_EVENT_MODELS[event["type"]].model_validate(event)
    return event


def _response(resp_id: str, status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
    details = {"type": "cancelled", "reason": "turn_detected"} if status == "cancelled" else None
    return {"object": "realtime.response", "id": resp_id, "status": status,
            "status_details": details, "output": output, "conversation_id": "conv_CZ1rT0gkQ4gV",
            "output_modalities": ["audio"], "max_output_tokens": "inf", "audio": _AUDIO,
            "usage": None if status == "in_progress" else _USAGE, "metadata": None}  # fmt: skip


def _item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {"id": item_id, "object": "realtime.item", "type": "function_call", "status": status,
            "name": name, "call_id": call_id, "arguments": arguments}  # fmt: skip


def args_done(
    n: int, call_id: str, name: str, arguments: str, *, with_name: bool = True
) -> dict[str, Any]:
    """`response.function_call_arguments.done` (the beta API's carried no `name`)."""
    event = {"type": "response.function_call_arguments.done", "event_id": f"event_{n}d",
             "response_id": f"resp_{n}", "item_id": f"item_{call_id}", "output_index": 0,
             "call_id": call_id, "arguments": arguments}  # fmt: skip
    if not with_name:
        return event
    return _server({**event, "name": name})


def response_done(
    n: int, calls: list[tuple[str, str, str]], status: str = "completed"
) -> dict[str, Any]:
    """`response.done` whose output is these (call_id, name, arguments) function calls."""
    item_status = "completed" if status == "completed" else "incomplete"
    output = [_item(f"item_{c}", c, name, a, item_status) for c, name, a in calls]
    return _server(
        {"type": "response.done", "event_id": f"event_{n}z", "response": _response(
            f"resp_{n}", status, output
        )}
    )  # fmt: skip


def turn(n: int, call_id: str, name: str, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """Every server event of one model response that calls one function, in wire order."""
    text = json.dumps(arguments, separators=(",", ":"))
    half = len(text) // 2
    item = f"item_{call_id}"
    return [
        _server({"type": "response.created", "event_id": f"event_{n}a",
                 "response": _response(f"resp_{n}", "in_progress", [])}),
        _server({"type": "response.output_item.added", "event_id": f"event_{n}b",
                 "response_id": f"resp_{n}", "output_index": 0,
                 "item": _item(item, call_id, name, "", "in_progress")}),
        *[
            _server({"type": "response.function_call_arguments.delta", "event_id": f"event_{n}c{i}",
                     "response_id": f"resp_{n}", "item_id": item, "output_index": 0,
                     "call_id": call_id, "delta": delta})
            for i, delta in enumerate((text[:half], text[half:]))
        ],
        args_done(n, call_id, name, text),
        _server({"type": "response.output_item.done", "event_id": f"event_{n}e",
                 "response_id": f"resp_{n}", "output_index": 0,
                 "item": _item(item, call_id, name, text, "completed")}),
        response_done(n, [(call_id, name, text)]),
    ]  # fmt: skip


def client_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events, after the openai package's client event models accepted each."""
    for event in events:
        _CLIENT_EVENT_MODELS[event["type"]].model_validate(event)
    return events


def outputs(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """call_id -> what the model reads, from the function_call_output items."""
    found = {}
    for event in events:
        if event["type"] == "conversation.item.create":
            item = event["item"]
            assert item["type"] == "function_call_output"
            assert item["call_id"] not in found, "a call was answered twice"
            found[item["call_id"]] = json.loads(item["output"])
    return found


@pytest.fixture
async def billing(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[BillingServer]:
    async with BillingServer(in_process=True) as srv:
        monkeypatch.setenv("BILLING_URL", srv.url)
        monkeypatch.setenv("BILLING_API_KEY", srv.api_key)
        yield srv


@pytest.fixture
async def runtime(billing: BillingServer) -> AsyncIterator[ToolRuntime]:
    env = {"BILLING_URL": billing.url, "BILLING_API_KEY": billing.api_key}
    async with ToolRuntime.from_file(str(EXAMPLE_CONFIG), env=env) as rt_:
        yield rt_


async def test_the_example_call_through_the_bridge(
    runtime: ToolRuntime, billing: BillingServer
) -> None:
    bridge = RealtimeToolBridge(runtime, CallContext(id="rt-call-1"))
    sent: list[tuple[str, list[dict[str, Any]]]] = []
    conversation = [
        *turn(1, "call_lookup_9Qx", "lookup_customer_invoices", LOOKUP_ARGS),
        *turn(2, "call_pay_7Hd", "create_payment", PAYMENT_ARGS),
    ]
    for event in conversation:
        # As a socket delivers them: JSON text.
        sent.append((event["type"], client_events(await bridge.handle(json.dumps(event)))))

    replies: dict[str, list[str]] = {}
    for kind, events in sent:
        replies.setdefault(kind, []).extend(e["type"] for e in events)
    # Outputs go out as soon as the arguments are complete; response.create waits for
    # response.done, because the API refuses a second response while one is running.
    assert replies.pop("response.function_call_arguments.done") == ["conversation.item.create"] * 2
    assert replies.pop("response.done") == ["response.create"] * 2
    assert all(not r for r in replies.values())  # nothing in reply to the other events

    answers = outputs([e for _, events in sent for e in events])
    assert list(answers) == ["call_lookup_9Qx", "call_pay_7Hd"]
    assert_lookup_heard(answers["call_lookup_9Qx"])
    assert_payment_heard(answers["call_pay_7Hd"])
    assert_charged_once(await billing.ledger())

    # A replayed response.done (a reconnecting client) runs nothing again.
    assert await bridge.handle(conversation[-1]) == []
    ledger = await billing.ledger()
    assert ledger["requests_by_path"]["POST /payments"] == 1


async def test_handle_server_event_answers_arguments_done(runtime: ToolRuntime) -> None:
    call = runtime.call_context(CallContext(id="rt-call-2"))
    text = json.dumps(LOOKUP_ARGS)
    answered: set[str] = set()
    events = client_events(
        await handle_server_event(
            runtime, args_done(1, "call_a", "lookup_customer_invoices", text), call,
            answered=answered,
        )
    )  # fmt: skip
    assert [e["type"] for e in events] == ["conversation.item.create", "response.create"]
    assert_lookup_heard(outputs(events)["call_a"])
    # The same call in the response.done that follows is not run again.
    done = response_done(1, [("call_a", "lookup_customer_invoices", text)])
    assert await handle_server_event(runtime, done, call, answered=answered) == []


async def test_response_done_alone_runs_its_calls_in_order(
    runtime: ToolRuntime, billing: BillingServer
) -> None:
    call = CallContext(id="rt-call-3")
    done = response_done(
        1,
        [
            ("call_a", "lookup_customer_invoices", json.dumps(LOOKUP_ARGS)),
            ("call_b", "create_payment", json.dumps(PAYMENT_ARGS)),
        ],
    )
    events = client_events(await handle_server_event(runtime, done, call))
    # The payment needs the customer the lookup put in the call's state: order matters.
    assert [e["type"] for e in events] == [
        "conversation.item.create",
        "conversation.item.create",
        "response.create",
    ]
    answers = outputs(events)
    assert_lookup_heard(answers["call_a"])
    assert_payment_heard(answers["call_b"])
    assert_charged_once(await billing.ledger())


@pytest.mark.parametrize("arguments", ['{"phone": "555-12', "[1, 2]", "null"])
async def test_bad_arguments_become_an_invalid_arguments_output(
    runtime: ToolRuntime, billing: BillingServer, arguments: str
) -> None:
    before = (await billing.ledger())["requests"]
    bridge = RealtimeToolBridge(runtime, "rt-call-4")
    events = client_events(
        await bridge.handle(args_done(1, "call_bad", "lookup_customer_invoices", arguments))
    )
    answer = outputs(events)["call_bad"]
    assert answer["ok"] is False
    assert answer["error"] == "invalid_arguments"
    assert events[-1] == {"type": "response.create"}
    assert (await billing.ledger())["requests"] == before  # nothing reached the API


async def test_unknown_function_is_answered_not_raised(runtime: ToolRuntime) -> None:
    events = await handle_server_event(
        runtime, args_done(1, "call_x", "refund_everything", "{}"), CallContext(id="rt-5")
    )
    answer = outputs(client_events(events))["call_x"]
    assert answer["ok"] is False
    assert answer["error"] == "invalid_arguments"


async def test_beta_arguments_done_without_name_is_answered_at_response_done(
    runtime: ToolRuntime,
) -> None:
    bridge = RealtimeToolBridge(runtime, "rt-call-6")
    text = json.dumps(LOOKUP_ARGS)
    beta = args_done(1, "call_b1", "lookup_customer_invoices", text, with_name=False)
    assert await bridge.handle(beta) == []
    done = response_done(1, [("call_b1", "lookup_customer_invoices", text)])
    events = client_events(await bridge.handle(done))
    assert [e["type"] for e in events] == ["conversation.item.create", "response.create"]
    assert_lookup_heard(outputs(events)["call_b1"])


async def test_cancelled_response_gets_outputs_but_no_new_response(
    runtime: ToolRuntime,
) -> None:
    """The caller barged in: their own turn's response will read the output."""
    bridge = RealtimeToolBridge(runtime, "rt-call-7")
    text = json.dumps(LOOKUP_ARGS)
    created, *_ = turn(1, "call_c1", "lookup_customer_invoices", LOOKUP_ARGS)
    assert await bridge.handle(created) == []
    early = client_events(
        await bridge.handle(args_done(1, "call_c1", "lookup_customer_invoices", text))
    )
    assert [e["type"] for e in early] == ["conversation.item.create"]
    cancelled = response_done(1, [("call_c1", "lookup_customer_invoices", text)], "cancelled")
    assert await bridge.handle(cancelled) == []
    # The next response completes normally and is answered as usual.
    nxt = turn(2, "call_c2", "create_payment", PAYMENT_ARGS)
    replies = [client_events(await bridge.handle(e)) for e in nxt]
    assert [e["type"] for e in replies[-1]] == ["response.create"]
    assert_payment_heard(outputs([e for r in replies for e in r])["call_c2"])


async def test_two_calls_in_one_response_get_one_response_create(runtime: ToolRuntime) -> None:
    bridge = RealtimeToolBridge(runtime, "rt-call-8")
    lookup, pay = json.dumps(LOOKUP_ARGS), json.dumps(PAYMENT_ARGS)
    created = turn(1, "x", "lookup_customer_invoices", LOOKUP_ARGS)[0]
    replies = [
        await bridge.handle(created),
        await bridge.handle(args_done(1, "call_p1", "lookup_customer_invoices", lookup)),
        await bridge.handle(args_done(1, "call_p2", "create_payment", pay)),
        await bridge.handle(
            response_done(
                1,
                [
                    ("call_p1", "lookup_customer_invoices", lookup),
                    ("call_p2", "create_payment", pay),
                ],
            )
        ),
    ]
    flat = [e["type"] for r in replies for e in client_events(r)]
    assert flat == ["conversation.item.create", "conversation.item.create", "response.create"]


async def test_events_handled_concurrently_run_the_payment_once(
    runtime: ToolRuntime, billing: BillingServer
) -> None:
    """A client that handles each event in its own task: arguments.done and response.done race."""
    bridge = RealtimeToolBridge(runtime, "rt-call-9")
    for event in turn(1, "call_l", "lookup_customer_invoices", LOOKUP_ARGS):
        await bridge.handle(event)
    pay = json.dumps(PAYMENT_ARGS)
    created = turn(2, "call_q", "create_payment", PAYMENT_ARGS)[0]
    await bridge.handle(created)
    first, second = await asyncio.gather(
        bridge.handle(args_done(2, "call_q", "create_payment", pay)),
        bridge.handle(response_done(2, [("call_q", "create_payment", pay)])),
    )
    # response.done found the call already claimed; the call's own reply asks for the response
    # once it has finished, as the response it came from is over by then.
    assert second == []
    assert [e["type"] for e in client_events(first)] == [
        "conversation.item.create",
        "response.create",
    ]
    assert_payment_heard(outputs(first)["call_q"])
    ledger = await billing.ledger()
    assert ledger["requests_by_path"]["POST /payments"] == 1
    assert_charged_once(ledger)


async def test_session_tools_payload(runtime: ToolRuntime) -> None:
    payload = session_tools_payload(runtime)
    client_events([payload])
    session = payload["session"]
    assert session["type"] == "realtime"
    assert session["tool_choice"] == "auto"
    by_name = {t["name"]: t for t in session["tools"]}
    assert set(by_name) == set(runtime.tools)
    for name, tool in runtime.tools.items():
        assert by_name[name]["type"] == "function"
        assert by_name[name]["parameters"] == parameters_schema(tool)
        assert by_name[name]["description"]
    forced = session_tools_payload(
        runtime, tool_choice={"type": "function", "name": "create_payment"}
    )
    client_events([forced])
    assert forced["session"]["tool_choice"] == {"type": "function", "name": "create_payment"}
