"""The demo's player: the example API on loopback, the scripted call, every step on screen."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console
from rich.markup import escape

from patchbay.cli._app import fail
from patchbay.cli._play_async import (
    WebhookDoor,
    new_webhook_secret,
    play_second_scene,
    second_scene,
    show_event,
)
from patchbay.observe import Event
from patchbay.runtime import ToolResult, ToolRuntime
from patchbay.spec import CallContext, load_config
from patchbay.testing import BillingServer

console = Console(highlight=False, soft_wrap=True)


class _ShowAttempts:
    """Prints each upstream request as it completes (method, path, status, latency, retries)."""

    def emit(self, event: Event) -> None:
        if event.kind == "attempt":
            status = event.status if event.status is not None else event.outcome
            console.print(
                f"      [dim]→ {event.method} {event.path}  {status}  "
                f"{event.latency_ms:.1f} ms  attempt {event.attempt}[/dim]"
            )
        elif event.kind == "policy" and event.outcome == "retry":
            console.print(f"      [yellow]↻ retrying after {event.extra.get('wait_s')} s[/yellow]")


def _load_script(folder: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "patchbay_demo_script", folder / "conversation.py"
    )
    if spec is None or spec.loader is None:
        fail(f"no conversation.py in {folder}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses in the script look their module up
    spec.loader.exec_module(module)
    return module


def _say(who: str, text: str) -> None:
    style = "bold cyan" if who == "agent" else "bold green"
    console.print(f"[{style}]{who.capitalize():>6}:[/{style}] {text}")


def _show_call(name: str, args: dict[str, Any]) -> None:
    shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in args.items())
    console.print(f"  [magenta]{escape(f'[LLM calls {name}({shown})]')}[/magenta]")


def _show_result(result: ToolResult) -> None:
    body = result.result if result.ok else result.to_dict()["error"]
    meta = result.meta
    head = f"[{'ok' if result.ok else 'failed'} in {meta.get('latency_ms')} ms, "
    head += f"{meta.get('attempts')} request(s)]"
    console.print(f"  [magenta]{escape(head)} {escape(json.dumps(body))}[/magenta]")


async def run_demo(folder: Path) -> int:
    """Start the example API, play the scripted call, print every step; 0 if it went right."""
    script = _load_script(folder)
    # The second scene's payment clears later: the API signs its webhook with this secret.
    scene_two, secret = second_scene(folder, script), new_webhook_secret()
    async with (
        WebhookDoor(console.print) as door,
        BillingServer(
            webhook_url=door.endpoint("billing") if scene_two else None,
            webhook_secret=secret if scene_two else None,
        ) as server,
    ):
        env = {**os.environ, "BILLING_URL": server.url, "BILLING_API_KEY": server.api_key}
        os.environ["BILLING_API_KEY"] = server.api_key  # the env: secret provider reads it
        config = load_config(folder / "patchbay.yaml", env=env)
        console.print(f"[dim]billing API on {server.url}; {len(config.tools)} tools loaded[/dim]\n")
        async with ToolRuntime(config, sinks=[_ShowAttempts()]) as runtime:
            call = CallContext(id="demo-call-1", caller="+15551234567")
            transcript = await script.play(
                runtime, call, say=_say, show_call=_show_call, show_result=_show_result
            )
        ledger = await server.ledger()
        charges = ledger.get("charges_by_invoice", {})
        console.print(f"\n[dim]billing ledger: charges by invoice {charges}[/dim]")
        ok = all(r.ok for r in transcript.results) and len(transcript.results) == 2
        if scene_two:
            console.print("\n[bold]A second call: the payment clears while the caller holds[/bold]")
            heard = await play_second_scene(
                folder, script, server, door, secret,
                sinks=[_ShowAttempts()], say=_say, show_call=_show_call,
                show_result=_show_result, show_event=show_event(console.print),
            )  # fmt: skip
            ok = ok and heard
            charges = (await server.ledger()).get("charges_by_invoice", {})
            console.print(f"\n[dim]billing ledger: charges by invoice {charges}[/dim]")
    return 0 if ok else 1
