"""streamfn: stream LLM responses token by token over Server-Sent Events.

One ASGI app (:func:`streamfn.app.create_app`) serves both entrypoints: uvicorn locally and an
AWS Lambda function URL with response streaming.
"""

from __future__ import annotations

__version__ = "0.1.0"
