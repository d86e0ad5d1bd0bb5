"""Conformance of Gridwatch's embedded schema registry and wire format
against Apicurio's own Python SDK (apicurioregistrysdk) and fastavro.

Run by pipeline/gridwatch-registry/tests/python_conformance.rs, which starts
the embedded registry on a loopback port, registers Gridwatch's contracts,
and passes:

  --base-url   the v3 API root, e.g. http://127.0.0.1:PORT/apis/registry/v3
  --group      the group Gridwatch registered its contracts in
  --frame-hex  a SensorReading framed by Gridwatch (0x00, 4-byte contentId, datum)
  --expected   that reading as JSON

The script checks what the SDK sees, decodes Gridwatch's frame with fastavro
using the schema fetched from the registry, then frames a reading of its own
with an evolved SensorReading schema it registers, and prints one JSON line
for the Rust side to decode. Any failed check exits non-zero with a message.
"""

import argparse
import asyncio
import datetime
import io
import json
import os
import struct
import sys

# The registry is on loopback: never send it through a proxy from the environment.
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"

import fastavro  # noqa: E402
from apicurioregistrysdk.client.groups.item.artifacts.artifacts_request_builder import (  # noqa: E402
    ArtifactsRequestBuilder,
)
from apicurioregistrysdk.client.models.create_artifact import CreateArtifact  # noqa: E402
from apicurioregistrysdk.client.models.create_rule import CreateRule  # noqa: E402
from apicurioregistrysdk.client.models.create_version import CreateVersion  # noqa: E402
from apicurioregistrysdk.client.models.if_artifact_exists import IfArtifactExists  # noqa: E402
from apicurioregistrysdk.client.models.problem_details import ProblemDetails  # noqa: E402
from apicurioregistrysdk.client.models.rule import Rule  # noqa: E402
from apicurioregistrysdk.client.models.rule_type import RuleType  # noqa: E402
from apicurioregistrysdk.client.models.rule_violation_problem_details import (  # noqa: E402
    RuleViolationProblemDetails,
)
from apicurioregistrysdk.client.models.version_content import VersionContent  # noqa: E402
from apicurioregistrysdk.client.registry_client import RegistryClient  # noqa: E402
from kiota_abstractions.authentication.anonymous_authentication_provider import (  # noqa: E402
    AnonymousAuthenticationProvider,
)
from kiota_abstractions.base_request_configuration import RequestConfiguration  # noqa: E402
from kiota_http.httpx_request_adapter import HttpxRequestAdapter  # noqa: E402

SDK_GROUP = "python-sdk"
SDK_ARTIFACT = "conformance.Ping"
SENSOR_ARTIFACT = "io.gridwatch.SensorReading"
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)

PING_V1 = json.dumps(
    {
        "type": "record",
        "name": "Ping",
        "namespace": "conformance",
        "fields": [{"name": "seq", "type": "long"}],
    }
)
PING_V2 = json.dumps(
    {
        "type": "record",
        "name": "Ping",
        "namespace": "conformance",
        "fields": [
            {"name": "seq", "type": "long"},
            {"name": "note", "type": "string", "default": ""},
        ],
    }
)
PING_BROKEN = json.dumps(
    {
        "type": "record",
        "name": "Ping",
        "namespace": "conformance",
        "fields": [
            {"name": "seq", "type": "long"},
            {"name": "note", "type": "string", "default": ""},
            {"name": "host", "type": "string"},
        ],
    }
)


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def avro_content(text):
    content = VersionContent()
    content.content = text
    content.content_type = "application/json"
    return content


def new_version(text):
    version = CreateVersion()
    version.content = avro_content(text)
    return version


async def sdk_round_trip(client):
    """Create, read back by both ids, list versions, set rules, see errors."""
    artifacts = client.groups.by_group_id(SDK_GROUP).artifacts
    body = CreateArtifact()
    body.artifact_id = SDK_ARTIFACT
    body.artifact_type = "AVRO"
    body.first_version = new_version(PING_V1)
    find_or_create = RequestConfiguration(
        query_parameters=ArtifactsRequestBuilder.ArtifactsRequestBuilderPostQueryParameters(
            if_exists=IfArtifactExists.FIND_OR_CREATE_VERSION
        )
    )
    created = await artifacts.post(body, find_or_create)
    check(created.artifact.artifact_id == SDK_ARTIFACT, f"artifactId: {created.artifact.artifact_id}")
    check(created.artifact.group_id == SDK_GROUP, f"groupId: {created.artifact.group_id}")
    check(created.artifact.artifact_type == "AVRO", f"artifactType: {created.artifact.artifact_type}")
    check(created.artifact.created_on is not None, "artifact createdOn parses as a datetime")
    v1 = created.version
    check(v1.version == "1", f"first version is '1', got {v1.version!r}")
    check(v1.global_id > 0 and v1.content_id > 0, "ids are positive")

    again = await artifacts.post(body, find_or_create)
    check(again.version.global_id == v1.global_id, "FIND_OR_CREATE_VERSION finds the same version")

    by_global = await client.ids.global_ids.by_global_id(v1.global_id).get()
    check(by_global.decode() == PING_V1, f"content by globalId: {by_global!r}")
    by_content = await client.ids.content_ids.by_content_id(v1.content_id).get()
    check(by_content.decode() == PING_V1, f"content by contentId: {by_content!r}")

    artifact = artifacts.by_artifact_id(SDK_ARTIFACT)
    meta = await artifact.get()
    check(meta.artifact_id == SDK_ARTIFACT, "artifact metadata")

    # Rules: an artifact rule, read back, listed, updated; then enforced.
    rule = CreateRule()
    rule.rule_type = RuleType.COMPATIBILITY
    rule.config = "BACKWARD"
    await artifact.rules.post(rule)
    read = await artifact.rules.by_rule_type("COMPATIBILITY").get()
    check(read.rule_type == RuleType.COMPATIBILITY and read.config == "BACKWARD", f"rule: {read}")
    # The SDK's own rules.get() cannot deserialize a list of RuleType (kiota's
    # JSON parse node has no primitive reader for enums), so the list is read
    # through the SDK's request builder and adapter as raw JSON.
    info = artifact.rules.to_get_request_information()
    raw = await artifact.rules.request_adapter.send_primitive_async(info, "bytes", {})
    listed = json.loads(raw)
    check(listed == ["COMPATIBILITY"], f"rule list: {listed}")
    update = Rule()
    update.config = "FULL"
    updated = await artifact.rules.by_rule_type("COMPATIBILITY").put(update)
    check(updated.config == "FULL", f"updated rule: {updated.config}")

    v2 = await artifact.versions.post(new_version(PING_V2))
    check(v2.version == "2", f"second version: {v2.version!r}")
    check(v2.global_id > v1.global_id, "globalIds grow")

    versions = await artifact.versions.get()
    check(versions.count == 2, f"version count: {versions.count}")
    check([v.version for v in versions.versions] == ["1", "2"], "version names in order")
    check(
        [v.global_id for v in versions.versions] == [v1.global_id, v2.global_id],
        "version globalIds",
    )
    latest = await artifact.versions.by_version_expression("branch=latest").get()
    check(latest.global_id == v2.global_id, "branch=latest is version 2")

    # FULL: a field without a default is refused with a RuleViolation problem.
    try:
        await artifact.versions.post(new_version(PING_BROKEN))
        raise CheckFailed("an incompatible version was accepted")
    except RuleViolationProblemDetails as violation:
        check(violation.status == 409, f"violation status: {violation.status}")
        check(violation.name == "RuleViolationException", f"violation name: {violation.name}")
        check(violation.causes, "the violation lists its causes")
        contexts = [c.context for c in violation.causes]
        check("/fields/host" in contexts, f"cause contexts: {contexts}")
        check("host" in (violation.detail or ""), f"violation detail: {violation.detail}")

    # A global rule through the admin API, read back.
    validity = CreateRule()
    validity.rule_type = RuleType.VALIDITY
    validity.config = "FULL"
    await client.admin.rules.post(validity)
    global_rule = await client.admin.rules.by_rule_type("VALIDITY").get()
    check(global_rule.config == "FULL", f"global rule: {global_rule.config}")

    # Errors are problem documents the SDK understands.
    try:
        await client.groups.by_group_id(SDK_GROUP).artifacts.by_artifact_id("missing").get()
        raise CheckFailed("a missing artifact was found")
    except ProblemDetails as problem:
        check(problem.status == 404, f"404 status: {problem.status}")
        check(problem.name == "ArtifactNotFoundException", f"404 name: {problem.name}")


def to_millis(value):
    if isinstance(value, datetime.datetime):
        return (value - EPOCH) // datetime.timedelta(milliseconds=1)
    return value


async def decode_gridwatch_frame(client, frame_hex, expected):
    """fastavro reads what Gridwatch wrote, with the schema from the registry."""
    frame = bytes.fromhex(frame_hex)
    check(frame[0] == 0, f"magic byte: {frame[0]}")
    (content_id,) = struct.unpack(">I", frame[1:5])
    schema_text = (await client.ids.content_ids.by_content_id(content_id).get()).decode()
    schema = fastavro.parse_schema(json.loads(schema_text))
    record = fastavro.schemaless_reader(io.BytesIO(frame[5:]), schema)
    record["timestamp"] = to_millis(record["timestamp"])
    check(record == expected, f"fastavro decoded {record}, Gridwatch wrote {expected}")
    return content_id


async def frame_for_gridwatch(client, group):
    """Registers an evolved SensorReading and frames a reading with it."""
    artifact = client.groups.by_group_id(group).artifacts.by_artifact_id(SENSOR_ARTIFACT)
    current = (await artifact.versions.by_version_expression("branch=latest").content.get()).decode()
    evolved = json.loads(current)
    evolved["fields"].append({"name": "firmware", "type": "string", "default": "unknown"})
    evolved_text = json.dumps(evolved)
    version = await artifact.versions.post(new_version(evolved_text))
    reading = {
        "meter_id": "python-meter-1",
        "timestamp": 1767225601234,
        "voltage": 241.25,
        "current": 3.5,
        "temperature": -4.75,
        "status": "DEGRADED",
        "firmware": "fw-2.1",
    }
    datum = io.BytesIO()
    fastavro.schemaless_writer(datum, fastavro.parse_schema(evolved), reading)
    frame = b"\x00" + struct.pack(">I", version.content_id) + datum.getvalue()
    return version, frame, reading


async def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--frame-hex", required=True)
    parser.add_argument("--expected", required=True)
    args = parser.parse_args()

    adapter = HttpxRequestAdapter(AnonymousAuthenticationProvider())
    adapter.base_url = args.base_url
    client = RegistryClient(adapter)

    await sdk_round_trip(client)
    gridwatch_content_id = await decode_gridwatch_frame(
        client, args.frame_hex, json.loads(args.expected)
    )
    version, frame, reading = await frame_for_gridwatch(client, args.group)
    print(
        json.dumps(
            {
                "gridwatchContentId": gridwatch_content_id,
                "pythonVersion": version.version,
                "pythonContentId": version.content_id,
                "pythonGlobalId": version.global_id,
                "pythonFrameHex": frame.hex(),
                "pythonReading": reading,
            }
        )
    )


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except CheckFailed as failure:
        print(f"conformance check failed: {failure}", file=sys.stderr)
        sys.exit(1)
