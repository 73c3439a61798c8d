"""Embed the runtime in your own async service: one request, every event as a JSON line.

    python examples/embed.py "I spilled the milk" [KEY=VALUE ...]   # config overrides, e.g.
    python examples/embed.py "I am thirsty" sim.seed=3 runtime.max_steps=50

Runs under asyncio or trio (anyio); `anyio.run(main, backend="trio")` switches.
"""

import sys

import anyio

from agent import Finished, Runtime, load_config


async def main(request: str, overrides: list[str]) -> int:
    config = load_config("sim", overrides)
    async with Runtime(config) as runtime:  # opens the world and the models once
        async for event in runtime.execute(request):
            print(event.to_json(), flush=True)
            if isinstance(event, Finished):
                return 0 if event.outcome.status == "success" else 1
    return 1


if __name__ == "__main__":
    request = sys.argv[1] if len(sys.argv) > 1 else "I spilled the milk"
    sys.exit(anyio.run(main, request, sys.argv[2:]))
