"""OpenLineage run events of real runs: every event validates against the official schemas
(vendored, see openlineage/README.md), a real HTTP server on loopback receives the same
events as the NDJSON file, START and COMPLETE pair up per table run and agree with the run
log, column lineage and data-quality assertions say what the configuration says, an
endpoint that is down does not fail the run, and a failed run emits FAIL with the rule."""

import json
import os
import re
import shutil
import subprocess

import pytest
from deltalake import DeltaTable

from openlineage_check import receiver, validate_event

BIN = os.environ.get("MEDALLION_BIN", "medallion")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TABLES = 12  # four Bronze, four Silver, four Gold tables in the shipped layers.yaml


def medallion(*args, code=0, env=None):
    out = subprocess.run([BIN, *args], cwd=REPO, capture_output=True, text=True, env=env)
    assert out.returncode == code, out.stderr[-4000:]
    return out


def config_with(base, lineage_block, replace=None):
    text = open(os.path.join(REPO, "layers.yaml")).read()
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    path = base / "layers.yaml"
    path.write_text(text + "\n" + lineage_block)
    return path


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    base = tmp_path_factory.mktemp("ol_landing")
    medallion("generate", "--events", "4000", "--events-per-file", "2000", "--seed", "11", "--out", str(base))
    return base


def events_of(path):
    return [json.loads(line) for line in open(path) if line.strip()]


def run_log(root):
    rows = DeltaTable(str(root / "_system" / "runs")).to_pyarrow_table().to_pylist()
    return {(r["run_id"], r["table"]): r for r in rows}


def by_job(events):
    jobs = {}
    for e in events:
        jobs.setdefault(e["job"]["name"], []).append(e)
    return jobs


def test_events_validate_reach_the_endpoint_and_agree_with_the_run_log(tmp_path, landing):
    ndjson = tmp_path / "ol" / "events.ndjson"
    with receiver() as server:
        config = config_with(
            tmp_path,
            f"lineage:\n  openlineage:\n    namespace: marketing\n    file: {ndjson}\n    url: {server.url}\n",
        )
        root = tmp_path / "lake"
        out = medallion("--config", str(config), "--root", str(root), "--landing", str(landing),
                        "run", "--format", "json")
        run_id = json.loads(out.stdout)["run_id"]
        posted = list(server.events)
        paths = list(server.paths)

    events = events_of(ndjson)
    assert len(events) == 2 * TABLES
    for e in events:
        validate_event(e)
    # The endpoint got every event, in order, at the OpenLineage HTTP path.
    assert posted == events
    assert set(paths) == {"/api/v1/lineage"}
    # The lakehouse keeps the run's events too.
    kept = events_of(root / "_system" / "openlineage" / f"{run_id}.ndjson")
    assert kept == events

    log = run_log(root)
    jobs = by_job(events)
    assert len(jobs) == TABLES
    parents = set()
    for table, (start, end) in jobs.items():
        assert (start["eventType"], end["eventType"]) == ("START", "COMPLETE"), table
        assert start["run"]["runId"] == end["run"]["runId"]
        assert start["job"]["namespace"] == "marketing"
        assert start["eventTime"] <= end["eventTime"]
        parents.add(end["run"]["facets"]["parent"]["run"]["runId"])
        record = log[(run_id, table)]
        assert record["status"] == "succeeded"
        out = end["outputs"][0]
        layer, name = table.split(".")
        assert out["namespace"] == "file"
        assert out["name"] == str(root / layer / name)
        assert out["outputFacets"]["outputStatistics"]["rowCount"] == record["rows_written"]
        assert out["facets"]["version"]["datasetVersion"] == str(record["output_version"])
        # The schema facet lists the table's columns as a Delta reader sees them.
        delta_columns = [f.name for f in DeltaTable(out["name"]).schema().fields]
        assert [f["name"] for f in out["facets"]["schema"]["fields"]] == delta_columns
        if record["rows_quarantined"]:
            q = end["outputs"][1]
            assert q["name"] == str(root / layer / "_quarantine" / name)
            assert q["outputFacets"]["outputStatistics"]["rowCount"] == record["rows_quarantined"]
        # Inputs with the versions the run log records.
        recorded = json.loads(record["inputs"])
        if layer == "bronze":
            (source,) = end["inputs"]
            assert source["name"] == str(landing / name)
            metrics = source["inputFacets"]["dataQualityMetrics"]
            assert metrics["rowCount"] == record["rows_read"]
            assert metrics["fileCount"] == len(recorded["files"])
        else:
            got = {i["name"]: i["facets"]["version"]["datasetVersion"] for i in end["inputs"]}
            want = {
                str(root / t.split(".")[0] / t.split(".")[1]): str(v["to_version"]) for t, v in recorded.items()
            }
            assert got == want, table
    assert len(parents) == 1

    # Silver: the expectations as assertions on the Bronze input, with the rows failing each.
    (_, end) = jobs["silver.events"]
    bronze_input = next(i for i in end["inputs"] if i["name"].endswith("bronze/events"))
    assertions = {a["name"]: a for a in bronze_input["inputFacets"]["dataQualityAssertions"]["assertions"]}
    assert set(assertions) == {"event_id_present", "event_type_known", "event_time_parseable",
                               "revenue_valid", "currency_known"}
    assert assertions["event_id_present"]["assertion"] == "event_id IS NOT NULL AND btrim(event_id) <> ''"
    assert assertions["event_id_present"]["severity"] == "quarantine"
    failing = {n: int(re.match(r"(\d+) rows failed", a["actual"]).group(1)) for n, a in assertions.items()}
    rules = json.loads(log[(run_id, "silver.events")]["rows_dropped"])
    assert failing == {n: rules.get(n, 0) for n in failing}
    assert all(a["success"] == (failing[n] == 0) for n, a in assertions.items())
    assert sum(failing.values()) > 0, "the sample data breaks some rules"

    # Column lineage: a Silver column from its expression, through a lookup.
    lineage = end["outputs"][0]["facets"]["columnLineage"]["fields"]
    revenue_usd = {(f["name"].split("/")[-2] + "." + f["name"].split("/")[-1], f["field"],
                    f["transformations"][0]["subtype"]) for f in lineage["revenue_usd"]["inputFields"]}
    assert revenue_usd == {
        ("bronze.events", "revenue", "TRANSFORMATION"),
        ("bronze.events", "_rescued", "TRANSFORMATION"),
        ("silver.fx_rates", "usd_per_unit", "TRANSFORMATION"),
    }
    assert {(f["field"], f["transformations"][0]["subtype"]) for f in lineage["event_id"]["inputFields"]} == {
        ("event_id", "IDENTITY")
    }
    # A SQL model's column lineage comes from its logical plan.
    (_, end) = jobs["gold.channel_daily"]
    assert "sql" in end["job"]["facets"]
    fields = end["outputs"][0]["facets"]["columnLineage"]["fields"]
    for column, spec in fields.items():
        for f in spec["inputFields"]:
            assert f["name"].startswith(str(root)), (column, f)


def test_an_endpoint_that_is_down_does_not_fail_the_run(tmp_path, landing):
    ndjson = tmp_path / "events.ndjson"
    with receiver() as server:
        url = server.url  # a port that was just free, now closed
    config = config_with(tmp_path, f"lineage:\n  openlineage:\n    file: {ndjson}\n    url: {url}\n    timeout_secs: 2\n")
    root = tmp_path / "lake"
    out = medallion("--config", str(config), "--root", str(root), "--landing", str(landing),
                    "run", "--layer", "bronze", "--format", "json")
    assert "OpenLineage endpoint did not take the event" in out.stderr
    assert out.stderr.count("OpenLineage endpoint did not take the event") == 1
    events = events_of(ndjson)
    assert len(events) == 8
    for e in events:
        validate_event(e)
    run_id = json.loads(out.stdout)["run_id"]
    assert events_of(root / "_system" / "openlineage" / f"{run_id}.ndjson") == events


def test_an_endpoint_answering_500_is_a_warning(tmp_path, landing):
    with receiver(status=500) as server:
        config = config_with(tmp_path, f"lineage:\n  openlineage:\n    url: {server.url}\n")
        root = tmp_path / "lake"
        out = medallion("--config", str(config), "--root", str(root), "--landing", str(landing),
                        "run", "--layer", "bronze")
        assert len(server.events) == 1, "the run stops posting after the first refusal"
    assert "HTTP 500" in out.stderr


def test_a_failed_run_emits_fail_with_the_rule(tmp_path, landing):
    ndjson = tmp_path / "events.ndjson"
    config = config_with(
        tmp_path,
        f"lineage:\n  openlineage:\n    file: {ndjson}\n",
        replace={
            "      event_type_known:\n        expr: >-\n          event_type IN ('impression', 'click', 'page_view', 'email_open', 'email_click',\n          'add_to_cart', 'signup', 'purchase', 'unsubscribe')\n        action: quarantine":
            "      event_type_known:\n        expr: >-\n          event_type IN ('impression', 'click', 'page_view', 'email_open', 'email_click',\n          'add_to_cart', 'signup', 'purchase', 'unsubscribe')\n        action: fail",
        },
    )
    root = tmp_path / "lake"
    out = medallion("--config", str(config), "--root", str(root), "--landing", str(landing), "run", code=3)
    events = events_of(ndjson)
    for e in events:
        validate_event(e)
    jobs = by_job(events)
    start, end = jobs["silver.events"]
    assert (start["eventType"], end["eventType"]) == ("START", "FAIL")
    message = end["run"]["facets"]["errorMessage"]["message"]
    assert "event_type_known" in message
    bronze_input = next(i for i in end["inputs"] if i["name"].endswith("bronze/events"))
    rule = next(a for a in bronze_input["inputFacets"]["dataQualityAssertions"]["assertions"]
                if a["name"] == "event_type_known")
    assert rule["success"] is False and rule["severity"] == "fail"
    failing = int(re.match(r"(\d+) rows failed", rule["actual"]).group(1))
    assert failing > 0
    # The run log has the failure, with the same rule and count.
    failed = [r for r in run_log(root).values() if r["status"] == "failed"]
    assert [r["table"] for r in failed] == ["silver.events"]
    assert json.loads(failed[0]["rows_dropped"])["event_type_known"] == failing
    assert "event_type_known" in failed[0]["error"]
    # Nothing after the failure ran: no Gold events.
    assert not [j for j in jobs if j.startswith("gold.")]
