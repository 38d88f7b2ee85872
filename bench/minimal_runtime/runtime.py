"""A minimal Runtime API loop with httpx: the baseline streamfn's cold start is compared with.

It takes each invocation and streams a function URL response (the prelude, eight NUL bytes,
then the body), as AWS documents for response streaming from a custom runtime
(https://docs.aws.amazon.com/lambda/latest/dg/runtimes-custom.html#runtimes-custom-response-streaming).
With BODY_BYTES set, the body is that many bytes, in 64 KiB chunks (the emulator's bandwidth
test uses it).
"""

import os
from collections.abc import Iterator

import httpx

BASE = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2018-06-01/runtime"


SIZE = int(os.environ.get("BODY_BYTES", "0"))


def body() -> Iterator[bytes]:
    yield b'{"statusCode":200,"headers":{"content-type":"text/event-stream"}}' + b"\0" * 8
    if not SIZE:
        yield b"event: token\ndata: cold\n\n"
    for start in range(0, SIZE, 65536):
        yield b"x" * min(65536, SIZE - start)


with httpx.Client(timeout=None) as client:
    while True:
        invocation = client.get(f"{BASE}/invocation/next")
        request_id = invocation.headers["lambda-runtime-aws-request-id"]
        client.post(
            f"{BASE}/invocation/{request_id}/response",
            content=body(),
            headers={
                "Lambda-Runtime-Function-Response-Mode": "streaming",
                "Content-Type": "application/vnd.awslambda.http-integration-response",
                "Trailer": "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body",
            },
        )
