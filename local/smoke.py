"""`make smoke URL=... [KEY=...] [ORIGIN=...]`: a short end-to-end check of a deployed streamfn.

It streams one answer and checks that it arrives progressively and framed as streamfn frames
events, that a stream whose connection dropped resumes where it broke off, that a stop ends a
stream on the server (as the chat page's Stop button asks), that a bad request gets a clear
4xx, that the URL answers a browser from ORIGIN with the CORS headers it needs
(streamfn.origins.CORS), and, given a KEY, that a call without it is refused. It prints a
pass/fail table and exits non-zero if anything failed. Nothing here is specific to AWS: it
works against `make run`, `make run-lambda` and a deployed function URL alike.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from httpx_sse import EventSource

from streamfn.origins import CORS

PROMPT = "Count from 1 to 20, one number per line, nothing else."
# Long enough that a stop sent after its third token comes well before its end: a few seconds
# from a fast model, and as long from the echo provider, which streams the prompt back.
LONG = "Repeat these numbers, one per line, nothing else: " + " ".join(map(str, range(1, 301)))


@dataclass
class Check:
    name: str
    passed: bool | None  # None: not run (why is in `detail`)
    detail: str


def _headers(key: str | None, origin: str | None = None) -> dict[str, str]:
    headers = {"accept": "text/event-stream"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    if origin:
        headers["origin"] = origin
    return headers


def stream_check(client: httpx.Client, url: str, key: str | None) -> list[Check]:
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 200}
    reads: list[float] = []
    events = []
    started = time.monotonic()
    with client.stream("POST", f"{url}/chat/stream", json=body, headers=_headers(key)) as response:
        if response.status_code != 200:
            detail = f"{response.status_code}: {response.read()[:200]!r}"
            return [Check("a streamed answer", False, detail)]
        source = EventSource(response)
        for event in source.iter_sse():
            reads.append(time.monotonic() - started)
            events.append(event)
    names = [e.event for e in events]
    tokens = [e for e in events if e.event == "token"]
    text = "".join(e.data for e in tokens)
    last = names[-1] if names else "nothing"
    checks = [
        Check(
            "a streamed answer",
            bool(tokens) and last == "done",
            f"{len(tokens)} tokens, {len(text)} characters, ended with {last}",
        )
    ]
    spread = reads[-1] - reads[0] if reads else 0
    first = reads[0] if reads else 0
    checks.append(
        Check(
            "arriving progressively",
            len(tokens) > 1 and spread > 0.05,
            f"first event after {first * 1000:.0f} ms, the last {spread * 1000:.0f} ms later",
        )
    )
    ids = [e.id for e in events]
    stream = ids[0].rpartition(":")[0] if ids else ""
    framed = (
        bool(stream)
        and ids == [f"{stream}:{n}" for n in range(1, len(events) + 1)]
        and events[0].retry is not None
        and names[-2:] == ["usage", "done"]
    )
    checks.append(
        Check(
            "event framing",
            framed,
            "ids <stream>:1..n, a retry hint first, usage then done last"
            if framed
            else f"ids {ids[:3]}..., events {names[:3]}...{names[-2:]}",
        )
    )
    return checks


def resume_check(client: httpx.Client, url: str, key: str | None) -> Check:
    """A stream whose connection drops after three events, resumed with Last-Event-ID: the
    rest arrives, numbered on from there, to its end. In AWS the resume is another invocation
    reading the stream log (the StreamsTable)."""
    name = "resume after a dropped connection"
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 200}
    seen = []
    with client.stream("POST", f"{url}/chat/stream", json=body, headers=_headers(key)) as response:
        if response.status_code != 200:
            return Check(name, False, f"the stream got {response.status_code}")
        id = response.headers.get("x-stream-id", "")
        for event in EventSource(response).iter_sse():
            seen.append(event)
            if len(seen) == 3:
                break
    if len(seen) < 3:
        return Check(name, False, f"the stream ended after {len(seen)} events")
    deadline = time.monotonic() + 5  # its head reaches the log a tenth of a second in
    while True:
        headers = {**_headers(key), "last-event-id": seen[-1].id}
        with client.stream("GET", f"{url}/chat/stream/{id}", headers=headers) as response:
            status = response.status_code
            rest = list(EventSource(response).iter_sse()) if status == 200 else []
            detail = response.read()[:200].decode(errors="replace") if status != 200 else ""
        if status != 404 or _no_log(detail) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if status != 200:
        return Check(name, False, f"GET /chat/stream/{{id}} answered {status} {detail}")
    ids = [e.id for e in seen + rest]
    whole = ids == [f"{id}:{n}" for n in range(1, len(ids) + 1)]
    ended = bool(rest) and rest[-1].event == "done"
    return Check(
        name,
        whole and ended,
        f"{len(rest)} more events after event 3, ids continuous, ended with done"
        if whole and ended
        else f"ids {ids[:2]}...{ids[-2:]}, last event {rest[-1].event if rest else None}",
    )


def _stop(client: httpx.Client, url: str, key: str | None, id: str) -> httpx.Response:
    deadline = time.monotonic() + 5  # the stream's head reaches the log a tenth of a second in
    while True:
        response = client.post(f"{url}/chat/stream/{id}/stop", headers=_headers(key))
        if response.status_code != 404 or _no_log(response.text) or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def _no_log(answer: str) -> bool:
    """Whether a 404 says the server keeps no stream log (no use asking again), rather than
    that the stream's head is not in it yet."""
    return "cannot be resumed here" in answer


def stop_check(client: httpx.Client, url: str, key: str | None) -> Check:
    """What the chat page's Stop does: POST /chat/stream/{id}/stop while the stream is read.
    The generation stops on the server, and the stream ends with a `stopped` error event long
    before its last token. In AWS the stop is another invocation, which marks the stream in the
    stream log; the producing invocation sees it at its next heartbeat."""
    name = "a stop ends the stream on the server"
    body = {"messages": [{"role": "user", "content": LONG}], "max_tokens": 1200}
    tokens, last, asked = 0, None, None
    with client.stream("POST", f"{url}/chat/stream", json=body, headers=_headers(key)) as response:
        if response.status_code != 200:
            return Check(name, False, f"the stream got {response.status_code}")
        id = response.headers.get("x-stream-id", "")
        for event in EventSource(response).iter_sse():
            last = event
            tokens += event.event == "token"
            if tokens == 3 and asked is None:
                stopped = _stop(client, url, key, id)
                if stopped.status_code != 202:
                    detail = stopped.read()[:200].decode(errors="replace")
                    return Check(name, False, f"the stop got {stopped.status_code} {detail}")
                asked = time.monotonic()
    if last is None or asked is None:
        return Check(name, False, f"the stream ended after {tokens} tokens, before the stop")
    after = time.monotonic() - asked
    if last.event == "error" and '"stopped"' in last.data:
        detail = f"ended with a stopped error {after:.1f} s after the stop, {tokens} tokens in"
        return Check(name, True, detail)
    detail = f"ran on {after:.1f} s after the stop, {tokens} tokens, to {last.event} {last.data}"
    return Check(name, False, detail[:120])


def error_check(client: httpx.Client, url: str, key: str | None) -> Check:
    response = client.post(
        f"{url}/chat/stream",
        json={"provider": "no-such-provider", "messages": [{"role": "user", "content": "x"}]},
        headers=_headers(key),
    )
    try:
        error = response.json().get("error", {})
    except ValueError:
        error = {}
    ok = response.status_code == 400 and bool(error.get("message"))
    return Check(
        "a clear error for a bad request",
        ok,
        f"{response.status_code} {error.get('type', '')}: {str(error.get('message', ''))[:60]}",
    )


def cors_check(client: httpx.Client, url: str, key: str | None, origin: str | None) -> Check:
    if not origin:
        return Check("CORS for a browser origin", None, "not checked: give ORIGIN=https://...")
    # What streamfn's clients send and read (streamfn.origins.CORS): a key as x-api-key, a
    # resume's last-event-id, and the stream's id to resume or stop it.
    preflight = client.options(
        f"{url}/chat/stream",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": ",".join(CORS.allow_headers),
        },
    )
    allowed = preflight.headers.get("access-control-allow-origin")
    answered = _names(preflight.headers.get("access-control-allow-headers", ""))
    refused = [h for h in CORS.allow_headers if h not in answered and "*" not in answered]
    response = client.post(
        f"{url}/chat/stream",
        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
        headers=_headers(key, origin),
    )
    exposed = _names(response.headers.get("access-control-expose-headers", ""))
    hidden = [h for h in CORS.expose_headers if h not in exposed]
    ok = allowed in (origin, "*") and not refused and not hidden
    return Check(
        "CORS for a browser origin",
        ok,
        f"preflight {preflight.status_code}, allow-origin {allowed!r}, "
        + (f"not allowed: {', '.join(refused)}; " if refused else "")
        + (f"not exposed: {', '.join(hidden)}" if hidden else "X-Request-Id exposed"),
    )


def _names(header: str) -> set[str]:
    return {name.strip().lower() for name in header.split(",") if name.strip()}


def auth_check(client: httpx.Client, url: str, key: str | None) -> Check:
    response = client.post(
        f"{url}/chat/stream",
        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
        headers={"accept": "text/event-stream"},
    )
    if not key:
        return Check(
            "a call without a key is refused",
            None,
            f"not checked: give KEY=... (without one the URL answered {response.status_code})",
        )
    return Check(
        "a call without a key is refused",
        response.status_code == 401,
        f"{response.status_code} without a key",
    )


def run(url: str, key: str | None, origin: str | None) -> list[Check]:
    url = url.rstrip("/")
    with httpx.Client(timeout=httpx.Timeout(60, connect=10)) as client:
        checks: list[Check] = []
        steps: list[Callable[[], list[Check]]] = [
            lambda: stream_check(client, url, key),
            lambda: [resume_check(client, url, key)],
            lambda: [stop_check(client, url, key)],
            lambda: [error_check(client, url, key)],
            lambda: [cors_check(client, url, key, origin)],
            lambda: [auth_check(client, url, key)],
        ]
        for step in steps:
            try:
                checks += step()
            except httpx.HTTPError as exc:
                checks.append(Check("reaching the URL", False, f"{type(exc).__name__}: {exc}"))
        return checks


def table(checks: list[Check]) -> str:
    mark = {True: "pass", False: "FAIL", None: "skip"}
    width = max(len(c.name) for c in checks)
    return "".join(f"{mark[c.passed]:4}  {c.name:<{width}}  {c.detail}\n" for c in checks)


def main() -> None:
    parser = argparse.ArgumentParser(prog="smoke", description=__doc__)
    parser.add_argument("url", help="the deployed URL (the stack's FunctionUrl output)")
    parser.add_argument("--origin", default=None, help="a browser origin to check CORS for")
    args = parser.parse_args()
    key = os.environ.get("STREAMFN_SMOKE_KEY") or None  # not on the command line: ps shows it
    checks = run(args.url, key, args.origin)
    sys.stdout.write(table(checks))
    failed = [c for c in checks if c.passed is False]
    sys.stdout.write(f"{'FAILED' if failed else 'passed'}: {args.url}\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
