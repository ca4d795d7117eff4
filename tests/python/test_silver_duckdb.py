"""The engine's Silver tables against an independent DuckDB implementation of SPEC 4b
(duckdb_pipeline.py), row for row and column for column.

Generated landing data (40k events, dirt included) lands in two waves: the dimension
files and the first half of the event files, then the rest. After each wave the engine
runs Bronze, then Silver. The DuckDB side reads the same landed files directly (never the
engine's tables), with the wave playing the role of the Bronze version.

The DuckDB side is also checked on its own, against the exact counts the generator
reports for each kind of dirt it injected, and against its own strict-parser mode.
"""

import json
import math
import os
import shutil
import subprocess
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import duckdb_pipeline as ddb

BIN = os.environ.get("MEDALLION_BIN", "medallion")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.environ.get("MEDALLION_CONFIG", os.path.join(REPO, "layers.yaml"))

EVENTS = 40_000
EVENTS_PER_FILE = 5_000
SEED = 7
REL_TOL = 1e-9
KEY = ("_source_file", "_source_line")

DIMENSION_COLUMNS = {
    "fx_rates": ["currency", "usd_per_unit"],
    "campaigns": [
        "campaign_id", "name", "channel", "platform", "utm_campaign",
        "start_date", "end_date", "budget", "currency",
    ],
    "ad_spend": [
        "date", "platform", "campaign_id", "impressions", "clicks", "spend", "currency", "spend_usd",
    ],
}


def medallion(*args, cwd=REPO):
    out = subprocess.run([BIN, *args], cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, f"medallion {' '.join(args)} exited {out.returncode}:\n{out.stderr}"
    return out.stdout


# ----------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Generated landing files, the generator's report and the two landing waves."""
    base = tmp_path_factory.mktemp("silver_duckdb")
    out = base / "generated"
    report = json.loads(
        medallion("generate", "--events", str(EVENTS), "--events-per-file", str(EVENTS_PER_FILE),
                  "--seed", str(SEED), "--out", str(out))
    )
    files = ddb.list_landing(str(out))
    events = [f for f in files if f.startswith("events/")]
    others = [f for f in files if not f.startswith("events/")]
    half = len(events) // 2
    waves = [others + events[:half], events[half:]]
    return base, out, report, waves


@pytest.fixture(scope="module")
def expected(generated):
    """The DuckDB implementation's Silver tables."""
    _, out, _, waves = generated
    return ddb.silver(str(out), waves)


@pytest.fixture(scope="module")
def lake(generated):
    """The engine's lakehouse after Bronze and Silver runs on each wave, with the runs'
    JSON reports."""
    base, out, _, waves = generated
    landing, root = base / "landing", base / "lake"
    reports = []
    for wave in waves:
        for rel in wave:
            (landing / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out / rel, landing / rel)
        common = ["--config", CONFIG, "--format", "json", "--root", str(root), "--landing", str(landing)]
        bronze = json.loads(medallion("run", "--layer", "bronze", *common))
        silver = json.loads(medallion("run", "--layer", "silver", *common))
        reports.append({"bronze": bronze, "silver": silver})
    return root, reports


def read_delta(path):
    from deltalake import DeltaTable

    return DeltaTable(str(path)).to_pyarrow_table()


def entries(report, layer):
    """{table name without layer prefix: metrics} of one run report."""
    items = report.get(layer) or []
    if isinstance(items, dict):
        items = [dict(v, table=k) for k, v in items.items()]
    return {t["table"].split(".", 1)[-1]: t for t in items}


# ----------------------------------------------------------------------------------------
# Row comparison
# ----------------------------------------------------------------------------------------


def normalized(table: pa.Table, column: str) -> list:
    """A column as Python values that compare across both sides: timestamps as UTC
    microseconds, dates as days, JSON text parsed, rule lists joined."""
    col = table.column(column)
    t = col.type
    if pa.types.is_timestamp(t):
        col = pc.cast(col.cast(pa.timestamp("us", tz=t.tz)), pa.int64())
    elif pa.types.is_date(t):
        col = pc.cast(col.cast(pa.date32()), pa.int32())
    elif pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
    values = col.to_pylist()
    if column == "properties":
        values = [None if v is None else json.loads(v) for v in values]
    if column == "_rules":
        values = [",".join(v) if isinstance(v, list) else v for v in values]
    return values


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, (int, float)) or isinstance(b, float) and isinstance(a, (int, float)):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=0.0)
    return a == b


def version_ranks(values):
    """Bronze versions (engine) or waves (DuckDB) as their rank, 0 = the first."""
    order = {v: i for i, v in enumerate(sorted({v for v in values if v is not None}))}
    return [order.get(v) for v in values]


def differences(engine: pa.Table, ours: pa.Table, columns, lineage=True, limit=40):
    """Every difference between the engine's rows and ours, matched on (_source_file,
    _source_line): a list of human-readable lines (empty when they agree)."""
    out = []
    missing = [c for c in (*columns, *KEY) if c not in engine.column_names]
    if missing:
        out.append(f"columns missing from the engine's table: {missing}")
    eng_keys = list(zip(*(normalized(engine, c) for c in KEY))) if not set(KEY) - set(engine.column_names) else []
    our_keys = list(zip(*(normalized(ours, c) for c in KEY)))
    if len(set(eng_keys)) != len(eng_keys):
        dup = [k for k, n in Counter(eng_keys).items() if n > 1]
        out.append(f"{len(dup)} (file, line) keys appear more than once in the engine's table, e.g. {dup[:5]}")
    e_index = {k: i for i, k in enumerate(eng_keys)}
    o_index = {k: i for i, k in enumerate(our_keys)}
    only_engine = sorted(set(e_index) - set(o_index))
    only_ours = sorted(set(o_index) - set(e_index))
    if only_engine:
        out.append(f"{len(only_engine)} rows only in the engine's table, e.g. {only_engine[:10]}")
    if only_ours:
        out.append(f"{len(only_ours)} rows only in the DuckDB table, e.g. {only_ours[:10]}")
    common = [k for k in our_keys if k in e_index]
    compared = [c for c in columns if c in engine.column_names]
    per_column = Counter()
    examples = []
    extra = []
    # Lineage: the engine's Bronze versions and our waves must order the rows alike.
    version = next((c for c in ("_bronze_version", "_bronze_wave") if c in engine.column_names), None)
    if lineage and version:
        extra.append((version, version_ranks(normalized(engine, version)),
                      version_ranks(normalized(ours, "_bronze_wave"))))
    for c in compared:
        extra.append((c, normalized(engine, c), normalized(ours, c)))
    for name, e_vals, o_vals in extra:
        for k in common:
            a, b = e_vals[e_index[k]], o_vals[o_index[k]]
            if not same(a, b):
                per_column[name] += 1
                if len(examples) < limit:
                    examples.append(f"  {k[0]}:{k[1]} {name}: engine={a!r} duckdb={b!r}")
    if per_column:
        out.append(f"differing values per column (of {len(common)} common rows): {dict(per_column)}")
        out.extend(examples)
    return out


def assert_same_rows(engine, ours, columns, what, lineage=True):
    diff = differences(engine, ours, columns, lineage)
    assert not diff, f"{what}: engine and DuckDB differ\n" + "\n".join(diff)


# ----------------------------------------------------------------------------------------
# The DuckDB side on its own
# ----------------------------------------------------------------------------------------


def test_duckdb_counts_match_the_generator_report(generated, expected):
    _, _, g, _ = generated
    s = expected.stats
    b = s["bronze.events"]
    assert b["lines"] == g["lines"] == EVENTS
    assert b["quarantined"] == g["malformed_lines"]
    assert b["rows"] == g["original_events"] + g["duplicates"]
    ev = s["silver.events"]
    assert ev["rows_written"] == g["clean_events"]
    assert ev["duplicates_removed"] == g["duplicates"]
    assert ev["rows_quarantined"] == g["original_events"] - g["clean_events"]
    assert ev["rules"] == {
        "event_id_present": g["missing_event_id"],
        "event_type_known": g["unknown_event_types"],
        "event_time_parseable": g["unparseable_times"],
        "revenue_valid": g["negative_revenues"] + g["non_numeric_revenues"],
        "currency_known": g["unknown_currencies"] + g["missing_currencies"],
    }
    # Originals = Silver rows + quarantined rows (only clean originals are re-sent).
    originals = pa.concat_tables(
        [expected.tables["events"].select(["identity", "user_id", "event_type"]),
         expected.tables["events_quarantine"].select(["identity", "user_id", "event_type"])]
    )
    assert originals.num_rows == g["original_events"]
    assert originals.column("identity").null_count == g["events_without_identity"]
    assert originals.column("user_id").null_count == g["anonymous_events"]
    types = Counter(expected.tables["events"].column("event_type").to_pylist())
    quarantined_types = Counter(expected.tables["events_quarantine"].column("event_type").to_pylist())
    for t, n in g["event_types"].items():
        assert types[t] + quarantined_types[t] == n, t
    assert s["silver.campaigns"]["rows_written"] == g["campaigns"]
    assert s["silver.fx_rates"]["rows_written"] == g["currencies"]
    assert s["bronze.ad_spend"]["rows"] == g["ad_spend_rows"]
    assert s["silver.ad_spend"]["rows_written"] + s["silver.ad_spend"]["rows_quarantined"] == (
        g["ad_spend_rows"] - g["restated_ad_spend_rows"]
    )
    # Touches without campaign_id that resolve to no campaign: an unknown or shared utm value.
    touches = expected.tables["events"].filter(
        pc.and_(pc.is_in(expected.tables["events"].column("event_type"),
                         pa.array(["click", "email_click", "page_view"])),
                pc.and_(pc.is_null(expected.tables["events"].column("campaign_id")),
                        pc.is_valid(expected.tables["events"].column("utm_campaign")))))
    assert touches.num_rows <= g["unknown_utm_touches"] + g["ambiguous_utm_touches"]


def test_duckdb_fast_path_agrees_with_the_strict_parser(generated, expected):
    """DuckDB's JSON functions (with the strict fallback for what they may misread) and
    the strict Python parser alone give the same Silver tables."""
    _, out, _, waves = generated
    strict = ddb.silver(str(out), waves, strict_all=True)
    for name, table in expected.tables.items():
        columns = [c for c in table.column_names if c not in KEY and c != "_bronze_wave"]
        assert_same_rows(strict.tables[name], table, columns, name)


# ----------------------------------------------------------------------------------------
# The engine against the DuckDB side
# ----------------------------------------------------------------------------------------


def test_engine_run_counts_balance_and_match(lake, expected):
    root, reports = lake
    bronze_rows = sum(entries(r["bronze"], "bronze")["events"]["rows"] for r in reports)
    assert bronze_rows == expected.stats["bronze.events"]["rows"]
    runs = [entries(r["silver"], "silver")["events"] for r in reports]
    for i, m in enumerate(runs):
        assert m["rows_read"] == (
            m["rows_written"] + m["rows_quarantined"] + m.get("rows_dropped", 0) + m["duplicates_removed"]
        ), f"run {i}: {m}"
    # A rebuild starts the table again: count from the last one.
    start = max([i for i, m in enumerate(runs) if m.get("mode") == "rebuild"] or [0])
    total = Counter()
    for m in runs[start:]:
        for k in ("rows_read", "rows_written", "rows_quarantined", "duplicates_removed"):
            total[k] += m[k]
        for rule, n in m["rules"].items():
            total["rule:" + rule] += n
    ours = expected.stats["silver.events"]
    assert total["rows_read"] == bronze_rows
    got = {k: total[k] for k in ("rows_written", "rows_quarantined", "duplicates_removed")}
    want = {k: ours[k] for k in got}
    got.update({r: total["rule:" + r] for r in ddb.EVENT_RULES})
    want.update(ours["rules"])
    assert got == want
    assert read_delta(root / "silver" / "events").num_rows == ours["rows_written"]
    assert read_delta(root / "silver" / "_quarantine" / "events").num_rows == ours["rows_quarantined"]


def test_silver_events_rows_match(lake, expected):
    root, _ = lake
    engine = read_delta(root / "silver" / "events")
    assert_same_rows(engine, expected.tables["events"], ddb.SILVER_EVENT_COLUMNS, "silver.events")


def test_silver_events_quarantine_rows_match(lake, expected):
    root, _ = lake
    engine = read_delta(root / "silver" / "_quarantine" / "events")
    assert_same_rows(
        engine, expected.tables["events_quarantine"], [*ddb.SILVER_EVENT_COLUMNS, "_rules"],
        "silver._quarantine.events",
    )


@pytest.mark.parametrize("table", ["fx_rates", "campaigns", "ad_spend"])
def test_silver_dimension_rows_match(lake, expected, table):
    root, reports = lake
    engine = read_delta(root / "silver" / table)
    assert_same_rows(engine, expected.tables[table], DIMENSION_COLUMNS[table], f"silver.{table}")
    quarantine = root / "silver" / "_quarantine" / table
    ours_q = expected.tables[f"{table}_quarantine"]
    if os.path.isdir(quarantine / "_delta_log"):
        assert_same_rows(read_delta(quarantine), ours_q, [*DIMENSION_COLUMNS[table], "_rules"],
                         f"silver._quarantine.{table}")
    else:
        assert ours_q.num_rows == 0, f"the engine has no quarantine table for {table}"
