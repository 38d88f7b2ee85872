"""The one-timer timeout (streamfn/watchdog.py): whose cancellation is its own."""

from __future__ import annotations

import asyncio

from streamfn.watchdog import Watchdog


async def _wait(watchdog: Watchdog, gap: float) -> str:
    watchdog.start(gap)
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        if watchdog.owns_cancellation():
            return "timed out"
        raise
    finally:
        watchdog.done()
    return "done"


async def test_a_wait_past_its_gap_times_out_and_the_task_goes_on() -> None:
    watchdog = Watchdog(asyncio.get_running_loop())
    assert await _wait(watchdog, 0.05) == "timed out"
    watchdog.stop()


async def test_a_cancellation_after_it_fired_for_another_task_is_not_its_own() -> None:
    """It fired on one task (a keepalive's write); the task cancelled later (the server
    stopping) must see that cancellation, not a timeout."""
    watchdog = Watchdog(asyncio.get_running_loop())
    assert await asyncio.create_task(_wait(watchdog, 0.05)) == "timed out"
    other = asyncio.create_task(_wait(watchdog, 10))
    await asyncio.sleep(0.05)
    other.cancel()
    try:
        await other
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("the server's cancellation was taken for a timeout")
    watchdog.stop()
