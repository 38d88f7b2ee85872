"""`make bench`'s side-by-side figures for the goals that compare two targets by a fraction of a
millisecond: the Messages and Responses routes against `/v1/chat/completions` (issue #21: within
10% in tokens/s and in the time to first token added over the upstream).

Measured target after target, minutes apart, those figures moved by more than the goal itself
on this shared machine (one run: chat completions' added time to first token 2.45 ms, the same
app's native route 4.06 ms). Here the servers run at once, each as its own target runs it, and
the samples go round them in turn, the order turned each round, so that whatever slows the
machine slows every target alike: the upstream read directly, then each route, one stream at a
time (`fast-1`, 300 rounds), and the full-speed stream (`fast-N`, 5 rounds). `goals` reads these
figures in place of the targets' own when they are there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from bench import load
from bench.measures import FAST_TOKENS, QUICK, Figures, Target, say

ROUNDS = 50 if QUICK else 300
RATE_ROUNDS = 3 if QUICK else 5


async def measure(
    figures: Figures,
    upstream_port: int,
    targets: list[Target],
    start: Callable[[str], contextlib.AbstractContextManager[int]],
) -> None:
    """`targets` (ports unset), each started by `start(name)`, against the upstream alone."""
    say(f"side by side: {', '.join(t.name for t in targets)}")
    with contextlib.ExitStack() as stack:
        ready = [
            Target(t.name, t.label, [stack.enter_context(start(t.name))], t.path, t.body, t.until)
            for t in targets
        ]
        direct = Target("upstream", "", [upstream_port], "/v1/chat/completions", {"stream": True})
        everyone = [direct, *ready]
        for t in everyone:  # first use: imports, pools, connections
            await load.one(t.port, t.raw("fast-10"), until=t.until)
        first: dict[str, list[float]] = {t.name: [] for t in everyone}
        for i in range(ROUNDS):
            for t in everyone[i % len(everyone) :] + everyone[: i % len(everyone)]:
                r = await load.one(t.port, t.raw("fast-1"), until=t.until)
                assert r.exact(1), (t.name, r.status, r.error)
                first[t.name].append(r.ttft or 0)
        rates: dict[str, list[float]] = {t.name: [] for t in ready}
        for i in range(RATE_ROUNDS):
            for t in ready[i % len(ready) :] + ready[: i % len(ready)]:
                raw = t.raw(f"fast-{FAST_TOKENS}")
                r = await load.one(t.port, raw, until=t.until)
                assert r.exact(FAST_TOKENS), (t.name, r.status, r.error, len(r.tokens))
                rates[t.name].append(FAST_TOKENS / (r.times[-1] - r.sent_at))
    for name, samples in first.items():
        paired: dict[str, Any] = {"ttft_p50_ms": load.median(samples) * 1000}
        if name in rates:
            paired["tokens_per_s"] = load.median(rates[name])
        figures.set(name, "paired", paired)
        say(f"  {name} side by side: {paired}")


def of(rows: dict[str, Any], name: str) -> dict[str, Any]:
    """A target's figures, its side-by-side ones in place of its own where it has them."""
    row = rows.get(name, {})
    return {**row, **row.get("paired", {})}
