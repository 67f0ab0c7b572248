"""Call events reach the caller on every embedded surface: the runtime itself, Pipecat, LiveKit
and OpenAI Realtime.

Each test publishes an event with `ToolRuntime.publish_call_event`, as a webhook or a finished
background write does, and checks that the framework got the words to the caller, at a moment
that does not cut the turn in progress. The frameworks run as in their own adapter tests: a
real Pipecat pipeline and a real LiveKit AgentSession with scripted models, and the Realtime
bridge fed server events shaped as the API's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from patchbay import CallContext, ToolRuntime
from patchbay.testing import Fault, FaultProxy

WORDS = "Your payment has cleared; confirmation PAY-77AB."
PAID = {"confirmation_number": "PAY-77AB"}
MARK = "in these words: "


async def publish(runtime: ToolRuntime, call: str, say: str | None = WORDS) -> Any:
    return await runtime.publish_call_event(
        call, tenant=None, kind="webhook", event="payment.succeeded", say=say, data=PAID
    )


def echoed(texts: list[str]) -> str | None:
    """The words a note asked the model to say (what a model following it would answer)."""
    for text in reversed(texts):
        if MARK in text:
            return text.split(MARK, 1)[1].split(" Details: ", 1)[0]
    return None


# --- embedded ---------------------------------------------------------------------------------


async def test_an_embedded_agent_reads_the_calls_events(runtime: ToolRuntime) -> None:
    await runtime.start_call(CallContext(id="emb-1"))
    first = await publish(runtime, "emb-1")
    await publish(runtime, "emb-other", say="not this call")
    seen: list[Any] = []

    async def read() -> None:
        async for event in runtime.call_events("emb-1"):
            seen.append(event)

    reader = asyncio.create_task(read())
    second = await publish(runtime, "emb-1", say=None)
    await runtime.end_call("emb-1")
    await asyncio.wait_for(reader, 5)  # the stream ends with the call
    assert [(e.id, e.say) for e in seen] == [(first.id, WORDS), (second.id, None)]
    assert seen[0].data == PAID and seen[0].event == "payment.succeeded"


async def test_a_failing_delivery_costs_that_event_only(runtime: ToolRuntime) -> None:
    from patchbay.integrations._callnote import follow_call_events

    await runtime.start_call("emb-2")
    got: list[str] = []

    async def deliver(event: Any) -> None:
        if event.event == "boom":
            raise RuntimeError("the framework refused it")
        got.append(event.event)

    follower = asyncio.create_task(follow_call_events(runtime, CallContext("emb-2"), deliver))
    for name in ("first", "boom", "last"):
        await runtime.publish_call_event("emb-2", tenant=None, kind="webhook", event=name)
    await runtime.end_call("emb-2")
    await asyncio.wait_for(follower, 5)  # ends with the call, not with the failure
    assert got == ["first", "last"]


async def test_a_broken_subscription_resumes_after_the_last_event() -> None:
    from types import SimpleNamespace

    from patchbay.integrations._callnote import follow_call_events

    asked: list[str | None] = []

    class Flaky:
        """A runtime whose event stream breaks once, after its first event."""

        async def call_events(self, call_id: str, *, tenant: Any, after: Any) -> Any:
            asked.append(after)
            if len(asked) == 1:
                yield SimpleNamespace(id="1", event="first")
                raise ConnectionError("the store went away")
            yield SimpleNamespace(id="2", event="second")

    got: list[str] = []

    async def deliver(event: Any) -> None:
        got.append(event.id)

    stub: Any = Flaky()
    await asyncio.wait_for(follow_call_events(stub, CallContext("x"), deliver, retry_s=0), 5)
    assert asked == [None, "1"]  # resumed after what was delivered: nothing twice, nothing lost
    assert got == ["1", "2"]


# --- OpenAI Realtime ----------------------------------------------------------------------------

rt_types = pytest.importorskip("openai.types.realtime")


def _valid(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for event in events:
        model = {
            "conversation.item.create": rt_types.ConversationItemCreateEvent,
            "response.create": rt_types.ResponseCreateEvent,
        }[event["type"]]
        model.model_validate(event)
    return events


def _said(events: list[dict[str, Any]]) -> str:
    [item] = [e["item"] for e in events if e["type"] == "conversation.item.create"]
    assert (item["type"], item["role"]) == ("message", "system")
    text: str = item["content"][0]["text"]
    return text


async def test_realtime_bridge_sends_an_item_then_a_response(runtime: ToolRuntime) -> None:
    from patchbay.integrations.openai_realtime import RealtimeToolBridge

    bridge = RealtimeToolBridge(runtime, "rt-ev-1")
    await runtime.start_call("rt-ev-1")
    stream = bridge.call_events()
    await publish(runtime, "rt-ev-1")
    events = _valid(await asyncio.wait_for(anext(stream), 5))
    assert [e["type"] for e in events] == ["conversation.item.create", "response.create"]
    assert echoed([_said(events)]) == WORDS
    assert "PAY-77AB" in _said(events)

    # Without words the event only joins the conversation: no response is asked for.
    await publish(runtime, "rt-ev-1", say=None)
    quiet = _valid(await asyncio.wait_for(anext(stream), 5))
    assert [e["type"] for e in quiet] == ["conversation.item.create"]
    await runtime.end_call("rt-ev-1")
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(stream), 5)


async def test_realtime_response_create_waits_for_the_running_response(
    runtime: ToolRuntime,
) -> None:
    from patchbay.integrations.openai_realtime import RealtimeToolBridge

    bridge = RealtimeToolBridge(runtime, "rt-ev-2")
    created = {"type": "response.created", "event_id": "e1", "response": {"id": "resp_1"}}
    assert await bridge.handle(created) == []
    stream = bridge.call_events()
    await publish(runtime, "rt-ev-2")
    events = _valid(await asyncio.wait_for(anext(stream), 5))
    # The API refuses a second response while one runs: only the item goes now...
    assert [e["type"] for e in events] == ["conversation.item.create"]
    done = {
        "type": "response.done",
        "event_id": "e2",
        "response": {"id": "resp_1", "status": "completed", "output": []},
    }
    # ...and response.create follows the running response's end.
    assert await bridge.handle(done) == [{"type": "response.create"}]
    await stream.aclose()


# --- Pipecat ------------------------------------------------------------------------------------


@pytest.fixture
async def pipecat_kit() -> Any:
    pytest.importorskip("pipecat")
    pytest.importorskip("openai")
    from . import test_pipecat as kit

    return kit


@pytest.fixture
async def echo_model(script: Any, pipecat_kit: Any) -> AsyncIterator[tuple[Any, str]]:
    """The scripted OpenAI-compatible model, which also says what a developer note asks it to."""
    scripted = pipecat_kit.ScriptedModel(script)

    async def complete(request: web.Request) -> web.StreamResponse:
        body = await request.json()  # aiohttp keeps the body: the script may read it again
        notes = [m.get("content") for m in body["messages"] if m.get("role") == "developer"]
        words = echoed([n for n in notes if isinstance(n, str)])
        spoken = [m.get("content") for m in body["messages"] if m.get("role") == "assistant"]
        if words is None or words in spoken:
            scripted_answer: web.StreamResponse = await scripted.complete(request)
            return scripted_answer
        scripted.requests.append(body)
        answer = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await answer.prepare(request)
        await answer.write(pipecat_kit._chunk({"role": "assistant", "content": words}))
        await answer.write(pipecat_kit._chunk({}, "stop"))
        await answer.write(b"data: [DONE]\n\n")
        return answer

    app = web.Application()
    app.router.add_post("/v1/chat/completions", complete)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield scripted, f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    await runner.cleanup()


async def _pipecat_agent(
    kit: Any, runtime: ToolRuntime, base_url: str, call: str, **kw: Any
) -> Any:
    from pipecat.frames.frames import Frame, LLMRunFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
    from pipecat.workers.runner import WorkerRunner

    from patchbay.integrations.pipecat import CallEventSpeaker, register_tools

    llm = kit.openai_llm(base_url)
    tools = register_tools(llm, runtime, call)
    context = LLMContext(
        messages=[{"role": "user", "content": "I want to pay my bill. My number is 555-123-4567."}],
        tools=tools,
    )
    user, assistant = LLMContextAggregatorPair(context)
    ear = kit.Ear()
    speaker = CallEventSpeaker(runtime, call, **kw)
    worker = PipelineWorker(
        Pipeline([user, llm, speaker, ear, assistant]),
        cancel_on_idle_timeout=False,
        enable_rtvi=False,
        params=PipelineParams(),
    )
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")  # type: ignore[untyped-decorator]
    async def _started(worker: PipelineWorker, frame: Frame) -> None:
        started.set()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(started.wait(), 5)
    await worker.queue_frame(LLMRunFrame())
    return kit.Agent(worker, task, ear, context), speaker


async def test_pipecat_speaks_the_words_and_tells_the_model(
    pipecat_kit: Any, echo_model: tuple[Any, str], script: Any, runtime: ToolRuntime
) -> None:
    _, base_url = echo_model
    agent, speaker = await _pipecat_agent(pipecat_kit, runtime, base_url, "pc-ev-1")
    try:
        await asyncio.wait_for(agent.ear.answered.wait(), 15)  # the example call, answered
        event = await publish(runtime, "pc-ev-1")
        await script.until(lambda: WORDS in agent.ear.spoken)
        assert speaker.delivered == [event.id]
        notes = [m["content"] for m in agent.context.get_messages() if m["role"] == "developer"]
        assert any(WORDS in n and "PAY-77AB" in n for n in notes), notes
        await agent.hang_up()
        assert not speaker.following  # the pipeline's end ended the subscription
    finally:
        await agent.stop()


async def test_pipecat_holds_the_words_while_the_bot_speaks(
    pipecat_kit: Any, echo_model: tuple[Any, str], script: Any, runtime: ToolRuntime
) -> None:
    from pipecat.frames.frames import BotStartedSpeakingFrame, BotStoppedSpeakingFrame

    _, base_url = echo_model
    agent, speaker = await _pipecat_agent(pipecat_kit, runtime, base_url, "pc-ev-2")
    try:
        await asyncio.wait_for(agent.ear.answered.wait(), 15)
        await agent.say(BotStartedSpeakingFrame())
        event = await publish(runtime, "pc-ev-2")
        await script.until(lambda: speaker.holding == event.id)
        assert WORDS not in agent.ear.spoken  # held: the bot is still talking
        await agent.say(BotStoppedSpeakingFrame())
        await script.until(lambda: WORDS in agent.ear.spoken)
        assert speaker.delivered == [event.id]
    finally:
        await agent.stop()


async def test_pipecat_reply_mode_has_the_model_say_it(
    pipecat_kit: Any, echo_model: tuple[Any, str], script: Any, runtime: ToolRuntime
) -> None:
    scripted, base_url = echo_model
    agent, _ = await _pipecat_agent(pipecat_kit, runtime, base_url, "pc-ev-3", speak="reply")
    try:
        await asyncio.wait_for(agent.ear.answered.wait(), 15)
        asked = len(scripted.requests)
        await publish(runtime, "pc-ev-3")
        await script.until(lambda: WORDS in agent.ear.heard())
        # The model ran again, on a context holding the note: the caller heard its answer.
        assert len(scripted.requests) == asked + 1
        assert agent.ear.spoken == []  # nothing said word for word behind the model's back
    finally:
        await agent.stop()


# --- LiveKit ------------------------------------------------------------------------------------


@pytest.fixture
def livekit_kit() -> Any:
    pytest.importorskip("livekit.agents")
    from . import test_livekit as kit

    return kit


@pytest.fixture
async def session_for(livekit_kit: Any) -> AsyncIterator[Any]:
    """Start AgentSessions with a given model and patchbay's tools; closed at teardown."""
    from livekit.agents import Agent, AgentSession

    from patchbay.integrations.livekit import function_tools

    sessions: list[Any] = []

    async def start(runtime: ToolRuntime, userdata: Any, *, model: Any) -> Any:
        session: AgentSession[Any] = AgentSession(llm=model, userdata=userdata)
        sessions.append(session)
        tools: list[Any] = list(function_tools(runtime))
        agent = Agent(instructions="You take bill payments.", tools=tools)
        await session.start(agent)
        return session

    yield start
    for session in sessions:
        await session.aclose()


def _echo_llm(kit: Any, script: Any) -> Any:
    from livekit.agents.llm import ChatChunk, ChoiceDelta
    from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS

    class EchoStream(kit.ScriptedStream):  # type: ignore[misc,name-defined]
        async def _run(self) -> None:
            messages = [i for i in self.chat_ctx.items if i.type == "message"]
            notes = [m.text_content or "" for m in messages if m.role in ("system", "developer")]
            said = [m.text_content for m in messages if m.role == "assistant"]
            words = echoed(notes)
            if words is None or words in said:
                await super()._run()
                return
            delta = ChoiceDelta(role="assistant", content=words)
            self._event_ch.send_nowait(ChatChunk(id="chunk_echo", delta=delta))

    class EchoLLM(kit.ScriptedLLM):  # type: ignore[misc,name-defined]
        def chat(self, *, chat_ctx: Any, tools: Any = None, **kw: Any) -> Any:
            self.contexts.append(chat_ctx.copy())
            self.tools.append(list(tools or []))
            options = kw.get("conn_options", DEFAULT_API_CONNECT_OPTIONS)
            return EchoStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=options)

    return EchoLLM(script)


def _assistant_lines(session: Any) -> list[str]:
    items = session.history.items
    return [i.text_content for i in items if i.type == "message" and i.role == "assistant"]


async def test_livekit_session_speaks_the_event_after_the_turn_in_progress(
    livekit_kit: Any,
    script: Any,
    config: Any,
    proxy: FaultProxy,
    session_for: Any,
) -> None:
    from patchbay.integrations.livekit import speak_call_events

    proxy.add(Fault("slow", method="POST", path_prefix="/payments", delay_s=0.8))
    async with ToolRuntime(config) as rt:
        model = _echo_llm(livekit_kit, script)
        session = await session_for(rt, CallContext(id="lk-ev-1"), model=model)
        speaker = speak_call_events(session, rt)
        run = asyncio.ensure_future(session.run(user_input=script.caller_says))
        await script.until(lambda: proxy.stats().by_path.get("POST /payments", 0) == 1)
        event = await publish(rt, "lk-ev-1")  # mid-turn: the payment is still running
        await asyncio.wait_for(run, 15)
        await script.until(lambda: WORDS in _assistant_lines(session), within=10)
        await speaker.aclose()

    lines = _assistant_lines(session)
    final = next(i for i, line in enumerate(lines) if line and "confirmation number" in line)
    # The turn in progress played out whole; the event's words came after it.
    assert lines.index(WORDS) > final, lines
    assert speaker.delivered == [event.id]


async def test_livekit_event_without_words_joins_the_chat_context(
    livekit_kit: Any, script: Any, runtime: ToolRuntime, session_for: Any
) -> None:
    from patchbay.integrations.livekit import speak_call_events

    model = _echo_llm(livekit_kit, script)
    session = await session_for(runtime, {"call_id": "lk-ev-2"}, model=model)
    speaker = speak_call_events(session, runtime)  # the call from the session's userdata
    event = await publish(runtime, "lk-ev-2", say=None)
    await script.until(lambda: speaker.delivered == [event.id])
    await speaker.aclose()
    texts = [i.text_content for i in session.current_agent.chat_ctx.items if i.type == "message"]
    assert any(t and "payment.succeeded" in t and "PAY-77AB" in t for t in texts), texts
    assert WORDS not in _assistant_lines(session)
