"""Bronze tables read by two independent readers: the `deltalake` package and a pyarrow
reader of the Delta log written here (delta_log.py). Both must see the same rows and
schema as each other and as the engine's own report."""

import json
import os
import shutil
import subprocess

import pyarrow as pa
import pytest
from deltalake import DeltaTable

import delta_log

BIN = os.environ.get("MEDALLION_BIN", "medallion")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def medallion(*args, cwd=REPO):
    out = subprocess.run([BIN, *args], cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """Generated data landed in three waves, one Bronze run each, with a checkpoint every
    two commits so that both readers have to read checkpoints and JSON commits."""
    base = tmp_path_factory.mktemp("interop")
    generated_dir, landing, root = base / "generated", base / "landing", base / "lake"
    generated = json.loads(
        medallion("generate", "--events", "30000", "--events-per-file", "3000", "--seed", "5", "--out", str(generated_dir))
    )
    config = base / "layers.yaml"
    with open(os.path.join(REPO, "layers.yaml")) as f:
        config.write_text(f.read().replace("checkpoint_interval: 10", "checkpoint_interval: 2"))
    files = sorted(p.relative_to(generated_dir) for p in generated_dir.rglob("*") if p.is_file())
    events = [f for f in files if f.parts[0] == "events"]
    others = [f for f in files if f.parts[0] != "events"]
    waves = [others + events[:4], events[4:7], events[7:]]
    totals = {}
    for wave in waves:
        for f in wave:
            (landing / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(generated_dir / f, landing / f)
        report = json.loads(
            medallion("--config", str(config), "run", "--layer", "bronze", "--format", "json",
                      "--root", str(root), "--landing", str(landing))
        )
        for t in report["bronze"]:
            acc = totals.setdefault(t["table"], {"rows": 0, "quarantined": 0})
            acc["rows"] += t["rows"]
            acc["quarantined"] += t["quarantined"]
    return root, generated, totals


def sorted_rows(table):
    keys = [(c, "ascending") for c in ("_source_file", "_source_line") if c in table.column_names]
    return table.sort_by(keys).to_pylist()


@pytest.mark.parametrize("table", ["events", "ad_spend", "campaigns", "fx_rates"])
def test_both_readers_agree_with_each_other_and_the_engine(lake, table):
    root, generated, report = lake
    path = str(root / "bronze" / table)
    ours = delta_log.read_table(path)
    theirs = DeltaTable(path).to_pyarrow_table()
    assert ours.num_rows == report[f"bronze.{table}"]["rows"]
    assert theirs.num_rows == ours.num_rows
    assert [f.name for f in theirs.schema] == [f.name for f in ours.schema]
    theirs = theirs.cast(ours.schema)
    assert sorted_rows(theirs) == sorted_rows(ours)
    for column in ("_source_file", "_source_line", "_ingested_at", "_run_id", "_rescued"):
        assert column in ours.column_names


def test_quarantine_holds_the_malformed_lines(lake):
    root, generated, report = lake
    path = str(root / "bronze" / "_quarantine" / "events")
    ours = delta_log.read_table(path)
    theirs = DeltaTable(path).to_pyarrow_table()
    assert ours.num_rows == theirs.num_rows == generated["malformed_lines"]
    assert ours.schema.field("_raw").type == pa.binary()
    assert sorted_rows(theirs.cast(ours.schema)) == sorted_rows(ours)


def test_drift_columns_accounting_and_checkpoints(lake):
    root, generated, report = lake
    events = report["bronze.events"]
    assert events["rows"] + events["quarantined"] == generated["lines"] == 30000
    log = root / "bronze" / "events" / "_delta_log"
    assert (log / "_last_checkpoint").exists(), sorted(p.name for p in log.iterdir())
    fields, _, _ = delta_log.read_log(str(root / "bronze" / "events"))
    names = [name for name, _ in fields]
    for drift in ("device", "consent", "app_version"):
        assert drift in names
