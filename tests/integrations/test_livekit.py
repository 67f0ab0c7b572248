"""The LiveKit adapter inside a real LiveKit AgentSession, offline (no room, no server).

The model is a scripted ``livekit.agents.llm.LLM`` (the same shape as LiveKit's own FakeLLM):
everything else is LiveKit's own code path. ``AgentSession.run`` drives the agent activity,
which streams the model's tool calls into ``voice.generation.perform_tool_executions``, which
runs each patchbay tool through ``_ToolExecutor.execute`` with a ``RunContext``, turns a
``ToolError`` into an error output, and asks the model again with the outputs in its context.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("livekit.agents")

from livekit.agents import Agent, AgentSession
from livekit.agents.llm import (
    LLM,
    ChatChunk,
    ChatContext,
    ChoiceDelta,
    FunctionCallOutput,
    FunctionToolCall,
    LLMStream,
    Tool,
    ToolChoice,
)
from livekit.agents.types import (
    DEFAULT_API_CONNECT_OPTIONS,
    NOT_GIVEN,
    APIConnectOptions,
    NotGivenOr,
)
from livekit.agents.voice.run_result import ChatMessageEvent, FunctionCallOutputEvent

from patchbay import CallContext, Config, ToolRuntime
from patchbay.integrations.livekit import function_tools, raw_schema
from patchbay.testing import BillingServer, Fault, FaultProxy

LOOKUP = "lookup_customer_invoices"
PAYMENT = "create_payment"


class ScriptedLLM(LLM):
    """A model that plays the script from the tool outputs LiveKit put in its chat context."""

    def __init__(self, script: Any) -> None:
        super().__init__()
        self.script = script
        self.contexts: list[ChatContext] = []
        self.tools: list[list[Tool]] = []

    def chat(
        self,
        *,
        chat_ctx: ChatContext,
        tools: list[Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> LLMStream:
        self.contexts.append(chat_ctx.copy())
        self.tools.append(list(tools or []))
        return ScriptedStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)

    def next_move(self, read: list[tuple[str, str]]) -> Any:
        return self.script.next_move(read)

    def outputs(self, index: int = -1) -> list[FunctionCallOutput]:
        """The tool outputs the model had read when it was asked the `index`-th time."""
        return [i for i in self.contexts[index].items if i.type == "function_call_output"]


class PaysFirst(ScriptedLLM):
    """A model that pays before looking anything up."""

    def next_move(self, read: list[tuple[str, str]]) -> Any:
        if read:
            return SimpleNamespace(tool=None, text="Sorry, something went wrong.")
        return SimpleNamespace(tool=PAYMENT, arguments=self.script.payment_args)


class ScriptedStream(LLMStream):
    async def _run(self) -> None:
        model = self._llm
        assert isinstance(model, ScriptedLLM)
        read = [(o.name, o.output) for o in self.chat_ctx.items if o.type == "function_call_output"]
        move = model.next_move(read)
        if move.tool is not None:
            call = FunctionToolCall(
                name=move.tool,
                arguments=json.dumps(move.arguments),
                call_id=f"call_{len(model.contexts)}",
            )
            delta = ChoiceDelta(role="assistant", tool_calls=[call])
        else:
            delta = ChoiceDelta(role="assistant", content=move.text)
        self._event_ch.send_nowait(ChatChunk(id=f"chunk_{len(model.contexts)}", delta=delta))


@dataclass
class Userdata:
    """An app's own session userdata, naming the call the way `call_from_session` reads it."""

    call_id: str
    caller: str | None = None
    tenant: str | None = None


@pytest.fixture
async def session_for(script: Any) -> AsyncIterator[Any]:
    """Start an AgentSession with the scripted model and patchbay's tools; closed at teardown."""
    sessions: list[AgentSession[Any]] = []

    async def start(
        runtime: ToolRuntime,
        userdata: Any = None,
        *,
        model: ScriptedLLM | None = None,
        **kw: Any,
    ) -> tuple[AgentSession[Any], ScriptedLLM]:
        model = model or ScriptedLLM(script)
        session: AgentSession[Any] = AgentSession(llm=model, userdata=userdata)
        sessions.append(session)
        agent = Agent(instructions="You take bill payments.", tools=function_tools(runtime, **kw))
        await session.start(agent)
        return session, model

    yield start
    for session in sessions:
        await session.aclose()


def spoken(events: list[Any]) -> str:
    return " ".join(e.item.text_content or "" for e in events if isinstance(e, ChatMessageEvent))


async def test_example_conversation_through_livekit(
    script: Any, runtime: ToolRuntime, billing: BillingServer, session_for: Any
) -> None:
    session, model = await session_for(runtime, CallContext(id="lk-call-1", caller="+15551234567"))
    result = await asyncio.wait_for(session.run(user_input=script.caller_says), 15)

    heard = spoken(result.events)
    assert "Jamie" in heard
    assert "24700 cents" in heard
    confirmation = script.confirmation.search(heard)
    assert confirmation is not None, heard
    ledger = await billing.ledger()
    assert ledger["charges_by_invoice"] == {"inv_1001": 1}
    payment = ledger["payments"][0]
    assert payment["confirmation_number"] == confirmation.group(0)
    assert payment["customer_id"] == "cus_8F2kLq"  # the lookup's state reached the payment
    assert payment["idempotency_key"] == "call_lk-call-1_invoice_inv_1001"
    outputs = [e.item for e in result.events if isinstance(e, FunctionCallOutputEvent)]
    assert [(o.name, o.is_error) for o in outputs] == [(LOOKUP, False), (PAYMENT, False)]
    assert json.loads(outputs[0].output)["result"]["customer_name"] == "Jamie Patel"
    assert "meta" not in json.loads(outputs[1].output)  # the model reads for_llm(), no meta
    assert len(model.contexts) == 3
    said = [i.text_content for i in session.history.items if i.type == "message"]
    assert runtime.tools[LOOKUP].say.delayed not in said  # fast calls need no filler


async def test_tools_carry_their_raw_schema(
    script: Any, runtime: ToolRuntime, session_for: Any
) -> None:
    session, model = await session_for(runtime, tools=[LOOKUP, PAYMENT])
    await asyncio.wait_for(session.run(user_input=script.caller_says), 15)

    offered = {t.info.name: t.info.raw_schema for t in model.tools[0]}
    assert offered == {name: raw_schema(runtime.tools[name]) for name in (LOOKUP, PAYMENT)}
    with pytest.raises(ValueError, match="no tool named"):
        function_tools(runtime, tools=["refund_everything"])


async def test_failures_reach_the_model_as_tool_errors(
    script: Any, runtime: ToolRuntime, billing: BillingServer, session_for: Any
) -> None:
    # Paying before the lookup: the payment's rule refuses it, and no request is made.
    session, model = await session_for(
        runtime, Userdata(call_id="lk-call-2"), model=PaysFirst(script)
    )
    await asyncio.wait_for(session.run(user_input=script.caller_says), 15)

    failed = model.outputs(1)[0]
    assert failed.name == PAYMENT
    assert failed.is_error is True  # LiveKit's ToolError path, not a normal output
    told = json.loads(failed.output)
    assert told["ok"] is False
    assert told["error"] == "invalid_arguments"
    assert "look the invoices up first" in told["message"]
    assert (await billing.ledger())["charges_by_invoice"] == {}


@pytest.mark.parametrize(
    "userdata",
    [
        {"call_id": "lk-call-3", "caller": "+15551234567"},
        Userdata(call_id="lk-call-3", caller="+15551234567"),
        SimpleNamespace(call=CallContext(id="lk-call-3")),
    ],
    ids=["mapping", "attributes", "nested"],
)
async def test_call_context_from_session_userdata(
    userdata: Any, script: Any, runtime: ToolRuntime, billing: BillingServer, session_for: Any
) -> None:
    session, _ = await session_for(runtime, userdata)
    await asyncio.wait_for(session.run(user_input=script.caller_says), 15)

    ledger = await billing.ledger()
    assert ledger["payments"][0]["idempotency_key"] == "call_lk-call-3_invoice_inv_1001"
    assert runtime.call_context("lk-call-3").state["customer_id"] == "cus_8F2kLq"


async def test_session_without_userdata_is_one_call(
    script: Any, runtime: ToolRuntime, billing: BillingServer, session_for: Any
) -> None:
    session, _ = await session_for(runtime)
    await asyncio.wait_for(session.run(user_input=script.caller_says), 15)

    payment = (await billing.ledger())["payments"][0]
    # Both tool calls shared one call: the lookup's customer id reached the payment's body.
    assert payment["customer_id"] == "cus_8F2kLq"
    assert payment["idempotency_key"].startswith("call_livekit-")


async def test_interrupted_read_is_cancelled_and_asks_nothing_more(
    script: Any,
    config: Config,
    proxy: FaultProxy,
    billing: BillingServer,
    session_for: Any,
) -> None:
    # The example's lookup is a Python handler, which patchbay treats as a write unless told.
    config = script.with_tool(config, LOOKUP, write=False)
    proxy.add(Fault("slow", method="GET", path_prefix="/customers/search", delay_s=1.0))
    async with ToolRuntime(config) as rt:
        session, model = await session_for(rt, CallContext(id="lk-call-4"))
        run = asyncio.ensure_future(session.run(user_input=script.caller_says))
        await script.until(lambda: proxy.stats().by_path.get("GET /customers/search", 0) == 1)
        await session.interrupt()
        await asyncio.wait_for(run, 10)
        await asyncio.sleep(1.2)  # past the slow search: a live lookup would have gone on

    assert await script.requests_seen(billing, "GET /customers/search") == 0
    assert await script.requests_seen(billing, "GET /invoices") == 0
    assert len(model.contexts) == 1  # nothing was asked of the model after the interruption


async def test_interrupted_write_still_charges_once_and_the_model_learns_it(
    script: Any,
    runtime: ToolRuntime,
    proxy: FaultProxy,
    billing: BillingServer,
    session_for: Any,
) -> None:
    proxy.add(Fault("slow", method="POST", path_prefix="/payments", delay_s=0.8))
    session, _ = await session_for(runtime, CallContext(id="lk-call-5"))
    run = asyncio.ensure_future(session.run(user_input=script.caller_says))
    await script.until(lambda: proxy.stats().by_path.get("POST /payments", 0) == 1)
    await session.interrupt()
    await asyncio.wait_for(run, 10)
    await script.until(lambda: _charged(billing), within=5)

    ledger = await billing.ledger()
    assert ledger["charges_by_invoice"] == {"inv_1001": 1}
    assert ledger["amount_by_invoice"] == {"inv_1001": 24700}
    # LiveKit committed the finished payment to the conversation, so the model knows it went
    # through (an interruptible write would have left an empty output here).
    confirmation = ledger["payments"][0]["confirmation_number"]
    outputs = [i for i in session.history.items if i.type == "function_call_output"]
    assert outputs[-1].name == PAYMENT
    assert outputs[-1].output, "the finished payment's result was dropped"
    assert json.loads(outputs[-1].output)["result"]["confirmation_number"] == confirmation


async def _charged(billing: BillingServer) -> bool:
    return bool((await billing.ledger())["charges_by_invoice"])


async def test_delayed_words_play_as_filler_while_a_slow_call_runs(
    script: Any, runtime: ToolRuntime, proxy: FaultProxy, session_for: Any
) -> None:
    proxy.add(Fault("slow", method="GET", path_prefix="/customers/search", delay_s=1.0))
    session, _ = await session_for(runtime, CallContext(id="lk-call-6"), delayed_after_s=0.2)
    result = await asyncio.wait_for(session.run(user_input=script.caller_says), 15)

    said = [i.text_content for i in session.history.items if i.type == "message"]
    assert runtime.tools[LOOKUP].say.delayed in said
    assert "Jamie" in spoken(result.events)
