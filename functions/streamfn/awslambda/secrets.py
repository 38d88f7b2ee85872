"""Provider keys from SSM Parameter Store or Secrets Manager, read once at init.

The template puts only the *names* of the parameters in the environment:
`<VARIABLE>_SSM_PARAMETER` (a SecureString, decrypted) or `<VARIABLE>_SECRET_ARN` (a secret whose
value is the key, or a JSON object with the key under `<VARIABLE>`). Before the app is built,
each is read and `<VARIABLE>` set in this process's environment, where the settings find it as
if it had been set directly. Nothing here knows which variables exist: any name works
(`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`, a compatible provider's `api_key_env`, ...).

Read with boto3's clients of its default session, the session the DynamoDB stores make theirs in
next: a session's first client loads botocore's endpoint and partition data, some 50 ms of a
cold start, which Powertools' parameters utility (a session of its own) would pay a second
time (measured on the layer's packages).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import MutableMapping
from typing import Any

logger = logging.getLogger(__name__)

SSM_SUFFIX = "_SSM_PARAMETER"
SECRET_SUFFIX = "_SECRET_ARN"


class SecretError(RuntimeError):
    """A named key could not be read. The message names the parameter, never a value."""


def _from_secret(variable: str, value: str) -> str:
    try:
        document = json.loads(value)
    except ValueError:
        return value
    if isinstance(document, dict) and isinstance(document.get(variable), str):
        return str(document[variable])
    return value


def load_secrets(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Set every variable named by a `*_SSM_PARAMETER` or `*_SECRET_ARN` variable; the names set."""
    env = os.environ if environ is None else environ
    wanted = [
        (name.removesuffix(suffix), suffix, source)
        for name, source in list(env.items())
        for suffix in (SSM_SUFFIX, SECRET_SUFFIX)
        if name.endswith(suffix) and source
    ]
    if not wanted:
        return []
    import boto3

    clients: dict[str, Any] = {}  # one per service, made when first needed

    def client(service: str) -> Any:
        if service not in clients:
            clients[service] = boto3.client(service)  # type: ignore[call-overload]
        return clients[service]

    loaded = []
    for variable, suffix, source in wanted:
        try:
            if suffix == SSM_SUFFIX:
                answer = client("ssm").get_parameter(Name=source, WithDecryption=True)
                value = str(answer["Parameter"].get("Value") or "")
            else:
                answer = client("secretsmanager").get_secret_value(SecretId=source)
                text = answer.get("SecretString")
                if text is None:  # a binary secret: the key as UTF-8 bytes
                    text = bytes(answer.get("SecretBinary") or b"").decode()
                value = _from_secret(variable, text)
        except Exception as exc:
            # AWS's error says what went wrong (not found, access denied); it holds no value.
            raise SecretError(f"cannot read {variable} from {source}: {exc}") from exc
        if not value:
            raise SecretError(f"{source} is empty; it should hold {variable}")
        env[variable] = value
        loaded.append(variable)
        logger.info("%s read from %s", variable, source)
    return loaded
