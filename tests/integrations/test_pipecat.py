"""The Pipecat adapter inside a real Pipecat pipeline, offline.

The LLM is Pipecat's own ``OpenAILLMService`` talking to a scripted OpenAI-compatible server on
loopback, so every tool call takes Pipecat's real path: streamed tool-call chunks parsed by
``BaseOpenAILLMService._process_context``, dispatched by ``LLMService.run_function_calls`` to the
registered handlers, results carried by ``FunctionCallResultFrame`` into the context aggregator,
which runs the model again with them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

pytest.importorskip("pipecat")
pytest.importorskip("openai")  # the scripted model speaks through OpenAILLMService

from pipecat.frames.frames import (
    EndFrame,
    Frame,
    FunctionCallInProgressFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMRunFrame,
    LLMTextFrame,
    TTSSpeakFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.workers.runner import WorkerRunner

from patchbay import CallContext, Config, ToolRuntime
from patchbay.integrations.pipecat import PipecatTools, register_tools, tools_schema
from patchbay.spec import parameters_schema
from patchbay.testing import BillingServer, Fault, FaultProxy

LOOKUP = "lookup_customer_invoices"
PAYMENT = "create_payment"

# --- a scripted OpenAI-compatible model on loopback ---------------------------------------


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "scripted",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def tool_outputs(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(tool name, content) of every tool result in an OpenAI chat request, in order."""
    names: dict[str, str] = {}
    outputs = []
    for message in messages:
        for call in message.get("tool_calls") or []:
            names[call["id"]] = call["function"]["name"]
        if message.get("role") == "tool":
            outputs.append((names[message["tool_call_id"]], message["content"]))
    return outputs


@dataclass
class ScriptedModel:
    """An OpenAI chat-completions endpoint that plays the script; keeps what it was asked."""

    script: Any
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def complete(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        move = self.script.next_move(tool_outputs(body["messages"]))
        answer = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await answer.prepare(request)
        if move.tool is not None:
            call = {
                "index": 0,
                "id": f"call_{len(self.requests)}",
                "type": "function",
                "function": {"name": move.tool, "arguments": json.dumps(move.arguments)},
            }
            await answer.write(_chunk({"role": "assistant", "tool_calls": [call]}))
            await answer.write(_chunk({}, "tool_calls"))
        else:
            await answer.write(_chunk({"role": "assistant", "content": move.text}))
            await answer.write(_chunk({}, "stop"))
        await answer.write(b"data: [DONE]\n\n")
        return answer


@pytest.fixture
async def model(script: Any) -> AsyncIterator[tuple[ScriptedModel, str]]:
    scripted = ScriptedModel(script)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", scripted.complete)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield scripted, f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


# --- the pipeline ---------------------------------------------------------------------------


class Ear(FrameProcessor):
    """Sits where the TTS would: records what the caller would hear."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.spoken: list[str] = []  # TTSSpeakFrame words, e.g. the delayed line
        self.in_progress: list[str] = []
        self.answered = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMTextFrame):
            self.text.append(frame.text)
        elif isinstance(frame, TTSSpeakFrame):
            self.spoken.append(frame.text)
        elif isinstance(frame, FunctionCallInProgressFrame):
            self.in_progress.append(frame.function_name)
        elif isinstance(frame, LLMFullResponseEndFrame) and self.text:
            self.answered.set()
        await self.push_frame(frame, direction)

    def heard(self) -> str:
        return "".join(self.text)


@dataclass
class Agent:
    worker: PipelineWorker
    runner_task: asyncio.Task[Any]
    ear: Ear
    context: LLMContext

    async def say(self, frame: Frame) -> None:
        await self.worker.queue_frame(frame)

    async def hang_up(self) -> None:
        await self.worker.queue_frame(EndFrame())
        await asyncio.wait_for(self.runner_task, 10)

    async def stop(self) -> None:
        """End the pipeline even when a test failed halfway (a live one outlives the test)."""
        if not self.runner_task.done():
            await self.worker.cancel()
            await asyncio.wait_for(self.runner_task, 10)


Start = Callable[[OpenAILLMService, Any], Awaitable[Agent]]


@pytest.fixture
async def start_agent(script: Any) -> AsyncIterator[Start]:
    """Start a pipeline (user aggregator, LLM, ear, assistant aggregator) on the caller's line."""
    started: list[Agent] = []

    async def start(llm: OpenAILLMService, tools: Any) -> Agent:
        agent = await _start_agent(llm, tools, script.caller_says)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        await agent.stop()


async def _start_agent(llm: OpenAILLMService, tools: Any, caller_says: str) -> Agent:
    context = LLMContext(messages=[{"role": "user", "content": caller_says}], tools=tools)
    user, assistant = LLMContextAggregatorPair(context)
    ear = Ear()
    worker = PipelineWorker(
        Pipeline([user, llm, ear, assistant]),
        cancel_on_idle_timeout=False,
        enable_rtvi=False,
        params=PipelineParams(),
    )
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")  # type: ignore[misc]
    async def _started(worker: PipelineWorker, frame: Frame) -> None:
        started.set()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(started.wait(), 5)
    await worker.queue_frame(LLMRunFrame())
    return Agent(worker, task, ear, context)


def openai_llm(base_url: str) -> OpenAILLMService:
    settings = OpenAILLMService.Settings(model="scripted")
    return OpenAILLMService(api_key="offline", base_url=base_url, settings=settings)


# --- tests ------------------------------------------------------------------------------------


async def test_example_conversation_through_pipecat(
    model: tuple[ScriptedModel, str],
    script: Any,
    runtime: ToolRuntime,
    billing: BillingServer,
    start_agent: Start,
) -> None:
    scripted, base_url = model
    llm = openai_llm(base_url)
    call = CallContext(id="pc-call-1", caller="+15551234567")
    agent = await start_agent(llm, register_tools(llm, runtime, call))
    await asyncio.wait_for(agent.ear.answered.wait(), 15)
    await agent.hang_up()

    heard = agent.ear.heard()
    assert "Jamie" in heard
    assert "24700 cents" in heard
    confirmation = script.confirmation.search(heard)
    assert confirmation is not None, heard
    ledger = await billing.ledger()
    assert ledger["charges_by_invoice"] == {"inv_1001": 1}
    payment = ledger["payments"][0]
    assert payment["confirmation_number"] == confirmation.group(0)
    # The call's state carried the lookup's customer into the payment, under the call's key.
    assert payment["customer_id"] == "cus_8F2kLq"
    assert payment["idempotency_key"] == "call_pc-call-1_invoice_inv_1001"
    # The model was asked three times: two tool calls, then the answer; it read only for_llm().
    assert len(scripted.requests) == 3
    assert agent.ear.in_progress == [LOOKUP, PAYMENT]
    outputs = dict(tool_outputs(scripted.requests[-1]["messages"]))
    assert json.loads(outputs[PAYMENT])["ok"] is True
    assert "meta" not in json.loads(outputs[LOOKUP])
    assert agent.ear.spoken == []  # fast calls say no "still looking" line


async def test_schemas_advertised_to_the_model_are_the_tools_own(
    model: tuple[ScriptedModel, str],
    script: Any,
    runtime: ToolRuntime,
    start_agent: Start,
) -> None:
    scripted, base_url = model
    llm = openai_llm(base_url)
    agent = await start_agent(llm, register_tools(llm, runtime, "pc-call-2", tools=[LOOKUP]))
    await script.until(lambda: len(scripted.requests) >= 1)
    await agent.hang_up()

    advertised = {t["function"]["name"]: t["function"] for t in scripted.requests[0]["tools"]}
    assert list(advertised) == [LOOKUP]
    expected = parameters_schema(runtime.tools[LOOKUP])
    assert advertised[LOOKUP]["parameters"]["properties"] == expected["properties"]
    assert advertised[LOOKUP]["parameters"]["required"] == expected["required"]
    assert [f.name for f in tools_schema(runtime).standard_tools] == list(runtime.tools)
    with pytest.raises(ValueError, match="no tool named"):
        tools_schema(runtime, tools=["refund_everything"])


async def test_delayed_words_are_spoken_while_a_slow_call_runs(
    model: tuple[ScriptedModel, str],
    script: Any,
    runtime: ToolRuntime,
    proxy: FaultProxy,
    billing: BillingServer,
    start_agent: Start,
) -> None:
    proxy.add(Fault("slow", method="GET", path_prefix="/customers/search", delay_s=0.8))
    scripted, base_url = model
    llm = openai_llm(base_url)
    tools = register_tools(llm, runtime, "pc-call-3", delayed_after_s=0.2)
    agent = await start_agent(llm, tools)
    await asyncio.wait_for(agent.ear.answered.wait(), 15)
    await agent.hang_up()

    assert agent.ear.spoken == [runtime.tools[LOOKUP].say.delayed]
    assert "Jamie" in agent.ear.heard()
    # The line was spoken, not written between the tool call and its result in the context.
    assert all("Still looking" not in json.dumps(m) for m in scripted.requests[-1]["messages"])


async def test_interrupted_read_is_cancelled_and_asks_nothing_more(
    model: tuple[ScriptedModel, str],
    script: Any,
    config: Config,
    proxy: FaultProxy,
    billing: BillingServer,
    start_agent: Start,
) -> None:
    # The example's lookup is a Python handler, which patchbay treats as a write unless told.
    config = script.with_tool(config, LOOKUP, write=False)
    proxy.add(Fault("slow", method="GET", path_prefix="/customers/search", delay_s=1.0))
    scripted, base_url = model
    llm = openai_llm(base_url)
    async with ToolRuntime(config) as rt:
        agent = await start_agent(llm, register_tools(llm, rt, "pc-call-4"))
        await script.until(lambda: proxy.stats().by_path.get("GET /customers/search", 0) == 1)
        await agent.say(InterruptionFrame())
        await asyncio.sleep(1.5)  # past the slow search: a live lookup would have gone on by now
        await agent.hang_up()

    # The search was abandoned before the proxy forwarded it, and the invoices never asked for.
    assert await script.requests_seen(billing, "GET /customers/search") == 0
    assert await script.requests_seen(billing, "GET /invoices") == 0
    assert len(scripted.requests) == 1  # no result ever reached the model
    tool_messages = [m for m in agent.context.get_messages() if m.get("role") == "tool"]
    assert [m["content"] for m in tool_messages] == ["CANCELLED"]


async def test_interrupted_write_still_charges_once_and_the_model_learns_it(
    model: tuple[ScriptedModel, str],
    script: Any,
    runtime: ToolRuntime,
    proxy: FaultProxy,
    billing: BillingServer,
    start_agent: Start,
) -> None:
    proxy.add(Fault("slow", method="POST", path_prefix="/payments", delay_s=0.8))
    _, base_url = model
    llm = openai_llm(base_url)
    handlers = PipecatTools(runtime, "pc-call-5")
    agent = await start_agent(llm, handlers.register(llm))
    await script.until(lambda: proxy.stats().by_path.get("POST /payments", 0) == 1)
    await agent.say(InterruptionFrame())
    await asyncio.wait_for(handlers.wait_for_writes(), 10)
    await script.until(
        lambda: any("finished anyway" in str(m) for m in agent.context.get_messages())
    )
    await agent.hang_up()

    ledger = await billing.ledger()
    assert ledger["charges_by_invoice"] == {"inv_1001": 1}
    confirmation = ledger["payments"][0]["confirmation_number"]
    messages = agent.context.get_messages()
    payment_result = [m for m in messages if m.get("role") == "tool"][-1]
    assert payment_result["content"] == "CANCELLED"  # what Pipecat records for the turn...
    late = [m for m in messages if "finished anyway" in str(m.get("content"))]
    assert confirmation in str(late[0]["content"])  # ...and the truth, told afterwards


async def test_patchbay_budget_answers_before_pipecat_timeout(
    model: tuple[ScriptedModel, str],
    script: Any,
    config: Config,
    proxy: FaultProxy,
    start_agent: Start,
) -> None:
    config = script.with_tool(config, LOOKUP, budget_s=0.5)
    proxy.add(Fault("hang", method="GET", path_prefix="/customers/search"))
    scripted, base_url = model
    llm = openai_llm(base_url)
    async with ToolRuntime(config) as rt:
        tools = register_tools(llm, rt, "pc-call-6", delayed_after_s=5)
        agent = await start_agent(llm, tools)
        await script.until(lambda: len(scripted.requests) >= 2, within=10)
        await agent.hang_up()

    # Pipecat's own timeout (budget + margin) would have recorded CANCELLED instead.
    answer = json.loads(dict(tool_outputs(scripted.requests[1]["messages"]))[LOOKUP])
    assert answer["ok"] is False
    assert answer["error"] == "timeout"
    assert answer["say"] == "I can't reach billing right now."
