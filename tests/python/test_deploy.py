"""The deployment files, checked offline: the Dockerfile lints clean (hadolint, checkov); every
Terraform file parses (python-hcl2) and checkov finds no failed check in it or in the
Kubernetes manifests; the kustomize overlays render (Debian's kubectl) and validate strictly
against the Kubernetes API schemas; the manifests keep the policies they promise; and the
command lines of the CronJobs, with their environment, are accepted by the real CLI (as
`plan`) and, run in schedule order against sample data, give the tables one job gives."""

import glob
import json
import os
import re
import subprocess
import sys

import hcl2
import pytest
import yaml
from deltalake import DeltaTable

BIN = os.environ.get("MEDALLION_BIN", "medallion")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KUBECTL = os.environ.get("MEDALLION_KUBECTL", "")
LINT_VENV = os.environ.get("MEDALLION_LINT_VENV", "")
K8S = os.path.join(REPO, "infra", "k8s")
TERRAFORM = os.path.join(REPO, "infra", "terraform")
OVERLAYS = ["staging", "production"]
LAYERS = ["bronze", "silver", "gold"]
# The oldest Kubernetes the manifests are for (backoffLimitPerIndex is GA from 1.33), and the
# newest the validator knows.
KUBERNETES_VERSIONS = ["1.33.0", "1.37.0"]


def tool(path, what):
    assert path and os.access(path, os.X_OK), f"{what} not found at {path!r}: scripts/test.sh installs it"
    return path


def lint_tool(name):
    return tool(os.path.join(LINT_VENV, "bin", name), f"{name} (MEDALLION_LINT_VENV)")


def render(target):
    out = subprocess.run([tool(KUBECTL, "kubectl (MEDALLION_KUBECTL)"), "kustomize", target],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def objects(text):
    return [d for d in yaml.safe_load_all(text) if d]


def by_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Each overlay rendered: {env: (path of the YAML, objects)}."""
    base = tmp_path_factory.mktemp("rendered")
    out = {}
    for env in ["base", *OVERLAYS]:
        target = os.path.join(K8S, "base" if env == "base" else os.path.join("overlays", env))
        text = render(target)
        path = base / f"{env}.yaml"
        path.write_text(text)
        out[env] = (path, objects(text))
    return out


# --- container image ------------------------------------------------------------------------

def test_the_dockerfile_lints_clean_and_builds_what_it_should():
    dockerfile = os.path.join(REPO, "Dockerfile")
    out = subprocess.run([lint_tool("hadolint"), "--failure-threshold", "info", dockerfile],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    text = open(dockerfile).read()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M)
    assert len(stages) == 2, stages
    assert all(":" in image and not image.endswith(":latest") for image, _ in stages)
    assert "cargo build --release --locked" in text
    assert re.search(r"^COPY --from=build ", text, re.M)
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("0", "root"), user
    assert re.search(r'^ENTRYPOINT \["/usr/local/bin/medallion"\]', text, re.M)
    assert not re.search(r"^(ENV|ARG)\s+\S*(SECRET|PASSWORD|TOKEN|ACCESS_KEY)", text, re.M | re.I)
    ignore = open(os.path.join(REPO, ".dockerignore")).read().split()
    assert ignore[0:1] != [] and "*" in ignore, "the build context starts from nothing"


# --- Terraform ------------------------------------------------------------------------------

def terraform_files():
    files = sorted(glob.glob(os.path.join(TERRAFORM, "**", "*.tf"), recursive=True))
    assert len(files) >= 6, files
    return files


def terraform():
    """Every block of the root module, merged: {block type: [blocks]}."""
    merged = {}
    for path in glob.glob(os.path.join(TERRAFORM, "*.tf")):
        with open(path) as f:
            for kind, blocks in hcl2.load(f).items():
                merged.setdefault(kind, []).extend(blocks)
    return merged


def resources(tf, kind):
    out = {}
    for block in tf.get("resource", []):
        for k, named in block.items():
            if k.strip('"') == kind:
                for name, body in named.items():
                    out[name.strip('"')] = body
    return out


def test_every_terraform_file_parses():
    for path in terraform_files():
        with open(path) as f:
            parsed = hcl2.load(f)
        assert parsed, path


def test_terraform_variables_are_described_and_the_bucket_keeps_live_data():
    tf = terraform()
    variables = {k.strip('"'): v for block in tf["variable"] for k, v in block.items()}
    assert len(variables) >= 10
    for name, body in variables.items():
        assert body.get("description"), f"variable {name} has no description"
        assert body.get("type"), f"variable {name} has no type"
    validated = [n for n, b in variables.items() if b.get("validation")]
    for name in ("bucket_name", "bronze_shards", "image", "noncurrent_version_days"):
        assert name in validated, f"variable {name} is not validated"
    outputs = {k.strip('"') for block in tf["output"] for k in block}
    assert {"bucket_name", "kms_key_arn", "layer_role_arns", "medallion_root", "medallion_landing"} <= outputs
    # Lifecycle: only noncurrent versions and incomplete multipart uploads; live objects never
    # expire (tables and `lineage trace` need every file a version references).
    (lifecycle,) = resources(tf, "aws_s3_bucket_lifecycle_configuration").values()
    rules = lifecycle["rule"]
    assert rules
    for rule in rules:
        assert "expiration" not in rule, rule
        assert "transition" not in rule, rule
        assert set(rule) & {"noncurrent_version_expiration", "abort_incomplete_multipart_upload"}, rule
    (block,) = resources(tf, "aws_s3_bucket_public_access_block").values()
    for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
        assert block[flag] is True, flag
    (versioning,) = resources(tf, "aws_s3_bucket_versioning").values()
    assert versioning["versioning_configuration"][0]["status"].strip('"') == "Enabled"
    (encryption,) = resources(tf, "aws_s3_bucket_server_side_encryption_configuration").values()
    assert "aws:kms" in json.dumps(encryption)
    (key,) = resources(tf, "aws_kms_key").values()
    assert key["enable_key_rotation"] is True
    assert "aws:SecureTransport" in json.dumps(tf)


def test_terraform_jobs_run_the_manifests_command_lines(rendered):
    """The CronJobs Terraform creates run the same command lines as the manifests' base."""
    text = open(os.path.join(TERRAFORM, "kubernetes.tf")).read()
    _, base = rendered["base"]
    shards = int(str(terraform_variable_default("bronze_shards")))
    for layer, job in by_kind(base, "CronJob").items():
        args = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
        args = [a.replace("/4", f"/{shards}") if "JOB_COMPLETION_INDEX" in a else a for a in args]
        layer = layer.removeprefix("medallion-")
        terraform_args = terraform_args_of(text, layer, shards)
        assert terraform_args == args, (layer, terraform_args, args)


def terraform_variable_default(name):
    for block in terraform()["variable"]:
        for k, v in block.items():
            if k.strip('"') == name:
                return v["default"]
    raise AssertionError(f"no variable {name}")


def terraform_args_of(text, layer, shards):
    """The args list Terraform gives the layer's container, with `${var.bronze_shards}`
    replaced by its default."""
    lists = re.findall(r"\[\s*\"run\"[^\]]*\]", text)
    found = []
    for raw in lists:
        items = re.findall(r'"((?:[^"\\]|\\.)*)"', raw)
        items = [i.replace("${var.bronze_shards}", str(shards)).replace("$${", "${") for i in items]
        if items[:3] == ["run", "--layer", layer]:
            found.append(items)
    assert len(found) == 1, (layer, lists)
    return found[0]


# --- Kubernetes -----------------------------------------------------------------------------

def test_rendered_manifests_validate_strictly(rendered):
    validate = os.path.join(os.path.dirname(sys.executable), "kubernetes-validate")
    for env, (path, docs) in rendered.items():
        assert len(by_kind(docs, "CronJob")) == 3, env
        for version in KUBERNETES_VERSIONS:
            out = subprocess.run([validate, "--strict", "--kubernetes-version", version, str(path)],
                                 capture_output=True, text=True)
            assert out.returncode == 0, (env, version, out.stdout + out.stderr)
            assert out.stdout.count("passed for resource") == len(docs), out.stdout


def checkov(target, framework, tmp_path):
    flag = "-d" if os.path.isdir(target) else "-f"
    report = tmp_path / f"checkov-{framework}-{os.path.basename(target)}.json"
    out = subprocess.run(
        [lint_tool("checkov"), "--skip-download", "--framework", framework, flag, target,
         "--output", "json"],
        capture_output=True, text=True,
    )
    report.write_text(out.stdout)
    results = json.loads(out.stdout)
    results = results if isinstance(results, list) else [results]
    failed, passed, skipped = [], 0, []
    for r in results:
        failed += r["results"]["failed_checks"]
        skipped += r["results"]["skipped_checks"]
        passed += len(r["results"]["passed_checks"])
    return failed, passed, skipped


def test_checkov_finds_no_failed_checks(tmp_path, rendered):
    targets = [
        (TERRAFORM, "terraform"),
        (K8S, "kubernetes"),
        (os.path.join(REPO, "Dockerfile"), "dockerfile"),
        *[(str(rendered[env][0]), "kubernetes") for env in OVERLAYS],
    ]
    for target, framework in targets:
        failed, passed, skipped = checkov(target, framework, tmp_path)
        assert not failed, [(c["check_id"], c["resource"], c["file_path"]) for c in failed]
        assert passed > 20, (target, passed)
        for s in skipped:
            # Every skip says why, next to what it skips.
            reason = (s.get("check_result") or {}).get("suppress_comment") or ""
            assert len(reason) > 20, (target, s["check_id"], s["resource"], reason)


def test_the_manifests_keep_their_policies(rendered):
    assert open(os.path.join(K8S, "base", "layers.yaml")).read() == open(os.path.join(REPO, "layers.yaml")).read(), \
        "infra/k8s/base/layers.yaml must be a copy of layers.yaml"
    for env in OVERLAYS:
        _, docs = rendered[env]
        namespaces = by_kind(docs, "Namespace")
        assert len(namespaces) == 1, env
        (namespace,) = namespaces
        assert all(d["metadata"].get("namespace") == namespace for d in docs if d["kind"] != "Namespace"), env
        env_vars = by_kind(docs, "ConfigMap")["medallion-env"]["data"]
        assert env_vars["MEDALLION_LOG_FORMAT"] == "json"
        assert env_vars["MEDALLION_ROOT"].startswith("s3://") and env_vars["MEDALLION_LANDING"].startswith("s3://")
        assert by_kind(docs, "ConfigMap")["medallion-pipeline"]["data"]["layers.yaml"] == \
            open(os.path.join(REPO, "layers.yaml")).read()
        accounts = by_kind(docs, "ServiceAccount")
        roles = set()
        for layer in LAYERS:
            job = by_kind(docs, "CronJob")[f"medallion-{layer}"]
            spec = job["spec"]
            assert spec["concurrencyPolicy"] == "Forbid" and spec["timeZone"] == "Etc/UTC"
            assert spec["startingDeadlineSeconds"] > 0
            jobspec = spec["jobTemplate"]["spec"]
            assert jobspec["activeDeadlineSeconds"] > 0 and jobspec["ttlSecondsAfterFinished"] > 0
            rules = jobspec["podFailurePolicy"]["rules"]
            assert rules[0]["action"] == "FailJob" and sorted(rules[0]["onExitCodes"]["values"]) == [2, 3]
            pod = jobspec["template"]["spec"]
            assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
            account = accounts[pod["serviceAccountName"]]
            assert pod["serviceAccountName"] == f"medallion-{layer}"
            role = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
            assert role.startswith("arn:aws:iam::") and role.endswith(layer)
            roles.add(role)
            psc = pod["securityContext"]
            assert psc["runAsNonRoot"] is True and psc["runAsUser"] >= 10000
            assert psc["seccompProfile"]["type"] == "RuntimeDefault"
            (container,) = pod["containers"]
            assert "@sha256:" in container["image"], (env, container["image"])
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
            assert sc["privileged"] is False and sc["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["requests"] and container["resources"]["limits"]
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert {"/etc/medallion", "/tmp"} <= mounts
            if layer == "bronze":
                n = jobspec["completions"]
                assert jobspec["completionMode"] == "Indexed" and jobspec["parallelism"] == n
                assert container["args"][-2:] == ["--shard", f"$(JOB_COMPLETION_INDEX)/{n}"], container["args"]
        assert len(roles) == 3, "one role per layer"


def expand(arg, env):
    """Kubernetes' expansion of `$(VAR)` in a container's args: a defined variable is replaced,
    `$$` escapes, anything else stays as written."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), arg)


def medallion(args, env, code=0):
    out = subprocess.run([BIN, *args], cwd=REPO, capture_output=True, text=True, env=env)
    assert out.returncode == code, (args, out.stderr[-4000:])
    return out


def gold_rows(root, table):
    rows = DeltaTable(str(root / "gold" / table)).to_pyarrow_table().to_pylist()
    return sorted(
        (repr(tuple((k, round(v, 6) if isinstance(v, float) else v) for k, v in sorted(r.items())
                    if not k.startswith("_")))
         for r in rows)
    )


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    base = tmp_path_factory.mktemp("deploy_landing")
    out = subprocess.run([BIN, "generate", "--events", "8000", "--events-per-file", "1000", "--seed", "21",
                          "--out", str(base)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return base


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_cronjob_command_lines_plan_and_run_against_sample_data(overlay, rendered, landing, tmp_path):
    _, docs = rendered[overlay]
    configmaps = by_kind(docs, "ConfigMap")
    config = tmp_path / "etc" / "layers.yaml"
    config.parent.mkdir()
    config.write_text(configmaps["medallion-pipeline"]["data"]["layers.yaml"])
    root = tmp_path / "lake"
    # The pod's environment, with the bucket swapped for local directories and no push.
    pod_env = dict(configmaps["medallion-env"]["data"])
    pod_env.pop("MEDALLION_METRICS_PUSH", None)
    pod_env.update(MEDALLION_CONFIG=str(config), MEDALLION_ROOT=str(root), MEDALLION_LANDING=str(landing))
    process_env = {k: v for k, v in os.environ.items() if not k.startswith("MEDALLION_")}
    process_env.update(pod_env)

    jobs = by_kind(docs, "CronJob")
    commands = []  # (layer, index, args), in schedule order within an hour
    for layer in LAYERS:
        spec = jobs[f"medallion-{layer}"]["spec"]["jobTemplate"]["spec"]
        (container,) = spec["template"]["spec"]["containers"]
        assert container.get("command") is None, "the image's entrypoint is medallion"
        indexes = range(spec["completions"]) if spec.get("completionMode") == "Indexed" else [None]
        for index in indexes:
            env = dict(pod_env)
            if index is not None:
                env["JOB_COMPLETION_INDEX"] = str(index)
            args = [expand(a, env) for a in container["args"]]
            assert not any("$(" in a for a in args), args
            commands.append((layer, index, args))
    assert len(commands) == jobs["medallion-bronze"]["spec"]["jobTemplate"]["spec"]["completions"] + 2

    # As `plan`: the CLI accepts every command line, and the shards split the files.
    planned = 0
    for layer, index, args in commands:
        assert args[0] == "run"
        out = medallion(["plan", *args[1:], "--format", "json"], process_env)
        plan = json.loads(out.stdout)
        assert {t["layer"] for t in plan["tables"]} == {layer}
        if index is not None:
            planned += sum(len(t["landing"]["new"]) for t in plan["tables"])
            assert all(t["landing"]["shard"] == args[-1] for t in plan["tables"])
    total = sum(len(files) for _, _, files in os.walk(landing))
    assert planned == total, "the shards' plans cover every landed file once"

    # Run for real in schedule order: the tables equal one job's run of the whole DAG.
    for layer, index, args in commands:
        out = medallion(args, process_env)
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert lines, "the jobs log"
        for line in lines:
            record = json.loads(line)  # JSON logs, one object per line
            assert record["level"] in ("INFO", "WARN", "ERROR", "DEBUG"), record
    reference = tmp_path / "reference"
    medallion(["--config", str(config), "--root", str(reference), "--landing", str(landing), "run"],
              {k: v for k, v in os.environ.items() if not k.startswith("MEDALLION_")})
    for table in ("campaign_daily", "channel_cac", "attribution"):
        assert gold_rows(root, table) == gold_rows(reference, table), table


def test_the_batch_module_command_lines_plan_against_sample_data(landing, tmp_path):
    """The scheduled ECS tasks of modules/batch (one per Bronze shard, one per other layer) run
    command lines the CLI accepts, and the shards' plans cover every landed file once."""
    module = os.path.join(TERRAFORM, "modules", "batch")
    with open(os.path.join(module, "variables.tf")) as f:
        variables = {k.strip('"'): v for block in hcl2.load(f)["variable"] for k, v in block.items()}
    shards = int(variables["bronze_shards"]["default"])
    text = open(os.path.join(module, "main.tf")).read()
    commands = []
    for raw in re.findall(r"command\s*=\s*(\[[^\]]*\])", text):
        items = re.findall(r'"((?:[^"\\]|\\.)*)"', raw)
        if "${i}" in raw:
            commands += [[a.replace("${i}", str(i)).replace("${var.bronze_shards}", str(shards)) for a in items]
                         for i in range(shards)]
        else:
            commands.append(items)
    assert sum(1 for c in commands if "--shard" in c) == shards
    assert {c[2] for c in commands} == set(LAYERS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDALLION_")}
    env.update(MEDALLION_CONFIG=os.path.join(REPO, "layers.yaml"), MEDALLION_ROOT=str(tmp_path / "lake"),
               MEDALLION_LANDING=str(landing))
    planned = 0
    for args in commands:
        assert args[0] == "run" and not any("${" in a for a in args), args
        plan = json.loads(medallion(["plan", *args[1:], "--format", "json"], env).stdout)
        if "--shard" in args:
            planned += sum(len(t["landing"]["new"]) for t in plan["tables"])
    assert planned == sum(len(files) for _, _, files in os.walk(landing))


def unquote(value):
    """A python-hcl2 literal as Python: strings lose their quotes, numbers in quotes become
    numbers; lists recurse."""
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
        return int(value) if value.isdigit() else value
    return value


def test_terraform_jobs_keep_the_manifests_settings(rendered):
    """What checkov cannot see in `kubernetes_cron_job_v1`: the Terraform CronJobs keep the
    schedule policy, the failure policy and the pod and container security settings of the
    manifests' base."""
    tf = terraform()
    (job,) = resources(tf, "kubernetes_cron_job_v1").values()
    _, base = rendered["base"]
    manifest = by_kind(base, "CronJob")["medallion-silver"]["spec"]
    spec = job["spec"][0]
    assert unquote(spec["concurrency_policy"]) == manifest["concurrencyPolicy"]
    assert spec["starting_deadline_seconds"] == manifest["startingDeadlineSeconds"]
    assert spec["successful_jobs_history_limit"] == manifest["successfulJobsHistoryLimit"]
    assert spec["failed_jobs_history_limit"] == manifest["failedJobsHistoryLimit"]
    jobspec, mjob = spec["job_template"][0]["spec"][0], manifest["jobTemplate"]["spec"]
    assert jobspec["active_deadline_seconds"] == mjob["activeDeadlineSeconds"]
    assert unquote(jobspec["ttl_seconds_after_finished"]) == mjob["ttlSecondsAfterFinished"]
    rules = jobspec["pod_failure_policy"][0]["rule"]
    assert unquote(rules[0]["action"]) == "FailJob" and rules[0]["on_exit_codes"][0]["values"] == [2, 3]
    assert unquote(rules[1]["action"]) == "Ignore"
    assert unquote(rules[1]["on_pod_condition"][0]["type"]) == "DisruptionTarget"
    pod, mpod = jobspec["template"][0]["spec"][0], mjob["template"]["spec"]
    assert unquote(pod["restart_policy"]) == mpod["restartPolicy"]
    assert pod["automount_service_account_token"] is mpod["automountServiceAccountToken"] is False
    psc, mpsc = pod["security_context"][0], mpod["securityContext"]
    assert psc["run_as_non_root"] is True
    for tf_key, key in (("run_as_user", "runAsUser"), ("run_as_group", "runAsGroup"), ("fs_group", "fsGroup")):
        assert unquote(psc[tf_key]) == mpsc[key], tf_key
    assert unquote(psc["seccomp_profile"][0]["type"]) == mpsc["seccompProfile"]["type"]
    (container,) = pod["container"]
    csc, mcsc = container["security_context"][0], mpod["containers"][0]["securityContext"]
    assert csc["allow_privilege_escalation"] is mcsc["allowPrivilegeEscalation"] is False
    assert csc["read_only_root_filesystem"] is mcsc["readOnlyRootFilesystem"] is True
    assert csc["privileged"] is mcsc["privileged"] is False
    assert csc["run_as_non_root"] is True
    assert unquote(csc["capabilities"][0]["drop"]) == mcsc["capabilities"]["drop"] == ["ALL"]
    volumes = {unquote(v["name"]): v for v in pod["volume"]}
    assert unquote(volumes["tmp"]["empty_dir"][0]["size_limit"]) == \
        {v["name"]: v for v in mpod["volumes"]}["tmp"]["emptyDir"]["sizeLimit"]
