"""The OpenLineage validator (openlineage_check.py) and its loopback receiver, checked on
hand-written events: valid ones pass, and each kind of violation is reported with the
event, the job, the facet and the path of the offending field."""

import copy
import json
import urllib.error
import urllib.request

import pytest

import openlineage_check as ol
from openlineage_check import FACET_SCHEMA_URLS, RUN_EVENT_SCHEMA_URL, receiver, validate_event

PRODUCER = "https://github.com/medallion-lakehouse/medallion"
RUN_ID = "0190a2b4-6c1e-7d3a-9f21-3b5e8c4d2a10"
BRONZE = {"namespace": "file", "name": "/tmp/lake/bronze/events"}
SILVER = {"namespace": "file", "name": "/tmp/lake/silver/events"}

SCHEMA_URL = "https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet"
COLUMN_LINEAGE_URL = (
    "https://openlineage.io/spec/facets/1-2-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet"
)
ASSERTIONS_URL = (
    "https://openlineage.io/spec/facets/1-1-0/DataQualityAssertionsDatasetFacet.json"
    "#/$defs/DataQualityAssertionsDatasetFacet"
)
OUTPUT_STATISTICS_URL = (
    "https://openlineage.io/spec/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json"
    "#/$defs/OutputStatisticsOutputDatasetFacet"
)
JOB_TYPE_URL = "https://openlineage.io/spec/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet"


def facet(url, **fields):
    return {"_producer": PRODUCER, "_schemaURL": url, **fields}


def schema_facet():
    return facet(
        SCHEMA_URL,
        fields=[
            {"name": "event_id", "type": "string", "ordinal_position": 1},
            {"name": "user_id", "type": "long", "ordinal_position": 2},
            {"name": "event_time", "type": "timestamp", "ordinal_position": 3},
        ],
    )


def input_field(field, kind, subtype):
    return {**BRONZE, "field": field, "transformations": [{"type": kind, "subtype": subtype}]}


def event(event_type, with_outcome):
    """A Silver run's START (with_outcome=False) or COMPLETE (with_outcome=True) event."""
    output = {**SILVER, "facets": {"schema": schema_facet()}}
    source = {**BRONZE}
    if with_outcome:
        output["facets"]["columnLineage"] = facet(
            COLUMN_LINEAGE_URL,
            fields={
                "event_id": {"inputFields": [input_field("event_id", "DIRECT", "IDENTITY")]},
                "user_id": {"inputFields": [input_field("user_id", "DIRECT", "IDENTITY")]},
                "event_time": {"inputFields": [input_field("ts", "DIRECT", "TRANSFORMATION")]},
            },
            dataset=[input_field("event_id", "INDIRECT", "FILTER")],
        )
        output["outputFacets"] = {
            "outputStatistics": facet(OUTPUT_STATISTICS_URL, rowCount=1200, size=48213, fileCount=2)
        }
        source["inputFacets"] = {
            "dataQualityAssertions": facet(
                ASSERTIONS_URL,
                assertions=[
                    {"assertion": "not_null", "column": "event_id", "success": True},
                    {"assertion": "unique", "column": "event_id", "success": False, "severity": "warn", "actual": "3"},
                ],
            )
        }
    return {
        "eventType": event_type,
        "eventTime": "2026-01-05T10:00:00.123Z" if event_type == "START" else "2026-01-05T10:00:04.5+01:00",
        "producer": PRODUCER,
        "schemaURL": RUN_EVENT_SCHEMA_URL,
        "run": {"runId": RUN_ID},
        "job": {
            "namespace": "medallion",
            "name": "silver.events",
            "facets": {
                "jobType": facet(JOB_TYPE_URL, processingType="BATCH", integration="MEDALLION", jobType="TABLE")
            },
        },
        "inputs": [source],
        "outputs": [output],
    }


def start():
    return event("START", with_outcome=False)


def complete():
    return event("COMPLETE", with_outcome=True)


def problem(ev):
    with pytest.raises(AssertionError) as info:
        validate_event(ev)
    return str(info.value)


def test_valid_start_and_complete_events_pass():
    validate_event(start())
    validate_event(complete())


def test_the_facet_schema_urls_are_the_vendored_ids_with_the_definition():
    assert FACET_SCHEMA_URLS["schema"] == SCHEMA_URL
    assert FACET_SCHEMA_URLS["columnLineage"] == COLUMN_LINEAGE_URL
    assert FACET_SCHEMA_URLS["dataQualityAssertions"] == ASSERTIONS_URL
    assert FACET_SCHEMA_URLS["outputStatistics"] == OUTPUT_STATISTICS_URL
    assert FACET_SCHEMA_URLS["jobType"] == JOB_TYPE_URL
    assert len(FACET_SCHEMA_URLS) == len(list((ol.SPEC_DIR / "facets").glob("*.json"))) == 16
    for key, url in FACET_SCHEMA_URLS.items():
        base, fragment = url.split("#")
        name = fragment.removeprefix("/$defs/")
        assert base == f"https://openlineage.io/spec/facets/{base.split('/')[-2]}/{name}.json", key
        with open(ol.SPEC_DIR / "facets" / f"{name}.json") as f:
            assert json.load(f)["$id"] == base


def test_every_vendored_facet_validates_in_its_place():
    ev = complete()
    ev["eventType"] = "FAIL"
    ev["run"]["facets"] = {
        "errorMessage": facet(FACET_SCHEMA_URLS["errorMessage"], message="boom", programmingLanguage="RUST"),
        "processing_engine": facet(FACET_SCHEMA_URLS["processing_engine"], version="0.1.0", name="medallion"),
        "nominalTime": facet(FACET_SCHEMA_URLS["nominalTime"], nominalStartTime="2026-01-05T10:00:00Z"),
        "parent": facet(
            FACET_SCHEMA_URLS["parent"],
            run={"runId": "0190a2b4-6c1e-7d3a-9f21-3b5e8c4d2a11"},
            job={"namespace": "medallion", "name": "pipeline"},
        ),
    }
    ev["job"]["facets"]["sql"] = facet(FACET_SCHEMA_URLS["sql"], query="SELECT 1", dialect="duckdb")
    ev["job"]["facets"]["documentation"] = facet(FACET_SCHEMA_URLS["documentation"], description="Silver events")
    ev["inputs"][0]["inputFacets"]["dataQualityMetrics"] = facet(
        FACET_SCHEMA_URLS["dataQualityMetrics"], rowCount=1203, columnMetrics={"event_id": {"nullCount": 0}}
    )
    ev["outputs"][0]["facets"].update(
        dataSource=facet(FACET_SCHEMA_URLS["dataSource"], name="file", uri="file:///tmp/lake"),
        lifecycleStateChange=facet(FACET_SCHEMA_URLS["lifecycleStateChange"], lifecycleStateChange="OVERWRITE"),
        storage=facet(FACET_SCHEMA_URLS["storage"], storageLayer="delta", fileFormat="parquet"),
    )
    validate_event(ev)


def test_missing_event_time_fails():
    ev = complete()
    del ev["eventTime"]
    message = problem(ev)
    assert "COMPLETE event of job medallion/silver.events" in message
    assert "'eventTime' is a required property" in message


@pytest.mark.parametrize(
    "change, path, text",
    [
        (lambda ev: ev.update(eventTime="2026-01-05 10:00:00"), "/eventTime", "is not a 'date-time'"),
        (lambda ev: ev.update(eventTime="2026-02-30T10:00:00Z"), "/eventTime", "is not a 'date-time'"),
        (lambda ev: ev["run"].update(runId="not-a-uuid"), "/run/runId", "is not a 'uuid'"),
        (lambda ev: ev.update(producer="medallion"), "/producer", "is not a 'uri'"),
        (lambda ev: ev.update(eventType="DONE"), "/eventType", "is not one of"),
        (lambda ev: ev["job"].pop("name"), "/job", "'name' is a required property"),
        (lambda ev: ev["outputs"][0].pop("namespace"), "/outputs/0", "'namespace' is a required property"),
        (
            lambda ev: ev["job"]["facets"]["jobType"].pop("_producer"),
            "/job/facets/jobType",
            "'_producer' is a required",
        ),
        (
            lambda ev: ev.update(schemaURL="https://openlineage.io/spec/2-0-2/OpenLineage.json"),
            "/schemaURL",
            "is not 'https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent'",
        ),
    ],
)
def test_invalid_events_fail(change, path, text):
    ev = complete()
    change(ev)
    message = problem(ev)
    assert f"at {path}:" in message and text in message, message


def test_facet_field_of_the_wrong_type_fails():
    ev = complete()
    ev["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] = "1200"
    message = problem(ev)
    assert "COMPLETE event of job medallion/silver.events" in message
    assert "facet /outputs/0/outputFacets/outputStatistics" in message
    assert "at /outputs/0/outputFacets/outputStatistics/rowCount: '1200' is not of type 'integer'" in message


@pytest.mark.parametrize(
    "change, path, text",
    [
        (
            lambda ev: ev["outputs"][0]["facets"]["columnLineage"]["fields"]["user_id"]["inputFields"][0].pop("field"),
            "/outputs/0/facets/columnLineage/fields/user_id/inputFields/0",
            "'field' is a required property",
        ),
        (
            lambda ev: ev["outputs"][0]["facets"]["columnLineage"]["dataset"][0]["transformations"][0].pop("type"),
            "/outputs/0/facets/columnLineage/dataset/0/transformations/0",
            "'type' is a required property",
        ),
        (
            lambda ev: ev["inputs"][0]["inputFacets"]["dataQualityAssertions"]["assertions"][0].update(success="true"),
            "/inputs/0/inputFacets/dataQualityAssertions/assertions/0/success",
            "'true' is not of type 'boolean'",
        ),
        (
            lambda ev: ev["job"]["facets"]["jobType"].pop("integration"),
            "/job/facets/jobType",
            "'integration' is a required property",
        ),
        (
            lambda ev: ev["outputs"][0]["facets"]["schema"]["fields"][1].pop("name"),
            "/outputs/0/facets/schema/fields/1",
            "'name' is a required property",
        ),
    ],
)
def test_facet_violations_name_the_field(change, path, text):
    ev = complete()
    change(ev)
    message = problem(ev)
    assert f"at {path}: {text}" in message, message


def test_unknown_facet_schema_url_fails():
    ev = complete()
    ev["outputs"][0]["facets"]["schema"]["_schemaURL"] = (
        "https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet"
    )
    message = problem(ev)
    assert "facet /outputs/0/facets/schema: unknown _schemaURL" in message
    assert "1-1-1/SchemaDatasetFacet.json" in message


def test_facet_schema_url_without_the_definition_fails():
    ev = complete()
    ev["outputs"][0]["facets"]["schema"]["_schemaURL"] = SCHEMA_URL.split("#")[0]
    message = problem(ev)
    assert "unknown _schemaURL" in message and SCHEMA_URL in message


def test_custom_facet_fails():
    ev = complete()
    ev["run"]["facets"] = {"medallion": facet("https://example.com/MedallionRunFacet.json#/$defs/MedallionRunFacet")}
    assert "facet /run/facets/medallion: unknown _schemaURL" in problem(ev)


def test_facet_under_another_key_fails():
    ev = complete()
    ev["outputs"][0]["facets"]["columns"] = ev["outputs"][0]["facets"].pop("columnLineage")
    assert "is the schema of facet 'columnLineage', not 'columns'" in problem(ev)


def test_facet_in_the_wrong_collection_fails():
    ev = complete()
    ev["outputs"][0]["facets"]["outputStatistics"] = ev["outputs"][0]["outputFacets"].pop("outputStatistics")
    assert (
        "'outputStatistics' (OutputDatasetFacet) cannot be in /outputs/0/facets, which holds DatasetFacets"
        in problem(ev)
    )
    ev = complete()
    ev["outputs"][0]["outputFacets"]["dataQualityAssertions"] = ev["inputs"][0]["inputFacets"].pop(
        "dataQualityAssertions"
    )
    assert (
        "'dataQualityAssertions' (InputDatasetFacet) cannot be in /outputs/0/outputFacets, which holds OutputDatasetFacets"
        in problem(ev)
    )


def test_every_problem_is_reported():
    ev = complete()
    ev["outputs"][0]["outputFacets"]["outputStatistics"]["size"] = -1.5
    ev["job"]["facets"]["jobType"]["processingType"] = 1
    message = problem(ev)
    assert "/outputs/0/outputFacets/outputStatistics/size" in message
    assert "/job/facets/jobType/processingType" in message


def test_validation_does_not_change_the_event():
    ev = complete()
    before = copy.deepcopy(ev)
    validate_event(ev)
    assert ev == before


def post(url, body, content_type="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def test_receiver_records_posted_events():
    with receiver() as r:
        assert r.url.startswith("http://127.0.0.1:")
        assert post(r.url + "/api/v1/lineage", start()) == 200
        assert post(r.url + "/api/v1/lineage", complete()) == 200
        assert r.paths == ["/api/v1/lineage", "/api/v1/lineage"]
        assert r.events == [start(), complete()]
        assert r.headers[0]["content-type"] == "application/json"
        assert r.wait_for(2) == r.events
        assert r.errors == []
    for ev in r.events:
        validate_event(ev)


def test_receiver_answers_with_the_given_status():
    with receiver(status=503) as r:
        with pytest.raises(urllib.error.HTTPError) as info:
            post(r.url + "/lineage", start())
        assert info.value.code == 503
        assert r.events == [start()]
    with receiver(status=[503, 200]) as r:
        with pytest.raises(urllib.error.HTTPError):
            post(r.url + "/lineage", start())
        assert post(r.url + "/lineage", start()) == 200
        assert post(r.url + "/lineage", complete()) == 200
        assert [e["eventType"] for e in r.events] == ["START", "START", "COMPLETE"]


def test_receiver_refuses_bodies_that_are_not_json():
    with receiver() as r:
        with pytest.raises(urllib.error.HTTPError) as info:
            post(r.url + "/lineage", b"{not json")
        assert info.value.code == 400
        assert r.events == []
        assert len(r.errors) == 1 and "body is not JSON" in r.errors[0]
