"""Running the app in AWS Lambda: a streaming Runtime API loop, and a buffered Mangum handler.

This package is an adapter: it carries any ASGI app and knows nothing of providers or SSE.
"""

from __future__ import annotations
