"""A small reader of Delta tables written from the Delta protocol, on pyarrow alone.

It shares no code with the engine's writer (nor with the `deltalake` package): it reads
`_delta_log/_last_checkpoint`, the checkpoint Parquet file(s), the JSON commits after it,
replays add/remove actions to find the live data files, takes the schema from the latest
metaData action, and reads the Parquet files with pyarrow.
"""

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

_TYPES = {
    "string": pa.string(),
    "long": pa.int64(),
    "integer": pa.int32(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "binary": pa.binary(),
}


def _arrow_type(delta_type):
    if isinstance(delta_type, str) and delta_type in _TYPES:
        return _TYPES[delta_type]
    raise ValueError(f"type not handled by this reader: {delta_type!r}")


def _version(name):
    return int(name.split(".")[0])


def read_log(table_dir):
    """Returns (schema fields, live file paths, table version) by replaying the log."""
    log = os.path.join(table_dir, "_delta_log")
    files = {}
    metadata = None
    start = 0
    last_cp = os.path.join(log, "_last_checkpoint")
    if os.path.exists(last_cp):
        with open(last_cp) as f:
            cp = json.load(f)
        cp_version = cp["version"]
        parts = cp.get("parts")
        names = (
            [f"{cp_version:020d}.checkpoint.{i:010d}.{parts:010d}.parquet" for i in range(1, parts + 1)]
            if parts
            else [f"{cp_version:020d}.checkpoint.parquet"]
        )
        for name in names:
            t = pq.read_table(os.path.join(log, name))
            for row in t.to_pylist():
                if row.get("add"):
                    files[row["add"]["path"]] = True
                if row.get("remove"):
                    files.pop(row["remove"]["path"], None)
                if row.get("metaData"):
                    metadata = row["metaData"]
        start = cp_version + 1
    commits = sorted(
        (n for n in os.listdir(log) if n.endswith(".json") and n[:20].isdigit()),
        key=_version,
    )
    version = start - 1
    for name in commits:
        v = _version(name)
        if v < start:
            continue
        version = v
        with open(os.path.join(log, name)) as f:
            for line in f:
                if not line.strip():
                    continue
                action = json.loads(line)
                if "add" in action:
                    files[action["add"]["path"]] = True
                elif "remove" in action:
                    files.pop(action["remove"]["path"], None)
                elif "metaData" in action:
                    metadata = action["metaData"]
    schema = json.loads(metadata["schemaString"])
    fields = [(f["name"], _arrow_type(f["type"])) for f in schema["fields"]]
    return fields, sorted(files), version


def read_table(table_dir):
    """The table's rows as one pyarrow Table with the log's schema (missing columns null)."""
    from urllib.parse import unquote

    fields, paths, _ = read_log(table_dir)
    schema = pa.schema(fields)
    pieces = []
    for path in paths:
        t = pq.read_table(os.path.join(table_dir, unquote(path)))
        columns = []
        for name, typ in fields:
            if name in t.column_names:
                columns.append(t.column(name).cast(typ))
            else:
                columns.append(pa.nulls(t.num_rows, typ))
        pieces.append(pa.Table.from_arrays(columns, schema=schema))
    if not pieces:
        return schema.empty_table()
    return pa.concat_tables(pieces)
