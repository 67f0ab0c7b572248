"""Call events spoken by a LiveKit AgentSession (see `patchbay.integrations.livekit`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

from livekit.agents import AgentSession
from livekit.agents.voice.events import EventTypes

from patchbay.integrations._callnote import CallEventLike, event_note, follow_call_events
from patchbay.runtime import ToolRuntime
from patchbay.spec import CallContext

__all__ = ["CallEventSpeaker"]

log = logging.getLogger("patchbay.integrations.livekit")

Speak = Literal["reply", "say"]

# Session events after which the session may have fallen quiet.
_STATE_EVENTS: tuple[EventTypes, ...] = (
    "user_state_changed",
    "agent_state_changed",
    "speech_created",
)
_BUSY_AGENT = ("thinking", "speaking")


class CallEventSpeaker:
    """Follows one call's events and has the session speak them, never over a turn in progress.

    Each event waits until the session is quiet: the current speech (with its tool calls and
    follow-ups) has played out, the caller is not speaking and the agent is not thinking. Then
    ``speak="reply"`` asks the model for a reply with the event's note as instructions
    (``generate_reply``), and ``speak="say"`` speaks the words as they are (``say``, needs a
    TTS). An event without words only joins the agent's chat context. Each spoken event is
    awaited before the next, so events never talk over each other.
    """

    def __init__(
        self,
        session: AgentSession[Any],
        runtime: ToolRuntime,
        call: CallContext | str,
        *,
        speak: Speak = "reply",
        after: str | None = None,
    ) -> None:
        if speak not in ("reply", "say"):
            raise ValueError(f"speak must be 'reply' or 'say', not {speak!r}")
        self.session = session
        self.runtime = runtime
        self.call = runtime.call_context(call)
        self.speak = speak
        self.after = after
        self.delivered: list[str] = []  # ids of the events handed to the session, in order
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> CallEventSpeaker:
        """Start following the call's events; they stop when the session closes."""
        if self._task is None:
            for name in _STATE_EVENTS:
                self.session.on(name, self._poke)
            self.session.on("close", self._on_close)
            self._task = asyncio.create_task(
                follow_call_events(self.runtime, self.call, self._deliver, after=self.after),
                name="patchbay-call-events",
            )
        return self

    async def aclose(self) -> None:
        """Stop following (an event being spoken plays on)."""
        task, self._task = self._task, None
        if task is None:
            return
        for name in _STATE_EVENTS:
            self.session.off(name, self._poke)
        self.session.off("close", self._on_close)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def _poke(self, _event: Any = None) -> None:
        self._changed.set()

    def _on_close(self, _event: Any = None) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _quiet(self) -> None:
        while True:
            self._changed.clear()
            speech = self.session.current_speech
            if speech is not None and not speech.done():
                await speech.wait_for_playout()
                continue
            if self.session.user_state == "speaking" or self.session.agent_state in _BUSY_AGENT:
                await self._changed.wait()
                continue
            return

    async def _deliver(self, event: CallEventLike) -> None:
        await self._quiet()
        words = event.say
        if not words:
            agent = self.session.current_agent
            context = agent.chat_ctx.copy()
            context.add_message(role="developer", content=event_note(event))
            await agent.update_chat_ctx(context)
        elif self.speak == "say":
            await self.session.say(words, add_to_chat_ctx=True)
        else:
            await self.session.generate_reply(instructions=event_note(event))
        self.delivered.append(event.id)
