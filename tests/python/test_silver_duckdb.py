"""The engine's Silver tables against an independent DuckDB implementation of SPEC 4b
(duckdb_pipeline.py), row for row and column for column.

Generated landing data (40k events, dirt included) lands in two waves: the dimension
files and the first half of the event files, then the rest. After each wave the engine
runs Bronze, then Silver. The DuckDB side reads the same landed files directly (never the
engine's tables), with the wave playing the role of the Bronze version.

The DuckDB side is also checked on its own, against the exact counts the generator
reports for each kind of dirt it injected, and against its own strict-parser mode.

The DuckDB pipeline runs in a subprocess (its tables come back as Parquet): a process that
has loaded both duckdb and deltalake sometimes aborts at exit, which would fail the whole
pytest session. `duckdb_pipeline` is imported here only for its constants (it imports
duckdb lazily).
"""

import gzip
import json
import math
import os
import shutil
import subprocess
import sys
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

import duckdb_pipeline as ddb

BIN = os.environ.get("MEDALLION_BIN", "medallion")
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
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


def run_duckdb(landing, waves, out_dir, *extra):
    """The DuckDB pipeline up to Silver on `landing` in a subprocess; its tables and counts."""
    waves_file = os.path.join(out_dir, "waves.json")
    os.makedirs(out_dir, exist_ok=True)
    with open(waves_file, "w") as f:
        json.dump(waves, f)
    out = subprocess.run(
        [sys.executable, os.path.join(HERE, "duckdb_pipeline.py"), str(landing), "--waves", waves_file,
         "--out", out_dir, "--no-gold", *extra],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, f"duckdb_pipeline.py exited {out.returncode}:\n{out.stderr}"
    return ddb.read_result(out_dir)


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
    base, out, _, waves = generated
    return run_duckdb(out, waves, str(base / "duckdb"))


def run_engine(src, waves, base):
    """Lands the files of each wave (paths relative to `src`) under base/landing and runs
    the engine's Bronze, then Silver, after each; the lakehouse root and the run reports."""
    landing, root = base / "landing", base / "lake"
    reports = []
    for wave in waves:
        for rel in wave:
            (landing / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, landing / rel)
        common = ["--config", CONFIG, "--format", "json", "--root", str(root), "--landing", str(landing)]
        bronze = json.loads(medallion("run", "--layer", "bronze", *common))
        silver = json.loads(medallion("run", "--layer", "silver", *common))
        reports.append({"bronze": bronze, "silver": silver})
    return root, reports


@pytest.fixture(scope="module")
def lake(generated):
    """The engine's lakehouse after Bronze and Silver runs on each wave, with the runs'
    JSON reports."""
    base, out, _, waves = generated
    return run_engine(out, waves, base)


def read_delta(path):
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
    silver = s["silver.events"]
    assert silver["rows_written"] == g["clean_events"]
    assert silver["duplicates_removed"] == g["duplicates"]
    assert silver["rows_quarantined"] == g["original_events"] - g["clean_events"]
    assert silver["rules"] == {
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
    # Touches with a utm_campaign that resolve to no campaign: an unknown or a shared value.
    ev = expected.tables["events"]
    unresolved = ev.filter(pc.and_(
        pc.is_in(ev.column("event_type"), pa.array(["click", "email_click", "page_view"])),
        pc.and_(pc.is_null(ev.column("campaign_id")), pc.is_valid(ev.column("utm_campaign")))))
    assert unresolved.num_rows == g["unknown_utm_touches"] + g["ambiguous_utm_touches"]
    shared = pc.equal(pc.utf8_lower(pc.utf8_trim(unresolved.column("utm_campaign"), " ")),
                      g["ambiguous_utm_campaign"])
    assert pc.sum(shared.cast(pa.int64())).as_py() == g["ambiguous_utm_touches"]


def test_duckdb_fast_path_agrees_with_the_strict_parser(generated, expected):
    """DuckDB's JSON functions (with the strict fallback for what they may misread) and
    the strict Python parser alone give the same Silver tables."""
    base, out, _, waves = generated
    strict = run_duckdb(out, waves, str(base / "duckdb_strict"), "--strict-all")
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
    root, _ = lake
    engine = read_delta(root / "silver" / table)
    assert_same_rows(engine, expected.tables[table], DIMENSION_COLUMNS[table], f"silver.{table}")
    quarantine = root / "silver" / "_quarantine" / table
    ours_q = expected.tables[f"{table}_quarantine"]
    if os.path.isdir(quarantine / "_delta_log"):
        assert_same_rows(read_delta(quarantine), ours_q, [*DIMENSION_COLUMNS[table], "_rules"],
                         f"silver._quarantine.{table}")
    else:
        assert ours_q.num_rows == 0, f"the engine has no quarantine table for {table}"


# ----------------------------------------------------------------------------------------
# Edge cases: small hand-written landing files with the dirt the generator does not make
# ----------------------------------------------------------------------------------------

EDGE_FX = "currency,usd_per_unit\nUSD,1\n eur ,1.1\nGBP,1.27\nXXX,0\n,2\n"
EDGE_CAMPAIGNS = (
    "campaign_id,name,channel,platform,utm_campaign,start_date,end_date,budget,currency\n"
    '101,"Autumn, Sale", Paid_Social ,facebook,Autumn Sale,2025-09-01,2025-10-01,1000,USD\n'
    "102,Dup A,email,newsletter,shared,2025-09-01,2025-10-01,abc,EUR\n"  # budget misfits
    "103,Dup B,email,newsletter,SHARED ,2025-09-01,bad,5,eur\n"  # shares a utm value with 102
    " ,NoId,email,newsletter,x,2025-09-01,2025-10-01,5,EUR\n"  # blank id: quarantined
    "101,Autumn v2,paid_social,facebook,Autumn Sale,2025-09-01,2025-10-01,2000,USD\n"  # replaces 101
    "104,Plain,paid_search,google,Plus Value,2025-09-01,2025-10-01,,USD\n"
)
EDGE_AD_SPEND = (
    "date,platform,campaign_id,impressions,clicks,spend,currency\n"
    "2025-09-01,Facebook,101,1000,10,12.5,usd\n"
    "2025-09-01,facebook, 101,1100,11,13.5,USD\n"  # the same key once trimmed: replaces the first
    "2025-09-02,facebook,101,1000,10,-1,USD\n"
    "2025-09-02,facebook,102,1000,10,1,JPY\n"
    ",facebook,102,1000,10,1,USD\n"
    "2025-09-03,facebook,102,1000,10,1,USD,extra\n"  # one field too many: Bronze quarantine
    "2025-09-04,google,104,x,10,0.1,EUR\n"
)
# One line per case; `\r` endings, blank lines, a non-object, lenient-JSON lines, repeated
# keys, numbers as ids, every event_time spelling, URL decoding corners, revenue spellings.
EDGE_LINES = [
    '{"event_id":"e1","event_type":" Purchase ","event_time":"2025-09-01T10:00:00Z","user_id":123,"revenue":"12.50","currency":" eur","page_url":"https://shop.example.com/l?utm_campaign=Autumn+Sale&utm_source=fb&utm_campaign=x","properties":{"a":[1,2.50]}}',
    '{"event_id":"e1","event_type":"click","event_time":1756720800000}',
    '',
    '[1,2]',
    '{"event_id":"e2","event_type":"click","event_time":"2025-09-01 10:00:00.1234567","anonymous_id":"  a1 ","page_url":"/x?utm_campaign=shared"}\r',
    '{"event_id":"e3","event_type":"\\tpage_view\\n","event_time":"2025-09-01T12:00:00+02:00","user_id":" ","anonymous_id":"an","campaign_id":" 7 "}',
    '{"event_id":1.50,"event_type":"click","event_time":"1756720800000",}',
    '{"event_id":1.50,"event_type":"click","event_time":"1756720800000"}',
    '{"event_id":"e4","event_type":"purchase","event_time":"2025-09-01T10:00:00","revenue":-5,"currency":"JPY"}',
    '{"event_id":"e5","event_type":"purchase","event_time":"2025-09-01T10:00:00Z","revenue":NaN,"currency":"USD"}',
    '{"event_id":"e6","event_type":"purchase","event_time":"2025-09-01T10:00:00Z","revenue":"N/A","currency":"USD"}',
    '{"event_id":"e7","event_id":"e8","event_type":"purchase","event_time":"2025-09-01T10:00:00Z","revenue":7,"currency":"GBP"}',
    '{"event_id":"  ","event_type":"hover","event_time":"yesterday"}',
    '{"event_id":-0,"event_type":"click","event_time":"2025-02-29 10:00:00"}',
    '{"event_id":"e9","event_type":"click","event_time":"2024-02-29 10:00:00","page_url":"https://x.example/?utm_campaign=Autumn%20Sale","revenue":null}',
    '{"event_id":"e10","event_type":"click","event_time":"2024-02-29T23:59:59.9999999Z","page_url":"https://x.example/?utm_campaign=nomatch","properties":"str","revenue":"5"}',
    '{"event_id":"e11","event_type":"click","event_time":"2025-09-01t10:00:00.5z","page_url":"https://x.example/p?a=1&utm_campaign=plus+value&utm_term=a%2Bb+c&utm_content=&utm_source","user_id":"u1","anonymous_id":"a1"}',
    '{"event_id":"e12","event_type":"PAGE_VIEW","event_time":"2025-09-01T10:00:00-03:30","page_url":"https://x.example/p#frag?utm_campaign=Autumn+Sale"}',
    '{"event_id":"e13","event_type":"purchase","event_time":1756720800000,"revenue":12,"currency":"usd","campaign_id":102}',
    '{"event_id":"e14","event_type":"purchase","event_time":"2025-09-01T10:00:00Z","revenue":"1e2","currency":"GBP"}',
    '{"event_id":"e15","event_type":"purchase","event_time":"2025-09-01T10:00:00Z","revenue":0,"currency":"XXX"}',
    '{"event_id":"e16","event_type":"purchase","event_time":"2025-09-01T10:00:00Z","revenue":true,"currency":"USD"}',
    '{"event_id":"e17","event_type":"signup","event_time":"2025-09-01T10:00:00Z","currency":"ZZZ"}',
    '{"event_id":"e18","event_type":"click","event_time":"2025-09-01T10:00:00Z","session_id":123,"channel":" Email ","platform":"NewsLetter","user_id":true}',
    '{"event_id":"e19","event_type":{"x":1},"event_time":"2025-09-01T10:00:00Z"}',
    '{"event_id":"e20","event_type":"click","event_time":"2025-09-01T10:00:00.123456789+05:45","page_url":"https://x.example/?utm_campaign=%41utumn%20sale%20"}',
    '{"event_id":"e21","event_type":"click","event_time":"20250901"}',
    '{"event_id":"e22","event_type":"click","event_time":"2025-09-01T25:00:00Z"}',
    '{"event_id":"e23","event_type":"click","event_time":" 2025-09-01T10:00:00Z"}',
    '{"event_id":"e24","event_type":"click","event_time":"2025-09-01 10:00:00Z"}',
    '{"event_id":"e25","event_type":"click","event_time":"2025-09-01T10:00Z"}',
    '{"event_id":"e26","event_type":"click","event_time":1.7e12}',
    '{"event_id":"e28","event_type":"purchase","event_time":"2025-09-01T10:00:00Z","revenue":" 12.5 ","currency":"USD"}',
    '{"event_id":"e29","event_type":"purchase","event_time":"2025-09-01T10:00:00Z","revenue":null,"revenue":"3","currency":"USD"}',
    '{"event_id":"e30","event_type":"click","event_time":"2025-09-01T10:00:00Z","user_id":"\\u00e9l\\u00e8ve"}',
    '{"event_id":"\\t","event_type":"click","event_time":"2025-09-01T10:00:00Z"}',
    '{"event_id":"e31","event_type":"click","event_time":"2025-09-01T10:00:00Z"} ',
    ' {"event_id":"e32","event_type":"click","event_time":"2025-09-01T10:00:00Z"}',
    '{"event_id":"e33","event_type":"click","event_time":"2025-09-01T10:00:00Z","page_url":"https://x.example/?utm_campaign=a%FFb"}',
    '{"event_id":"e34","event_type":"click","event_time":"2025-09-01T10:00:00Z","Revenue":5}',
    '{"event_id":"e35","event_type":"click","event_time":"99999999999999999999"}',
    '{"event_id":"e36","event_type":"click","event_time":"2025-09-01T10:00:00+24:00"}',
    '{"event_id":"r3","event_type":"purchase","event_time":"2025-09-01T10:00:00Z","revenue":"-0","currency":"USD"}',
    '{"event_id":"r4","event_type":"purchase","event_time":"2025-09-01T10:00:00Z","revenue":"1_000","currency":"USD"}',
    '{"event_id":"r5","event_type":"purchase","event_time":"2025-09-01T10:00:00Z","revenue":"+5","currency":"USD"}',
    '{"event_id":"r6","event_type":"purchase","event_time":"2025-09-01T10:00:00Z","revenue":".5","currency":"USD"}',
    '{"event_id":"r7","event_type":"purchase","event_time":"2025-09-01T10:00:00Z","revenue":"5.","currency":"USD"}',
    '{"event_id":"r8","event_type":"purchase","event_time":"2025-09-01T10:00:00Z","revenue":"","currency":"USD"}',
    '{"event_id":"r10","event_type":"purchase","event_time":"2025-09-01T10:00:00Z","revenue":"12,50","currency":"USD"}',
    '{"event_id":"r11","event_type":"purchase","event_time":"2025-09-01T10:00:00Z","revenue":"\\t7\\n","currency":"USD"}',
    '{"event_id":"r12","event_type":"purchase","event_time":"2025-09-01T10:00:00Z","revenue":[1],"currency":"USD"}',
    '{"event_id":"r13","event_type":"purchase","event_time":"2025-09-01T10:00:00Z","revenue":-0.0,"currency":"USD"}',
    '{"event_id":"r15","event_type":"purchase","event_time":"2025-09-01T10:00:00Z","revenue":"0x10","currency":"USD"}',
    '{"event_id":"t1","event_type":"click","event_time":"2016-12-31T23:59:60Z"}',
    '{"event_id":"t2","event_type":"click","event_time":"2016-12-31 23:59:60"}',
    '{"event_id":"t3","event_type":"click","event_time":"2025-09-01T10:00:00.Z"}',
    '{"event_id":"t4","event_type":"click","event_time":-5}',
    '{"event_id":"t5","event_type":"click","event_time":"0"}',
    '{"event_id":"t6","event_type":"click","event_time":"2025-09-01T10:00:00+0200"}',
    '{"event_id":"t7","event_type":"click","event_time":"2025-09-01 10:00:00.5+02:00"}',
    '{"event_id":"t8","event_type":"click","event_time":"2025-09-01 10:00:00 "}',
    '{"event_id":"t10","event_type":"click","event_time":"2025-9-01 10:00:00"}',
    '{"event_id":"t12","event_type":"click","event_time":"2025-09-01T10:00:00-00:00"}',
    '{"event_id":"t13","event_type":"click","event_time":"2025-09-01 10:00:00.1234567890123"}',
    '{"event_id":"t14","event_type":"click","event_time":"2025-02-29T10:00:00Z"}',
    '{"event_id":"u1","event_type":"click","event_time":1,"page_url":"https://x.example/?utm_campaign=autumn%20sale "}',
    '{"event_id":"u2","event_type":"click","event_time":1,"page_url":"HTTPS://X.EXAMPLE/?UTM_CAMPAIGN=x&utm_campaign=Autumn+Sale"}',
    '{"event_id":"u3","event_type":"click","event_time":1,"page_url":"not a url?utm_campaign=Autumn+Sale"}',
    '{"event_id":"u4","event_type":"click","event_time":1,"page_url":"https://x.example/?utm_campaign=Autumn%2BSale"}',
    '{"event_id":"u5","event_type":"click","event_time":1,"page_url":"https://x.example/?utm_campaign=%E2%82%AC&utm_source=a;b"}',
    '{"event_id":"u6","event_type":"click","event_time":1,"page_url":"https://x.example/?&&utm_campaign&utm_campaign=Autumn+Sale"}',
    '{"event_id":"u7","event_type":"click","event_time":1,"page_url":"https://x.example/?utm_campaign=Autumn Sale"}',
    '{"event_id":"u8","event_type":"click","event_time":1,"page_url":"https://[::1/?utm_campaign=Autumn+Sale"}',
    '{"event_id":"u9","event_type":"click","event_time":1,"page_url":"//x.example/p?utm_campaign=Autumn+Sale#x"}',
    '{"event_id":"u10","event_type":"click","event_time":1,"page_url":"https://x.example/?utm_campaign=Autumn\\tSale"}',
]
# Revenues that are no finite number: a JSON number beyond the double range, and numeric
# strings that parse as NaN or infinity. Read here as given but not valid (quarantined).
NON_FINITE_REVENUE_LINES = [
    '{"event_id":"n1","event_type":"purchase","event_time":"2025-09-01T10:00:00Z","revenue":1e400,"currency":"USD"}',
    '{"event_id":"n2","event_type":"purchase","event_time":"2025-09-01T10:00:00Z","revenue":"NaN","currency":"USD"}',
    '{"event_id":"n3","event_type":"purchase","event_time":"2025-09-01T10:00:00Z","revenue":"inf","currency":"USD"}',
    '{"event_id":"n4","event_type":"purchase","event_time":"2025-09-01T10:00:00Z","revenue":"1e400","currency":"USD"}',
    '{"event_id":"n5","event_type":"purchase","event_time":"2025-09-01T10:00:00Z","revenue":"Infinity","currency":"USD"}',
]

ALL_TABLES = {
    "events": ddb.SILVER_EVENT_COLUMNS,
    "events_quarantine": [*ddb.SILVER_EVENT_COLUMNS, "_rules"],
    **DIMENSION_COLUMNS,
    **{f"{t}_quarantine": [*c, "_rules"] for t, c in DIMENSION_COLUMNS.items()},
}


def engine_table(root, name):
    """An engine Silver table by our name (`x_quarantine` is `_quarantine/x`), or None."""
    path = root / "silver" / (f"_quarantine/{name[: -len('_quarantine')]}" if name.endswith("_quarantine") else name)
    return read_delta(path) if (path / "_delta_log").is_dir() else None


def edge_landing(src, event_lines):
    """Writes the edge-case landing files under `src`; the two landing waves. The second
    wave's file sorts first by name, so only the Bronze version puts it after the first."""
    for folder, name, data in [
        ("fx_rates", "fx.csv", EDGE_FX.encode()),
        ("campaigns", "campaigns.csv", EDGE_CAMPAIGNS.encode()),
        ("ad_spend", "ad_spend.csv", EDGE_AD_SPEND.encode()),
        ("events", "part-0001.ndjson", ("\n".join(event_lines) + "\n").encode()),
        # gzip without a .gz name, a line that is not UTF-8, CRLF endings, a blank last line
        ("events", "part-0002", gzip.compress(
            b'{"event_id":"e2","event_type":"click","event_time":1}\n\xff\xfe\n'
            b'{"event_id":"e40","event_type":"CLICK","event_time":1}\r\n\r\n')),
        # no final newline; re-sends of e1 and e40 ingested later
        ("events", "part-0000-late.ndjson",
         b'{"event_id":"e40","event_type":"click","event_time":2}\n'
         b'{"event_id":"e1","event_type":"click","event_time":3}\n'
         b'{"event_id":"e50","event_type":"click","event_time":3}'),
    ]:
        (src / folder).mkdir(parents=True, exist_ok=True)
        (src / folder / name).write_bytes(data)
    files = ddb.list_landing(str(src))
    late = "events/part-0000-late.ndjson"
    return [[f for f in files if f != late], [late]]


def both_sides(base, event_lines):
    src = base / "src"
    waves = edge_landing(src, event_lines)
    root, reports = run_engine(src, waves, base)
    return root, reports, run_duckdb(src, waves, str(base / "duckdb"))


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    return both_sides(tmp_path_factory.mktemp("silver_edge"), EDGE_LINES)


@pytest.mark.parametrize("name", ALL_TABLES)
def test_edge_cases_match(edge, name):
    root, _, ours = edge
    engine = engine_table(root, name)
    if engine is None:
        assert ours.tables[name].num_rows == 0, f"the engine has no table for {name}"
        return
    assert_same_rows(engine, ours.tables[name], ALL_TABLES[name], f"edge cases, {name}")


def test_non_finite_revenue_is_not_valid(tmp_path):
    root, _, ours = both_sides(tmp_path, NON_FINITE_REVENUE_LINES)
    problems = []
    for name in ("events", "events_quarantine"):
        problems += differences(engine_table(root, name), ours.tables[name], ALL_TABLES[name])
    assert not problems, "\n".join(problems)


def test_an_event_time_beyond_the_date_range_does_not_fail_the_run(tmp_path):
    src = tmp_path / "src"
    (src / "events").mkdir(parents=True)
    (src / "events" / "e.ndjson").write_text(
        '{"event_id":"x1","event_type":"click","event_time":"9223372036854775"}\n'
        '{"event_id":"x2","event_type":"click","event_time":1}\n'
    )
    root, reports = run_engine(src, [ddb.list_landing(str(src))], tmp_path)
    rows = sum(
        (t.num_rows if t is not None else 0)
        for t in (engine_table(root, "events"), engine_table(root, "events_quarantine"))
    )
    assert rows == 2
