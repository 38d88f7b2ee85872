"""The deployed stack's state on loopback, for `make run-lambda` (issue #23): template.yaml's
DynamoDB tables on moto's server, and the variables the template gives the function, resolved
as a deploy resolves them but naming the local tables.

Nothing about the tables or the variables is written down twice: both are read from the
template, so a table or a setting added there is here too. A variable this cannot resolve (an
attribute only a deploy knows) is left out, and said so in the log.

The function, and `streamfn keys` / `streamfn usage` run by hand, reach the tables through
AWS's own service-specific endpoint variable, `AWS_ENDPOINT_URL_DYNAMODB` (AWS SDKs and Tools
reference guide, "Service-specific endpoints"), so that no other service (SSM, Bedrock) is sent
to moto, with made-up credentials and a region, never the user's own: nothing here can reach
AWS. The tables live in memory, as long as the stack runs.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from local.url_cors import TEMPLATE, UrlCors, load_template

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient

    from local.moto_server import MotoServer

logger = logging.getLogger("local-stack")

REGION = "us-east-1"
STACK = "streamfn-local"
FUNCTION = "StreamFunction"
TABLE = "AWS::DynamoDB::Table"
# Pseudo parameters, as a stack in a made-up account would see them.
PSEUDO = {
    "AWS::Region": REGION,
    "AWS::StackName": STACK,
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}
# Variables of the template that the emulator stands in for: it runs functions/bootstrap itself.
EMULATED = frozenset({"AWS_LAMBDA_EXEC_WRAPPER"})
# What CreateTable takes of an AWS::DynamoDB::Table's properties, as CloudFormation spells it.
TABLE_PROPERTIES = (
    "AttributeDefinitions",
    "KeySchema",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "BillingMode",
)


class Unresolvable(Exception):
    """A template value only a deploy can know (an attribute, an intrinsic not handled here)."""


class _NoValue:
    """`AWS::NoValue`: the property (here: the variable) is left out."""


NO_VALUE = _NoValue()


def parse_parameters(text: str) -> dict[str, str]:
    """`Name=Value Name2=Value2` (shell quoting allowed), as `sam deploy --parameter-overrides`
    takes them in its short form."""
    parameters: dict[str, str] = {}
    for word in shlex.split(text):
        name, equals, value = word.partition("=")
        if not equals or not name:
            raise ValueError(f"a parameter is Name=Value, not {word!r}")
        parameters[name] = value
    return parameters


def table_name(resource: str) -> str:
    """The local name of the table `resource`: UsageTable is streamfn-usage."""
    return f"streamfn-{resource.removesuffix('Table').lower()}"


class Resolver:
    """Template values as a deploy of `template` with `parameters` resolves them, with `names`
    the physical names of resources (a `Ref` to any other resource is unresolvable)."""

    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, str],
        names: Mapping[str, str],
    ) -> None:
        self.template = template
        self.parameters = dict(parameters)
        self.names = dict(names)
        self._conditions: dict[str, bool] = {}

    def parameter(self, name: str) -> str | list[str]:
        spec = (self.template.get("Parameters") or {})[name]
        value = self.parameters.get(name, spec.get("Default", ""))
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if spec.get("Type") == "CommaDelimitedList":
            return [v.strip() for v in text.split(",")] if text else [""]
        return text

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.value(self.template["Conditions"][name]))
        return self._conditions[name]

    def value(self, node: Any) -> Any:
        if isinstance(node, bool):
            return str(node).lower()
        if isinstance(node, str | int | float):
            return str(node)
        if isinstance(node, list):
            values = [self.value(v) for v in node]
            return [v for v in values if v is not NO_VALUE]
        if not isinstance(node, dict) or len(node) != 1:
            raise Unresolvable(repr(node))
        [(function, argument)] = node.items()
        if function == "Ref":
            if argument == "AWS::NoValue":
                return NO_VALUE
            if argument in PSEUDO:
                return PSEUDO[argument]
            if argument in (self.template.get("Parameters") or {}):
                return self.parameter(argument)
            if argument in self.names:
                return self.names[argument]
            raise Unresolvable(f"!Ref {argument}")
        if function == "Condition":
            return self.condition(argument)
        if function == "Fn::If":
            name, then, otherwise = argument
            return self.value(then if self.condition(name) else otherwise)
        if function == "Fn::Equals":
            left, right = (self.value(a) for a in argument)
            return left == right
        if function == "Fn::Not":
            return not self.value(argument[0])
        if function == "Fn::And":
            return all(self.value(a) for a in argument)
        if function == "Fn::Or":
            return any(self.value(a) for a in argument)
        if function == "Fn::Join":
            separator, values = argument
            return str(separator).join(str(v) for v in self.value(values))
        raise Unresolvable(f"{function} {argument!r}")


def function_environment(
    template: Mapping[str, Any],
    parameters: Mapping[str, str],
    names: Mapping[str, str],
    function: str = FUNCTION,
) -> dict[str, str]:
    """The variables `function` gets from the template (its Globals', then its own), resolved;
    those the emulator stands in for, and those only a deploy knows, left out."""
    globals_ = ((template.get("Globals") or {}).get("Function") or {}).get("Environment") or {}
    properties = template["Resources"][function]["Properties"]
    variables = {
        **(globals_.get("Variables") or {}),
        **((properties.get("Environment") or {}).get("Variables") or {}),
    }
    resolver = Resolver(template, parameters, names)
    env: dict[str, str] = {}
    for name, node in variables.items():
        if name in EMULATED:
            continue
        try:
            value = resolver.value(node)
        except Unresolvable as exc:
            logger.warning("template variable %s is left out: cannot resolve %s locally", name, exc)
            continue
        if value is not NO_VALUE:
            env[name] = str(value)
    return env


def create_table(
    client: DynamoDBClient, resource: str, name: str, template: Path = TEMPLATE
) -> None:
    """The table `resource` of template.yaml, as `name`: its keys, indexes and TTL."""
    properties = load_template(template)["Resources"][resource]["Properties"]
    _create(client, properties, name)


def _create(client: DynamoDBClient, properties: Mapping[str, Any], name: str) -> None:
    definition = {k: properties[k] for k in TABLE_PROPERTIES if k in properties}
    definition.setdefault("BillingMode", "PROVISIONED")
    if definition["BillingMode"] == "PROVISIONED":
        definition["ProvisionedThroughput"] = properties["ProvisionedThroughput"]
    client.create_table(TableName=name, **definition)
    ttl = properties.get("TimeToLiveSpecification") or {}
    if ttl.get("Enabled"):
        client.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
        )


class LocalStack:
    """template.yaml's tables on moto's DynamoDB (server mode, on loopback) and what the
    function and the `streamfn` command need to use them. `start()`, then `stop()`; the tables
    are gone with it."""

    def __init__(
        self,
        *,
        parameters: Mapping[str, str] | None = None,
        template: Path = TEMPLATE,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.parameters = dict(parameters or {})
        self.template_path = template
        self.template = load_template(template)
        for name in sorted(set(self.parameters) - set(self.template.get("Parameters") or {})):
            logger.warning("template.yaml has no parameter %s: ignored", name)
        self.tables = {
            resource: table_name(resource)
            for resource, spec in self.template["Resources"].items()
            if spec.get("Type") == TABLE
        }
        self._host, self._port = host, port
        self._server: MotoServer | None = None
        self.url = ""

    def start(self) -> None:
        """moto's server, then every table of the template on it (a second or two: moto's
        import)."""
        from local.moto_server import MotoServer

        # Werkzeug logs each request at INFO to stderr: one line per DynamoDB call.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = MotoServer(self._host, self._port)
        server.start()
        self._server = server
        self.url = server.url
        client = self.client()
        for resource, name in self.tables.items():
            _create(client, self.template["Resources"][resource]["Properties"], name)

    def client(self) -> DynamoDBClient:
        """A boto3 DynamoDB client on the local tables."""
        import boto3

        client: DynamoDBClient = boto3.client(
            "dynamodb",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        return client

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def aws_env(self) -> dict[str, str | None]:
        """How a process reaches the local tables, and nothing of AWS's (None: unset)."""
        return {
            "AWS_ENDPOINT_URL_DYNAMODB": self.url,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_SESSION_TOKEN": "local",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_PROFILE": None,  # credentials from the environment above, not a profile's
        }

    def function_env(self, function: str = FUNCTION) -> dict[str, str | None]:
        """The environment of `function` as the template gives it (naming the local tables),
        with the way to reach them."""
        return {
            **function_environment(self.template, self.parameters, self.tables, function),
            **self.aws_env,
        }

    @property
    def cli_env(self) -> dict[str, str]:
        """What `streamfn keys` and `streamfn usage` need to use the local tables."""
        env = {k: v for k, v in self.aws_env.items() if v is not None and k != "AWS_SESSION_TOKEN"}
        env["STREAMFN_KEYS_TABLE"] = self.tables["KeysTable"]
        env["STREAMFN_USAGE_TABLE"] = self.tables["UsageTable"]
        return env

    def exports(self) -> str:
        """`export ...` for a shell that runs `streamfn` against the local tables."""
        return "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in self.cli_env.items())

    async def create_key(self, name: str = "local") -> str:
        """A new API key in the local keys table, stored as `streamfn keys create` stores it
        (which, with `exports()`, makes more). In this process: a `streamfn` of its own would
        take seconds to start."""
        import boto3

        from streamfn.auth import keys
        from streamfn.auth.stores import DynamoDBKeyStore

        # The store's client comes from boto3's default session: here the local stack's, as
        # this process reaches no AWS but these tables.
        boto3.setup_default_session(
            region_name=REGION, aws_access_key_id="local", aws_secret_access_key="local"
        )
        store = DynamoDBKeyStore(self.tables["KeysTable"], endpoint_url=self.url)
        key, record = keys.create(name)
        try:
            await store.put(record)
        finally:
            await store.aclose()
        return key


def template_parameters(environ: Mapping[str, str]) -> dict[str, str]:
    """The template parameters `make run-lambda` is given, as a deploy would be: PARAMETERS
    (`Name=Value ...`), and CORS_ALLOWED_ORIGINS and CONCURRENCY, which stand for
    CorsAllowedOrigins and ReservedConcurrency."""
    parameters = parse_parameters(environ.get("PARAMETERS", ""))
    for variable, name in (
        ("CORS_ALLOWED_ORIGINS", "CorsAllowedOrigins"),
        ("CONCURRENCY", "ReservedConcurrency"),
    ):
        if environ.get(variable):
            parameters[name] = environ[variable]
    return parameters


def wants_key(env: Mapping[str, str | None]) -> bool:
    """Whether a function with `env` asks for API keys (STREAMFN_AUTH has api_key)."""
    return "api_key" in {m.strip() for m in (env.get("STREAMFN_AUTH") or "").split(",")}


def banner(stack: LocalStack, url: str, key: str | None, cors: UrlCors | None = None) -> str:
    """What `make run-lambda` prints of the stack: where it is, the key it made, how to make
    more and read the usage records. Its `make smoke` names an origin the URL's `cors` allows,
    so that every check runs."""
    where = os.path.relpath(Path(sys.executable).parent)
    bin = where if not where.startswith("..") else str(Path(sys.executable).parent)
    lines = [
        f"streamfn: template.yaml's tables on a local DynamoDB (moto) at {stack.url}, "
        "in memory: gone when this stops",
    ]
    if key is not None:
        lines += [
            "streamfn: auth is on, as deployed (StreamfnAuth=api_key); a key made for this run:",
            f"  KEY={key}",
            f'  curl -N {url}/chat/stream -H "authorization: Bearer $KEY" '
            "-H 'content-type: application/json' "
            '-d \'{"messages":[{"role":"user","content":"Hello"}]}\'',
            f"  make smoke URL={url} KEY=$KEY{_origin(cors)}",
        ]
    lines += [
        "streamfn: more keys (--rpm N, --concurrency N, --tokens-per-day N) and the usage "
        "records, from another shell:",
        f"  {stack.exports()}",
        f"  {bin}/streamfn keys create --name NAME",
        f"  {bin}/streamfn usage",
    ]
    return "\n".join(lines) + "\n"


def _origin(cors: UrlCors | None) -> str:
    """` ORIGIN=...` for `make smoke`: an origin `cors` allows (any, with `*`)."""
    if cors is None:
        return ""
    listed = [o for o in cors.allow_origins if o != "*"]
    if listed:
        return f" ORIGIN={shlex.quote(listed[0])}"
    return " ORIGIN=https://app.example" if "*" in cors.allow_origins else ""
