"""The collector's regime (streamfn.memory), in a process of its own: it is process-wide."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FUNCTIONS = Path(__file__).parents[2] / "functions"

SCRIPT = """
import gc, sys, weakref
sys.path.insert(0, sys.argv[1])
from streamfn import memory

memory.freeze_start_up(growth=50_000, check_every_s=0)

class Node:
    pass

# What survives a full collection is frozen: the next one does not walk it.
kept = [Node() for _ in range(20_000)]
frozen = gc.get_freeze_count()
gc.collect()
assert gc.get_freeze_count() >= frozen + 20_000, (frozen, gc.get_freeze_count())
assert not gc.is_tracked(kept) or all(o is not kept for o in gc.get_objects())

# Frozen, an object is still freed by reference counting.
plain = Node()
gc.collect()
gone = weakref.ref(plain)
del plain
assert gone() is None

# A cycle that becomes unreachable once frozen waits for a reclaim...
cycle = Node()
cycle.me = cycle
dead = weakref.ref(cycle)
gc.collect()
del cycle
gc.collect()
assert dead() is not None, "a frozen cycle was walked before a reclaim"
# ...which comes once the frozen objects have doubled and grown by `growth`: the collection
# that sees it unfreezes them all, and the next walks everything.
grown = [Node() for _ in range(max(gc.get_freeze_count(), 50_000) + 1_000)]
gc.collect()
gc.collect()
assert dead() is None, "the frozen cycle outlived the reclaim"
assert gc.get_freeze_count() >= len(grown), "after the reclaim, what lives is frozen again"
print("ok")
"""


def test_survivors_are_frozen_and_frozen_cycles_reclaimed_once_they_have_grown() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(FUNCTIONS)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
