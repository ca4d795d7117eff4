"""An independent implementation of the shipped marketing pipeline's Bronze, Silver and
Gold layers (SPEC sections 4 and 4b, layers.yaml) in DuckDB, reading the raw landing files
directly.

It shares no code with the Rust engine and never reads the engine's tables: it exists to
check the engine's Silver and Gold tables row for row (test_silver_duckdb.py,
test_gold_duckdb.py) and to serve as a performance baseline from landing to Gold (run it
as a script on a landing directory; `--no-gold` stops after Silver).

How the work is split:

- Python reads each landed file (gzip detected from the magic bytes, not the name), splits
  it into lines exactly as SPEC 4b says and hands the lines to DuckDB as Arrow batches.
- DuckDB parses the JSON lines and extracts the declared fields. DuckDB's JSON reader is
  lenient (trailing commas, NaN/Infinity) and re-serializes numbers (1.50 -> 1.5), so every
  line DuckDB rejects or that could be affected by either leniency is decided again by a
  strict Python parser (`_strict_object`); that is a tiny share of the lines.
- The Silver transforms, expectations, lookups and dedup are SQL over those Bronze rows.
  Only the URL query decoding is Python (urllib), on the distinct URLs with a query.

Bronze semantics modelled here (they decide what Silver reads):

- A line is a row when it is a JSON object (strict RFC 8259, valid UTF-8, at most
  `max_line_bytes` long); anything else is quarantined in Bronze and never reaches Silver.
- Declared `string` columns take a JSON string as is, a number as its JSON text (`1.50`
  stays "1.50"), a boolean as "true"/"false"; an object or array does not fit (NULL).
- The declared `double` column `revenue` takes a finite JSON number; anything else that is
  not null (a string such as "12.50", a boolean, ...) is kept in the rescue column and read
  back by Silver with `json_get_text(_rescued, 'revenue')`.
- A key repeated in one object: the first occurrence that fits is the column's value, the
  others go to the rescue column.
- CSV: a header line; an empty field is NULL; values are typed after trimming (date
  `YYYY-MM-DD`, long, double) and a value that does not parse is NULL (rescued); a record
  whose field count differs from the header's, or with a field that is not UTF-8, is
  quarantined.

Ingestion order ("first ingested wins" / "latest ingested wins") is (wave, _source_file
byte-wise, _source_line); a wave plays the role of the Bronze commit version.

Gold semantics (SQL over the Silver tables; a full refresh, which the engine's incremental
runs must equal):

- Touch: a Silver event of type click, email_click or page_view with a campaign_id and an
  identity. Conversion: a Silver purchase, whatever its identity (NULL included); its
  revenue is coalesce(revenue_usd, 0).
- A conversion's touches: same identity (exact string equality), purchase_time - 7 days <=
  touch_time <= purchase_time in exact microseconds, ordered by (event_time, event_id),
  event_id byte-wise. A touch's channel is its campaign's channel in silver.campaigns;
  `unknown` when the campaign is missing there or its channel is NULL.
- No touch in the window, or a NULL identity: one credit of weight 1 to channel `direct`,
  campaign_id NULL, under every model.
- Weights: first_touch / last_touch 1 to the first / last touch; linear 1/n;
  time_decay 2^(-age/7) normalized per conversion, age = (purchase - touch) in microseconds
  / 86400e6; position_based 1 (n=1), 0.5/0.5 (n=2), 0.4 first, 0.4 last and 0.2/(n-2)
  each middle touch (n>=3).
- attribution: per (purchase UTC date, model, channel, campaign_id), conversions = sum of
  weights, revenue_usd = sum of weight x revenue; only credited rows exist.
- campaign_daily: ad_spend summed per (date, campaign_id) (impressions and clicks 0 when
  all NULL) full-outer-joined with last-touch non-direct conversions per (purchase UTC date,
  campaign_id) (count, sum of revenue); a missing side is 0; ctr, cpc, cpm,
  conversion_rate, cpa, roas, roi in DOUBLE, NULL on a zero denominator.
- channel_cac: each non-NULL identity's first purchase (smallest (event_time, event_id))
  counts as a new customer in the month of its UTC date under its last-touch channel (or
  `direct`); spend per (month, campaign channel, `unknown` as for touches); full outer
  join, a missing side is 0; cac = spend_usd / new_customers, NULL when that is 0.
- channel_daily: the SQL model of layers.yaml, last_touch attribution per (date, channel).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import math
import os
import re
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

import pyarrow as pa

# `duckdb` is imported where a connection is made, not here: the test module imports this
# one for its constants and runs the pipeline in a subprocess, because a process that has
# loaded both duckdb (2.0.1) and the `deltalake` package, and read a Delta table, sometimes
# aborts at exit ("terminate called without an active exception").

# ----------------------------------------------------------------------------------------
# Declared sources (layers.yaml `sources:`)
# ----------------------------------------------------------------------------------------

#: Declared string columns of the events source, in declaration order.
EVENT_STRING_FIELDS = (
    "event_id",
    "event_type",
    "event_time",
    "user_id",
    "anonymous_id",
    "session_id",
    "channel",
    "platform",
    "campaign_id",
    "page_url",
    "currency",
)
#: All declared events columns with their Bronze types.
EVENT_FIELDS = {
    **{f: "string" for f in EVENT_STRING_FIELDS},
    "revenue": "double",
    "properties": "json",
}

CSV_SOURCES = {
    "ad_spend": {
        "date": "date",
        "platform": "string",
        "campaign_id": "string",
        "impressions": "long",
        "clicks": "long",
        "spend": "double",
        "currency": "string",
    },
    "campaigns": {
        "campaign_id": "string",
        "name": "string",
        "channel": "string",
        "platform": "string",
        "utm_campaign": "string",
        "start_date": "date",
        "end_date": "date",
        "budget": "double",
        "currency": "string",
    },
    "fx_rates": {"currency": "string", "usd_per_unit": "double"},
}

KNOWN_EVENT_TYPES = (
    "impression",
    "click",
    "page_view",
    "email_open",
    "email_click",
    "add_to_cart",
    "signup",
    "purchase",
    "unsubscribe",
)

#: Expectations of each Silver table, in the order layers.yaml declares them.
EVENT_RULES = (
    "event_id_present",
    "event_type_known",
    "event_time_parseable",
    "revenue_valid",
    "currency_known",
)

UTM_PARAMS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")

#: Longest line Bronze accepts (the source default, 64 MiB); longer lines are quarantined.
DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024

#: Lines handed to DuckDB per batch (the Python side holds about one batch).
BATCH_LINES = 500_000

#: DuckDB's memory limit unless told otherwise; beyond it, tables spill to disk. 10M events
#: then need about this plus ~1 GB for the Python side.
DEFAULT_MEMORY_LIMIT = "10GB"

# ----------------------------------------------------------------------------------------
# Reading landed files
# ----------------------------------------------------------------------------------------


def list_landing(landing_dir: str) -> list[str]:
    """Every file under the landing directory, as a '/'-separated relative path, sorted
    byte-wise (the order Bronze ingests them in within one run)."""
    out = []
    for dirpath, _, files in os.walk(landing_dir):
        for name in files:
            rel = os.path.relpath(os.path.join(dirpath, name), landing_dir)
            out.append(rel.replace(os.sep, "/"))
    return sorted(out, key=lambda p: p.encode())


def read_landed(path: str) -> tuple[bytes, str | None]:
    """The file's bytes, gunzipped when they start with the gzip magic (several members
    are read in turn). A truncated or corrupt stream gives what could be decoded and an
    error message."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\x1f\x8b":
        return data, None
    parts = []
    rest = data
    while rest:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            parts.append(d.decompress(rest))
            parts.append(d.flush())
        except zlib.error as e:
            return b"".join(parts), f"corrupt gzip stream: {e}"
        if not d.eof:
            return b"".join(parts), "truncated gzip stream"
        rest = d.unused_data
        # Trailing garbage that is not another member ends the stream, as in gzip(1).
        if rest and rest[:2] != b"\x1f\x8b":
            break
    return b"".join(parts), None


def split_lines(data: bytes, complete: bool = True) -> list[bytes]:
    """SPEC 4b: split on `\\n`, no line after a final `\\n`, a trailing `\\r` stripped.
    With `complete=False` (a truncated stream) the unterminated tail is left out."""
    if not data:
        return []
    lines = data.split(b"\n")
    if data.endswith(b"\n") or not complete:
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


# ----------------------------------------------------------------------------------------
# Strict JSON (the fallback for every line DuckDB's lenient reader cannot decide)
# ----------------------------------------------------------------------------------------


class _Num(str):
    """A JSON number, as written."""


class _Obj(list):
    """A JSON object: its (key, value) pairs in order, duplicates kept."""


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def _check_text(value) -> None:
    """Rejects lone surrogates, which Python's json accepts in \\u escapes."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, _Obj):
            for k, x in v:
                k.encode("utf-8")
                stack.append(x)
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, str) and not isinstance(v, _Num):
            v.encode("utf-8")


def _strict_object(line: str) -> _Obj | None:
    """The line as one JSON object (pairs in order), or None when it is not exactly one
    valid JSON object."""
    try:
        value = json.loads(
            line,
            object_pairs_hook=_Obj,
            parse_float=_Num,
            parse_int=_Num,
            parse_constant=_reject_constant,
        )
        _check_text(value)
    except (ValueError, UnicodeEncodeError, RecursionError):
        return None
    return value if isinstance(value, _Obj) else None


def _to_json(v) -> str:
    """Compact JSON text of a parsed value (numbers as written)."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, _Num):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, _Obj):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + _to_json(x) for k, x in v) + "}"
    return "[" + ",".join(_to_json(x) for x in v) + "]"


def _fits(kind: str, v):
    """(fits, value) of a JSON value in a Bronze column of type `kind`."""
    if v is None:
        return True, None
    if kind == "json":
        return True, _to_json(v)
    if kind == "string":
        if isinstance(v, bool):
            return True, "true" if v else "false"
        if isinstance(v, str):  # strings and numbers (as written)
            return True, str(v)
        return False, None
    # double
    if isinstance(v, _Num):
        x = float(v)
        if math.isfinite(x):
            return True, x
    return False, None


def _rescued_text(v) -> str | None:
    """What json_get_text(_rescued, key) gives for a rescued value."""
    if v is None:
        return None
    if isinstance(v, str) and not isinstance(v, _Num):
        return v
    return _to_json(v)


def _event_row_from_python(obj: _Obj) -> dict:
    """The Bronze columns Silver reads, from a strictly parsed object."""
    row = {f: None for f in EVENT_FIELDS}
    is_set = set()
    rescued = {}  # key -> last rescued value (a JSON object read with duplicate keys keeps the last)
    for key, value in obj:
        kind = EVENT_FIELDS.get(key)
        if kind is None:
            continue  # undeclared fields: not compared
        if key in is_set:
            rescued[key] = value
            continue
        ok, typed = _fits(kind, value)
        if ok:
            row[key] = typed
            is_set.add(key)
        else:
            rescued[key] = value
    row["revenue_rescued"] = _rescued_text(rescued.get("revenue"))
    return row


# ----------------------------------------------------------------------------------------
# CSV sources
# ----------------------------------------------------------------------------------------

_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)
_LONG = re.compile(r"[+-]?\d+", re.ASCII)
_DOUBLE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def _csv_value(kind: str, text: str):
    """(fits, value) of a CSV field in a Bronze column of type `kind`."""
    if kind == "string":
        return True, text
    t = text.strip()
    if kind == "date":
        m = _DATE.fullmatch(t)
        if not m:
            return False, None
        try:
            return True, dt.date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            return False, None
    if kind == "long":
        if _LONG.fullmatch(t) and -(2**63) <= int(t) < 2**63:
            return True, int(t)
        return False, None
    if kind == "double":
        if _DOUBLE.fullmatch(t):
            x = float(t)
            if math.isfinite(x):
                return True, x
        return False, None
    raise ValueError(kind)


def read_csv_source(path: str, rel: str, columns: dict[str, str]) -> tuple[list[dict], int, int]:
    """Bronze rows of one CSV file: (rows, records read, records quarantined)."""
    data, _error = read_landed(path)
    text = data.decode("utf-8", errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = None
    rows, records, quarantined = [], 0, 0
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error:
            records += 1
            quarantined += 1
            continue
        if not record:
            continue  # a blank line is no record
        if header is None:
            header = [h.strip() for h in record]
            continue
        records += 1
        if len(record) != len(header) or any(_has_surrogate(f) for f in record):
            quarantined += 1
            continue
        row = {c: None for c in columns}
        seen = set()
        for name, value in zip(header, record):
            if name not in columns or name in seen:
                continue  # undeclared, or a repeated header: rescued
            if value == "":
                seen.add(name)  # NULL
                continue
            ok, typed = _csv_value(columns[name], value)
            if ok:
                row[name] = typed
                seen.add(name)
        row["_source_file"] = rel
        row["_source_line"] = start
        rows.append(row)
    return rows, records, quarantined


def _has_surrogate(s: str) -> bool:
    try:
        s.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


# ----------------------------------------------------------------------------------------
# URL query parameters (form-urlencoded, first occurrence wins)
# ----------------------------------------------------------------------------------------

_C0_OR_SPACE = "".join(chr(i) for i in range(0x21))


def query_params(url: str, names=UTM_PARAMS) -> list[str | None]:
    """The first value of each named parameter of the URL's query, decoded as
    application/x-www-form-urlencoded (`+` is a space, %XX decoded as UTF-8)."""
    try:
        parts = urlsplit(url)
        query = parts.query
        if parts.scheme and parts.netloc:
            # The URL standard strips trailing C0 controls and spaces of an absolute URL.
            query = urlsplit(url.rstrip(_C0_OR_SPACE)).query
    except ValueError:  # e.g. an unbalanced IPv6 bracket: take what follows `?`
        query = url.split("?", 1)[1].split("#", 1)[0] if "?" in url else ""
    found: dict[str, str] = {}
    for k, v in parse_qsl(query, keep_blank_values=True):
        if k in names and k not in found:
            found[k] = v
    return [found.get(n) for n in names]


# ----------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------


@dataclass
class Result:
    """Silver tables (pyarrow) and the counts of every step."""

    tables: dict[str, pa.Table] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)


# DuckDB SQL: the extraction of the declared event fields from a batch of lines (the JSON
# functions take a list of paths, so each reads a line once).
_PATHS = "[" + ", ".join(f"'$.\"{f}\"'" for f in EVENT_FIELDS) + "]"
_INDEX = {f: i + 1 for i, f in enumerate(EVENT_FIELDS)}


def _string_field(f: str) -> str:
    """A declared string column: a string as is, a number as its text, a boolean as
    true/false; an object or an array does not fit (NULL)."""
    i = _INDEX[f]
    return f"CASE WHEN t[{i}] IN ('VARCHAR', 'UBIGINT', 'BIGINT', 'BOOLEAN') THEN s[{i}] END AS {f}"


_REV = _INDEX["revenue"]
_PROPS = _INDEX["properties"]
# `t` holds the JSON type of each declared field (NULL when absent), `s` its value as text
# (strings unquoted, other values as JSON).
_EXTRACT_SQL = f"""
WITH parsed AS (
    SELECT wave, _source_file, _source_line, line,
           try(json_type(line)) = 'OBJECT' AS duck_object
    FROM batch
), fields AS (
    SELECT *,
           CASE WHEN duck_object THEN json_type(line, {_PATHS}) END AS t,
           CASE WHEN duck_object THEN json_extract_string(line, {_PATHS}) END AS s,
           CASE WHEN duck_object THEN json_keys(line) END AS keys
    FROM parsed
), flagged AS (
    SELECT *,
        coalesce(duck_object, false) AND NOT coalesce(
            -- DuckDB accepts trailing commas and NaN/Infinity, and reads -0 as 0:
            -- let the strict parser decide (`[]` matches too: rare, and harmless)
            regexp_matches(line, '[,:\\[][ \\t\\n\\r]*(?:[\\]}}]|-0[ \\t\\n\\r]*[,\\]}}]|[-+]?[nNiI][aAnN][nNfF])')
            -- numbers are re-serialized by DuckDB (1.50 -> 1.5): take the text as written
            OR {" OR ".join(f"t[{_INDEX[f]}] = 'DOUBLE'" for f in EVENT_STRING_FIELDS)}
            OR (t[{_REV}] = 'DOUBLE' AND NOT isfinite(TRY_CAST(s[{_REV}] AS DOUBLE)))
            -- a key repeated in the object
            OR len(keys) <> len(list_distinct(keys)),
            false) AS fast
    FROM fields
)
SELECT wave, _source_file, _source_line, fast AND NOT __STRICT_ALL__ AS fast,
       CASE WHEN NOT fast OR __STRICT_ALL__ THEN line END AS line,
       {", ".join(_string_field(f) for f in EVENT_STRING_FIELDS)},
       -- revenue (double): a number; anything else not null is rescued, read back as text
       CASE WHEN t[{_REV}] IN ('UBIGINT', 'BIGINT', 'DOUBLE') THEN TRY_CAST(s[{_REV}] AS DOUBLE) END AS revenue,
       CASE WHEN t[{_REV}] IN ('VARCHAR', 'BOOLEAN', 'OBJECT', 'ARRAY') THEN s[{_REV}] END AS revenue_rescued,
       -- properties (json): the value as JSON text
       CASE t[{_PROPS}] WHEN 'NULL' THEN NULL WHEN 'VARCHAR' THEN to_json(s[{_PROPS}])::VARCHAR
            ELSE s[{_PROPS}] END AS properties
FROM flagged
"""

_BRONZE_EVENTS_DDL = (
    "CREATE TABLE bronze_events (wave INTEGER, _source_file VARCHAR, _source_line BIGINT, "
    + ", ".join(f"{f} VARCHAR" for f in EVENT_STRING_FIELDS)
    + ", revenue DOUBLE, revenue_rescued VARCHAR, properties VARCHAR)"
)
_BRONZE_EVENT_COLUMNS = (
    ["wave", "_source_file", "_source_line", *EVENT_STRING_FIELDS, "revenue", "revenue_rescued", "properties"]
)

# Event time to UTC microseconds (SPEC 4b): digits only = epoch milliseconds; RFC 3339
# with Z/z or +-HH:MM (fraction beyond microseconds truncated); YYYY-MM-DD HH:MM:SS[.f] UTC.
_MACROS = r"""
CREATE MACRO ts_parts(t) AS regexp_extract(t,
    '^(\d{4})-(\d{2})-(\d{2})([Tt ])(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))?$',
    ['y', 'mo', 'd', 'sep', 'h', 'mi', 's', 'f', 'z', 'sign', 'oh', 'om']);
CREATE MACRO ts_us(p) AS CASE
    WHEN p.y = '' THEN NULL
    -- a zone is required unless the separator is a space
    WHEN p.z = '' AND p.sign = '' AND p.sep <> ' ' THEN NULL
    WHEN TRY_CAST(p.h AS INT) > 23 OR TRY_CAST(p.mi AS INT) > 59 OR TRY_CAST(p.s AS INT) > 60 THEN NULL
    WHEN p.sign <> '' AND (TRY_CAST(p.oh AS INT) > 23 OR TRY_CAST(p.om AS INT) > 59) THEN NULL
    ELSE (try(make_date(TRY_CAST(p.y AS INT), TRY_CAST(p.mo AS INT), TRY_CAST(p.d AS INT))) - DATE '1970-01-01')
             * 86400000000
         + TRY_CAST(p.h AS BIGINT) * 3600000000 + TRY_CAST(p.mi AS BIGINT) * 60000000
         + TRY_CAST(p.s AS BIGINT) * 1000000
         + coalesce(TRY_CAST(rpad(left(p.f, 6), 6, '0') AS BIGINT), 0)
         - CASE p.sign WHEN '+' THEN 1 WHEN '-' THEN -1 ELSE 0 END
           * coalesce(TRY_CAST(p.oh AS BIGINT) * 60 + TRY_CAST(p.om AS BIGINT), 0) * 60000000
    END;
CREATE MACRO epoch_ms_us(t) AS CASE
    WHEN regexp_full_match(t, '[0-9]+') AND TRY_CAST(t AS BIGINT) <= 9223372036854775
    THEN TRY_CAST(t AS BIGINT) * 1000 END;
-- A revenue given as text (a numeric string, or a rescued number that is no finite double),
-- read as the engine's TRY_CAST to DOUBLE reads it: a decimal number, optionally signed, with
-- an optional exponent (beyond the double range: an infinity), or NaN / inf / infinity in any
-- case; surrounding whitespace allowed. NaN and infinities then fail `revenue_valid`.
CREATE MACRO numeric_text(t) AS CASE
    WHEN regexp_full_match(trim(t, E' \t\n\r'), '[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?')
    THEN coalesce(
        TRY_CAST(trim(t, E' \t\n\r') AS DOUBLE),
        CASE WHEN starts_with(trim(t, E' \t\n\r'), '-') THEN -'inf'::DOUBLE ELSE 'inf'::DOUBLE END)
    WHEN regexp_full_match(lower(trim(t, E' \t\n\r')), '[+-]?(nan|inf|infinity)')
    THEN TRY_CAST(trim(t, E' \t\n\r') AS DOUBLE)
    END;
"""


def _connect(threads: int | None, memory_limit: str | None, temp_dir: str):
    import duckdb

    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    # Tables beyond the memory limit spill to temp_dir.
    con.execute(f"SET memory_limit = '{memory_limit or DEFAULT_MEMORY_LIMIT}'")
    con.execute(f"SET temp_directory = '{temp_dir}'")
    con.execute("SET preserve_insertion_order = false")
    con.execute(_MACROS)
    return con


class _EventLoader:
    """Feeds event lines to DuckDB in batches and keeps the Bronze counts."""

    def __init__(self, con, max_line_bytes: int, strict_all: bool = False):
        self.con = con
        self.extract_sql = _EXTRACT_SQL.replace("__STRICT_ALL__", "true" if strict_all else "false")
        self.max_line_bytes = max_line_bytes
        self.pending: list[pa.Table] = []
        self.pending_lines = 0
        self.lines = 0
        self.quarantined = 0
        self.strict_checked = 0
        con.execute(_BRONZE_EVENTS_DDL)

    def add_file(self, wave: int, landing_dir: str, rel: str) -> None:
        data, error = read_landed(os.path.join(landing_dir, rel))
        complete = error is None
        lines = split_lines(data, complete)
        n = len(lines)
        self.lines += n
        if not complete and data and not data.endswith(b"\n"):
            # The unterminated tail of a truncated stream is quarantined.
            self.lines += 1
            self.quarantined += 1
        if n == 0:
            return
        # Lines Bronze cannot read at all (too long, not UTF-8) never reach DuckDB.
        keep = [len(x) <= self.max_line_bytes for x in lines]
        try:
            text = data.decode("utf-8")
            del text
        except UnicodeDecodeError:
            keep = [k and _is_utf8(x) for k, x in zip(keep, lines)]
        if all(keep):
            numbers = pa.array(range(1, n + 1), pa.int64())
            line_array = pa.array(lines, pa.binary()).cast(pa.string())
        else:
            numbers = pa.array([i + 1 for i in range(n) if keep[i]], pa.int64())
            line_array = pa.array([x for x, k in zip(lines, keep) if k], pa.binary()).cast(pa.string())
            self.quarantined += n - len(numbers)
        m = len(numbers)
        self.pending.append(
            pa.table(
                {
                    "wave": pa.array([wave] * m, pa.int32()),
                    "_source_file": pa.array([rel] * m, pa.string()),
                    "_source_line": numbers,
                    "line": line_array,
                }
            )
        )
        self.pending_lines += m
        if self.pending_lines >= BATCH_LINES:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        batch = pa.concat_tables(self.pending)
        self.pending, self.pending_lines = [], 0
        con = self.con
        con.register("batch", batch)
        con.execute(f"CREATE OR REPLACE TEMP TABLE extracted AS {self.extract_sql}")
        con.unregister("batch")
        cols = ", ".join(_BRONZE_EVENT_COLUMNS)
        con.execute(f"INSERT INTO bronze_events SELECT {cols} FROM extracted WHERE fast")
        # Every line DuckDB rejected or could have misread: the strict parser decides.
        slow = con.execute(
            "SELECT wave, _source_file, _source_line, line FROM extracted WHERE NOT fast"
        ).fetchall()
        con.execute("DROP TABLE extracted")
        rows = []
        for wave, rel, line_no, line in slow:
            self.strict_checked += 1
            obj = _strict_object(line)
            if obj is None:
                self.quarantined += 1
                continue
            row = _event_row_from_python(obj)
            row.update(wave=wave, _source_file=rel, _source_line=line_no)
            rows.append(row)
        if rows:
            fixed = pa.table(
                {
                    "wave": pa.array([r["wave"] for r in rows], pa.int32()),
                    "_source_file": pa.array([r["_source_file"] for r in rows], pa.string()),
                    "_source_line": pa.array([r["_source_line"] for r in rows], pa.int64()),
                    **{f: pa.array([r[f] for r in rows], pa.string()) for f in EVENT_STRING_FIELDS},
                    "revenue": pa.array([r["revenue"] for r in rows], pa.float64()),
                    "revenue_rescued": pa.array([r["revenue_rescued"] for r in rows], pa.string()),
                    "properties": pa.array([r["properties"] for r in rows], pa.string()),
                }
            )
            con.register("fixed", fixed)
            con.execute(f"INSERT INTO bronze_events SELECT {cols} FROM fixed")
            con.unregister("fixed")


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


_CSV_ARROW = {"string": pa.string(), "date": pa.date32(), "long": pa.int64(), "double": pa.float64()}


def _load_csv(con, table: str, columns: dict[str, str], files: list[tuple[int, str]], landing_dir: str) -> dict:
    rows, records, quarantined = [], 0, 0
    for wave, rel in files:
        r, n, q = read_csv_source(os.path.join(landing_dir, rel), rel, columns)
        for row in r:
            row["wave"] = wave
        rows += r
        records += n
        quarantined += q
    arrow = pa.table(
        {
            "wave": pa.array([r["wave"] for r in rows], pa.int32()),
            "_source_file": pa.array([r["_source_file"] for r in rows], pa.string()),
            "_source_line": pa.array([r["_source_line"] for r in rows], pa.int64()),
            **{c: pa.array([r[c] for r in rows], _CSV_ARROW[t]) for c, t in columns.items()},
        }
    )
    con.register("csv_rows", arrow)
    con.execute(f"CREATE TABLE bronze_{table} AS SELECT * FROM csv_rows")
    con.unregister("csv_rows")
    return {"lines": records, "rows": len(rows), "quarantined": quarantined}


# Silver dimension tables: transformed columns, the expectations (a NULL predicate fails),
# then the latest ingested passing row per key.
def _rules_sql(rules: dict[str, str]) -> str:
    """A list of the names of the failed rules, in declaration order."""
    items = ", ".join(f"CASE WHEN coalesce({expr}, false) THEN NULL ELSE '{name}' END" for name, expr in rules.items())
    return f"list_filter([{items}], lambda x: x IS NOT NULL)"


_DIM_SQL = {
    "fx_rates": (
        """SELECT wave, _source_file, _source_line,
                  upper(trim(currency, ' ')) AS currency, usd_per_unit
           FROM bronze_fx_rates""",
        {"currency_present": "currency IS NOT NULL AND currency <> ''", "rate_positive": "usd_per_unit > 0"},
        ["currency"],
    ),
    "campaigns": (
        """SELECT wave, _source_file, _source_line,
                  trim(campaign_id, ' ') AS campaign_id, name,
                  lower(trim(channel, ' ')) AS channel, lower(trim(platform, ' ')) AS platform,
                  trim(utm_campaign, ' ') AS utm_campaign, start_date, end_date, budget,
                  upper(trim(currency, ' ')) AS currency
           FROM bronze_campaigns""",
        {"campaign_id_present": "campaign_id IS NOT NULL AND campaign_id <> ''"},
        ["campaign_id"],
    ),
    "ad_spend": (
        """SELECT a.wave, a._source_file, a._source_line, a.date,
                  lower(trim(a.platform, ' ')) AS platform, trim(a.campaign_id, ' ') AS campaign_id,
                  a.impressions, a.clicks, a.spend, upper(trim(a.currency, ' ')) AS currency,
                  a.spend * fx.usd_per_unit AS spend_usd, fx.usd_per_unit AS _fx_rate
           FROM bronze_ad_spend a
           LEFT JOIN silver_fx_rates fx ON fx.currency = upper(trim(a.currency, ' '))""",
        {
            "date_present": "date IS NOT NULL",
            "campaign_id_present": "campaign_id IS NOT NULL AND campaign_id <> ''",
            "spend_valid": "spend IS NOT NULL AND spend >= 0",
            "currency_known": "_fx_rate IS NOT NULL",
        },
        ["date", "platform", "campaign_id"],
    ),
}


def _silver_dimension(con, table: str) -> dict:
    select, rules, key = _DIM_SQL[table]
    con.execute(f"CREATE TABLE checked_{table} AS SELECT *, {_rules_sql(rules)} AS _rules FROM ({select})")
    order = "wave DESC, _source_file DESC, _source_line DESC"
    con.execute(
        f"""CREATE TABLE silver_{table} AS
            SELECT * EXCLUDE (_rules, _rank) FROM (
                SELECT *, row_number() OVER (PARTITION BY {", ".join(key)} ORDER BY {order}) AS _rank
                FROM checked_{table} WHERE len(_rules) = 0)
            WHERE _rank = 1"""
    )
    con.execute(f"CREATE TABLE quarantine_{table} AS SELECT * FROM checked_{table} WHERE len(_rules) > 0")
    passed = con.execute(f"SELECT count(*) FROM checked_{table} WHERE len(_rules) = 0").fetchall()[0][0]
    written = con.execute(f"SELECT count(*) FROM silver_{table}").fetchall()[0][0]
    return {
        "rows_read": con.execute(f"SELECT count(*) FROM checked_{table}").fetchall()[0][0],
        "rows_written": written,
        "rows_quarantined": con.execute(f"SELECT count(*) FROM quarantine_{table}").fetchall()[0][0],
        "duplicates_removed": passed - written,  # replaced by a later row of the same key
        "rules": _rule_counts(con, f"checked_{table}", rules),
    }


def _rule_counts(con, table: str, rules) -> dict:
    counts = dict(con.execute(f"SELECT r, count(*) FROM (SELECT unnest(_rules) AS r FROM {table}) GROUP BY r").fetchall())
    return {name: counts.get(name, 0) for name in rules}


_EVENT_RULE_EXPRS = {
    "event_id_present": "event_id IS NOT NULL AND trim(event_id, ' ') <> ''",
    "event_type_known": "event_type IN (" + ", ".join(f"'{t}'" for t in KNOWN_EVENT_TYPES) + ")",
    "event_time_parseable": "event_time IS NOT NULL",
    "revenue_valid": "NOT revenue_given OR (revenue IS NOT NULL AND revenue >= 0 AND revenue < 'inf'::DOUBLE)",
    "currency_known": "NOT revenue_given OR _fx_rate IS NOT NULL",
}

SILVER_EVENT_COLUMNS = [
    "event_id",
    "event_type",
    "event_time",
    "event_date",
    "identity",
    "user_id",
    "anonymous_id",
    "session_id",
    "channel",
    "platform",
    "campaign_id",
    "page_url",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
    "utm_term",
    "revenue",
    "currency",
    "revenue_usd",
    "properties",
]


def _silver_events(con) -> dict:
    # URL query parameters: decoded in Python once per distinct URL with a query.
    urls = con.sql(
        "SELECT DISTINCT page_url FROM bronze_events WHERE page_url IS NOT NULL AND contains(page_url, '?')"
    ).to_arrow_table()
    url_list = urls.column("page_url").to_pylist()
    decoded = [query_params(u) for u in url_list]
    params = pa.table(
        {
            "page_url": pa.array(url_list, pa.string()),
            **{n: pa.array([d[i] for d in decoded], pa.string()) for i, n in enumerate(UTM_PARAMS)},
        }
    )
    con.register("url_params_arrow", params)
    con.execute("CREATE TABLE url_params AS SELECT * FROM url_params_arrow")
    con.unregister("url_params_arrow")

    # Campaign lookup by utm_campaign: several campaigns with the same key resolve to none.
    con.execute(
        """CREATE TABLE campaign_by_utm AS
           SELECT lower(trim(utm_campaign, ' ')) AS utm_key, min(campaign_id) AS campaign_id,
                  count(*) AS campaigns
           FROM silver_campaigns WHERE utm_campaign IS NOT NULL
           GROUP BY 1"""
    )
    # Event times first, materialized: a macro argument is expanded wherever the macro
    # uses it, so the regular expression is evaluated once per row here, not per use.
    con.execute(
        """CREATE TEMP TABLE timed_events AS
           SELECT * EXCLUDE (_ts), coalesce(epoch_ms_us(event_time), ts_us(_ts)) AS event_us
           FROM (SELECT *, ts_parts(event_time) AS _ts FROM bronze_events)"""
    )
    con.execute("DROP TABLE bronze_events")
    con.execute(
        f"""CREATE TABLE checked_events AS
        WITH t AS (
            SELECT b.wave, b._source_file, b._source_line,
                b.event_id,
                lower(trim(b.event_type, E' \\t\\r\\n')) AS event_type,
                CASE WHEN b.event_us IS NOT NULL THEN try(make_timestamp(b.event_us)) END AS event_time,
                nullif(trim(b.user_id, ' '), '') AS user_id,
                nullif(trim(b.anonymous_id, ' '), '') AS anonymous_id,
                b.session_id,
                lower(trim(b.channel, ' ')) AS channel,
                lower(trim(b.platform, ' ')) AS platform,
                b.campaign_id AS raw_campaign_id,
                b.page_url,
                u.utm_source, u.utm_medium, u.utm_campaign, u.utm_content, u.utm_term,
                (b.revenue IS NOT NULL OR b.revenue_rescued IS NOT NULL) AS revenue_given,
                coalesce(b.revenue, numeric_text(b.revenue_rescued)) AS revenue,
                upper(trim(b.currency, ' ')) AS currency,
                b.properties
            FROM timed_events b
            LEFT JOIN url_params u ON u.page_url = b.page_url
        ), r AS (
            SELECT t.* EXCLUDE (raw_campaign_id),
                CAST(t.event_time AS DATE) AS event_date,
                coalesce(t.user_id, t.anonymous_id) AS identity,
                coalesce(nullif(trim(t.raw_campaign_id, ' '), ''),
                         CASE WHEN c.campaigns = 1 THEN c.campaign_id END) AS campaign_id,
                fx.usd_per_unit AS _fx_rate,
                t.revenue * fx.usd_per_unit AS revenue_usd
            FROM t
            LEFT JOIN campaign_by_utm c ON c.utm_key = lower(trim(t.utm_campaign, ' '))
            LEFT JOIN silver_fx_rates fx ON fx.currency = t.currency
        )
        SELECT *, {_rules_sql(_EVENT_RULE_EXPRS)} AS _rules FROM r"""
    )
    con.execute("DROP TABLE timed_events")
    # Dedup: the first ingested passing row per event_id (the untrimmed text) wins. The
    # winners are found on narrow rows (key, ingestion position, rowid), then selected.
    con.execute(
        """CREATE TABLE silver_events AS
           SELECT * FROM checked_events
           WHERE rowid IN (
               SELECT arg_min(rowid, (wave, _source_file, _source_line))
               FROM checked_events WHERE len(_rules) = 0
               GROUP BY event_id)"""
    )
    con.execute("CREATE TABLE quarantine_events AS SELECT * FROM checked_events WHERE len(_rules) > 0")
    one = lambda sql: con.execute(sql).fetchall()[0][0]  # noqa: E731
    passed = one("SELECT count(*) FROM checked_events WHERE len(_rules) = 0")
    written = one("SELECT count(*) FROM silver_events")
    stats = {
        "rows_read": one("SELECT count(*) FROM checked_events"),
        "rows_written": written,
        "rows_quarantined": one("SELECT count(*) FROM quarantine_events"),
        "duplicates_removed": passed - written,
        "rules": _rule_counts(con, "checked_events", _EVENT_RULE_EXPRS),
        "distinct_urls_with_query": len(url_list),
    }
    con.execute("DROP TABLE checked_events")
    return stats


# ----------------------------------------------------------------------------------------
# Gold: the built-in marketing models (SPEC 4 and 4b), SQL over the Silver tables above
# ----------------------------------------------------------------------------------------

#: The shipped `attribution:` settings of layers.yaml.
TOUCH_EVENT_TYPES = ("click", "email_click", "page_view")
CONVERSION_EVENT_TYPE = "purchase"
WINDOW_DAYS = 7
HALF_LIFE_DAYS = 7
ATTRIBUTION_MODELS = ("first_touch", "last_touch", "linear", "time_decay", "position_based")
POSITION_FIRST_SHARE = 0.4
POSITION_LAST_SHARE = 0.4
#: Spread evenly over the middle touches (n >= 3); written out, not 1 - 0.4 - 0.4, which
#: is 0.19999999999999996 in binary floating point.
POSITION_MIDDLE_SHARE = 0.2
DIRECT_CHANNEL = "direct"
#: The channel of a touch whose campaign is missing from silver.campaigns or has no channel.
UNKNOWN_CHANNEL = "unknown"

US_PER_DAY = 86_400_000_000

#: Gold tables: columns with their DuckDB types (in order), and the key.
GOLD_TABLES = {
    "campaign_daily": {
        "columns": {
            "date": "DATE",
            "campaign_id": "VARCHAR",
            "impressions": "BIGINT",
            "clicks": "BIGINT",
            "spend_usd": "DOUBLE",
            "conversions": "BIGINT",
            "revenue_usd": "DOUBLE",
            "ctr": "DOUBLE",
            "cpc": "DOUBLE",
            "cpm": "DOUBLE",
            "conversion_rate": "DOUBLE",
            "cpa": "DOUBLE",
            "roas": "DOUBLE",
            "roi": "DOUBLE",
        },
        "key": ["date", "campaign_id"],
    },
    "channel_cac": {
        "columns": {
            "month": "DATE",
            "channel": "VARCHAR",
            "new_customers": "BIGINT",
            "spend_usd": "DOUBLE",
            "cac": "DOUBLE",
        },
        "key": ["month", "channel"],
    },
    "attribution": {
        "columns": {
            "date": "DATE",
            "model": "VARCHAR",
            "channel": "VARCHAR",
            "campaign_id": "VARCHAR",
            "conversions": "DOUBLE",
            "revenue_usd": "DOUBLE",
        },
        "key": ["date", "model", "channel", "campaign_id"],
    },
    "channel_daily": {
        "columns": {
            "date": "DATE",
            "channel": "VARCHAR",
            "conversions": "DOUBLE",
            "revenue_usd": "DOUBLE",
        },
        "key": ["date", "channel"],
    },
}


def _sql_list(values) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


# Conversions and touches, narrow: one row per Silver purchase, one per Silver touch.
_GOLD_INPUTS_SQL = f"""
CREATE TEMP TABLE gold_conversions AS
SELECT event_id AS conversion_id, identity, epoch_us(event_time) AS conversion_us,
       CAST(event_time AS DATE) AS date, coalesce(revenue_usd, 0.0) AS revenue
FROM silver_events
WHERE event_type = '{CONVERSION_EVENT_TYPE}';

CREATE TEMP TABLE gold_touches AS
SELECT e.identity, epoch_us(e.event_time) AS touch_us, e.event_id AS touch_id, e.campaign_id,
       coalesce(c.channel, '{UNKNOWN_CHANNEL}') AS channel
FROM silver_events e
LEFT JOIN silver_campaigns c ON c.campaign_id = e.campaign_id
WHERE e.event_type IN ({_sql_list(TOUCH_EVENT_TYPES)})
  AND e.campaign_id IS NOT NULL AND e.identity IS NOT NULL;
"""

# Every touch in each conversion's window (same identity, purchase - 7 days <= touch <=
# purchase, in microseconds), numbered 1..n in (event_time, event_id) order. event_id is
# unique in Silver, so the order is total; VARCHAR compares byte-wise in DuckDB.
_GOLD_PATHS_SQL = f"""
CREATE TEMP TABLE gold_paths AS
SELECT p.conversion_id, t.channel, t.campaign_id, p.conversion_us - t.touch_us AS age_us,
       row_number() OVER (PARTITION BY p.conversion_id ORDER BY t.touch_us, t.touch_id) AS position,
       count(*) OVER (PARTITION BY p.conversion_id) AS touches
FROM gold_conversions p
JOIN gold_touches t
  ON t.identity = p.identity
 AND t.touch_us >= p.conversion_us - {WINDOW_DAYS * US_PER_DAY}
 AND t.touch_us <= p.conversion_us
"""

# One row per (conversion, model, credited touch) with the touch's weight; a conversion
# without a touch in its window (or without identity) gives one `direct` credit per model.
_GOLD_CREDITS_SQL = f"""
CREATE TEMP TABLE gold_credits AS
WITH decay AS (
    SELECT *, pow(2.0, -(age_us / {float(US_PER_DAY)}) / {float(HALF_LIFE_DAYS)}) AS w FROM gold_paths
)
SELECT conversion_id, 'first_touch' AS model, channel, campaign_id, 1.0::DOUBLE AS weight
FROM gold_paths WHERE position = 1
UNION ALL
SELECT conversion_id, 'last_touch', channel, campaign_id, 1.0::DOUBLE
FROM gold_paths WHERE position = touches
UNION ALL
SELECT conversion_id, 'linear', channel, campaign_id, 1.0 / touches
FROM gold_paths
UNION ALL
SELECT conversion_id, 'time_decay', channel, campaign_id, w / sum(w) OVER (PARTITION BY conversion_id)
FROM decay
UNION ALL
SELECT conversion_id, 'position_based', channel, campaign_id,
       CASE WHEN touches = 1 THEN 1.0
            WHEN touches = 2 THEN 0.5
            WHEN position = 1 THEN {POSITION_FIRST_SHARE}
            WHEN position = touches THEN {POSITION_LAST_SHARE}
            ELSE {POSITION_MIDDLE_SHARE} / (touches - 2) END::DOUBLE
FROM gold_paths
UNION ALL
SELECT p.conversion_id, m.model, '{DIRECT_CHANNEL}', NULL::VARCHAR, 1.0::DOUBLE
FROM gold_conversions p
CROSS JOIN (SELECT unnest([{_sql_list(ATTRIBUTION_MODELS)}]) AS model) m
WHERE NOT EXISTS (SELECT 1 FROM gold_paths x WHERE x.conversion_id = p.conversion_id)
"""

_GOLD_ATTRIBUTION_SQL = """
CREATE TABLE gold_attribution AS
SELECT p.date, c.model, c.channel, c.campaign_id,
       sum(c.weight) AS conversions, sum(c.weight * p.revenue) AS revenue_usd
FROM gold_credits c
JOIN gold_conversions p ON p.conversion_id = c.conversion_id
GROUP BY p.date, c.model, c.channel, c.campaign_id
"""

# Ad spend per (date, campaign) full-outer-joined with last-touch conversions per (purchase
# date, campaign); a missing side counts 0; ratios in DOUBLE, a zero denominator gives NULL.
_GOLD_CAMPAIGN_DAILY_SQL = f"""
CREATE TABLE gold_campaign_daily AS
WITH spend AS (
    SELECT date, campaign_id,
           coalesce(sum(impressions), 0) AS impressions, coalesce(sum(clicks), 0) AS clicks,
           sum(spend_usd) AS spend_usd
    FROM silver_ad_spend
    GROUP BY date, campaign_id
), converted AS (
    SELECT p.date, c.campaign_id, count(*) AS conversions, sum(p.revenue) AS revenue_usd
    FROM gold_credits c
    JOIN gold_conversions p ON p.conversion_id = c.conversion_id
    WHERE c.model = 'last_touch' AND c.campaign_id IS NOT NULL
    GROUP BY p.date, c.campaign_id
), joined AS (
    SELECT coalesce(s.date, v.date) AS date,
           coalesce(s.campaign_id, v.campaign_id) AS campaign_id,
           CAST(coalesce(s.impressions, 0) AS BIGINT) AS impressions,
           CAST(coalesce(s.clicks, 0) AS BIGINT) AS clicks,
           CAST(coalesce(s.spend_usd, 0.0) AS DOUBLE) AS spend_usd,
           CAST(coalesce(v.conversions, 0) AS BIGINT) AS conversions,
           CAST(coalesce(v.revenue_usd, 0.0) AS DOUBLE) AS revenue_usd
    FROM spend s
    FULL OUTER JOIN converted v ON v.date = s.date AND v.campaign_id = s.campaign_id
)
SELECT *,
       CASE WHEN impressions <> 0 THEN CAST(clicks AS DOUBLE) / CAST(impressions AS DOUBLE) END AS ctr,
       CASE WHEN clicks <> 0 THEN spend_usd / CAST(clicks AS DOUBLE) END AS cpc,
       CASE WHEN impressions <> 0 THEN 1000.0 * spend_usd / CAST(impressions AS DOUBLE) END AS cpm,
       CASE WHEN clicks <> 0 THEN CAST(conversions AS DOUBLE) / CAST(clicks AS DOUBLE) END AS conversion_rate,
       CASE WHEN conversions <> 0 THEN spend_usd / CAST(conversions AS DOUBLE) END AS cpa,
       CASE WHEN spend_usd <> 0 THEN revenue_usd / spend_usd END AS roas,
       CASE WHEN spend_usd <> 0 THEN (revenue_usd - spend_usd) / spend_usd END AS roi
FROM joined
"""

# New customers: each identity's first purchase (smallest (event_time, event_id)) counted in
# the month of its UTC date under its last-touch channel; spend per month and campaign
# channel; full outer join, a missing side counts 0.
_GOLD_CHANNEL_CAC_SQL = f"""
CREATE TABLE gold_channel_cac AS
WITH firsts AS (
    SELECT arg_min(conversion_id, (conversion_us, conversion_id)) AS conversion_id
    FROM gold_conversions
    WHERE identity IS NOT NULL
    GROUP BY identity
), customers AS (
    SELECT CAST(date_trunc('month', p.date) AS DATE) AS month, c.channel, count(*) AS new_customers
    FROM firsts f
    JOIN gold_conversions p ON p.conversion_id = f.conversion_id
    JOIN gold_credits c ON c.conversion_id = f.conversion_id AND c.model = 'last_touch'
    GROUP BY 1, 2
), spend AS (
    SELECT CAST(date_trunc('month', a.date) AS DATE) AS month,
           coalesce(k.channel, '{UNKNOWN_CHANNEL}') AS channel, sum(a.spend_usd) AS spend_usd
    FROM silver_ad_spend a
    LEFT JOIN silver_campaigns k ON k.campaign_id = a.campaign_id
    GROUP BY 1, 2
), joined AS (
    SELECT coalesce(s.month, n.month) AS month, coalesce(s.channel, n.channel) AS channel,
           CAST(coalesce(n.new_customers, 0) AS BIGINT) AS new_customers,
           CAST(coalesce(s.spend_usd, 0.0) AS DOUBLE) AS spend_usd
    FROM spend s
    FULL OUTER JOIN customers n ON n.month = s.month AND n.channel = s.channel
)
SELECT *, CASE WHEN new_customers <> 0 THEN spend_usd / CAST(new_customers AS DOUBLE) END AS cac
FROM joined
"""

# The SQL model of layers.yaml, as written there.
_GOLD_CHANNEL_DAILY_SQL = """
CREATE TABLE gold_channel_daily AS
SELECT date, channel, sum(conversions) AS conversions, sum(revenue_usd) AS revenue_usd
FROM gold_attribution
WHERE model = 'last_touch'
GROUP BY date, channel
"""


def _gold(con, timings: dict) -> dict:
    """Builds gold_<table> for every Gold table from the Silver tables; their counts."""
    one = lambda sql: con.execute(sql).fetchall()[0][0]  # noqa: E731
    stats = {}

    t = time.perf_counter()
    con.execute(_GOLD_INPUTS_SQL)
    con.execute(_GOLD_PATHS_SQL)
    con.execute(_GOLD_CREDITS_SQL)
    con.execute(_GOLD_ATTRIBUTION_SQL)
    stats["gold.attribution"] = {
        "rows": one("SELECT count(*) FROM gold_attribution"),
        "conversions": one("SELECT count(*) FROM gold_conversions"),
        "conversions_without_identity": one("SELECT count(*) FROM gold_conversions WHERE identity IS NULL"),
        "touches": one("SELECT count(*) FROM gold_touches"),
        "conversions_with_touches": one("SELECT count(DISTINCT conversion_id) FROM gold_paths"),
        "touches_in_windows": one("SELECT count(*) FROM gold_paths"),
    }
    con.execute("DROP TABLE gold_touches")
    con.execute("DROP TABLE gold_paths")
    timings["gold.attribution"] = time.perf_counter() - t

    for table, sql in (
        ("campaign_daily", _GOLD_CAMPAIGN_DAILY_SQL),
        ("channel_cac", _GOLD_CHANNEL_CAC_SQL),
        ("channel_daily", _GOLD_CHANNEL_DAILY_SQL),
    ):
        t = time.perf_counter()
        con.execute(sql)
        stats[f"gold.{table}"] = {"rows": one(f"SELECT count(*) FROM gold_{table}")}
        timings[f"gold.{table}"] = time.perf_counter() - t
    con.execute("DROP TABLE gold_credits")
    con.execute("DROP TABLE gold_conversions")
    return stats


def _gold_query(table: str) -> str:
    """The exported Gold table: its columns cast to their declared types, sorted by key."""
    spec = GOLD_TABLES[table]
    cols = ", ".join(f"CAST({c} AS {t}) AS {c}" for c, t in spec["columns"].items())
    order = ", ".join(f"{c} NULLS FIRST" for c in spec["key"])
    return f"SELECT {cols} FROM gold_{table} ORDER BY {order}"


def pipeline(
    landing_dir: str,
    waves: list[list[str]] | None = None,
    *,
    gold: bool = True,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    threads: int | None = None,
    memory_limit: str | None = None,
    strict_all: bool = False,
    out_dir: str | None = None,
    collect: bool = True,
) -> Result:
    """Bronze + Silver (+ Gold unless `gold=False`) of the marketing pipeline from the
    landing files.

    `waves` lists the files (paths relative to `landing_dir`) landed and ingested by each
    Bronze run, in order; by default one wave holds every file. Within a wave, files are
    ingested in byte-wise path order. Returns the Silver tables `events`,
    `events_quarantine`, `campaigns`, `fx_rates`, `ad_spend` (and the dimensions'
    quarantines) sorted by (_source_file, _source_line), the Gold tables of `GOLD_TABLES`
    sorted by their key (Gold is a full refresh over the final Silver tables), plus counts
    and timings.

    `strict_all` sends every event line through the strict Python parser instead of
    DuckDB's JSON functions: slow, but a second, independent reading of the same lines
    that the fast path must agree with.

    `out_dir` also writes every table as `<out_dir>/<name>.parquet` (straight from DuckDB)
    and the counts as `stats.json`; `collect=False` skips building the pyarrow tables (on
    10M events they take several GB)."""
    with tempfile.TemporaryDirectory(prefix="duckdb_pipeline_") as temp_dir:
        con = _connect(threads, memory_limit, temp_dir)
        try:
            return _run(con, landing_dir, waves, gold, max_line_bytes, strict_all, out_dir, collect)
        finally:
            con.close()


def silver(landing_dir: str, waves: list[list[str]] | None = None, **kwargs) -> Result:
    """Bronze + Silver only: `pipeline(..., gold=False)`."""
    return pipeline(landing_dir, waves, gold=False, **kwargs)


def _run(con, landing_dir, waves, gold, max_line_bytes, strict_all, out_dir, collect) -> Result:
    started = time.perf_counter()
    if waves is None:
        waves = [list_landing(landing_dir)]
    res = Result()
    timings = res.stats.setdefault("seconds", {})

    by_source: dict[str, list[tuple[int, str]]] = {s: [] for s in ("events", *CSV_SOURCES)}
    for w, files in enumerate(waves):
        for rel in sorted(files, key=lambda p: p.encode()):
            source = rel.split("/", 1)[0]
            if source in by_source and "/" in rel:
                by_source[source].append((w, rel))

    t = time.perf_counter()
    loader = _EventLoader(con, max_line_bytes, strict_all)
    for w, rel in by_source["events"]:
        loader.add_file(w, landing_dir, rel)
    loader.flush()
    bronze_rows = con.execute("SELECT count(*) FROM bronze_events").fetchall()[0][0]
    res.stats["bronze.events"] = {
        "files": len(by_source["events"]),
        "lines": loader.lines,
        "rows": bronze_rows,
        "quarantined": loader.quarantined,
        "strict_checked": loader.strict_checked,
    }
    timings["bronze.events"] = time.perf_counter() - t

    t = time.perf_counter()
    for table, columns in CSV_SOURCES.items():
        res.stats[f"bronze.{table}"] = _load_csv(con, table, columns, by_source[table], landing_dir)
    for table in ("fx_rates", "campaigns", "ad_spend"):  # ad_spend looks up fx_rates
        res.stats[f"silver.{table}"] = _silver_dimension(con, table)
    timings["dimensions"] = time.perf_counter() - t

    t = time.perf_counter()
    res.stats["silver.events"] = _silver_events(con)
    timings["silver.events"] = time.perf_counter() - t
    timings["landing_to_silver"] = time.perf_counter() - started

    if gold:
        t = time.perf_counter()
        res.stats.update(_gold(con, timings))
        timings["gold"] = time.perf_counter() - t
        timings["landing_to_gold"] = time.perf_counter() - started

    t = time.perf_counter()
    order = "ORDER BY _source_file, _source_line"
    lineage = "_source_file, _source_line, wave AS _bronze_wave"
    ev_cols = ", ".join(SILVER_EVENT_COLUMNS)
    queries = {
        "events": f"SELECT {ev_cols}, {lineage} FROM silver_events {order}",
        "events_quarantine": f"SELECT {ev_cols}, {lineage}, _rules FROM quarantine_events {order}",
    }
    for table in ("fx_rates", "campaigns", "ad_spend"):
        drop = "EXCLUDE (wave, _fx_rate)" if table == "ad_spend" else "EXCLUDE (wave)"
        queries[table] = f"SELECT * {drop}, wave AS _bronze_wave FROM silver_{table} {order}"
        queries[f"{table}_quarantine"] = f"SELECT * {drop}, wave AS _bronze_wave FROM quarantine_{table} {order}"
    if gold:
        queries.update({table: _gold_query(table) for table in GOLD_TABLES})
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    for name, query in queries.items():
        if out_dir:
            target = os.path.join(out_dir, f"{name}.parquet").replace("'", "''")
            con.execute(f"COPY ({query}) TO '{target}' (FORMAT parquet)")
        if collect:
            res.tables[name] = con.sql(query).to_arrow_table()
    timings["export"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - started
    if out_dir:
        with open(os.path.join(out_dir, "stats.json"), "w") as f:
            json.dump(res.stats, f, indent=2, default=str)
    return res


# ----------------------------------------------------------------------------------------
# Command line: counts and timings, a performance baseline
# ----------------------------------------------------------------------------------------


def read_result(out_dir: str) -> Result:
    """The tables and counts `pipeline(..., out_dir=...)` wrote."""
    import pyarrow.parquet as pq

    res = Result()
    with open(os.path.join(out_dir, "stats.json")) as f:
        res.stats = json.load(f)
    for name in sorted(os.listdir(out_dir)):
        if name.endswith(".parquet"):
            table = pq.read_table(os.path.join(out_dir, name))
            # DuckDB marks some columns NOT NULL in Parquet depending on the data: ignore that.
            schema = pa.schema([f.with_nullable(True) for f in table.schema])
            res.tables[name[: -len(".parquet")]] = table.cast(schema)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("landing", help="landing directory (events/, ad_spend/, campaigns/, fx_rates/)")
    p.add_argument(
        "--waves",
        help="JSON file: a list of waves, each a list of paths relative to the landing directory "
        "(default: one wave with every file)",
    )
    p.add_argument("--threads", type=int, help="DuckDB threads (default: all cores)")
    p.add_argument("--memory-limit", help=f"DuckDB memory limit, beyond which tables spill to disk (default {DEFAULT_MEMORY_LIMIT})")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.add_argument("--strict-all", action="store_true", help="parse every event line with the strict Python parser")
    p.add_argument("--out", help="also write every table as OUT/<name>.parquet and the counts as OUT/stats.json")
    p.add_argument("--no-gold", action="store_true", help="stop after Silver")
    args = p.parse_args(argv)
    waves = None
    if args.waves:
        with open(args.waves) as f:
            waves = json.load(f)
    res = pipeline(
        args.landing,
        waves,
        gold=not args.no_gold,
        threads=args.threads,
        memory_limit=args.memory_limit,
        strict_all=args.strict_all,
        out_dir=args.out,
        collect=False,
    )
    if args.json:
        print(json.dumps(res.stats, indent=2, default=str))
        return 0
    for name, s in res.stats.items():
        if name == "seconds":
            continue
        print(f"{name}: " + ", ".join(f"{k}={v}" for k, v in s.items()))
    seconds = res.stats["seconds"]
    print("seconds: " + ", ".join(f"{k}={v:.2f}" for k, v in seconds.items()))
    if "landing_to_gold" in seconds:
        print(
            f"landing to Silver {seconds['landing_to_silver']:.2f} s, Gold {seconds['gold']:.2f} s, "
            f"landing to Gold {seconds['landing_to_gold']:.2f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
