"""Call events spoken inside a Pipecat pipeline (see `patchbay.integrations.pipecat`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    Frame,
    FunctionCallCancelFrame,
    FunctionCallInProgressFrame,
    FunctionCallResultFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMMessagesAppendFrame,
    StartFrame,
    TTSSpeakFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from patchbay.integrations._callnote import CallEventLike, event_note, follow_call_events
from patchbay.runtime import ToolRuntime
from patchbay.spec import CallContext

__all__ = ["CallEventSpeaker"]

log = logging.getLogger("patchbay.integrations.pipecat")

Speak = Literal["say", "reply"]


class CallEventSpeaker(FrameProcessor):
    """Speaks the events of one call (webhooks, completions, background outcomes) to the caller.

    Place it right after the LLM service, before the TTS::

        Pipeline([transport.input(), stt, user_agg, llm, CallEventSpeaker(runtime, call), tts,
                  transport.output(), assistant_agg])

    From the pipeline's start to its end it follows ``runtime.call_events`` for the call. Each
    event waits for a quiet moment (no model response streaming, no tool call running, neither
    the bot nor the caller speaking), then goes into the LLM context as a developer note and,
    when it carries words, is spoken: word for word as a ``TTSSpeakFrame`` (``speak="say"``), or
    by the model from the note (``speak="reply"``, an ``LLMMessagesAppendFrame`` with
    ``run_llm=True``, which Pipecat's assistant aggregator also holds while the bot speaks).
    """

    def __init__(
        self,
        runtime: ToolRuntime,
        call: CallContext | str,
        *,
        speak: Speak = "say",
        after: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if speak not in ("say", "reply"):
            raise ValueError(f"speak must be 'say' or 'reply', not {speak!r}")
        self.runtime = runtime
        self.call = runtime.call_context(call)
        self.speak = speak
        self.after = after
        self.delivered: list[str] = []  # ids of the events handed to the pipeline, in order
        self.holding: str | None = None  # id of the event waiting for a quiet moment
        self._busy: set[str] = set()
        self._tools: set[str] = set()
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._follower: asyncio.Task[None] | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, (EndFrame, CancelFrame)):
            await self._stop()
        self._watch(frame)
        await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame) and self._follower is None:
            self._follower = self.create_task(self._follow(), name="patchbay-call-events")

    @property
    def following(self) -> bool:
        """Whether the call's events are being followed (from the pipeline's start to its end)."""
        return self._follower is not None and not self._follower.done()

    async def cleanup(self) -> None:
        await self._stop()
        await super().cleanup()  # type: ignore[no-untyped-call]

    async def _stop(self) -> None:
        follower, self._follower = self._follower, None
        if follower is not None and not follower.done():
            await self.cancel_task(follower)

    def _watch(self, frame: Frame) -> None:
        """Keep track of whether someone is speaking or the model is busy."""
        if isinstance(frame, BotStartedSpeakingFrame):
            self._busy.add("bot")
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._busy.discard("bot")
        elif isinstance(frame, UserStartedSpeakingFrame):
            self._busy.add("user")
        elif isinstance(frame, UserStoppedSpeakingFrame):
            self._busy.discard("user")
        elif isinstance(frame, LLMFullResponseStartFrame):
            self._busy.add("llm")
        elif isinstance(frame, LLMFullResponseEndFrame):
            self._busy.discard("llm")
        elif isinstance(frame, InterruptionFrame):
            self._busy.discard("llm")  # the response was cut: its end frame may never come
        elif isinstance(frame, FunctionCallInProgressFrame):
            self._tools.add(frame.tool_call_id)
        elif isinstance(frame, (FunctionCallResultFrame, FunctionCallCancelFrame)):
            self._tools.discard(frame.tool_call_id)
        if self._busy or self._tools:
            self._quiet.clear()
        else:
            self._quiet.set()

    async def _follow(self) -> None:
        await follow_call_events(self.runtime, self.call, self._deliver, after=self.after)

    async def _deliver(self, event: CallEventLike) -> None:
        self.holding = event.id
        await self._quiet.wait()
        self.holding = None
        words = event.say
        if words and self.speak == "say":
            note = event_note(event, spoken=True)
            await self.push_frame(_note(note, run_llm=False))
            await self.push_frame(TTSSpeakFrame(words, append_to_context=False))
        else:
            note = event_note(event)
            await self.push_frame(_note(note, run_llm=bool(words)))
        self.delivered.append(event.id)


def _note(text: str, *, run_llm: bool) -> LLMMessagesAppendFrame:
    return LLMMessagesAppendFrame(
        messages=[{"role": "developer", "content": text}], run_llm=run_llm
    )
