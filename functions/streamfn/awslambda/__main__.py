"""`python -m streamfn.awslambda`: the streaming runtime loop (see functions/bootstrap)."""

from __future__ import annotations

from streamfn.awslambda.runtime import main

main()
