"""The whole pipeline on S3: a real S3-compatible server on loopback (moto, which enforces
`If-None-Match: *` on conditional PUTs, as the engine's commits need), landing files and
lakehouse both in a bucket. Its tables equal, row for row, those of the same runs on the
local filesystem (ignoring run metadata); the secret key never appears in any output; a
missing bucket is a clear error."""

import gzip
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import boto3
import pytest
from deltalake import DeltaTable

BIN = os.environ.get("MEDALLION_BIN", "medallion")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECRET = "s3cr3t-Key-that-must-never-be-printed-0451"
RUN_METADATA = {"_run_id", "_ingested_at"}
TABLES = [
    f"{layer}/{name}"
    for layer, names in {
        "bronze": ["events", "ad_spend", "campaigns", "fx_rates"],
        "silver": ["events", "ad_spend", "campaigns", "fx_rates"],
        "gold": ["campaign_daily", "channel_cac", "attribution", "channel_daily"],
    }.items()
    for name in names
] + [f"{layer}/_quarantine/{name}" for layer in ("bronze", "silver") for name in ("events", "ad_spend")]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on loopback for the module, and the environment that points at it."""
    port = free_port()
    server = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except Exception:
            if time.time() > deadline:
                server.kill()
                raise
            time.sleep(0.1)
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID="medallion-test",
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
        AWS_ALLOW_HTTP="true",
    )
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="medallion-test",
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
    )
    yield env, client
    server.terminate()
    server.wait(timeout=10)


def medallion(*args, env, code=0):
    out = subprocess.run([BIN, *args], cwd=REPO, capture_output=True, text=True, env=env)
    assert out.returncode == code, (out.returncode, out.stderr[-4000:])
    return out


def upload(client, bucket, local_dir, prefix, names):
    for name in names:
        client.upload_file(str(local_dir / name), bucket, f"{prefix}/{name}")


def land_in_bucket(tmp_path, env, client, bucket, events, per_file, seed):
    """Generated sample data in `tmp_path/generated`, uploaded whole under
    `s3://bucket/landing/`; returns the local directory."""
    client.create_bucket(Bucket=bucket)
    generated = tmp_path / "generated"
    medallion("generate", "--events", str(events), "--events-per-file", str(per_file), "--seed", str(seed),
              "--out", str(generated), env=env)
    files = sorted(str(p.relative_to(generated)) for p in generated.rglob("*") if p.is_file())
    upload(client, bucket, generated, "landing", files)
    return generated


def storage_options(env):
    return {
        "AWS_ACCESS_KEY_ID": env["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": env["AWS_SECRET_ACCESS_KEY"],
        "AWS_REGION": env["AWS_REGION"],
        "AWS_ENDPOINT_URL": env["AWS_ENDPOINT_URL"],
        "AWS_ALLOW_HTTP": "true",
    }


def rows(uri, options=None):
    """The table's rows without run metadata, in a canonical order (by their non-float
    values, then floats), and its columns."""
    table = DeltaTable(uri, storage_options=options).to_pyarrow_table()
    keep = [c for c in table.column_names if c not in RUN_METADATA]
    out = table.select(keep).to_pylist()

    def order(r):
        exact = {k: v for k, v in r.items() if not isinstance(v, float)}
        return json.dumps(exact, sort_keys=True, default=str), json.dumps(r, sort_keys=True, default=str)

    return sorted(out, key=order), keep


def same_rows(a, b):
    """Equal rows; floats to 1e-9 relative (sums of the same terms in another order)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x.keys() != y.keys():
            return False
        for k in x:
            u, v = x[k], y[k]
            if isinstance(u, float) and isinstance(v, float):
                if not math.isclose(u, v, rel_tol=1e-9, abs_tol=1e-12):
                    return False
            elif u != v:
                return False
    return True


def test_the_pipeline_on_s3_equals_the_local_one(tmp_path, s3):
    env, client = s3
    client.create_bucket(Bucket="lake")
    generated = tmp_path / "generated"
    medallion("generate", "--events", "20000", "--events-per-file", "5000", "--seed", "21",
              "--out", str(generated), env=env)
    files = sorted(str(p.relative_to(generated)) for p in generated.rglob("*") if p.is_file())
    events = [f for f in files if f.startswith("events/")]
    waves = [[f for f in files if f not in events] + events[:2], events[2:]]
    landing, root = tmp_path / "landing", tmp_path / "lake"
    outputs = []
    for wave in waves:
        for f in wave:
            (landing / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(generated / f, landing / f)
        upload(client, "lake", generated, "landing", wave)
        outputs.append(medallion("--root", str(root), "--landing", str(landing), "run", env=env))
        outputs.append(medallion("--root", "s3://lake/lakehouse", "--landing", "s3://lake/landing/", "run", env=env))

    options = storage_options(env)
    for table in TABLES:
        local, local_columns = rows(str(root / table))
        remote, remote_columns = rows(f"s3://lake/lakehouse/{table}", options)
        assert remote_columns == local_columns, table
        assert len(remote) == len(local), table
        assert local or "_quarantine" in table, table
        assert same_rows(remote, local), table

    # The run log and history work on S3 too; a re-run commits nothing new.
    history = json.loads(medallion("--root", "s3://lake/lakehouse", "--landing", "s3://lake/landing/",
                                   "history", "--format", "json", env=env).stdout)
    assert len({r["run_id"] for r in history["runs"]}) == 2
    rerun = json.loads(medallion("--root", "s3://lake/lakehouse", "--landing", "s3://lake/landing/",
                                 "run", "--format", "json", env=env).stdout)
    assert all(t["rows"] == 0 for t in rerun["bronze"])
    # A trace reads the raw lines from the landing bucket.
    trace = json.loads(medallion("--root", "s3://lake/lakehouse", "--landing", "s3://lake/landing/",
                                 "lineage", "trace", "gold.attribution", "--where",
                                 "model = 'last_touch' AND channel <> 'direct' AND date = (SELECT min(date) "
                                 "FROM gold.attribution WHERE model = 'last_touch' AND channel <> 'direct')",
                                 "--max-sources", "3", "--format", "json", env=env).stdout)
    sources = [s for r in trace["rows"] for s in r["sources"]]
    assert sources and all(s["raw"] and s["raw"].startswith("{") for s in sources)
    outputs.append(rerun)

    # No output anywhere carries the secret.
    for out in outputs:
        text = out if isinstance(out, dict) else out.stdout + out.stderr
        assert SECRET not in json.dumps(text)


def test_a_missing_bucket_is_a_clear_error(tmp_path, s3):
    env, _ = s3
    out = medallion("--root", "s3://no-such-bucket/lakehouse", "--landing", "s3://no-such-bucket/landing/",
                    "run", "--layer", "bronze", env=env, code=1)
    assert "the bucket `no-such-bucket` does not exist" in out.stderr
    assert SECRET not in out.stderr + out.stdout


def test_an_unreachable_endpoint_is_a_clear_error_after_retries(s3):
    env, _ = s3
    env = dict(env, AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}")
    started = time.time()
    out = medallion("--root", "s3://lake/lakehouse", "--landing", "s3://lake/landing/",
                    "run", "--layer", "bronze", env=env, code=1)
    assert "cannot be reached" in out.stderr
    assert "after 10 retries" in out.stderr  # the store retried with backoff before giving up
    assert time.time() - started < 120
    assert SECRET not in out.stderr + out.stdout


def spawn(*args, env):
    return subprocess.Popen([BIN, *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def settle(children):
    """Waits for concurrent jobs: each exits 0, or 1 with a message saying another job got
    there first (a re-run completes it)."""
    codes = []
    for child in children:
        out, err = child.communicate(timeout=600)
        assert child.returncode in (0, 1), err[-3000:]
        if child.returncode == 1:
            assert "another job" in err or "conflict" in err.lower(), err[-3000:]
        assert SECRET not in out + err
        codes.append(child.returncode)
    return codes


@pytest.mark.parametrize("jobs", [4, 8])
def test_concurrent_jobs_on_s3_account_for_every_line_once(tmp_path, s3, jobs):
    env, client = s3
    bucket = f"concurrent-{jobs}"
    generated = land_in_bucket(tmp_path, env, client, bucket, 16000, 1000, 33)
    local = tmp_path / "lake"
    medallion("--root", str(local), "--landing", str(generated), "run", "--layer", "bronze", env=env)
    medallion("--root", str(local), "--landing", str(generated), "run", "--layer", "silver", env=env)

    where = ["--root", f"s3://{bucket}/lakehouse", "--landing", f"s3://{bucket}/landing/"]
    settle([spawn(*where, "run", "--layer", "bronze", env=env) for _ in range(jobs)])
    medallion(*where, "run", "--layer", "bronze", env=env)  # a re-run completes anything left
    options = storage_options(env)
    for table in ["bronze/events", "bronze/ad_spend", "bronze/campaigns", "bronze/fx_rates",
                  "bronze/_quarantine/events"]:
        remote, _ = rows(f"s3://{bucket}/lakehouse/{table}", options)
        here, _ = rows(str(local / table))
        assert same_rows(remote, here), table
    # Two Silver jobs at once: no key twice, and the same keys as one job. (Which of several
    # rows with one key survives follows the order Bronze committed the files in, which
    # concurrent Bronze jobs choose; so rows are compared by key.)
    settle([spawn(*where, "run", "--layer", "silver", env=env) for _ in range(2)])
    medallion(*where, "run", "--layer", "silver", env=env)
    for table, key in [("silver/events", ["event_id"]),
                       ("silver/ad_spend", ["date", "platform", "campaign_id"]),
                       ("silver/campaigns", ["campaign_id"])]:
        remote = DeltaTable(f"s3://{bucket}/lakehouse/{table}", storage_options=options).to_pyarrow_table()
        here = DeltaTable(str(local / table)).to_pyarrow_table()
        keys = list(zip(*(remote.column(k).to_pylist() for k in key)))
        assert len(keys) == len(set(keys)), f"{table}: a key twice"
        assert sorted(keys, key=str) == sorted(zip(*(here.column(k).to_pylist() for k in key)), key=str), table
    quarantined = DeltaTable(f"s3://{bucket}/lakehouse/silver/_quarantine/events",
                             storage_options=options).to_pyarrow_table().num_rows
    assert quarantined == DeltaTable(str(local / "silver/_quarantine/events")).to_pyarrow_table().num_rows


CRASH_POINTS = [
    "bronze.after_quarantine_commit", "bronze.before_commit", "bronze.after_commit",
    "silver.before_commit", "silver.after_quarantine_commit", "silver.after_index_commit",
    "silver.after_commit", "gold.before_commit", "gold.after_commit",
]


def assert_same_outcome(bucket, prefix, local, options):
    """Gold equal row for row (1e-9), Silver the same keys and quarantine counts, Bronze the
    same rows (without run metadata and Bronze versions), as the clean local run."""
    for table in ["gold/campaign_daily", "gold/channel_cac", "gold/attribution", "gold/channel_daily",
                  "bronze/events", "bronze/ad_spend", "bronze/_quarantine/events"]:
        remote, _ = rows(f"s3://{bucket}/{prefix}/{table}", options)
        here, _ = rows(str(local / table))
        assert same_rows(remote, here), (prefix, table)
    for table, key in [("silver/events", "event_id"), ("silver/campaigns", "campaign_id")]:
        remote = DeltaTable(f"s3://{bucket}/{prefix}/{table}", storage_options=options).to_pyarrow_table()
        here = DeltaTable(str(local / table)).to_pyarrow_table()
        assert sorted(remote.column(key).to_pylist()) == sorted(here.column(key).to_pylist()), (prefix, table)


def test_a_crash_anywhere_then_a_rerun_equals_a_clean_run_on_s3(tmp_path, s3):
    env, client = s3
    bucket = "crashes"
    generated = land_in_bucket(tmp_path, env, client, bucket, 4000, 1000, 8)
    local = tmp_path / "clean"
    medallion("--root", str(local), "--landing", str(generated), "run", env=env)
    options = storage_options(env)
    # Each commit boundary of each layer (a crash point aborts the process there, like SIGKILL).
    for point in CRASH_POINTS:
        prefix = f"lake-{point}"
        where = ["--root", f"s3://{bucket}/{prefix}", "--landing", f"s3://{bucket}/landing/"]
        crashed = subprocess.run([BIN, *where, "run"], cwd=REPO, capture_output=True, text=True,
                                 env=dict(env, MEDALLION_CRASH_AT=point))
        assert crashed.returncode != 0 and f"crash point `{point}` reached" in crashed.stderr, point
        medallion(*where, "run", env=env)
        assert_same_outcome(bucket, prefix, local, options)
    # A real SIGKILL at a few moments of a run.
    for i, delay in enumerate([0.7, 1.9, 3.1]):
        prefix = f"lake-kill-{i}"
        where = ["--root", f"s3://{bucket}/{prefix}", "--landing", f"s3://{bucket}/landing/"]
        child = spawn(*where, "run", env=env)
        time.sleep(delay)
        child.kill()
        child.communicate()
        medallion(*where, "run", env=env)
        assert_same_outcome(bucket, prefix, local, options)


def test_a_store_failing_mid_run_is_retried_and_converges(tmp_path, s3):
    """Through a proxy that answers 10% of requests with 500/503 and resets 5% of
    connections: the store's requests are retried with backoff; whatever a run ends with, a
    re-run converges to a clean run's tables."""
    from fault_proxy import Faults, proxy

    env, client = s3
    bucket = "faults"
    generated = land_in_bucket(tmp_path, env, client, bucket, 4000, 1000, 8)
    local = tmp_path / "clean"
    medallion("--root", str(local), "--landing", str(generated), "run", env=env)
    faults = Faults(error_rate=0.10, reset_rate=0.05, seed=7)
    where = ["--root", f"s3://{bucket}/lake", "--landing", f"s3://{bucket}/landing/"]
    options = storage_options(env)
    with proxy(env["AWS_ENDPOINT_URL"], faults) as url:
        flaky = dict(env, AWS_ENDPOINT_URL=url)
        for _ in range(2):
            run = subprocess.run([BIN, *where, "run"], cwd=REPO, capture_output=True, text=True, env=flaky)
            assert run.returncode in (0, 1), run.stderr[-3000:]
            assert SECRET not in run.stdout + run.stderr
            if run.returncode == 1:
                # A failure the store's retries could not hide (a commit PUT whose connection
                # was reset is not retried: it may have been applied) says so plainly.
                error = run.stderr.strip().splitlines()[-1]
                assert error.startswith("error: "), error
                assert "s3://faults/lake" in error, error
            # Nothing half-written is visible: every landed file Bronze shows is there whole.
            try:
                bronze = DeltaTable(f"s3://{bucket}/lake/bronze/events", storage_options=options).to_pyarrow_table()
            except Exception:
                continue  # not created yet
            # Per file: rows in Bronze plus records in its quarantine. The quarantine commits
            # first, so a file may be in the quarantine alone (its Bronze commit still to
            # come, as after a crash); a file Bronze shows must be there whole.
            shown = {}
            in_bronze = set(bronze.column("_source_file").to_pylist())
            for f in bronze.column("_source_file").to_pylist():
                shown[f] = shown.get(f, 0) + 1
            try:
                q = DeltaTable(f"s3://{bucket}/lake/bronze/_quarantine/events", storage_options=options).to_pyarrow_table()
                for f in q.column("_source_file").to_pylist():
                    shown[f] = shown.get(f, 0) + 1
            except Exception:
                pass
            for f, n in shown.items():
                if f not in in_bronze:
                    continue
                data = (generated / f).read_bytes()
                if data[:2] == b"\x1f\x8b":
                    data = gzip.decompress(data)
                lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
                assert n == lines, (f, n, lines)
    assert faults.errors > 10 and faults.resets > 5, vars(faults)
    # Once the store is healthy again, a re-run converges to a clean run.
    medallion(*where, "run", env=env)
    assert_same_outcome(bucket, "lake", local, options)


def test_wrong_credentials_are_a_clear_error_and_never_printed(tmp_path):
    """A server with authentication on (moto enforces IAM after its first actions): right
    keys work, a wrong secret or an unknown key is refused with a plain message."""
    port = free_port()
    server = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="5"),
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=1)
                break
            except Exception:
                assert time.time() < deadline
                time.sleep(0.1)
        admin = dict(endpoint_url=endpoint, aws_access_key_id="admin", aws_secret_access_key="admin",
                     region_name="us-east-1")
        boto3.client("s3", **admin).create_bucket(Bucket="auth")
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="bronze")
        iam.put_user_policy(UserName="bronze", PolicyName="s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }))
        key = iam.create_access_key(UserName="bronze")["AccessKey"]  # 5 unauthenticated actions with the readiness probe: auth is on from here
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key["AccessKeyId"],
                          aws_secret_access_key=key["SecretAccessKey"], region_name="us-east-1")
        generated = tmp_path / "generated"
        medallion("generate", "--events", "1000", "--seed", "3", "--out", str(generated), env=dict(os.environ))
        files = sorted(str(p.relative_to(generated)) for p in generated.rglob("*") if p.is_file())
        upload(s3, "auth", generated, "landing", files)
        base = dict(os.environ, AWS_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint, AWS_ALLOW_HTTP="true",
                    AWS_ACCESS_KEY_ID=key["AccessKeyId"])
        where = ["--root", "s3://auth/lake", "--landing", "s3://auth/landing/", "run", "--layer", "bronze"]
        good = medallion(*where, env=dict(base, AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"]))
        assert key["SecretAccessKey"] not in good.stdout + good.stderr
        for env in [dict(base, AWS_SECRET_ACCESS_KEY=SECRET),
                    dict(base, AWS_ACCESS_KEY_ID="AKIAUNKNOWNKEY000000", AWS_SECRET_ACCESS_KEY=SECRET)]:
            bad = medallion(*where, env=env, code=1)
            assert "the credentials were refused by the store of `auth`" in bad.stderr, bad.stderr[-2000:]
            assert SECRET not in bad.stdout + bad.stderr
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_endpoint_can_come_from_storage_options(tmp_path, s3):
    """`storage.options` in layers.yaml reach every table and the landing store: with no
    endpoint in the environment, the options alone point the run at the server."""
    env, client = s3
    generated = land_in_bucket(tmp_path, env, client, "options", 2000, 1000, 4)
    text = open(os.path.join(REPO, "layers.yaml")).read().replace(
        "  deleted_file_retention_days: 7\n",
        "  deleted_file_retention_days: 7\n  options:\n"
        f"    endpoint: {env['AWS_ENDPOINT_URL']}\n    allow_http: \"true\"\n    region: us-east-1\n",
    )
    config = tmp_path / "layers.yaml"
    config.write_text(text)
    bare = {k: v for k, v in env.items() if k not in ("AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP", "AWS_REGION")}
    medallion("--config", str(config), "--root", "s3://options/lake", "--landing", "s3://options/landing/",
              "run", env=bare)
    gold = DeltaTable("s3://options/lake/gold/attribution", storage_options=storage_options(env))
    assert gold.to_pyarrow_table().num_rows > 0
