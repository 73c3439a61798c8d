"""A client of `python -m agent serve` using only the standard library.

    AGENT_TOKEN=... python examples/service_client.py "I spilled the milk" [--url URL]

Starts a task, follows its server-sent events to the end, prints each event's kind and the outcome.
Ctrl-C cancels the task (the arm stops) and prints the outcome the service returns.
"""

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any


def call(url: str, token: str, method: str = "GET", body: dict | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    return urllib.request.urlopen(req)


def events(response: Any) -> Iterator[tuple[str, dict]]:
    """(kind, data) of each server-sent event until the stream ends."""
    kind, data = "message", list[str]()
    for raw in response:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield kind, json.loads("\n".join(data))
            kind, data = "message", []
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("request")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    args = parser.parse_args()
    token = os.environ.get("AGENT_TOKEN", "")
    try:
        task = json.load(call(f"{args.url}/tasks", token, "POST", {"request": args.request}))
    except urllib.error.HTTPError as exc:
        print(f"error {exc.code}: {json.load(exc)['error']}", file=sys.stderr)
        return 2
    try:
        for kind, event in events(call(f"{args.url}/tasks/{task['id']}/events", token)):
            if kind == "finished":
                print("outcome:", event["outcome"]["status"], "-", event["outcome"]["reason"])
                return 0 if event["outcome"]["status"] == "success" else 1
            print(kind, event.get("index", ""))
    except KeyboardInterrupt:
        done = json.load(call(f"{args.url}/tasks/{task['id']}/cancel", token, "POST"))
        print("cancelled:", done["outcome"]["status"] if done["outcome"] else done["state"])
    return 1


if __name__ == "__main__":
    sys.exit(main())
