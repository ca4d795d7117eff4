"""Validation of OpenLineage run events against the vendored official JSON Schemas, and a
loopback HTTP receiver to collect the events the engine posts.

`validate_event` checks a RunEvent twice over:

- the event against `OpenLineage.json#/$defs/RunEvent` (spec 2-0-2), including the
  `date-time`, `uri` and `uuid` formats, and its `schemaURL` against that exact URL;
- every facet (run, job, dataset, input and output facets) against the vendored facet
  schema named by its `_schemaURL`. That URL must be a vendored facet file's `$id`
  followed by `#/$defs/<FacetName>`, the facet must sit under the key the facet file
  declares (e.g. `columnLineage`, `processing_engine`) and in the collection that matches
  the facet's kind (an InputDatasetFacet in `inputFacets`, an OutputDatasetFacet in
  `outputFacets`, a DatasetFacet in `facets`). A `_schemaURL` that is not vendored is an
  error, so no facet goes unchecked.

All `$ref`s resolve against the files in `openlineage/`; nothing is fetched.
"""

import contextlib
import json
import re
import threading
import time
import urllib.parse
import uuid
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match
from referencing import Registry, Resource

SPEC_DIR = Path(__file__).resolve().parent / "openlineage"
CORE_ID = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
RUN_EVENT_SCHEMA_URL = CORE_ID + "#/$defs/RunEvent"


def _load_documents():
    paths = [SPEC_DIR / "OpenLineage.json", *sorted((SPEC_DIR / "facets").glob("*.json"))]
    docs = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        assert doc["$id"] not in docs, f"{path}: duplicate $id {doc['$id']}"
        docs[doc["$id"]] = doc
    assert CORE_ID in docs, f"{SPEC_DIR}: no core schema with $id {CORE_ID}"
    return docs


_DOCS = _load_documents()
REGISTRY = Registry().with_resources((schema_id, Resource.from_contents(doc)) for schema_id, doc in _DOCS.items())


def _facet_entries():
    """(facet key, _schemaURL, kind) for every facet schema vendored, where kind is the core
    definition the facet extends: RunFacet, JobFacet, DatasetFacet, InputDatasetFacet or
    OutputDatasetFacet."""
    entries = []
    for schema_id, doc in _DOCS.items():
        if schema_id == CORE_ID:
            continue
        for key, prop in doc.get("properties", {}).items():
            ref = prop["$ref"]
            assert ref.startswith("#/$defs/"), f"{schema_id}: unexpected top-level $ref {ref}"
            definition = doc["$defs"][ref[len("#/$defs/") :]]
            bases = [
                part["$ref"]
                for part in definition.get("allOf", [])
                if part.get("$ref", "").startswith(CORE_ID + "#/$defs/")
            ]
            assert len(bases) == 1, f"{schema_id}{ref}: expected one core base facet, found {bases}"
            entries.append((key, schema_id + ref, bases[0][len(CORE_ID + "#/$defs/") :]))
    return entries


_FACETS = _facet_entries()
# Facet key -> the `_schemaURL` it must carry, e.g. "schema" ->
# "https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet".
FACET_SCHEMA_URLS = {key: url for key, url, _ in _FACETS}
_FACET_BY_URL = {url: (key, kind) for key, url, kind in _FACETS}

# Which facet kinds each facet collection of a run event may hold.
_COLLECTION_KINDS = {
    "facets@run": ("RunFacet",),
    "facets@job": ("JobFacet",),
    "facets@dataset": ("DatasetFacet",),
    "inputFacets": ("InputDatasetFacet",),
    "outputFacets": ("OutputDatasetFacet",),
}

# Formats the OpenLineage schemas use, checked without optional dependencies.
FORMAT_CHECKER = FormatChecker(formats=())
_RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")


@FORMAT_CHECKER.checks("date-time", raises=ValueError)
def _is_date_time(value):
    if not isinstance(value, str):
        return True
    m = _RFC3339.match(value)
    if not m:
        raise ValueError("not an RFC 3339 date-time")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    # Leap second 60 is valid RFC 3339; datetime rejects it, so check it as :59.
    datetime(year, month, day, hour, minute, min(second, 59))
    offset = m.group(8)
    if offset not in ("Z", "z") and (int(offset[1:3]) > 23 or int(offset[4:6]) > 59):
        raise ValueError("offset out of range")
    return True


@FORMAT_CHECKER.checks("uri", raises=ValueError)
def _is_uri(value):
    if not isinstance(value, str):
        return True
    if any(c.isspace() or ord(c) < 0x20 or c in '<>"{}|\\^`' for c in value):
        raise ValueError("character not allowed in a URI")
    parts = urllib.parse.urlsplit(value)
    if not parts.scheme or not _SCHEME.match(parts.scheme) or value[len(parts.scheme)] != ":":
        raise ValueError("not an absolute URI (no scheme)")
    return True


@FORMAT_CHECKER.checks("uuid", raises=ValueError)
def _is_uuid(value):
    if not isinstance(value, str):
        return True
    uuid.UUID(value)
    if len(value) != 36 or any(value[i] != "-" for i in (8, 13, 18, 23)):
        raise ValueError("not a hyphenated UUID")
    return True


def _validator(url):
    return Draft202012Validator({"$ref": url}, registry=REGISTRY, format_checker=FORMAT_CHECKER)


_VALIDATORS = {url: _validator(url) for url in [RUN_EVENT_SCHEMA_URL, *_FACET_BY_URL]}


def _pointer(parts):
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _leaves(error):
    """The errors that explain `error`: itself, or for an anyOf/oneOf failure the errors of
    its only branch (the core schema wraps every facet collection in a one-branch anyOf),
    or of the branch that came closest."""
    if not error.context:
        yield error
        return
    branches = {e.relative_schema_path[0] for e in error.context}
    if len(branches) == 1:
        causes = error.context
    else:
        closest = best_match(error.context).relative_schema_path[0]
        causes = [e for e in error.context if e.relative_schema_path[0] == closest]
    for cause in causes:
        yield from _leaves(cause)


def _schema_errors(validator, instance, prefix):
    errors = sorted(
        (leaf for e in validator.iter_errors(instance) for leaf in _leaves(e)),
        key=lambda e: (list(map(str, e.absolute_path)), e.message),
    )
    return [
        f"at {_pointer([*prefix, *e.absolute_path])}: {e.message} (schema {_pointer(e.absolute_schema_path)})"
        for e in errors
    ]


def _describe(event):
    event_type = event.get("eventType", "<no eventType>") if isinstance(event, dict) else "<not an object>"
    job = event.get("job") if isinstance(event, dict) else None
    if isinstance(job, dict):
        job_name = f"{job.get('namespace', '<no namespace>')}/{job.get('name', '<no name>')}"
    else:
        job_name = "<no job>"
    return f"OpenLineage {event_type} event of job {job_name}"


def _facet_collections(event):
    """(collection kind, JSON path of the collection, facets dict) for every facet collection."""
    yield "facets@run", ["run", "facets"], event["run"].get("facets")
    yield "facets@job", ["job", "facets"], event["job"].get("facets")
    for side, extra in (("inputs", "inputFacets"), ("outputs", "outputFacets")):
        for i, dataset in enumerate(event.get(side) or []):
            yield "facets@dataset", [side, i, "facets"], dataset.get("facets")
            yield extra, [side, i, extra], dataset.get(extra)


def _facet_problems(collection, path, name, facet):
    where = f"facet {_pointer([*path, name])}"
    url = facet.get("_schemaURL")
    if url not in _FACET_BY_URL:
        base = url.split("#", 1)[0] if isinstance(url, str) else url
        known_base = [u for u in _FACET_BY_URL if u.split("#", 1)[0] == base]
        hint = f"; that file's facets use {known_base}" if known_base else ""
        return [f"{where}: unknown _schemaURL {url!r} (not a vendored facet schema{hint})"]
    key, kind = _FACET_BY_URL[url]
    problems = []
    if name != key:
        problems.append(f"{where}: _schemaURL {url} is the schema of facet {key!r}, not {name!r}")
    allowed = _COLLECTION_KINDS[collection]
    if kind not in allowed:
        problems.append(f"{where}: {key!r} ({kind}) cannot be in {_pointer(path)}, which holds {'/'.join(allowed)}s")
    problems += [f"{where} ({url}): {p}" for p in _schema_errors(_VALIDATORS[url], facet, [*path, name])]
    return problems


def event_problems(event):
    """Every schema violation found in `event`, as messages; empty when it is valid."""
    problems = _schema_errors(_VALIDATORS[RUN_EVENT_SCHEMA_URL], event, [])
    if problems:
        # The facets cannot be walked reliably in a structurally broken event.
        return problems
    if event["schemaURL"] != RUN_EVENT_SCHEMA_URL:
        problems.append(f"at /schemaURL: {event['schemaURL']!r} is not {RUN_EVENT_SCHEMA_URL!r}")
    for collection, path, facets in _facet_collections(event):
        for name, facet in (facets or {}).items():
            problems += _facet_problems(collection, path, name, facet)
    return problems


def validate_event(event: dict) -> None:
    """Raise AssertionError naming the event type, job, facet and schema path of every
    violation of the OpenLineage spec in the RunEvent `event`."""
    problems = event_problems(event)
    if problems:
        raise AssertionError(f"{_describe(event)} is not valid:\n  " + "\n  ".join(problems))


class Receiver:
    """What the loopback receiver got: one record per POST, in arrival order."""

    def __init__(self):
        self.url = None
        self._lock = threading.Lock()
        self._requests = []
        self._errors = []

    def _record(self, request):
        """Record a request; returns how many were recorded before it."""
        with self._lock:
            self._requests.append(request)
            return len(self._requests) - 1

    def _error(self, message):
        with self._lock:
            self._errors.append(message)

    @property
    def requests(self):
        """[{"path", "headers" (names lower-cased), "body" (parsed JSON)}]."""
        with self._lock:
            return list(self._requests)

    @property
    def events(self):
        return [r["body"] for r in self.requests]

    @property
    def paths(self):
        return [r["path"] for r in self.requests]

    @property
    def headers(self):
        return [r["headers"] for r in self.requests]

    @property
    def errors(self):
        """Requests that were refused (not a POST, or a body that is not JSON)."""
        with self._lock:
            return list(self._errors)

    def wait_for(self, count, timeout=10.0):
        """Wait until at least `count` events have arrived; return the events."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"{len(self.requests)} of {count} events received after {timeout}s"
            time.sleep(0.01)
        return self.events


@contextlib.contextmanager
def receiver(status=200):
    """An HTTP server on 127.0.0.1 (ephemeral port) recording every POST.

    `status` is the status code of every answer, or a sequence of codes used one per POST
    in order, the last repeating (e.g. [503, 200] to make a client retry once). A POST is
    recorded before it is answered, so once the client has its answer the event is in
    `.events`, whatever the status.
    """
    codes = [status] if isinstance(status, int) else list(status)
    assert codes, "status must be a code or a non-empty sequence of codes"
    received = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def _body(self):
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";", 1)[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        def _answer(self, code, body=b""):
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            raw = self._body()
            try:
                body = json.loads(raw)
            except ValueError as e:
                received._error(f"POST {self.path}: body is not JSON ({e}): {raw[:200]!r}")
                self._answer(400, b"body is not JSON")
                return
            n = received._record(
                {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
            )
            self._answer(codes[min(n, len(codes) - 1)])

        def _refuse(self):
            received._error(f"{self.command} {self.path}: only POST is accepted")
            self._answer(405)

        do_GET = do_PUT = do_DELETE = do_PATCH = _refuse

        def log_message(self, format, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="openlineage-receiver", daemon=True
    )
    thread.start()
    received.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
