"""FaultProxy: every fault kind, as an aiohttp client sees it, in front of a real upstream."""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import pytest

import patchbay.testing
from patchbay.testing import BillingServer, Fault, FaultKind, FaultProxy, ProxyStats

JAMIE = "/customers/cus_8F2kLq"
PAYMENT = {
    "customer_id": "cus_8F2kLq",
    "invoice_id": "inv_1001",
    "amount": 24700,
    "payment_method_id": "pm_card_visa4242",
}


async def status_of(client: aiohttp.ClientSession, path: str = JAMIE) -> int:
    async with client.get(path) as answer:
        await answer.read()
        return answer.status


def test_public_names_are_exactly_all() -> None:
    public = {n for n in vars(patchbay.testing) if not n.startswith("_")}
    assert public - {"annotations"} == set(patchbay.testing.__all__)


async def test_without_faults_everything_is_forwarded(
    client: aiohttp.ClientSession, proxy: FaultProxy, billing: BillingServer
) -> None:
    async with client.get("/customers/search", params={"phone": "+15551234567"}) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "application/json"
        assert (await answer.json())["data"]["customer"]["name"] == "Jamie Patel"
    async with client.get("/customers/cus_nobody") as answer:
        assert (answer.status, (await answer.json())["code"]) == (404, "CS_404")
    async with client.post("/payments", json=PAYMENT, headers={"Idempotency-Key": "k"}) as answer:
        assert answer.status == 201
    assert (await billing.ledger())["requests"] == 3
    stats = proxy.stats()
    assert (stats.total, stats.forwarded, dict(stats.faults)) == (3, 3, {})


async def test_status_fault_with_retry_after_seconds(
    client: aiohttp.ClientSession, proxy: FaultProxy
) -> None:
    proxy.add(Fault("status", status=429, retry_after=2))
    async with client.get(JAMIE) as answer:
        assert answer.status == 429
        assert answer.headers["Retry-After"] == "2"
        assert (await answer.json())["code"] == "FAULT_429"


async def test_status_fault_with_retry_after_as_http_date(
    client: aiohttp.ClientSession, proxy: FaultProxy
) -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    proxy.add(Fault(FaultKind.STATUS, status=503, retry_after=when))
    async with client.get(JAMIE) as answer:
        assert answer.status == 503
        assert parsedate_to_datetime(answer.headers["Retry-After"]) == when
    assert proxy.stats().forwarded == 0


async def test_hang_ends_in_a_client_timeout_and_leaks_no_task(
    client: aiohttp.ClientSession, proxy: FaultProxy
) -> None:
    proxy.add(Fault("hang"))
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        async with client.get(JAMIE, timeout=aiohttp.ClientTimeout(total=0.3)):
            pass
    assert 0.25 <= time.monotonic() - started < 2
    # The client hung up, so the proxy's handler must have been cancelled, not left waiting.
    for _ in range(50):
        if asyncio.all_tasks() == {asyncio.current_task()}:
            break
        await asyncio.sleep(0.02)
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_stopping_the_proxy_releases_a_hanging_request(billing: BillingServer) -> None:
    proxy = await FaultProxy(billing.url).start()
    proxy.add(Fault("hang"))
    async with aiohttp.ClientSession(headers=billing.headers) as session:
        request = asyncio.create_task(session.get(proxy.url + JAMIE))
        for _ in range(200):
            if proxy.stats().total:
                break
            await asyncio.sleep(0.01)
        started = time.monotonic()
        await proxy.stop()
        assert time.monotonic() - started < 2
        with pytest.raises(aiohttp.ClientConnectionError):
            await request


async def test_reset_raises_a_client_connection_error(
    client: aiohttp.ClientSession, proxy: FaultProxy
) -> None:
    proxy.add(Fault("reset", method="POST"))
    with pytest.raises(aiohttp.ClientConnectionError):
        async with client.post("/payments", json=PAYMENT, headers={"Idempotency-Key": "k"}):
            pass
    assert proxy.stats().faults == {"reset": 1}
    assert proxy.stats().forwarded == 0


async def test_aiohttp_silently_retries_a_reset_get_once(
    client: aiohttp.ClientSession, proxy: FaultProxy
) -> None:
    # aiohttp resends an idempotent request once after a reset, so one client call is two
    # requests upstream: retry budgets and breaker counts built on aiohttp must expect this.
    proxy.add(Fault("reset", method="GET", times=1))
    assert await status_of(client) == 200
    assert (proxy.stats().total, proxy.stats().faults) == (2, {"reset": 1})
    proxy.add(Fault("reset", method="GET"))
    with pytest.raises(aiohttp.ClientConnectionError):
        await status_of(client)
    assert proxy.stats().faults == {"reset": 3}


async def test_garbage_is_a_200_that_is_not_json(
    client: aiohttp.ClientSession, proxy: FaultProxy
) -> None:
    proxy.add(Fault("garbage"))
    async with client.get(JAMIE) as answer:
        assert answer.status == 200
        assert answer.content_type == "application/json"
        assert await answer.text() == "<html>oops"
        with pytest.raises(json.JSONDecodeError):
            await answer.json()


async def test_slow_forwards_after_the_delay(
    client: aiohttp.ClientSession, proxy: FaultProxy
) -> None:
    proxy.add(Fault("slow", delay_s=0.3, times=1))
    started = time.monotonic()
    assert await status_of(client) == 200
    assert time.monotonic() - started >= 0.3
    proxy.add(Fault("slow", delay_s=5))
    with pytest.raises(asyncio.TimeoutError):
        async with client.get(JAMIE, timeout=aiohttp.ClientTimeout(total=0.2)):
            pass


async def test_lost_response_charges_upstream_but_the_client_sees_an_error(
    client: aiohttp.ClientSession, proxy: FaultProxy, billing: BillingServer
) -> None:
    proxy.add(Fault("lose_response", method="POST", path_prefix="/payments", times=1))
    headers = {"Idempotency-Key": "call_c-1_invoice_inv_1001"}
    with pytest.raises(aiohttp.ClientConnectionError):
        async with client.post("/payments", json=PAYMENT, headers=headers) as answer:
            await answer.read()
    ledger = await billing.ledger()
    assert ledger["charges_by_invoice"] == {"inv_1001": 1}
    # The retry a careful client makes with the same key gets the original answer.
    async with client.post("/payments", json=PAYMENT, headers=headers) as answer:
        assert answer.status == 201
        assert (await answer.json())["confirmation_number"] == (
            ledger["payments"][0]["confirmation_number"]
        )
    assert (await billing.ledger())["charges_by_invoice"] == {"inv_1001": 1}


async def test_times_counts_down_then_requests_pass(
    client: aiohttp.ClientSession, proxy: FaultProxy
) -> None:
    proxy.add(Fault("status", status=503, times=2))
    assert [await status_of(client) for _ in range(4)] == [503, 503, 200, 200]
    assert proxy.stats().faults == {"status": 2}


async def test_rules_are_consulted_in_order_and_filter_by_method_and_path(
    client: aiohttp.ClientSession, proxy: FaultProxy
) -> None:
    proxy.add(Fault("status", status=500, path_prefix="/invoices", times=1))
    proxy.add(Fault("status", status=502, method="get", path_prefix="/invoices"))
    proxy.add(Fault("status", status=504, method="POST"))
    invoices = "/invoices?customer_id=cus_8F2kLq"
    assert await status_of(client, invoices) == 500
    assert await status_of(client, invoices) == 502
    assert await status_of(client) == 200
    proxy.clear()
    assert await status_of(client, invoices) == 200


async def test_probability_is_repeatable_with_a_seed(billing: BillingServer) -> None:
    async def run() -> list[int]:
        async with (
            FaultProxy(billing.url, seed=1) as proxy,
            aiohttp.ClientSession(base_url=proxy.url, headers=billing.headers) as client,
        ):
            proxy.add(Fault("status", status=503, probability=0.5))
            return [await status_of(client) for _ in range(30)]

    first = await run()
    assert first == await run()
    assert 5 < first.count(503) < 25


async def test_chaos_mixes_kinds_by_probability(
    client: aiohttp.ClientSession, proxy: FaultProxy
) -> None:
    proxy.seed(3)
    proxy.chaos({"status": 0.3, FaultKind.GARBAGE: 0.2, "reset": 0.1}, status=502)
    outcomes: list[Any] = []
    for _ in range(200):
        try:
            async with client.get(JAMIE) as answer:
                outcomes.append((answer.status, (await answer.read())[:6]))
        except aiohttp.ClientConnectionError:
            outcomes.append("reset")
    stats = proxy.stats()
    faults = stats.faults
    assert sum(faults.values()) + stats.forwarded == stats.total
    # aiohttp resends a reset GET once (see above), so the proxy saw a little more than 200.
    assert 200 < stats.total < 240
    assert 45 <= faults["status"] <= 90
    assert 25 <= faults["garbage"] <= 65
    assert 5 <= faults["reset"] <= 40
    assert 0 < outcomes.count("reset") < faults["reset"]
    assert outcomes.count((200, b"<html>")) + outcomes.count((502, b'{"erro')) > 80


def test_chaos_refuses_probabilities_over_one() -> None:
    with pytest.raises(ValueError, match="sum"):
        FaultProxy("http://127.0.0.1:1").chaos({"status": 0.7, "hang": 0.5})


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "explode"},
        {"kind": "status", "probability": 1.5},
        {"kind": "status", "times": -1},
        {"kind": "status", "status": 999},
        {"kind": "slow", "delay_s": -1},
    ],
)
def test_fault_refuses_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Fault(**bad)


async def test_stats_count_requests_per_second(
    client: aiohttp.ClientSession, proxy: FaultProxy
) -> None:
    for _ in range(5):
        await status_of(client)
    await asyncio.sleep(1.05)
    for _ in range(3):
        await status_of(client)
    stats = proxy.stats()
    assert stats.total == 8
    assert stats.per_second == (5, 3)
    assert stats.max_per_second == 5
    assert stats.max_in_window(0.5) == 5
    assert stats.by_path == {f"GET {JAMIE}": 8}
    proxy.reset_stats()
    assert proxy.stats() == ProxyStats(0, 0, {}, {}, ())


async def test_an_unreachable_upstream_is_a_502(billing: BillingServer) -> None:
    async with (
        FaultProxy("http://127.0.0.1:9") as proxy,
        aiohttp.ClientSession() as session,
        session.get(proxy.url + "/anything") as answer,
    ):
        assert answer.status == 502
        assert (await answer.json())["code"] == "PROXY_502"


async def test_query_headers_and_body_are_forwarded_intact(
    client: aiohttp.ClientSession, billing: BillingServer
) -> None:
    # "+" must reach the upstream encoded, or it would turn into a space.
    async with client.get("/customers/search?email=JAMIE.PATEL%40example.com") as answer:
        assert answer.status == 200
    async with client.post(
        "/payments", data=json.dumps(PAYMENT), headers={"Idempotency-Key": "raw"}
    ) as answer:
        assert answer.status == 201
    payments = (await billing.ledger())["payments"]
    assert [(p["idempotency_key"], p["amount"]) for p in payments] == [("raw", 24700)]


def test_url_needs_a_started_proxy() -> None:
    with pytest.raises(RuntimeError):
        _ = FaultProxy("http://127.0.0.1:1").url


# Hostile bodies: what an upstream (or something in front of it) may answer with.


async def test_endless_body_never_ends_and_the_handler_goes_when_the_client_does(
    client: aiohttp.ClientSession, proxy: FaultProxy
) -> None:
    proxy.add(Fault("endless"))
    seen = 0
    async with client.get(JAMIE) as answer:
        assert answer.status == 200
        assert answer.headers["Transfer-Encoding"] == "chunked"
        async for chunk in answer.content.iter_any():
            seen += len(chunk)
            if seen > 8 * 1024 * 1024:
                break
        answer.close()  # the client gives up on the connection
    assert seen > 8 * 1024 * 1024
    for _ in range(100):
        if asyncio.all_tasks() == {asyncio.current_task()}:
            break
        await asyncio.sleep(0.02)
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_stopping_the_proxy_ends_an_endless_body(billing: BillingServer) -> None:
    proxy = await FaultProxy(billing.url).start()
    proxy.add(Fault("endless"))
    async with (
        aiohttp.ClientSession(headers=billing.headers) as session,
        session.get(proxy.url + JAMIE) as answer,
    ):
        await answer.content.readexactly(1024)
        await proxy.stop()
        with pytest.raises(aiohttp.ClientPayloadError):
            await answer.read()


async def test_gzip_bomb_is_small_on_the_wire_and_huge_inflated(
    proxy: FaultProxy, billing: BillingServer
) -> None:
    proxy.add(Fault("gzip_bomb", size=50 * 1024 * 1024))
    async with (
        aiohttp.ClientSession(headers=billing.headers, auto_decompress=False) as session,
        session.get(proxy.url + JAMIE) as answer,
    ):
        assert answer.status == 200
        assert answer.headers["Content-Encoding"] == "gzip"
        packed = await answer.read()
    assert len(packed) < 200 * 1024
    inflate = zlib.decompressobj(31)
    size, head = 0, b""
    data = packed
    while data:
        out = inflate.decompress(data, 1 << 20)  # bounded steps: inflating it whole is the bomb
        head = head or out[:9]
        size += len(out)
        data = inflate.unconsumed_tail
    assert head == b'{"data":"'
    assert size == 50 * 1024 * 1024 + len('{"data":""}')
    # The upstream was asked all the same: only its answer was swapped for the bomb.
    assert proxy.stats().forwarded == 1
    assert (await billing.ledger())["requests"] == 1


async def test_gzip_bomb_default_size_is_far_past_any_answer_limit(
    proxy: FaultProxy, billing: BillingServer
) -> None:
    proxy.add(Fault("gzip_bomb"))
    async with (
        aiohttp.ClientSession(headers=billing.headers, auto_decompress=False) as session,
        session.get(proxy.url + JAMIE) as answer,
    ):
        packed = await answer.read()
    inflate = zlib.decompressobj(31)
    inflated = len(inflate.decompress(packed, 300 * 1024 * 1024))
    assert inflated > 200 * 1024 * 1024


async def test_short_length_sends_the_whole_answer_under_a_smaller_length(
    proxy: FaultProxy, billing: BillingServer
) -> None:
    proxy.add(Fault("short_length"))
    reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    key = billing.headers["X-API-Key"]
    writer.write(f"GET {JAMIE} HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\n\r\n".encode())
    raw = await reader.read()  # until the proxy closes: everything it sent
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    declared = int(
        dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])[b"Content-Length"]
    )
    assert json.loads(body)["data"]["customer"]["name"] == "Jamie Patel"
    assert declared == len(body) // 2
    assert (await billing.ledger())["requests"] == 1  # the upstream did answer


async def test_short_length_never_gives_a_client_the_whole_answer(
    client: aiohttp.ClientSession, proxy: FaultProxy
) -> None:
    proxy.add(Fault("short_length"))
    try:
        async with client.get(JAMIE) as answer:
            body = await answer.read()
    except aiohttp.ClientError:
        return  # a strict client notices the bytes past the length
    assert answer.status == 200 and len(body) == answer.content_length
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


async def test_long_length_closes_before_the_promised_bytes(
    client: aiohttp.ClientSession, proxy: FaultProxy, billing: BillingServer
) -> None:
    proxy.add(Fault("long_length", method="POST"))
    with pytest.raises(aiohttp.ClientPayloadError):
        async with client.post(
            "/payments", json=PAYMENT, headers={"Idempotency-Key": "long-1"}
        ) as answer:
            assert answer.status == 201  # the upstream's own status
            await answer.read()
    assert proxy.stats().faults == {"long_length": 1}
    # The payment went through: only its answer was broken on the way back.
    assert (await billing.ledger())["charges_by_invoice"] == {"inv_1001": 1}


async def test_hostile_bodies_keep_the_upstream_status(
    client: aiohttp.ClientSession, proxy: FaultProxy
) -> None:
    proxy.add(Fault("deep_json", size=2, times=1))
    async with client.get("/customers/cus_nobody") as answer:
        assert (answer.status, await answer.read()) == (404, b"[[]]")


async def test_deep_json_is_nested_past_any_recursion_limit(
    client: aiohttp.ClientSession, proxy: FaultProxy
) -> None:
    proxy.add(Fault("deep_json", times=1))
    async with client.get(JAMIE) as answer:
        assert answer.content_type == "application/json"
        body = await answer.read()
    assert body == b"[" * 200_000 + b"]" * 200_000
    with pytest.raises(RecursionError):
        json.loads(body)
    proxy.add(Fault("deep_json", size=3))
    async with client.get(JAMIE) as answer:
        assert await answer.read() == b"[[[]]]"


async def test_chaos_mixes_hostile_bodies_too(
    client: aiohttp.ClientSession, proxy: FaultProxy
) -> None:
    proxy.seed(5)
    proxy.chaos({"deep_json": 0.5, "gzip_bomb": 0.5})
    for _ in range(10):
        async with client.get(JAMIE, auto_decompress=False) as answer:
            await answer.read()
    assert set(proxy.stats().faults) == {"deep_json", "gzip_bomb"}


def test_fault_refuses_a_size_below_one() -> None:
    with pytest.raises(ValueError, match="size"):
        Fault("deep_json", size=0)
