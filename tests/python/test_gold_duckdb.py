"""The engine's Gold tables against an independent DuckDB implementation of SPEC 4 and 4b
(duckdb_pipeline.py), every row of campaign_daily, channel_cac, attribution and
channel_daily.

Generated landing data lands in four waves, and after each the engine runs its whole
pipeline (`medallion run`: Bronze, Silver, Gold):

1. the dimensions, September's ad spend and the first third of the event files;
2. October's ad spend (which restates the last days of September) and the second third
   of the event files, whose late events (2 to 20 days late) fall into dates Gold has
   already computed, and whose late touches change the attribution of earlier purchases;
3. November's ad spend (restatements only) and the rest of the event files;
4. a campaigns file that moves one campaign to another channel, which changes Gold rows
   of every date that campaign touched.

After every wave the engine's Gold tables must equal the DuckDB pipeline's Gold tables
computed from scratch on the files landed so far (the wave playing the role of the Bronze
version): the same keys, every number within 1e-9 relative (1e-9 absolute near zero) and
NULLs in the same places.

The DuckDB side is also checked on its own: invariants on the generated data (every model
credits each conversion exactly once, with its revenue), and a small hand-written landing
whose attribution, campaign_daily, channel_cac and channel_daily are worked out by hand
below.

The DuckDB pipeline runs in a subprocess (its tables come back as Parquet): a process that
has loaded both duckdb and deltalake sometimes aborts at exit. `duckdb_pipeline` is
imported here only for its constants.
"""

import csv
import datetime as dt
import io
import json
import math
import os
import shutil
import subprocess
import sys
from collections import Counter, defaultdict

import pyarrow as pa
import pytest
from deltalake import DeltaTable

import duckdb_pipeline as ddb

BIN = os.environ.get("MEDALLION_BIN", "medallion")
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CONFIG = os.environ.get("MEDALLION_CONFIG", os.path.join(REPO, "layers.yaml"))

EVENTS = 60_000
EVENTS_PER_FILE = 5_000
SEED = 11
REL_TOL = 1e-9
ABS_TOL = 1e-9

GOLD = list(ddb.GOLD_TABLES)
#: The campaign moved to another channel by the last wave, and its new channel (as written
#: in the CSV: Silver trims and lower-cases it).
MOVED_CAMPAIGN_ROW = 2
MOVED_TO_CHANNEL = " Referral "


def run_duckdb(landing, waves, out_dir):
    """The DuckDB pipeline (landing to Gold) on `landing` in a subprocess; its tables."""
    os.makedirs(out_dir, exist_ok=True)
    waves_file = os.path.join(out_dir, "waves.json")
    with open(waves_file, "w") as f:
        json.dump(waves, f)
    out = subprocess.run(
        [sys.executable, os.path.join(HERE, "duckdb_pipeline.py"), str(landing), "--waves", waves_file,
         "--out", out_dir],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, f"duckdb_pipeline.py exited {out.returncode}:\n{out.stderr}"
    return ddb.read_result(out_dir)


def medallion(*args, cwd=REPO):
    out = subprocess.run([BIN, *args], cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, f"medallion {' '.join(args)} exited {out.returncode}:\n{out.stderr}"
    return out.stdout


def read_delta(path):
    return DeltaTable(str(path)).to_pyarrow_table()


def engine_gold(root):
    """{table: pyarrow table or None} of the engine's Gold tables."""
    out = {}
    for table in GOLD:
        path = root / "gold" / table
        out[table] = read_delta(path) if (path / "_delta_log").is_dir() else None
    return out


def run_engine(src, waves, base):
    """Lands each wave's files (paths relative to `src`) under base/landing and runs the
    whole pipeline after each; the engine's Gold tables after every wave. A failed run
    leaves its message in place of the tables of that wave and every later one, so the
    waves before it are still compared."""
    landing, root = base / "landing", base / "lake"
    snapshots = []
    for i, wave in enumerate(waves):
        for rel in wave:
            (landing / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, landing / rel)
        try:
            medallion("run", "--config", CONFIG, "--format", "json", "--root", str(root), "--landing", str(landing))
        except AssertionError as e:
            snapshots += [f"the run after wave {i + 1} failed: {e}"] * (len(waves) - i)
            break
        snapshots.append(engine_gold(root))
    return snapshots


def engine_tables(snapshot):
    """The engine's Gold tables of one wave, or the test fails with the run's error."""
    if isinstance(snapshot, str):
        pytest.fail(snapshot, pytrace=False)
    return snapshot


# ----------------------------------------------------------------------------------------
# Comparing Gold tables
# ----------------------------------------------------------------------------------------


def _plain(v):
    """A value that compares across both sides (a timestamp where a date is due is
    reported by the schema test; here it compares as its date)."""
    if isinstance(v, dt.datetime):
        return v.date()
    return v


def rows_by_key(rows, table):
    """{key tuple: row dict} of a pyarrow table or a list of row dicts, and the keys that
    occur more than once."""
    if isinstance(rows, pa.Table):
        rows = rows.to_pylist()
    key = ddb.GOLD_TABLES[table]["key"]
    out, counts = {}, Counter()
    for r in rows:
        r = {c: _plain(v) for c, v in r.items()}
        k = tuple(r.get(c) for c in key)
        counts[k] += 1
        out[k] = r
    return out, [k for k, n in counts.items() if n > 1]


def close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return False  # no NaN belongs in Gold
        return abs(a - b) <= max(REL_TOL * max(abs(a), abs(b)), ABS_TOL)
    return a == b


def _sort_key(k):
    return tuple((v is not None, str(v)) for v in k)


def gold_differences(got, want, table, limit=30):
    """Every difference between `got` (the side under test) and `want`: human-readable
    lines, empty when they agree."""
    spec = ddb.GOLD_TABLES[table]
    out = []
    if got is None:
        return [f"{table}: no table"]
    if isinstance(got, pa.Table):
        missing = [c for c in spec["columns"] if c not in got.column_names]
        if missing:
            out.append(f"columns missing: {missing}")
    g, g_dup = rows_by_key(got, table)
    w, _ = rows_by_key(want, table)
    if g_dup:
        out.append(f"{len(g_dup)} keys occur more than once, e.g. {sorted(g_dup, key=_sort_key)[:5]}")
    only_got = sorted(set(g) - set(w), key=_sort_key)
    only_want = sorted(set(w) - set(g), key=_sort_key)
    if only_got:
        out.append(f"{len(only_got)} unexpected keys, e.g. " + "; ".join(str(g[k]) for k in only_got[:8]))
    if only_want:
        out.append(f"{len(only_want)} missing keys, e.g. " + "; ".join(str(w[k]) for k in only_want[:8]))
    per_column, examples = Counter(), []
    common = sorted(set(g) & set(w), key=_sort_key)
    for k in common:
        for c in spec["columns"]:
            if c in spec["key"] or c not in g[k]:
                continue
            a, b = g[k].get(c), w[k].get(c)
            if not close(a, b):
                per_column[c] += 1
                if len(examples) < limit:
                    examples.append(f"  {k} {c}: got={a!r} want={b!r}")
    if per_column:
        out.append(f"differing values per column (of {len(common)} common keys): {dict(per_column)}")
        out.extend(examples)
    return out


def assert_gold_equal(got, want, table, what):
    diff = gold_differences(got, want, table)
    assert not diff, f"{what}, {table}: differences\n" + "\n".join(diff)


#: Arrow type checks for the declared Gold column types.
_TYPE_CHECKS = {
    "DATE": lambda t: t == pa.date32(),
    "VARCHAR": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)
    or getattr(pa.types, "is_string_view", lambda _: False)(t),
    "BIGINT": lambda t: t == pa.int64(),
    "DOUBLE": lambda t: t == pa.float64(),
}


def schema_problems(table: pa.Table, name: str):
    spec = ddb.GOLD_TABLES[name]["columns"]
    problems = []
    for c, want in spec.items():
        if c not in table.column_names:
            problems.append(f"{name}.{c}: missing")
            continue
        t = table.schema.field(c).type
        if pa.types.is_dictionary(t):
            t = t.value_type
        if not _TYPE_CHECKS[want](t):
            problems.append(f"{name}.{c}: {t}, want {want}")
    return problems


# ----------------------------------------------------------------------------------------
# Generated data in four waves
# ----------------------------------------------------------------------------------------


def moved_campaign_file(src):
    """campaigns/campaigns_moved.csv: one campaign of campaigns.csv, re-sent with another
    channel; its path relative to `src` and the campaign id."""
    with open(src / "campaigns" / "campaigns.csv", newline="") as f:
        rows = list(csv.reader(f))
    header, row = rows[0], list(rows[MOVED_CAMPAIGN_ROW])
    row[header.index("channel")] = MOVED_TO_CHANNEL
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, row])
    rel = "campaigns/campaigns_moved.csv"
    (src / rel).write_text(buf.getvalue())
    return rel, row[header.index("campaign_id")].strip()


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Generated landing files, the four landing waves and the moved campaign's id."""
    base = tmp_path_factory.mktemp("gold_duckdb")
    src = base / "generated"
    report = json.loads(
        medallion("generate", "--events", str(EVENTS), "--events-per-file", str(EVENTS_PER_FILE),
                  "--seed", str(SEED), "--out", str(src))
    )
    assert report["late_events"] > 0
    files = ddb.list_landing(str(src))
    events = [f for f in files if f.startswith("events/")]
    spend = sorted(f for f in files if f.startswith("ad_spend/"))
    assert len(spend) == 3, spend
    dims = [f for f in files if f.startswith(("fx_rates/", "campaigns/"))]
    third = len(events) // 3
    moved, campaign_id = moved_campaign_file(src)
    waves = [
        [*dims, spend[0], *events[:third]],
        [spend[1], *events[third : 2 * third]],
        [spend[2], *events[2 * third :]],
        [moved],
    ]
    return base, src, waves, campaign_id


@pytest.fixture(scope="module")
def expected(generated):
    """The DuckDB pipeline's result on the files landed by the end of each wave."""
    base, src, waves, _ = generated
    return [run_duckdb(src, waves[: i + 1], str(base / f"duckdb_{i}")) for i in range(len(waves))]


@pytest.fixture(scope="module")
def lake(generated):
    """The engine's Gold tables after each wave."""
    base, src, waves, _ = generated
    return run_engine(src, waves, base)


# ----------------------------------------------------------------------------------------
# The DuckDB side on its own: generated data
# ----------------------------------------------------------------------------------------


def conversions_of(res):
    """(number of Silver purchases, their revenue: coalesce(revenue_usd, 0) summed)."""
    ev = res.tables["events"].to_pylist()
    purchases = [e for e in ev if e["event_type"] == "purchase"]
    return len(purchases), math.fsum(e["revenue_usd"] or 0.0 for e in purchases)


def rel_close(a, b):
    return abs(a - b) <= REL_TOL * max(abs(a), abs(b), 1.0)


def test_duckdb_gold_schemas(expected):
    res = expected[-1]
    problems = []
    for name, spec in ddb.GOLD_TABLES.items():
        table = res.tables[name]
        assert table.column_names == list(spec["columns"]), name
        problems += schema_problems(table, name)
    assert not problems, "\n".join(problems)


def test_duckdb_every_model_credits_each_conversion_once(expected):
    for i, res in enumerate(expected):
        n, revenue = conversions_of(res)
        assert n > 0
        rows = res.tables["attribution"].to_pylist()
        by_model = defaultdict(list)
        for r in rows:
            by_model[r["model"]].append(r)
        assert sorted(by_model) == sorted(ddb.ATTRIBUTION_MODELS), f"wave {i}"
        for model, rs in by_model.items():
            conv = math.fsum(r["conversions"] for r in rs)
            rev = math.fsum(r["revenue_usd"] for r in rs)
            assert rel_close(conv, n), f"wave {i}, {model}: {conv} conversions credited of {n}"
            assert rel_close(rev, revenue), f"wave {i}, {model}: {rev} revenue credited of {revenue}"
            assert all(r["conversions"] > 0 for r in rs), f"wave {i}, {model}: a row without credit"
            direct = [r for r in rs if r["channel"] == ddb.DIRECT_CHANNEL]
            assert all(r["campaign_id"] is None for r in direct)
            assert all(r["campaign_id"] is not None for r in rs if r["channel"] != ddb.DIRECT_CHANNEL)
        # first/last touch give whole conversions; direct is the same under every model
        for model in ("first_touch", "last_touch"):
            assert all(float(r["conversions"]).is_integer() for r in by_model[model])
        directs = {
            m: sorted((r["date"], r["conversions"], r["revenue_usd"]) for r in rs if r["channel"] == "direct")
            for m, rs in by_model.items()
        }
        assert all(d == directs["last_touch"] for d in directs.values()), f"wave {i}"
        _, dup = rows_by_key(rows, "attribution")
        assert not dup


def test_duckdb_campaign_daily_totals(expected):
    for i, res in enumerate(expected):
        cd = res.tables["campaign_daily"].to_pylist()
        attr = res.tables["attribution"].to_pylist()
        last = [r for r in attr if r["model"] == "last_touch" and r["campaign_id"] is not None]
        assert sum(r["conversions"] for r in cd) == round(math.fsum(r["conversions"] for r in last)), f"wave {i}"
        assert rel_close(math.fsum(r["revenue_usd"] for r in cd), math.fsum(r["revenue_usd"] for r in last))
        spend = res.tables["ad_spend"].to_pylist()
        assert rel_close(math.fsum(r["spend_usd"] for r in cd), math.fsum(r["spend_usd"] for r in spend))
        assert sum(r["impressions"] for r in cd) == sum(r["impressions"] or 0 for r in spend)
        assert sum(r["clicks"] for r in cd) == sum(r["clicks"] or 0 for r in spend)
        # the ratios follow from each row's own values
        for r in cd:
            def ratio(num, den):
                return None if den == 0 else num / den
            want = {
                "ctr": ratio(r["clicks"], r["impressions"]),
                "cpc": ratio(r["spend_usd"], r["clicks"]),
                "cpm": ratio(1000 * r["spend_usd"], r["impressions"]),
                "conversion_rate": ratio(r["conversions"], r["clicks"]),
                "cpa": ratio(r["spend_usd"], r["conversions"]),
                "roas": ratio(r["revenue_usd"], r["spend_usd"]),
                "roi": ratio(r["revenue_usd"] - r["spend_usd"], r["spend_usd"]),
            }
            for c, v in want.items():
                assert close(r[c], v), f"wave {i}: {r} {c}, want {v}"
        _, dup = rows_by_key(cd, "campaign_daily")
        assert not dup


def test_duckdb_channel_cac_totals(expected):
    for i, res in enumerate(expected):
        cac = res.tables["channel_cac"].to_pylist()
        ev = res.tables["events"].to_pylist()
        customers = {e["identity"] for e in ev if e["event_type"] == "purchase" and e["identity"] is not None}
        assert sum(r["new_customers"] for r in cac) == len(customers), f"wave {i}"
        spend = math.fsum(r["spend_usd"] for r in res.tables["ad_spend"].to_pylist())
        assert rel_close(math.fsum(r["spend_usd"] for r in cac), spend)
        for r in cac:
            assert r["month"].day == 1
            assert (r["cac"] is None) == (r["new_customers"] == 0), r
        _, dup = rows_by_key(cac, "channel_cac")
        assert not dup


def test_duckdb_channel_daily_is_last_touch_per_channel(expected):
    for i, res in enumerate(expected):
        want = defaultdict(lambda: [0.0, 0.0])
        for r in res.tables["attribution"].to_pylist():
            if r["model"] == "last_touch":
                want[(r["date"], r["channel"])][0] += r["conversions"]
                want[(r["date"], r["channel"])][1] += r["revenue_usd"]
        rows = [{"date": d, "channel": c, "conversions": v[0], "revenue_usd": v[1]} for (d, c), v in want.items()]
        assert_gold_equal(res.tables["channel_daily"], rows, "channel_daily", f"wave {i}")


def test_duckdb_waves_exercise_late_data_and_a_moved_campaign(generated, expected):
    """The waves do what the engine comparison relies on: later waves change Gold rows of
    dates computed after earlier waves, and the last wave moves a campaign's channel."""
    _, _, _, moved = generated
    for i in (1, 2):
        before, after = expected[i - 1], expected[i]
        last_date = max(r["event_date"] for r in before.tables["events"].to_pylist())
        old, _ = rows_by_key(before.tables["attribution"], "attribution")
        new, _ = rows_by_key(after.tables["attribution"], "attribution")
        changed = [k for k in old if k[0] <= last_date and (k not in new or not close(
            old[k]["conversions"], new[k]["conversions"]))]
        assert changed, f"wave {i + 1} changes no attribution row of a date already computed"
    channel = MOVED_TO_CHANNEL.strip().lower()
    final = expected[-1]
    attr = final.tables["attribution"].to_pylist()
    assert any(r["channel"] == channel and r["campaign_id"] == moved for r in attr)
    assert not any(r["channel"] == channel for r in expected[-2].tables["attribution"].to_pylist())
    assert any(r["channel"] == channel for r in final.tables["channel_cac"].to_pylist())


# ----------------------------------------------------------------------------------------
# The engine against the DuckDB side
# ----------------------------------------------------------------------------------------


def test_engine_gold_schemas(lake):
    problems = []
    for name, table in engine_tables(lake[-1]).items():
        if table is None:
            problems.append(f"gold.{name}: no table")
        else:
            problems += schema_problems(table, name)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("wave", range(4), ids=lambda w: f"wave{w + 1}")
@pytest.mark.parametrize("table", GOLD)
def test_engine_gold_rows_match(lake, expected, wave, table):
    assert_gold_equal(engine_tables(lake[wave])[table], expected[wave].tables[table], table, f"after wave {wave + 1}")


# ----------------------------------------------------------------------------------------
# A hand-written landing, worked out by hand
# ----------------------------------------------------------------------------------------

HAND_FX = "currency,usd_per_unit\nUSD,1\nEUR,2\n"
HAND_CAMPAIGNS = (
    "campaign_id,name,channel,platform,utm_campaign,start_date,end_date,budget,currency\n"
    "c1,One,Paid_Social,facebook,one,2025-09-01,2025-10-31,1000,USD\n"
    "c2,Two,email,newsletter,two,2025-09-01,2025-10-31,1000,USD\n"
    "c3,Three,paid_search,google,three,2025-09-01,2025-10-31,1000,USD\n"
    "c4,Four,,google,four,2025-09-01,2025-10-31,1000,USD\n"  # no channel: `unknown`
)  # c9 is touched and has spend, but is no campaign: `unknown`
HAND_AD_SPEND = (
    "date,platform,campaign_id,impressions,clicks,spend,currency\n"
    "2025-09-10,facebook,c1,1000,10,20,USD\n"
    "2025-09-11,facebook,c1,500,5,10,EUR\n"  # 20 USD
    "2025-09-11,newsletter,c2,200,4,3,USD\n"
    "2025-09-11,google,c2,100,,1,USD\n"  # clicks NULL: counts 0 in the sum
    "2025-09-12,google,c3,0,0,0,USD\n"  # every denominator 0
    "2025-09-13,google,c9,100,1,5,USD\n"
    "2025-10-01,facebook,c1,100,1,2,USD\n"
)


def _ev(event_id, event_type, event_time, user=None, anon=None, campaign=None, **extra):
    e = {"event_id": event_id, "event_type": event_type, "event_time": event_time}
    if user is not None:
        e["user_id"] = user
    if anon is not None:
        e["anonymous_id"] = anon
    if campaign is not None:
        e["campaign_id"] = campaign
    e.update(extra)
    return json.dumps(e)


HAND_EVENTS = [
    # u1: a later purchase first in the file (no revenue, no touch in its window: direct);
    # its first purchase is p1 all the same (by time, not by ingestion).
    _ev("p1b", "purchase", "2025-10-05T00:00:00Z", user="u1"),
    # u1's purchase p1: one touch exactly 7 days before (in), one 1 µs earlier (out), one
    # 1 µs after the purchase (out); an impression, a click without campaign and touches of
    # other identities (`U1` differs from `u1`) are no touches of it.
    _ev("p1", "purchase", "2025-09-10T12:00:00Z", user="u1", revenue=100, currency="USD"),
    _ev("t1-in", "click", "2025-09-03T12:00:00Z", user="u1", campaign="c1"),
    _ev("t1-out", "click", "2025-09-03T11:59:59.999999Z", user="u1", campaign="c2"),
    _ev("t1-after", "click", "2025-09-10T12:00:00.000001Z", user="u1", campaign="c3"),
    _ev("t1-imp", "impression", "2025-09-09T12:00:00Z", user="u1", campaign="c3"),
    _ev("t1-nocamp", "click", "2025-09-09T12:00:00Z", user="u1"),
    _ev("t1-case", "click", "2025-09-10T10:00:00Z", user="U1", campaign="c3"),
    _ev("t9", "click", "2025-09-10T11:00:00Z", user="u9", campaign="c3"),
    # u2 (anonymous ids differ, the user id decides): two touches at the same time; by
    # event_id byte-wise `t2-B` < `t2-a`, so t2-B is first, t2-a last. Revenue 50 EUR.
    _ev("t2-a", "page_view", "2025-09-10T08:00:00Z", user="u2", anon="x", campaign="c1"),
    _ev("t2-B", "email_click", "2025-09-10T08:00:00Z", user="u2", anon="y", campaign="c2"),
    _ev("p2", "purchase", "2025-09-11T08:00:00Z", user="u2", anon="z", revenue=50, currency="EUR"),
    # anon-3 (no user id): three touches 3, 2 and 0 days before; one 1 µs after.
    _ev("t3-1", "click", "2025-09-09T00:00:00Z", anon="anon-3", campaign="c3"),
    _ev("t3-2", "page_view", "2025-09-10T00:00:00Z", anon="anon-3", campaign="c2"),
    _ev("t3-3", "email_click", "2025-09-12T00:00:00Z", anon="anon-3", campaign="c1"),
    _ev("t3-late", "click", "2025-09-12T00:00:00.000001Z", anon="anon-3", campaign="c1"),
    _ev("p3", "purchase", "2025-09-12T00:00:00Z", anon="anon-3", revenue=30, currency="USD"),
    # u4: five touches 5, 4, 3, 2 and 0.75 days before; c4 has no channel, c9 is no
    # campaign, t4-4 finds c1 through utm_campaign.
    _ev("t4-1", "click", "2025-09-08T12:00:00Z", user="u4", campaign="c4"),
    _ev("t4-2", "page_view", "2025-09-09T12:00:00Z", user="u4", campaign="c9"),
    _ev("t4-3", "email_click", "2025-09-10T12:00:00Z", user="u4", campaign="c1"),
    _ev("t4-4", "click", "2025-09-11T12:00:00Z", user="u4", page_url="https://shop.example/?utm_campaign=One"),
    _ev("t4-5", "click", "2025-09-12T18:00:00Z", user="u4", campaign="c2"),
    _ev("p4", "purchase", "2025-09-13T12:00:00Z", user="u4", revenue=10, currency="USD"),
    # No identity: direct, and never a new customer (the click before it has no identity
    # either, so it is no touch).
    _ev("t5-anon", "click", "2025-09-14T09:00:00Z", campaign="c1"),
    _ev("p5", "purchase", "2025-09-14T10:00:00Z", revenue=7, currency="USD"),
    # u5: its only touch is 7 days and 1 s before: direct, revenue 0 (none given).
    _ev("t5-old", "click", "2025-09-07T10:59:59Z", user="u5", campaign="c1"),
    _ev("p6", "purchase", "2025-09-14T11:00:00Z", user="u5"),
    # u6: 23:30 at -02:00 is 01:30 UTC the next day: dated 2025-09-16.
    _ev("t6", "click", "2025-09-15 20:00:00", user="u6", campaign="c3"),
    _ev("p7", "purchase", "2025-09-15T23:30:00-02:00", user="u6", revenue=20, currency="USD"),
]


def _td(ages):
    """time_decay weights of touches `ages` days old: 2^(-age/7), normalized."""
    w = [2 ** (-a / 7) for a in ages]
    s = sum(w)
    return [x / s for x in w]


def hand_attribution():
    """The attribution rows of the hand-written landing, from the credits of each
    conversion spelled out per model: (channel, campaign_id, weight)."""
    D = dt.date
    PS, EM, SE, UN, DI = "paid_social", "email", "paid_search", "unknown", "direct"
    direct = {m: [(DI, None, 1.0)] for m in ddb.ATTRIBUTION_MODELS}
    # (date, revenue, {model: credits})
    conversions = [
        # p1: one touch, c1, exactly 7 days old
        (D(2025, 9, 10), 100.0, {m: [(PS, "c1", 1.0)] for m in ddb.ATTRIBUTION_MODELS}),
        # p1b: direct, revenue 0
        (D(2025, 10, 5), 0.0, direct),
        # p2: t2-B (c2, email) first, t2-a (c1) last, the same age
        (D(2025, 9, 11), 100.0, {
            "first_touch": [(EM, "c2", 1.0)],
            "last_touch": [(PS, "c1", 1.0)],
            "linear": [(EM, "c2", 0.5), (PS, "c1", 0.5)],
            "time_decay": [(EM, "c2", 0.5), (PS, "c1", 0.5)],
            "position_based": [(EM, "c2", 0.5), (PS, "c1", 0.5)],
        }),
        # p3: c3 (3 days), c2 (2 days), c1 (0 days)
        (D(2025, 9, 12), 30.0, {
            "first_touch": [(SE, "c3", 1.0)],
            "last_touch": [(PS, "c1", 1.0)],
            "linear": [(SE, "c3", 1 / 3), (EM, "c2", 1 / 3), (PS, "c1", 1 / 3)],
            "time_decay": list(zip((SE, EM, PS), ("c3", "c2", "c1"), _td([3, 2, 0]))),
            "position_based": [(SE, "c3", 0.4), (EM, "c2", 0.2), (PS, "c1", 0.4)],
        }),
        # p4: c4 (5 days, unknown), c9 (4, unknown), c1 (3), c1 (2), c2 (0.75)
        (D(2025, 9, 13), 10.0, {
            "first_touch": [(UN, "c4", 1.0)],
            "last_touch": [(EM, "c2", 1.0)],
            "linear": [(UN, "c4", 0.2), (UN, "c9", 0.2), (PS, "c1", 0.2), (PS, "c1", 0.2), (EM, "c2", 0.2)],
            "time_decay": list(zip((UN, UN, PS, PS, EM), ("c4", "c9", "c1", "c1", "c2"), _td([5, 4, 3, 2, 0.75]))),
            "position_based": [
                (UN, "c4", 0.4), (UN, "c9", 0.2 / 3), (PS, "c1", 0.2 / 3), (PS, "c1", 0.2 / 3), (EM, "c2", 0.4)],
        }),
        # p5 (no identity) and p6 (touch out of window): direct
        (D(2025, 9, 14), 7.0, direct),
        (D(2025, 9, 14), 0.0, direct),
        # p7: one touch, c3
        (D(2025, 9, 16), 20.0, {m: [(SE, "c3", 1.0)] for m in ddb.ATTRIBUTION_MODELS}),
    ]
    rows = defaultdict(lambda: [0.0, 0.0])
    for date, revenue, credits in conversions:
        assert sorted(credits) == sorted(ddb.ATTRIBUTION_MODELS)
        for model, parts in credits.items():
            assert math.isclose(sum(w for _, _, w in parts), 1.0)
            for channel, campaign, w in parts:
                rows[(date, model, channel, campaign)][0] += w
                rows[(date, model, channel, campaign)][1] += w * revenue
    return [
        {"date": d, "model": m, "channel": ch, "campaign_id": c, "conversions": v[0], "revenue_usd": v[1]}
        for (d, m, ch, c), v in rows.items()
    ]


def _cd(date, campaign, impressions, clicks, spend, conversions, revenue):
    def ratio(num, den):
        return None if den == 0 else num / den
    return {
        "date": date, "campaign_id": campaign, "impressions": impressions, "clicks": clicks,
        "spend_usd": spend, "conversions": conversions, "revenue_usd": revenue,
        "ctr": ratio(clicks, impressions), "cpc": ratio(spend, clicks), "cpm": ratio(1000 * spend, impressions),
        "conversion_rate": ratio(conversions, clicks), "cpa": ratio(spend, conversions),
        "roas": ratio(revenue, spend), "roi": ratio(revenue - spend, spend),
    }


D = dt.date
#: Spend per (date, campaign) joined with last-touch conversions: p1 (09-10, c1), p2
#: (09-11, c1), p3 (09-12, c1), p4 (09-13, c2), p7 (09-16, c3).
HAND_CAMPAIGN_DAILY = [
    _cd(D(2025, 9, 10), "c1", 1000, 10, 20.0, 1, 100.0),
    _cd(D(2025, 9, 11), "c1", 500, 5, 20.0, 1, 100.0),
    _cd(D(2025, 9, 11), "c2", 300, 4, 4.0, 0, 0.0),
    _cd(D(2025, 9, 12), "c1", 0, 0, 0.0, 1, 30.0),
    _cd(D(2025, 9, 12), "c3", 0, 0, 0.0, 0, 0.0),
    _cd(D(2025, 9, 13), "c2", 0, 0, 0.0, 1, 10.0),
    _cd(D(2025, 9, 13), "c9", 100, 1, 5.0, 0, 0.0),
    _cd(D(2025, 9, 16), "c3", 0, 0, 0.0, 1, 20.0),
    _cd(D(2025, 10, 1), "c1", 100, 1, 2.0, 0, 0.0),
]
#: First purchases: u1 p1, u2 p2, anon-3 p3 (paid_social), u4 p4 (email), u5 p6 (direct),
#: u6 p7 (paid_search), all in September; p5 has no identity. Spend: c1 40 + 2, c2 4,
#: c3 0, c9 5 (unknown).
HAND_CHANNEL_CAC = [
    {"month": D(2025, 9, 1), "channel": "paid_social", "new_customers": 3, "spend_usd": 40.0, "cac": 40.0 / 3},
    {"month": D(2025, 9, 1), "channel": "email", "new_customers": 1, "spend_usd": 4.0, "cac": 4.0},
    {"month": D(2025, 9, 1), "channel": "direct", "new_customers": 1, "spend_usd": 0.0, "cac": 0.0},
    {"month": D(2025, 9, 1), "channel": "paid_search", "new_customers": 1, "spend_usd": 0.0, "cac": 0.0},
    {"month": D(2025, 9, 1), "channel": "unknown", "new_customers": 0, "spend_usd": 5.0, "cac": None},
    {"month": D(2025, 10, 1), "channel": "paid_social", "new_customers": 0, "spend_usd": 2.0, "cac": None},
]
HAND_CHANNEL_DAILY = [
    {"date": D(2025, 9, 10), "channel": "paid_social", "conversions": 1.0, "revenue_usd": 100.0},
    {"date": D(2025, 9, 11), "channel": "paid_social", "conversions": 1.0, "revenue_usd": 100.0},
    {"date": D(2025, 9, 12), "channel": "paid_social", "conversions": 1.0, "revenue_usd": 30.0},
    {"date": D(2025, 9, 13), "channel": "email", "conversions": 1.0, "revenue_usd": 10.0},
    {"date": D(2025, 9, 14), "channel": "direct", "conversions": 2.0, "revenue_usd": 7.0},
    {"date": D(2025, 9, 16), "channel": "paid_search", "conversions": 1.0, "revenue_usd": 20.0},
    {"date": D(2025, 10, 5), "channel": "direct", "conversions": 1.0, "revenue_usd": 0.0},
]
HAND = {
    "attribution": hand_attribution(),
    "campaign_daily": HAND_CAMPAIGN_DAILY,
    "channel_cac": HAND_CHANNEL_CAC,
    "channel_daily": HAND_CHANNEL_DAILY,
}


def hand_landing(src):
    """Writes the hand-written landing under `src`; one wave with every file."""
    for folder, name, text in [
        ("fx_rates", "fx.csv", HAND_FX),
        ("campaigns", "campaigns.csv", HAND_CAMPAIGNS),
        ("ad_spend", "ad_spend.csv", HAND_AD_SPEND),
        ("events", "events.ndjson", "\n".join(HAND_EVENTS) + "\n"),
    ]:
        (src / folder).mkdir(parents=True, exist_ok=True)
        (src / folder / name).write_text(text)
    return [ddb.list_landing(str(src))]


@pytest.fixture(scope="module")
def hand(tmp_path_factory):
    base = tmp_path_factory.mktemp("gold_hand")
    src = base / "src"
    waves = hand_landing(src)
    return base, src, waves


@pytest.fixture(scope="module")
def hand_expected(hand):
    base, src, waves = hand
    return run_duckdb(src, waves, str(base / "duckdb"))


def test_hand_written_landing_reaches_silver_as_intended(hand_expected):
    """The Silver events the hand-worked numbers assume: every line clean, t4-4 resolved
    to c1 through its utm_campaign, p7 on 2025-09-16 UTC, p5 without identity."""
    ev = {e["event_id"]: e for e in hand_expected.tables["events"].to_pylist()}
    assert len(ev) == len(HAND_EVENTS)
    assert hand_expected.tables["events_quarantine"].num_rows == 0
    assert ev["t4-4"]["campaign_id"] == "c1"
    assert ev["p7"]["event_date"] == dt.date(2025, 9, 16)
    assert ev["p5"]["identity"] is None and ev["t5-anon"]["identity"] is None
    assert ev["p3"]["identity"] == "anon-3"
    assert ev["p2"]["revenue_usd"] == 100.0 and ev["p6"]["revenue_usd"] is None
    channels = {c["campaign_id"]: c["channel"] for c in hand_expected.tables["campaigns"].to_pylist()}
    assert channels == {"c1": "paid_social", "c2": "email", "c3": "paid_search", "c4": None}


@pytest.mark.parametrize("table", GOLD)
def test_duckdb_gold_of_the_hand_written_landing(hand_expected, table):
    assert_gold_equal(hand_expected.tables[table], HAND[table], table, "DuckDB, hand-written landing")


def test_hand_worked_attribution_credits_every_conversion():
    rows = HAND["attribution"]
    for model in ddb.ATTRIBUTION_MODELS:
        assert math.isclose(sum(r["conversions"] for r in rows if r["model"] == model), 8)
        assert math.isclose(sum(r["revenue_usd"] for r in rows if r["model"] == model), 267)


@pytest.fixture(scope="module")
def hand_lake(hand):
    base, src, waves = hand
    return run_engine(src, waves, base)[-1]


@pytest.mark.parametrize("table", GOLD)
def test_engine_gold_of_the_hand_written_landing(hand_lake, table):
    assert_gold_equal(engine_tables(hand_lake)[table], HAND[table], table, "engine, hand-written landing")
