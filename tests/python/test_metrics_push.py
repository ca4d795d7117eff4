"""`run --metrics-push URL` against a real Pushgateway (Debian's prometheus-pushgateway, started
on loopback): the pushed metrics, scraped back from the Pushgateway and parsed with the
Prometheus client's parser, equal the run log, the Delta tables and the landed files; sharded
Bronze jobs push to groups of their own; a failed run says so and keeps the last success time;
a push that fails warns and never fails the run."""

import gzip
import json
import os
import socket
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from deltalake import DeltaTable
from prometheus_client.parser import text_string_to_metric_families

BIN = os.environ.get("MEDALLION_BIN", "medallion")
PUSHGATEWAY = os.environ.get("MEDALLION_PUSHGATEWAY", "")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAIL_RULE = (
    "          'add_to_cart', 'signup', 'purchase', 'unsubscribe')\n        action: quarantine",
    "          'add_to_cart', 'signup', 'purchase', 'unsubscribe')\n        action: fail",
)


def medallion(*args, code=0, env=None):
    out = subprocess.run([BIN, *args], cwd=REPO, capture_output=True, text=True, env=env)
    assert out.returncode == code, out.stderr[-4000:]
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def pushgateway(tmp_path):
    assert os.access(PUSHGATEWAY, os.X_OK), (
        "MEDALLION_PUSHGATEWAY must name the prometheus-pushgateway binary "
        "(scripts/test.sh unpacks Debian's package)"
    )
    port = free_port()
    log = open(tmp_path / "pushgateway.log", "w")
    proc = subprocess.Popen(
        [PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 20
    while True:
        try:
            urllib.request.urlopen(url + "/-/ready", timeout=1).read()
            break
        except OSError:
            assert proc.poll() is None and time.time() < deadline, open(tmp_path / "pushgateway.log").read()
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


def scrape(url):
    """Every medallion sample the Pushgateway exposes: {(name, labels): value}, where labels
    are the sample's labels without the empty `instance` the Pushgateway adds."""
    text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("medallion_"):
                labels = {k: v for k, v in s.labels.items() if not (k == "instance" and v == "")}
                samples[(s.name, frozenset(labels.items()))] = s.value
    return samples


def group(samples, **grouping):
    """The samples of one Pushgateway group (its grouping labels exactly `grouping`):
    {(name, other labels sorted): value}."""
    keys = ("job", "layer", "shard", "shards")
    out = {}
    for (name, labels), value in samples.items():
        labels = dict(labels)
        if {k: labels[k] for k in keys if k in labels} != grouping:
            continue
        out[(name, tuple(sorted((k, v) for k, v in labels.items() if k not in keys)))] = value
    return out


def table_value(g, name, table):
    return g[(name, (("table", table),))]


def landed_bytes(landing, source):
    total = 0
    for dirpath, _, files in os.walk(landing / source):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
    return total


def landed_files(landing, source):
    return sum(len(files) for _, _, files in os.walk(landing / source))


def uncompressed_bytes(landing, source):
    total = 0
    for dirpath, _, files in os.walk(landing / source):
        for f in files:
            data = open(os.path.join(dirpath, f), "rb").read()
            total += len(gzip.decompress(data)) if data[:2] == b"\x1f\x8b" else len(data)
    return total


def run_log(root, run_id):
    rows = DeltaTable(str(root / "_system" / "runs")).to_pyarrow_table().to_pylist()
    return {r["table"]: r for r in rows if r["run_id"] == run_id}


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    base = tmp_path_factory.mktemp("metrics_landing")
    medallion("generate", "--events", "6000", "--events-per-file", "1500", "--seed", "5", "--out", str(base))
    return base


def test_pushed_metrics_equal_the_run_log_tables_and_files(tmp_path, landing, pushgateway):
    root = tmp_path / "lake"
    common = ("--root", str(root), "--landing", str(landing))
    shard_runs = {}
    for i in (0, 1):
        out = medallion(*common, "run", "--layer", "bronze", "--shard", f"{i}/2", "--format", "json",
                        "--metrics-push", pushgateway)
        shard_runs[i] = json.loads(out.stdout)["run_id"]
    # The rest of the DAG, with the URL from the environment (as the Kubernetes jobs give it).
    env = dict(os.environ, MEDALLION_METRICS_PUSH=pushgateway)
    out = medallion(*common, "run", "--layer", "silver", "--format", "json", env=env)
    silver_run = json.loads(out.stdout)["run_id"]
    out = medallion(*common, "run", "--layer", "gold", "--format", "json", env=env)
    assert "run metrics pushed" in out.stderr
    gold_run = json.loads(out.stdout)["run_id"]
    samples = scrape(pushgateway)

    # Bronze: one group per shard; the two add up to every landed file, byte and row.
    shards = {i: group(samples, job="medallion", layer="bronze", shard=str(i), shards="2") for i in (0, 1)}
    for i, g in shards.items():
        assert g[("medallion_run_info", (("engine_version", "0.1.0"), ("run_id", shard_runs[i])))] == 1
        assert g[("medallion_run_success", ())] == 1
        assert g[("medallion_run_tables", ())] == 4
        log = run_log(root, shard_runs[i])
        assert len(log) == 4
        for table, r in log.items():
            assert table_value(g, "medallion_table_rows_read", table) == r["rows_read"]
            assert table_value(g, "medallion_table_rows_written", table) == r["rows_written"]
            assert table_value(g, "medallion_table_rows_quarantined", table) == r["rows_quarantined"]
            assert table_value(g, "medallion_table_success", table) == 1
            duration = (r["finished_at"] - r["started_at"]).total_seconds()
            assert table_value(g, "medallion_table_duration_seconds", table) == pytest.approx(duration, abs=1e-6)
        started = g[("medallion_run_started_timestamp_seconds", ())]
        finished = g[("medallion_run_finished_timestamp_seconds", ())]
        assert g[("medallion_run_last_success_timestamp_seconds", ())] == finished
        assert g[("medallion_run_duration_seconds", ())] == pytest.approx(finished - started, abs=1e-5)
        assert abs(finished - time.time()) < 600
    for source in ("events", "ad_spend", "campaigns", "fx_rates"):
        table = f"bronze.{source}"
        files = sum(table_value(g, "medallion_table_files_read", table) for g in shards.values())
        read = sum(table_value(g, "medallion_table_bytes_read", table) for g in shards.values())
        raw = sum(table_value(g, "medallion_table_uncompressed_bytes_read", table) for g in shards.values())
        rows = sum(table_value(g, "medallion_table_rows_written", table) for g in shards.values())
        assert files == landed_files(landing, source), table
        assert read == landed_bytes(landing, source), table
        assert raw == uncompressed_bytes(landing, source), table
        assert rows == DeltaTable(str(root / "bronze" / source)).to_pyarrow_table().num_rows, table
    # Some events files are gzip'd: the two byte counts differ, and were both checked.
    assert sum(table_value(g, "medallion_table_uncompressed_bytes_read", "bronze.events") for g in shards.values()) > \
        landed_bytes(landing, "events")

    # Silver and Gold: their layers' groups, equal to the run log and the tables' versions.
    for layer, run_id, n in (("silver", silver_run, 4), ("gold", gold_run, 4)):
        g = group(samples, job="medallion", layer=layer)
        assert g[("medallion_run_info", (("engine_version", "0.1.0"), ("run_id", run_id)))] == 1
        assert g[("medallion_run_success", ())] == 1
        log = run_log(root, run_id)
        assert len(log) == n == g[("medallion_run_tables", ())]
        for table, r in log.items():
            assert table_value(g, "medallion_table_rows_read", table) == r["rows_read"]
            assert table_value(g, "medallion_table_rows_written", table) == r["rows_written"]
            assert table_value(g, "medallion_table_rows_quarantined", table) == r["rows_quarantined"]
            assert table_value(g, "medallion_table_duplicates_removed", table) == r["duplicates_removed"]
            assert table_value(g, "medallion_table_version", table) == r["output_version"]
            name = table.split(".", 1)[1]
            assert r["output_version"] == DeltaTable(str(root / layer / name)).version()
            for rule, count in json.loads(r["rows_dropped"]).items():
                assert g[("medallion_table_expectation_failed_rows", (("rule", rule), ("table", table)))] == count
    silver = group(samples, job="medallion", layer="silver")
    failing = {k: v for k, v in silver.items() if k[0] == "medallion_table_expectation_failed_rows"}
    assert sum(failing.values()) > 0, "the sample data fails some Silver rules"


def test_a_failed_run_pushes_its_failure_and_keeps_the_last_success(tmp_path, landing, pushgateway):
    root = tmp_path / "lake"
    common = ("--root", str(root), "--landing", str(landing))
    medallion(*common, "run", "--layer", "bronze")
    good = json.loads(medallion(*common, "run", "--layer", "silver", "--format", "json",
                                "--metrics-push", pushgateway).stdout)["run_id"]
    before = group(scrape(pushgateway), job="medallion", layer="silver")
    last_success = before[("medallion_run_last_success_timestamp_seconds", ())]
    assert before[("medallion_run_info", (("engine_version", "0.1.0"), ("run_id", good)))] == 1

    text = open(os.path.join(REPO, "layers.yaml")).read()
    assert FAIL_RULE[0] in text
    config = tmp_path / "layers.yaml"
    config.write_text(text.replace(FAIL_RULE[0], FAIL_RULE[1]))
    out = medallion("--config", str(config), *common, "run", "--layer", "silver", "--full-refresh",
                    "--metrics-push", pushgateway, code=3)
    assert "run metrics pushed" in out.stderr
    after = group(scrape(pushgateway), job="medallion", layer="silver")
    assert after[("medallion_run_success", ())] == 0
    # The failure did not erase when the layer last succeeded.
    assert after[("medallion_run_last_success_timestamp_seconds", ())] == last_success
    assert after[("medallion_run_finished_timestamp_seconds", ())] > last_success
    run_ids = [dict(k[1])["run_id"] for k in after if k[0] == "medallion_run_info"]
    assert len(run_ids) == 1 and run_ids[0] != good
    log = run_log(root, run_ids[0])
    assert log["silver.events"]["status"] == "failed"
    assert table_value(after, "medallion_table_success", "silver.events") == 0
    dropped = json.loads(log["silver.events"]["rows_dropped"])
    assert dropped["event_type_known"] > 0
    assert after[("medallion_table_expectation_failed_rows",
                  (("rule", "event_type_known"), ("table", "silver.events")))] == dropped["event_type_known"]


class Refusing(BaseHTTPRequestHandler):
    """Answers every push with HTTP 500, as a Pushgateway that cannot take it."""

    def _refuse(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b"storage full"
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_POST = _refuse

    def log_message(self, *args):
        pass


def test_a_push_that_fails_warns_and_the_run_succeeds(tmp_path, landing):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        refusing = f"http://127.0.0.1:{server.server_address[1]}"
        closed = f"http://127.0.0.1:{free_port()}"
        root = tmp_path / "lake"
        for url, why in ((refusing, "HTTP 500 Internal Server Error: storage full"), (closed, "Connection refused")):
            out = medallion("--root", str(root), "--landing", str(landing), "run", "--layer", "bronze",
                            "--format", "json", "--metrics-push", url)
            run_id = json.loads(out.stdout)["run_id"]
            warning = [line for line in out.stderr.splitlines() if "run metrics not pushed" in line]
            assert len(warning) == 1 and "WARN" in warning[0] and why in warning[0], out.stderr
            assert "/metrics/job/medallion/layer/bronze" in warning[0]
            assert all(r["status"] == "succeeded" for r in run_log(root, run_id).values())
    finally:
        server.shutdown()
