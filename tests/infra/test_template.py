"""template.yaml, checked offline with AWS's own tools from `.tools/sam` (make test installs
them): `sam validate --lint`, cfn-lint, the SAM transform, and `sam build` with no Docker."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).parents[2]
SAM_BIN = ROOT / ".tools" / "sam" / "bin"
# A region for the transform's pseudo parameters; no AWS call is made.
ENV = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}
EM_AARCH64 = 183  # ELF e_machine of arm64 (System V ABI, AArch64 supplement)

# The SAM transform, as `sam deploy` has CloudFormation run it, printed as JSON: code paths
# become S3 locations as `sam package` makes them, and a stub policy loader stands in for IAM
# (the template names no managed policy that would need looking up).
# CloudFormation runs AWS::LanguageExtensions first, which resolves the Fn::If that chooses the
# function's CapacityProviderConfig (SAM validates that property and cannot take an intrinsic);
# here that one Fn::If is resolved, by the conditions as SAM CLI's own implementation of the
# transform evaluates them, and every other intrinsic is left as the tests below expect it.
TRANSFORM = """
import copy, json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse
class Policies:
    def load(self):
        return {}
template = yaml_parse(open(sys.argv[1]).read())
parameters = json.loads(sys.argv[2])
if "AWS::LanguageExtensions" in template.get("Transform", []):
    from samcli.lib.cfn_language_extensions.api import (
        IntrinsicResolverProcessor, create_default_intrinsic_resolver)
    from samcli.lib.cfn_language_extensions.models import (
        PseudoParameterValues, TemplateProcessingContext)
    from samcli.lib.cfn_language_extensions.processors import TemplateParsingProcessor
    context = TemplateProcessingContext(
        fragment=copy.deepcopy(template), parameter_values=parameters,
        pseudo_parameters=PseudoParameterValues(region="us-east-1", account_id="123456789012"))
    TemplateParsingProcessor().process_template(context)
    IntrinsicResolverProcessor(create_default_intrinsic_resolver(context)).process_template(context)
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        chosen = properties.get("CapacityProviderConfig", {}).get("Fn::If")
        if chosen:
            value = chosen[1] if context.resolved_conditions[chosen[0]] else chosen[2]
            properties["CapacityProviderConfig"] = value
            if value == {"Ref": "AWS::NoValue"}:
                del properties["CapacityProviderConfig"]
for resource in template["Resources"].values():
    for key in ("CodeUri", "ContentUri"):
        if key in resource.get("Properties", {}):
            resource["Properties"][key] = "s3://artifacts/streamfn.zip"
print(json.dumps(transform(template, parameters, Policies())))
"""


@pytest.fixture(scope="module")
def sam() -> Path:
    if not (SAM_BIN / "sam").exists():
        if os.environ.get("CI"):
            pytest.fail("the SAM CLI is missing: `make test` installs it into .tools/sam")
        pytest.skip("the SAM CLI is not installed (make test installs it into .tools/sam)")
    return SAM_BIN


def run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{args[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result


def transformed(sam: Path, **parameters: str) -> dict[str, Any]:
    result = run(sam / "python", "-c", TRANSFORM, ROOT / "template.yaml", json.dumps(parameters))
    return dict(json.loads(result.stdout))


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


def test_sam_validate_lint_and_cfn_lint_pass(sam: Path) -> None:
    assert "is a valid SAM Template" in run(sam / "sam", "validate", "--lint").stdout
    run(sam / "cfn-lint", "template.yaml")


def test_the_function_url_streams_within_the_timeout_bounds(sam: Path) -> None:
    template = transformed(sam)
    [url] = of_type(template, "AWS::Lambda::Url").values()
    assert url["Properties"]["InvokeMode"] == "RESPONSE_STREAM"
    assert url["Properties"]["AuthType"] == {"Ref": "AuthType"}
    # On the alias, where SnapStart applies, not on $LATEST.
    assert url["Properties"]["TargetFunctionArn"] == {"Ref": "StreamFunctionAliaslive"}
    assert url["Properties"]["Cors"]["AllowOrigins"] == {"Ref": "CorsAllowedOrigins"}
    assert "x-request-id" in url["Properties"]["Cors"]["ExposeHeaders"]

    function = template["Resources"]["StreamFunction"]["Properties"]
    assert (function["Runtime"], function["Architectures"]) == ("python3.13", ["arm64"])
    assert function["Environment"]["Variables"]["AWS_LAMBDA_EXEC_WRAPPER"] == "/var/task/bootstrap"
    assert function["Timeout"] == {"Ref": "Timeout"}
    timeout = template["Parameters"]["Timeout"]
    assert (timeout["Default"], timeout["MaxValue"]) == (300, 900)
    assert function["ReservedConcurrentExecutions"] == {"Ref": "ReservedConcurrency"}
    assert function["TracingConfig"] == {"Mode": "Active"}
    assert function["LoggingConfig"]["LogGroup"] == {"Ref": "StreamLogGroup"}
    assert "SnapStart" in function
    log_group = template["Resources"]["StreamLogGroup"]["Properties"]
    assert log_group["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_a_public_url_gets_both_permissions_and_an_iam_url_none(sam: Path) -> None:
    template = transformed(sam)
    permissions = of_type(template, "AWS::Lambda::Permission")
    public = {
        p["Properties"]["Action"]: p
        for p in permissions.values()
        if p["Properties"]["Principal"] == "*"
    }
    # Since October 2025 a public URL needs lambda:InvokeFunctionUrl and lambda:InvokeFunction,
    # granted on the alias the URL points at, and only when AuthType is NONE.
    assert set(public) == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}
    url = public["lambda:InvokeFunctionUrl"]
    invoke = public["lambda:InvokeFunction"]
    assert url["Properties"]["FunctionUrlAuthType"] == "NONE"
    assert invoke["Properties"]["InvokedViaFunctionUrl"] is True
    for permission in (url, invoke):
        assert permission["Condition"] == "PublicUrl"
        assert permission["Properties"]["FunctionName"] == {"Ref": "StreamFunctionAliaslive"}
    assert template["Conditions"]["PublicUrl"] == {"Fn::Equals": [{"Ref": "AuthType"}, "NONE"]}


def _calls_on_the_streams_table() -> set[str]:
    """The DynamoDB operations the modules on the streams table call, by name (`put_item` is
    PutItem)."""
    found: set[str] = set()
    for module in ("resume/dynamodb.py", "stored/dynamodb.py"):
        source = (ROOT / "functions/streamfn" / module).read_text()
        for call in re.findall(r"\.(\w+_item|query|batch_\w+|scan|transact_\w+)\(", source):
            found.add("".join(part.title() for part in call.split("_")))
    assert {"Query", "PutItem"} <= found  # the scan sees the calls
    return found


def test_least_privilege_and_no_keys_in_the_template(sam: Path) -> None:
    template = transformed(sam)
    role = template["Resources"]["StreamFunctionRole"]["Properties"]
    assert {"Ref": "FunctionAccessPolicy"} in role["ManagedPolicyArns"]
    assert len(role["ManagedPolicyArns"]) == 3  # + basic execution (logs) + X-Ray write-only
    assert "Policies" not in role
    statements = template["Resources"]["FunctionAccessPolicy"]["Properties"]["PolicyDocument"][
        "Statement"
    ]
    usage = statements[0]
    assert (usage["Action"], usage["Resource"]) == (
        "dynamodb:PutItem",
        {"Fn::GetAtt": ["UsageTable", "Arn"]},
    )
    keys = statements[1]
    assert (keys["Action"], keys["Resource"]) == (
        "dynamodb:GetItem",  # the function only reads keys; the operator's CLI writes them
        {"Fn::GetAtt": ["KeysTable", "Arn"]},
    )
    claims = statements[2]
    assert claims["Action"] == "dynamodb:PutItem"
    assert claims["Condition"] == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["claim#*", "secret#*"]}
    }
    limits = statements[3]
    assert limits["Action"] == ["dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:GetItem"]
    assert limits["Resource"] == {"Fn::GetAtt": ["LimitsTable", "Arn"]}
    streams = statements[4]
    # Exactly the calls the code on the streams table makes (the stream log, the stored
    # responses beside it): one the policy lacks is denied only in AWS.
    assert set(streams["Action"]) == {f"dynamodb:{a}" for a in _calls_on_the_streams_table()}
    assert streams["Resource"] == {"Fn::GetAtt": ["StreamsTable", "Arn"]}
    ssm = statements[5]["Fn::If"][1]
    assert ssm["Action"] == "ssm:GetParameter"  # one named parameter each, no wildcard
    assert all("*" not in json.dumps(r) for r in ssm["Resource"])
    secrets = statements[6]["Fn::If"][1]
    assert secrets["Action"] == "secretsmanager:GetSecretValue"
    # Only where the keys are is configured; never a key itself.
    variables = template["Resources"]["StreamFunction"]["Properties"]["Environment"]["Variables"]
    assert not {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"} & set(variables)
    assert "OPENAI_API_KEY_SSM_PARAMETER" in variables
    assert not [p for p in template["Parameters"] if p.endswith(("ApiKey", "Key"))]
    table = template["Resources"]["UsageTable"]["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    # `streamfn usage --stack` queries a day at a time: the index it needs, counted fields only.
    [by_day] = table["GlobalSecondaryIndexes"]
    assert by_day["IndexName"] == "by-day"
    assert [k["AttributeName"] for k in by_day["KeySchema"]] == ["day", "started_at"]
    assert by_day["Projection"]["ProjectionType"] == "INCLUDE"
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    # Deployed with streamfn's own auth on, whatever fronts the function.
    assert template["Parameters"]["StreamfnAuth"]["Default"] == "api_key"
    assert variables["STREAMFN_AUTH"] == {"Ref": "StreamfnAuth"}
    assert variables["STREAMFN_KEYS_TABLE"] == {"Ref": "KeysTable"}
    # Limits are counted in a table every environment shares, and apply when configured.
    assert variables["STREAMFN_LIMITS_TABLE"] == {"Ref": "LimitsTable"}
    limits_table = template["Resources"]["LimitsTable"]["Properties"]
    assert limits_table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert limits_table["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert variables["STREAMFN_REQUESTS_PER_MINUTE"]["Fn::If"][0] == "HasRequestsPerMinute"
    keys_table = template["Resources"]["KeysTable"]
    assert keys_table["DeletionPolicy"] == "Retain"
    assert keys_table["Properties"]["KeySchema"] == [{"AttributeName": "key_id", "KeyType": "HASH"}]


def test_optional_rest_api_streams_and_http_api_is_buffered(sam: Path) -> None:
    template = transformed(sam, EnableRestApi="true", EnableBufferedHttpApi="true")
    methods = of_type(template, "AWS::ApiGateway::Method")
    assert len(methods) == 2
    for method in methods.values():
        assert method["Condition"] == "RestApi"
        integration = method["Properties"]["Integration"]
        assert integration["ResponseTransferMode"] == "STREAM"
        assert integration["TimeoutInMillis"] == 900000
        assert "response-streaming-invocations" in json.dumps(integration["Uri"])
    buffered = template["Resources"]["BufferedFunction"]
    assert buffered["Condition"] == "BufferedHttpApi"
    assert buffered["Properties"]["Handler"] == "streamfn.awslambda.buffered.handler"
    assert "AWS_LAMBDA_EXEC_WRAPPER" not in buffered["Properties"]["Environment"]["Variables"]
    [http_api] = of_type(template, "AWS::ApiGatewayV2::Api").values()
    assert http_api["Condition"] == "BufferedHttpApi"


def test_the_layer_lock_satisfies_pyproject() -> None:
    """infra/layer/requirements.txt (make lock-layer) pins every dependency, within its range."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = (ROOT / "infra" / "layer" / "requirements.txt").read_text().splitlines()
    pins = {}
    for line in lines:
        if line and not line.startswith("#"):
            requirement = Requirement(line.split(" --hash")[0])
            [spec] = requirement.specifier
            pins[requirement.name.lower().replace("_", "-")] = spec.version
            assert "--hash=sha256:" in line
    for dependency in map(Requirement, declared):
        name = dependency.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in the layer lock: run `make lock-layer`"
        assert dependency.specifier.contains(pins[name]), f"{name} {pins[name]}: make lock-layer"


def elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", f"{path} is not an ELF file"
    return int.from_bytes(header[18:20], "little")


def assert_lambda_bytecode(root: Path) -> None:
    """Every module under `root` compiled for Lambda's Python 3.13 (its magic number), checked
    by nothing at import (an unchecked hash-based .pyc: PEP 552's flags 0b01), and no bytecode
    of another Python's: what infra/bytecode.mk has the builds write."""
    python313 = subprocess.run(
        [ROOT / "infra" / "python313"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if not python313:
        if os.environ.get("CI"):
            pytest.fail("no Python 3.13 on this machine: infra/python313 found none")
        pytest.skip("no Python 3.13 here (infra/python313): the build writes no bytecode")
    magic = bytes.fromhex(
        run(python313, "-c", "import importlib.util as u; print(u.MAGIC_NUMBER.hex())").stdout
    )
    sources = [p for p in root.rglob("*.py") if "__pycache__" not in p.parts]
    assert len(sources) > 50, root
    for source in sources:
        compiled = source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc"
        header = compiled.read_bytes()[:8]
        assert header[:4] == magic, compiled
        assert int.from_bytes(header[4:8], "little") == 0b01, compiled
    others = [p for p in root.rglob("*.pyc") if not p.name.endswith(".cpython-313.pyc")]
    assert not others, others[:3]


@pytest.mark.timeout(600)
def test_sam_build_without_docker_makes_arm64_cp313_artifacts(sam: Path, tmp_path: Path) -> None:
    build = tmp_path / "build"
    # As `make build` runs it, with infra/samconfig.toml's defaults.
    run(sam / "sam", "build", "--config-file", "infra/samconfig.toml", "--build-dir", build)
    layer = build / "DependenciesLayer" / "python"
    shared = list(layer.rglob("*.so"))
    assert len(shared) >= 3  # pydantic_core, jiter, wrapt at least
    for so in shared:
        assert elf_machine(so) == EM_AARCH64, so
        assert "cpython-313-aarch64" in so.name or ".abi3." in so.name, so
    assert (layer / "pydantic_core").is_dir()
    assert not (layer / "streamfn").exists(), "the app belongs in the function, not the layer"

    function = build / "StreamFunction"
    bootstrap = function / "bootstrap"
    assert bootstrap.stat().st_mode & stat.S_IXUSR, "bootstrap lost its run bit"
    assert bootstrap.read_bytes().startswith(b"#!/bin/sh")
    # The function is streamfn's code only: small, no third-party packages, no binaries.
    assert sorted(p.name for p in function.iterdir()) == ["bootstrap", "streamfn"]
    assert not list(function.rglob("*.so"))
    assert (function / "streamfn" / "static" / "index.html").exists()
    size = sum(p.stat().st_size for p in function.rglob("*") if p.is_file())
    # The chat page's Markdown bundle (static/markdown.js, about 250 KB) and the bytecode are
    # the largest parts.
    assert size < 2_500_000, size
    for code in (layer, function / "streamfn"):
        assert_lambda_bytecode(code)

    built = (build / "template.yaml").read_text()
    assert "CodeUri: StreamFunction" in built
    assert "ContentUri: DependenciesLayer" in built
    assert "Handler: streamfn.awslambda.buffered.handler" in built
    assert "AWS_LAMBDA_EXEC_WRAPPER: /var/task/bootstrap" in built
    # And the built code imports on this machine's Python with the layer's pure-Python parts.
    probe = subprocess.run(
        [sys.executable, "-c", "import streamfn.awslambda.runtime as r; print(r.__file__)"],
        cwd=function,
        env={**ENV, "PYTHONPATH": str(function)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.startswith(str(function)), probe.stdout


def test_env_json_names_the_templates_functions_and_feeds_the_emulator() -> None:
    from local.lambda_emulator import env_json

    document = json.loads((ROOT / "infra" / "env.json").read_text())
    template = (ROOT / "template.yaml").read_text()
    for section in document:
        assert section == "Parameters" or f"\n  {section}:\n" in template, section
    env = env_json(ROOT / "infra" / "env.json")
    assert env["STREAMFN_ECHO_DELAY_MS"] == "40"  # from Parameters
    assert env["STREAMFN_DEFAULT_PROVIDER"] == "echo"  # from StreamFunction


def test_jwt_auth_is_a_deploy_option(sam: Path) -> None:
    template = transformed(sam)
    assert "api_key,jwt" in template["Parameters"]["StreamfnAuth"]["AllowedValues"]
    variables = template["Resources"]["StreamFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["STREAMFN_JWT_ISSUER"] == {"Ref": "JwtIssuer"}
    assert variables["STREAMFN_JWT_AUDIENCE"] == {"Ref": "JwtAudience"}


def test_the_gemini_key_is_read_by_name_from_ssm_or_secrets_manager(sam: Path) -> None:
    template = transformed(sam, GeminiApiKeyParameter="/streamfn/gemini")
    variables = template["Resources"]["StreamFunction"]["Properties"]["Environment"]["Variables"]
    assert "GEMINI_API_KEY" not in variables
    assert variables["GEMINI_API_KEY_SSM_PARAMETER"] == {
        "Fn::If": ["HasGeminiParameter", {"Ref": "GeminiApiKeyParameter"}, {"Ref": "AWS::NoValue"}]
    }
    assert variables["GEMINI_API_KEY_SECRET_ARN"]["Fn::If"][0] == "HasGeminiSecret"
    assert {"Condition": "HasGeminiParameter"} in template["Conditions"]["HasSsmKey"]["Fn::Or"]
    assert {"Condition": "HasGeminiSecret"} in template["Conditions"]["HasSecretKey"]["Fn::Or"]
    statements = template["Resources"]["FunctionAccessPolicy"]["Properties"]["PolicyDocument"][
        "Statement"
    ]
    ssm = next(
        s["Fn::If"][1] for s in statements if "Fn::If" in s and s["Fn::If"][0] == "HasSsmKey"
    )
    arn = "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter"
    assert {
        "Fn::If": [
            "HasGeminiParameter",
            {"Fn::Sub": arn + "${GeminiApiKeyParameter}"},
            {"Ref": "AWS::NoValue"},
        ]
    } in ssm["Resource"]
    secrets = next(
        s["Fn::If"][1] for s in statements if "Fn::If" in s and s["Fn::If"][0] == "HasSecretKey"
    )
    assert {
        "Fn::If": ["HasGeminiSecret", {"Ref": "GeminiApiKeySecretArn"}, {"Ref": "AWS::NoValue"}]
    } in secrets["Resource"]


def test_bedrock_is_invoked_with_the_role_on_the_listed_models_only(sam: Path) -> None:
    template = transformed(sam)
    parameter = template["Parameters"]["BedrockModelArns"]
    assert (parameter["Type"], parameter["Default"]) == ("CommaDelimitedList", "")
    # Nothing by default: the statement exists only when models are listed.
    assert template["Conditions"]["HasBedrockModels"] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "BedrockModelArns"}]}, ""]}]
    }
    statements = template["Resources"]["FunctionAccessPolicy"]["Properties"]["PolicyDocument"][
        "Statement"
    ]
    granting = [s for s in statements if "bedrock" in json.dumps(s)]
    [conditional] = granting
    condition, bedrock, otherwise = conditional["Fn::If"]
    assert (condition, otherwise) == ("HasBedrockModels", {"Ref": "AWS::NoValue"})
    assert bedrock == {
        "Sid": "InvokeBedrockModels",
        "Effect": "Allow",
        # ConverseStream is authorised as InvokeModelWithResponseStream, Converse as InvokeModel.
        "Action": ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"],
        "Resource": {"Ref": "BedrockModelArns"},
    }
    # The role is the credential: no Bedrock key is stored, nor asked for.
    variables = template["Resources"]["StreamFunction"]["Properties"]["Environment"]["Variables"]
    assert "AWS_BEARER_TOKEN_BEDROCK" not in json.dumps(template)
    assert variables["STREAMFN_BEDROCK_MODEL"] == {
        "Fn::If": ["HasBedrockModel", {"Ref": "BedrockModel"}, {"Ref": "AWS::NoValue"}]
    }


def _function_url_cors(properties: dict[str, Any]) -> tuple[Any, ...]:
    cors = properties["Cors"]
    return (
        cors["AllowMethods"],
        cors["AllowHeaders"],
        cors["ExposeHeaders"],
        cors["MaxAge"],
    )


def test_the_function_urls_cors_is_streamfns_one_contract() -> None:
    """template.yaml's function URL answers browsers as the app does: streamfn.origins.CORS,
    the lists the app's CORSMiddleware and the local function URL use (issue #23)."""
    from local.url_cors import UrlCors, load_template
    from streamfn.origins import CORS

    resources = load_template()["Resources"]
    config = resources["StreamFunction"]["Properties"]["FunctionUrlConfig"]
    contract = (
        list(CORS.allow_methods),
        list(CORS.allow_headers),
        list(CORS.expose_headers),
        CORS.max_age_s,
    )
    assert _function_url_cors(config) == contract
    assert config["Cors"]["AllowOrigins"] == {"Ref": "CorsAllowedOrigins"}
    # What the local function URL reads from the template is the contract too.
    local = UrlCors.from_template()
    assert local is not None
    assert (local.allow_methods, local.allow_headers, local.expose_headers, local.max_age) == (
        CORS.allow_methods,
        CORS.allow_headers,
        CORS.expose_headers,
        CORS.max_age_s,
    )
    assert local == UrlCors(allow_origins=local.allow_origins)  # the contract, by default


def test_the_deployed_function_url_keeps_the_contract(sam: Path) -> None:
    """After the SAM transform, on the AWS::Lambda::Url that CloudFormation creates."""
    from streamfn.origins import CORS

    [url] = of_type(transformed(sam), "AWS::Lambda::Url").values()
    assert _function_url_cors(url["Properties"]) == (
        list(CORS.allow_methods),
        list(CORS.allow_headers),
        list(CORS.expose_headers),
        CORS.max_age_s,
    )
    assert "DELETE" in url["Properties"]["Cors"]["AllowMethods"]  # DELETE /v1/responses/{id}


# --- Lambda Managed Instances (issue #23) ------------------------------------------------------

# The template's conditions as CloudFormation evaluates them for a deploy's parameters, by SAM
# CLI's implementation of AWS::LanguageExtensions (which resolves each Fn::If by them).
CONDITIONS = """
import json, sys
from samtranslator.yaml_helper import yaml_parse
from samcli.lib.cfn_language_extensions.api import (
    IntrinsicResolverProcessor, create_default_intrinsic_resolver)
from samcli.lib.cfn_language_extensions.models import (
    PseudoParameterValues, TemplateProcessingContext)
from samcli.lib.cfn_language_extensions.processors import TemplateParsingProcessor
context = TemplateProcessingContext(
    fragment=yaml_parse(open(sys.argv[1]).read()), parameter_values=json.loads(sys.argv[2]),
    pseudo_parameters=PseudoParameterValues(region="us-east-1", account_id="123456789012"))
TemplateParsingProcessor().process_template(context)
IntrinsicResolverProcessor(create_default_intrinsic_resolver(context)).process_template(context)
print(json.dumps(context.resolved_conditions))
"""
MANAGED = {
    "ComputeType": "ManagedInstances",
    "ManagedInstancesSubnetIds": "subnet-0a,subnet-0b",
    "ManagedInstancesSecurityGroupIds": "sg-0a",
}


def conditions(sam: Path, **parameters: str) -> dict[str, bool]:
    result = run(sam / "python", "-c", CONDITIONS, ROOT / "template.yaml", json.dumps(parameters))
    return dict(json.loads(result.stdout))


def test_classic_lambda_by_default_managed_instances_on_a_capacity_provider(sam: Path) -> None:
    classic = transformed(sam)
    assert classic["Parameters"]["ComputeType"]["Default"] == "Lambda"
    assert "CapacityProviderConfig" not in classic["Resources"]["StreamFunction"]["Properties"]

    managed = transformed(sam, **MANAGED)
    function = managed["Resources"]["StreamFunction"]["Properties"]
    config = function["CapacityProviderConfig"]["LambdaManagedInstancesCapacityProviderConfig"]
    assert config["PerExecutionEnvironmentMaxConcurrency"] == {"Ref": "StreamsPerEnvironment"}
    assert config["ExecutionEnvironmentMemoryGiBPerVCpu"] == 2  # one process: no more per vCPU
    # The provider's ARN from its name (cfn-lint 1.58 knows no GetAtt of a SAM capacity provider).
    assert config["CapacityProviderArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}"
        ":capacity-provider:${StreamCapacityProvider}"
    }
    # The same runtime and exec wrapper: one streamfn process takes the environment's streams.
    assert function["Runtime"] == "python3.13"
    assert function["Environment"]["Variables"]["AWS_LAMBDA_EXEC_WRAPPER"] == "/var/task/bootstrap"
    streams = managed["Parameters"]["StreamsPerEnvironment"]
    assert (streams["Default"], streams["MaxValue"]) == (512, 1600)  # 1600: Lambda's maximum

    [provider] = of_type(managed, "AWS::Lambda::CapacityProvider").values()
    assert provider["Condition"] == "ManagedInstances"  # none on classic Lambda
    properties = provider["Properties"]
    assert properties["VpcConfig"] == {
        "SubnetIds": {"Ref": "ManagedInstancesSubnetIds"},
        "SecurityGroupIds": {"Ref": "ManagedInstancesSecurityGroupIds"},
    }
    assert properties["InstanceRequirements"] == {"Architectures": ["arm64"]}  # as the layer
    assert properties["CapacityProviderScalingConfig"]["MaxVCpuCount"] == {
        "Ref": "ManagedInstancesMaxVCpu"
    }
    role_id = properties["PermissionsConfig"]["CapacityProviderOperatorRoleArn"]["Fn::GetAtt"][0]
    operator = managed["Resources"][role_id]
    assert operator["Condition"] == "ManagedInstances"
    assert operator["Properties"]["ManagedPolicyArns"] == [
        "arn:aws:iam::aws:policy/AWSLambdaManagedEC2ResourceOperator"
    ]
    # Managed Instances serve published versions: the alias, and versions SAM deletes with them.
    [version] = of_type(managed, "AWS::Lambda::Version").values()
    assert version["DeletionPolicy"] == "Delete"
    [url] = of_type(managed, "AWS::Lambda::Url").values()
    assert url["Properties"]["TargetFunctionArn"] == {"Ref": "StreamFunctionAliaslive"}


def test_snapstart_and_managed_instances_exclude_each_other(sam: Path) -> None:
    template = transformed(sam)
    function = template["Resources"]["StreamFunction"]["Properties"]
    assert function["SnapStart"] == {
        "Fn::If": ["UseSnapStart", {"ApplyOn": "PublishedVersions"}, {"Ref": "AWS::NoValue"}]
    }
    # Managed Instances' smallest function: 2 GB, 1 vCPU.
    assert function["MemorySize"] == {"Fn::If": ["ManagedInstances", 2048, {"Ref": "MemorySize"}]}
    assert conditions(sam)["UseSnapStart"] is True
    managed = conditions(sam, **MANAGED)
    assert (managed["ManagedInstances"], managed["UseSnapStart"]) == (True, False)
    assert conditions(sam, SnapStart="None")["UseSnapStart"] is False
    for parameter in ("SnapStart", "ComputeType"):
        assert "exclude each other" in template["Parameters"][parameter]["Description"]


def test_managed_instances_need_a_network(sam: Path) -> None:
    # In the template CloudFormation gets, which checks it before it changes anything.
    rule = transformed(sam)["Rules"]["ManagedInstancesNeedSubnetsAndSecurityGroups"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "ComputeType"}, "ManagedInstances"]}
    asserted = [a["Assert"] for a in rule["Assertions"]]
    assert asserted == [
        {"Fn::Not": [{"Fn::Contains": [{"Ref": name}, ""]}]}
        for name in ("ManagedInstancesSubnetIds", "ManagedInstancesSecurityGroupIds")
    ]
