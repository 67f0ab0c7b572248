"""The words an error gets: the API's own refusals are not outages, and never "failed"."""

from __future__ import annotations

from patchbay.http._types import Request, Response, ResponseTooLarge

from .support import Answer, FakeTransport, make_config, make_runtime, reset, status

PAY = {"invoice_id": "inv_1", "amount": 100}
FAILED = "I couldn't take the payment."


async def test_refusals_speak_their_own_words_not_the_outage_line() -> None:
    for code, name in ((409, "conflict"), (422, "client_error"), (404, "not_found")):
        async with make_runtime(make_config(), FakeTransport(status(code))) as rt:
            plain = await rt.call_tool("pay", PAY, "c-1")
        worded_config = make_config(tools={"pay": {"say": {name: f"words for {name}"}}})
        async with make_runtime(worded_config, FakeTransport(status(code))) as rt:
            worded = await rt.call_tool("pay", PAY, "c-1")
        assert plain.error is not None and plain.error.code == name
        assert plain.say is None, f"{name} is not an outage: {plain.say!r}"
        assert worded.say == f"words for {name}"


async def test_a_reset_after_sending_speaks_pending_words() -> None:
    config = make_config(tools={"pay": {"say": {"failed": FAILED, "timeout": "Still going."}}})
    async with make_runtime(config, FakeTransport(reset)) as rt:
        fallback = await rt.call_tool("pay", PAY, "c-1")
    config = make_config(tools={"pay": {"say": {"failed": FAILED, "pending": "Confirming."}}})
    async with make_runtime(config, FakeTransport(reset)) as rt:
        pending = await rt.call_tool("pay", PAY, "c-2")
    assert fallback.error is not None and fallback.error.code == "pending"
    assert fallback.say == "Still going."  # say.pending falls back to say.timeout
    assert pending.say == "Confirming."


def _too_large(status_code: int) -> Answer:
    async def answer(request: Request) -> Response:
        raise ResponseTooLarge("The answer is too large.", status_code=status_code)

    return answer


async def test_a_write_answer_too_large_to_read_is_pending_unless_refused() -> None:
    config = make_config(tools={"pay": {"say": {"failed": FAILED}}})
    async with make_runtime(config, FakeTransport(_too_large(201))) as rt:
        done = await rt.call_tool("pay", PAY, "c-1")
    async with make_runtime(config, FakeTransport(_too_large(422))) as rt:
        refused = await rt.call_tool("pay", PAY, "c-2")
    assert done.error is not None and done.error.code == "pending"
    assert done.say is None, "the payment was made: never the failed words"
    assert refused.error is not None and refused.error.code == "upstream_unavailable"
