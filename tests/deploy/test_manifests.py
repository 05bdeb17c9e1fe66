"""The Kustomize overlays render with a current kubectl, every object validates against Kubernetes'
OpenAPI schemas, and the objects agree with each other and with what the agent and webhook read."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped, unused-ignore]
import pytest
import yaml

from lanner import config as lanner_config
from lanner.posture.admission import AdmissionConfig
from tests.conftest import ROOT
from tests.deploy.support import (
    DEPLOY,
    OVERLAYS,
    RULES_FILE,
    SIGHUP_AGENT,
    agent_config,
    configmap,
    container,
    find,
    kubectl,
    render,
    without_unknown_enforcement,
)

EXPECTED = {
    ("Namespace", "lanner"), ("ServiceAccount", "lanner-agent"), ("ServiceAccount", "lanner-admission"),
    ("DaemonSet", "lanner-agent"), ("Service", "lanner-agent-metrics"), ("ServiceMonitor", "lanner-agent"),
    ("PrometheusRule", "lanner-agent"), ("Deployment", "lanner-admission"), ("Service", "lanner-admission"),
    ("PodDisruptionBudget", "lanner-admission"), ("ValidatingWebhookConfiguration", "lanner-posture"),
}
GENERATED = {"lanner-config", "lanner-rules", "lanner-admission-config"}
CLUSTER_SCOPED = {"Namespace", "ValidatingWebhookConfiguration"}
# Custom resources of the Prometheus Operator: kubernetes-validate has only Kubernetes' own schemas.
CRDS = {"ServiceMonitor", "PrometheusRule"}
KUBERNETES_VERSIONS = ("1.30.0", "1.35.0", kubernetes_validate.latest_version())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_every_object_in_the_lanner_namespace(overlay: str) -> None:
    objs = render(overlay)
    named = {(o["kind"], o["metadata"]["name"]) for o in objs if o["kind"] != "ConfigMap"}
    assert named == EXPECTED
    assert {configmap(objs, p)["metadata"]["name"].rsplit("-", 1)[0] for p in GENERATED} == GENERATED
    for o in objs:
        ns = o["metadata"].get("namespace")
        assert ns == (None if o["kind"] in CLUSTER_SCOPED else "lanner"), (o["kind"], o["metadata"]["name"], ns)
        assert o["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "lanner", o["metadata"]["name"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_kubernetes_schemas(overlay: str, version: str) -> None:
    unvalidated = set()
    for obj in render(overlay):
        try:
            kubernetes_validate.validate(obj, version, strict=True)  # strict: unknown fields are errors too
        except kubernetes_validate.SchemaNotFoundError:
            unvalidated.add(obj["kind"])
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{overlay}: {obj['kind']}/{obj['metadata']['name']} invalid for Kubernetes {version}: "
                        f"{'.'.join(map(str, e.path))}: {e.message}")
    assert unvalidated == CRDS  # checked by hand below, and the rules by promtool (test_prometheus.py)


def test_kubernetes_validate_rejects_a_broken_daemonset() -> None:
    """The validation above can fail: a misspelt field and a wrong type are caught."""
    ds = find(render("monitor"), "DaemonSet")
    broken = yaml.safe_load(yaml.safe_dump(ds))
    broken["spec"]["template"]["spec"]["hostPid"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.35.0", strict=True)
    broken = yaml.safe_load(yaml.safe_dump(ds))
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8765"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.35.0", strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_point_at_the_agents(overlay: str) -> None:
    objs = render(overlay)
    ds, svc, sm = find(objs, "DaemonSet"), find(objs, "Service", "lanner-agent-metrics"), find(objs, "ServiceMonitor")
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    [port] = svc["spec"]["ports"]
    assert [e["port"] for e in sm["spec"]["endpoints"]] == [port["name"]]
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    agent = container(ds, "agent")
    assert port["targetPort"] in {p["name"] for p in agent["ports"]}
    rule = find(objs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == yaml.safe_load(RULES_FILE.read_text()), "prometheusrule.yaml differs from the rules file"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_agent_config_is_valid_and_matches_the_daemonset(overlay: str, tmp_path: Path) -> None:
    objs = render(overlay)
    cfg = agent_config(objs)
    assert cfg["enforcement"]["mode"] == overlay
    # The monitor overlay is a dry run whatever the rules say (docs/enforcement.md).
    assert cfg["enforcement"].get("monitor_only", False) is (overlay == "monitor")
    cfg = without_unknown_enforcement(cfg)
    path = tmp_path / "lanner.yaml"
    path.write_text(yaml.safe_dump(cfg))
    loaded = lanner_config.load(path)  # raises ConfigError naming the key at fault

    ds = find(objs, "DaemonSet")
    agent = container(ds, "agent")
    mounts = {m["mountPath"]: m for m in agent["volumeMounts"]}
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    # The config file the agent is started with is the generated ConfigMap's lanner.yaml.
    assert agent["args"] == ["run", "-c", "/etc/lanner/lanner.yaml"]
    m = mounts["/etc/lanner/lanner.yaml"]
    assert volumes[m["name"]]["configMap"]["name"] == configmap(objs, "lanner-config")["metadata"]["name"]
    assert m["subPath"] == "lanner.yaml"
    # Every rules file is a key of the rules ConfigMap, mounted where the config says.
    rules_cm = configmap(objs, "lanner-rules")
    rules_dir = next(p for p, mm in mounts.items()
                     if volumes[mm["name"]].get("configMap", {}).get("name") == rules_cm["metadata"]["name"])
    assert [str(p) for p in loaded.rules_files] == [f"{rules_dir}/{k}" for k in rules_cm["data"]]
    # The metrics address is the container port the Service, the probes and Prometheus use.
    host, _, port = loaded.metrics_listen.rpartition(":")
    assert host == "0.0.0.0"
    assert {p["name"]: p["containerPort"] for p in agent["ports"]} == {"metrics": int(port)}
    assert agent["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    # The CRI socket the agent asks is the host's socket mounted at that path.
    sock = mounts[loaded.cri_socket]
    assert volumes[sock["name"]]["hostPath"] == {"path": loaded.cri_socket, "type": "Socket"}


def test_overlays_differ_from_the_base_config_only_by_the_enforcement_mode() -> None:
    base = yaml.safe_load((DEPLOY / "base" / "agent" / "lanner.yaml").read_text())
    for overlay in OVERLAYS:
        cfg = yaml.safe_load((DEPLOY / "overlays" / overlay / "lanner.yaml").read_text())
        assert cfg.pop("enforcement")["mode"] == overlay
        assert cfg == base, f"deploy/overlays/{overlay}/lanner.yaml drifted from deploy/base/agent/lanner.yaml"


def test_rules_configmap_holds_lanners_default_rules() -> None:
    """The copy kustomize can read equals the rules the agent ships (`make setup` re-copies it)."""
    source = (ROOT / "lanner" / "rules" / "default" / "lanner_rules.yaml").read_text()
    assert (DEPLOY / "base" / "agent" / "lanner_rules.yaml").read_text() == source, \
        "deploy/base/agent/lanner_rules.yaml is stale: run scripts/setup-deploy.sh and commit it"
    for overlay in OVERLAYS:
        assert configmap(render(overlay), "lanner-rules")["data"] == {"lanner_rules.yaml": source}


def test_enforce_overlay_only_adds_capabilities() -> None:
    def caps(overlay: str) -> dict[str, Any]:
        caps: dict[str, Any] = container(find(render(overlay), "DaemonSet"), "agent")["securityContext"]["capabilities"]
        return caps
    monitor, enforce = caps("monitor"), caps("enforce")
    assert monitor["drop"] == enforce["drop"] == ["ALL"]
    assert set(monitor["add"]) == {"BPF", "PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH"}
    assert set(enforce["add"]) - set(monitor["add"]) == {"KILL", "SYS_ADMIN", "NET_ADMIN"}
    # The API server refuses allowPrivilegeEscalation false with CAP_SYS_ADMIN (and it would mean nothing).
    sc = container(find(render("enforce"), "DaemonSet"), "agent")["securityContext"]
    assert sc["allowPrivilegeEscalation"] is True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_webhook_objects_fit_together(overlay: str) -> None:
    objs = render(overlay)
    deploy, svc = find(objs, "Deployment", "lanner-admission"), find(objs, "Service", "lanner-admission")
    vwc = find(objs, "ValidatingWebhookConfiguration")
    [hook] = vwc["webhooks"]
    ref = hook["clientConfig"]["service"]
    assert (ref["namespace"], ref["name"], ref["path"]) == ("lanner", "lanner-admission", "/validate")
    [port] = svc["spec"]["ports"]
    assert ref["port"] == port["port"] == 443
    web = container(deploy, "admission")
    assert svc["spec"]["selector"].items() <= deploy["spec"]["template"]["metadata"]["labels"].items()
    ports = {p["name"]: p["containerPort"] for p in web["ports"]}
    assert port["targetPort"] in ports
    args = web["args"]
    assert args[0] == "admission" and args[args.index("--port") + 1] == str(ports[port["targetPort"]])
    # The webhook never judges its own namespace (so it can always start) nor kube-system.
    [expr] = hook["namespaceSelector"]["matchExpressions"]
    assert expr["operator"] == "NotIn" and {"lanner", "kube-system"} <= set(expr["values"])
    assert hook["admissionReviewVersions"] == ["v1"] and hook["sideEffects"] == "None"
    # Its -c file is the generated ConfigMap, and lanner's own loader accepts it.
    cfg_dir = args[args.index("-c") + 1].rsplit("/", 1)
    mount = next(m for m in web["volumeMounts"] if m["mountPath"] == cfg_dir[0])
    vol = next(v for v in deploy["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    data = configmap(objs, "lanner-admission-config")
    assert vol["configMap"]["name"] == data["metadata"]["name"]
    cfg = AdmissionConfig.from_dict(yaml.safe_load(data["data"][cfg_dir[1]]))
    assert {"lanner", "kube-system"} <= cfg.exempt_namespaces


USER_OVERLAY = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {lanner}/deploy/overlays/monitor
images:
  - name: localhost/lanner
    newName: registry.example.com/security/lanner
    newTag: "0.1.0"
patches:
  - patch: |-
      $patch: delete
      apiVersion: monitoring.coreos.com/v1
      kind: ServiceMonitor
      metadata:
        name: lanner-agent
  - patch: |-
      $patch: delete
      apiVersion: monitoring.coreos.com/v1
      kind: PrometheusRule
      metadata:
        name: lanner-agent
"""


def test_docs_user_overlay_sets_the_registry_and_drops_the_operator_objects(tmp_path: Path) -> None:
    """The overlay docs/deploy.md tells users to write (own registry, no Prometheus Operator) works."""
    docs = (ROOT / "docs" / "deploy.md").read_text()
    assert USER_OVERLAY.format(lanner="../lanner") in docs, "docs/deploy.md's overlay differs from this test's"
    mine = tmp_path / "mine"
    mine.mkdir()
    rel = os.path.relpath(ROOT, mine)
    (mine / "kustomization.yaml").write_text(USER_OVERLAY.format(lanner=rel))
    proc = subprocess.run([str(kubectl()), "kustomize", str(mine)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    objs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    kinds = {o["kind"] for o in objs}
    assert not kinds & CRDS and {"DaemonSet", "Deployment"} <= kinds
    for kind in ("DaemonSet", "Deployment"):
        images = {c["image"] for c in find(objs, kind)["spec"]["template"]["spec"]["containers"]}
        assert images == {"registry.example.com/security/lanner:0.1.0"}


def test_docs_give_the_tested_reload_command() -> None:
    assert f"'{SIGHUP_AGENT}'" in (ROOT / "docs" / "deploy.md").read_text()


def test_docs_cri_o_patch_moves_the_socket(tmp_path: Path) -> None:
    """The CRI-O patch of docs/deploy.md replaces the socket's volume and mount, nothing else."""
    docs = (ROOT / "docs" / "deploy.md").read_text()
    section = docs[docs.index("### CRI-O"):]
    block = section[section.index("```yaml\n") + 8:section.index("```\n", section.index("```yaml"))]
    mine = tmp_path / "crio"
    mine.mkdir()
    (mine / "kustomization.yaml").write_text(
        f"resources:\n  - {os.path.relpath(ROOT, mine)}/deploy/overlays/monitor\n" + block)
    proc = subprocess.run([str(kubectl()), "kustomize", str(mine)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    ds = find([d for d in yaml.safe_load_all(proc.stdout) if d], "DaemonSet")
    before = find(render("monitor"), "DaemonSet")
    vols = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["name"]: m for m in container(ds, "agent")["volumeMounts"]}
    assert vols["cri-socket"]["hostPath"] == {"path": "/run/crio/crio.sock", "type": "Socket"}
    assert mounts["cri-socket"]["mountPath"] == "/run/crio/crio.sock"
    vols["cri-socket"] = next(v for v in before["spec"]["template"]["spec"]["volumes"] if v["name"] == "cri-socket")
    mounts["cri-socket"] = next(m for m in container(before, "agent")["volumeMounts"] if m["name"] == "cri-socket")
    assert list(vols.values()) == before["spec"]["template"]["spec"]["volumes"]
    assert list(mounts.values()) == container(before, "agent")["volumeMounts"]
