"""One gateway replica in its own process, for multi-process tests: a ToolRuntime over the
config file given as argv[1] (its `state:` is a shared Redis), driven by JSON lines on stdin.

Each command line is {"tool", "args", "call_ids": [...], "at": wall-clock start or null};
the replica runs one tool call per call id, all at once, and answers one JSON line with the
results' dicts. "quit" ends it. Keys go under $PATCHBAY_KEY_PREFIX so tests do not collide.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from patchbay import CallContext, ToolRuntime
from patchbay.spec import load_config_text
from patchbay.state import open_store

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "billing"


async def run(rt: ToolRuntime, command: dict[str, Any]) -> list[dict[str, Any]]:
    at = command.get("at")
    if at is not None:
        await asyncio.sleep(max(0.0, at - time.time()))
    results = await asyncio.gather(
        *(
            rt.call_tool(command["tool"], command["args"], CallContext(id=call_id))
            for call_id in command["call_ids"]
        )
    )
    return [r.to_dict() for r in results]


async def main(text: str) -> None:
    config = load_config_text(text, base_dir=EXAMPLE_DIR)
    store = open_store(config.state, key_prefix=os.environ["PATCHBAY_KEY_PREFIX"])
    async with ToolRuntime(config, sinks=[], store=store) as rt:
        print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line or line.strip() == "quit":
                break
            print(json.dumps(await run(rt, json.loads(line))), flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]).read_text()))
