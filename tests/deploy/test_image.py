"""The container image: built with the same script as `make image` (buildah, from the locally
bootstrapped Debian base, into a private buildah storage), then run with runc — the OCI runtime
containerd uses — exactly as the rendered DaemonSet and Deployment ask: host PID namespace, only the
listed capabilities, read-only root, the same host mounts, the ConfigMaps' files. Under those
privileges `lanner doctor` must say the sensor can run, the agent must alert on a real event and serve
/metrics and /healthz, and the webhook (non-root, no capability) must answer an AdmissionReview."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.agent_support import free_port, require_agent_machine, wait_until
from tests.conftest import ROOT
from tests.deploy.support import (
    SIGHUP_AGENT,
    agent_config,
    configmap,
    container,
    find,
    render,
    tool,
    without_unknown_enforcement,
)

pytestmark = pytest.mark.kernel

TAG = "localhost/lanner:test"
NODE = "test-node"
BUILD_BUDGET_S = 300  # a few minutes at most, the first bootstrap of the Debian base included


@dataclass
class Image:
    storage: Path
    rootfs: Path
    config: dict[str, Any]
    build_s: float
    runc_root: Path
    tmp: Path
    containers: list[str] = field(default_factory=list)

    def buildah(self, *args: str) -> str:
        return subprocess.run([tool("buildah"), "--root", str(self.storage / "root"), "--runroot",
                               str(self.storage / "run"), *args], check=True, capture_output=True, text=True,
                              timeout=300).stdout.strip()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    require_agent_machine()
    tool("buildah")
    tool("mmdebstrap")
    tool("runc")
    tmp = tmp_path_factory.mktemp("image")
    storage = tmp / "storage"
    t0 = time.monotonic()
    proc = subprocess.run(["bash", "scripts/build-image.sh", "--tag", TAG, "--root", str(storage / "root"),
                           "--runroot", str(storage / "run")], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    build_s = time.monotonic() - t0
    assert proc.returncode == 0, f"build-image.sh failed:\n{proc.stdout}\n{proc.stderr}"
    img = Image(storage, Path(), {}, build_s, tmp / "runc", tmp)
    ctr = img.buildah("from", "--quiet", "--pull-never", TAG)
    try:
        img.rootfs = Path(img.buildah("mount", ctr))
        img.config = json.loads(img.buildah("inspect", "--type", "image", TAG))["OCIv1"]["config"]
        yield img
    finally:
        for cid in img.containers:
            subprocess.run([tool("runc"), "--root", str(img.runc_root), "delete", "--force", cid],
                           capture_output=True, timeout=60)
        with contextlib.suppress(subprocess.CalledProcessError):
            img.buildah("umount", ctr)
            img.buildah("rm", ctr)
            img.buildah("rmi", "--all", "--force")
        shutil.rmtree(storage, ignore_errors=True)


def oci_spec(img: Image, workload: dict[str, Any], name: str, args: list[str], files: dict[str, Path],
             env: dict[str, str]) -> Path:
    """An OCI bundle running the image's entrypoint with `args` as the pod spec of `workload` asks.

    What kubelet and containerd would do, done by hand: the namespaces (no PID namespace with
    hostPID), the securityContext (user, capabilities, no_new_privs, read-only root; seccomp must be
    Unconfined, since runc here runs without a profile), the volumes (hostPath as read-only or
    read-write rbind, configMap/secret keys from `files`, emptyDir as tmpfs). One deliberate
    difference: the host's network namespace, so the test reaches the ports without a CNI.
    """
    pod = workload["spec"]["template"]["spec"]
    c = container(workload, name)
    sc = c["securityContext"]
    psc = pod.get("securityContext", {})
    seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
    bundle = img.tmp / f"bundle-{name}-{uuid.uuid4().hex[:8]}"
    bundle.mkdir()
    subprocess.run([tool("runc"), "spec", "--bundle", str(bundle)], check=True, timeout=30)
    spec = json.loads((bundle / "config.json").read_text())
    proc = spec["process"]
    proc["terminal"] = False
    proc["args"] = [*img.config["Entrypoint"], *args]
    proc["env"] = [*img.config["Env"], *(f"{k}={v}" for k, v in env.items())]
    uid = sc.get("runAsUser", psc.get("runAsUser", 0))
    proc["user"] = {"uid": uid, "gid": sc.get("runAsGroup", psc.get("runAsGroup", 0))}
    caps = ([] if "ALL" in sc["capabilities"].get("drop", []) else proc["capabilities"]["bounding"])
    caps = sorted({*caps, *(f"CAP_{x}" for x in sc["capabilities"].get("add", []))})
    held = caps if uid == 0 else []  # a non-root process holds none of its bounding set
    proc["capabilities"] = {"bounding": caps, "effective": held, "permitted": held, "inheritable": [], "ambient": []}
    proc["noNewPrivileges"] = not sc.get("allowPrivilegeEscalation", True)
    assert not sc.get("privileged", False)
    if seccomp is not None:
        assert seccomp in ("Unconfined", "RuntimeDefault")
    spec["root"] = {"path": str(img.rootfs), "readonly": bool(sc.get("readOnlyRootFilesystem"))}
    drop_ns = {"network", "cgroup"} | ({"pid"} if pod.get("hostPID") else set())
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] not in drop_ns]
    spec["hostname"] = name
    volumes = {v["name"]: v for v in pod["volumes"]}
    for m in c["volumeMounts"]:
        vol = volumes[m["name"]]
        ro = "ro" if m.get("readOnly") else "rw"
        if "hostPath" in vol:
            source = files.get(m["mountPath"], Path(vol["hostPath"]["path"]))
            spec["mounts"].append({"destination": m["mountPath"], "type": "bind", "source": str(source),
                                   "options": ["rbind", ro]})
        elif "emptyDir" in vol:
            spec["mounts"].append({"destination": m["mountPath"], "type": "tmpfs", "source": "tmpfs",
                                   "options": ["nosuid", "nodev", "mode=1777", "size=64m"]})
        else:  # configMap / secret: the test wrote the files
            spec["mounts"].append({"destination": m["mountPath"], "type": "bind",
                                   "source": str(files[m["mountPath"]]), "options": ["rbind", "ro"]})
    (bundle / "config.json").write_text(json.dumps(spec, indent=1))
    return bundle


class Running:
    """`runc run` in the foreground: the container's stdout and stderr collected line by line."""

    def __init__(self, img: Image, bundle: Path) -> None:
        self.img = img
        self.id = f"lanner-test-{uuid.uuid4().hex[:10]}"
        img.containers.append(self.id)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.proc = subprocess.Popen([tool("runc"), "--root", str(img.runc_root), "run", "--bundle", str(bundle),
                                      self.id], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        for stream, into in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=lambda s=stream, i=into: [i.append(x.rstrip("\n")) for x in s],
                             daemon=True).start()

    def wait_for(self, text: str, timeout: float = 60) -> None:
        wait_until(lambda: self.proc.poll() is not None or any(text in x for x in self.stderr),
                   f"{text!r} from the container", timeout=timeout)
        assert self.proc.poll() is None, f"the container exited {self.proc.returncode}: {self.stderr}"

    def stop(self) -> int:
        subprocess.run([tool("runc"), "--root", str(self.img.runc_root), "kill", self.id, "TERM"],
                       capture_output=True, timeout=30)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


class SocketStandIn:
    """A listening Unix socket where the node's CRI socket would be, counting connections."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.connections += 1
                conn.close()


def agent_files(img: Image, overlay: str, metrics_addr: str) -> tuple[dict[str, Any], dict[str, Path], SocketStandIn]:
    objs = render(overlay)
    ds = find(objs, "DaemonSet", "lanner-agent")
    cfg = without_unknown_enforcement(agent_config(objs))
    cfg["metrics_listen"] = metrics_addr  # the host's network namespace here, not the pod's own
    d = img.tmp / f"agent-{overlay}-{uuid.uuid4().hex[:8]}"
    (d / "rules").mkdir(parents=True)
    (d / "lanner.yaml").write_text(yaml.safe_dump(cfg))
    for key, text in configmap(objs, "lanner-rules")["data"].items():
        (d / "rules" / key).write_text(text)
    standin = SocketStandIn(d / "cri.sock")
    files = {"/etc/lanner/lanner.yaml": d / "lanner.yaml", "/etc/lanner/rules": d / "rules"}
    if not Path(cfg["cri_socket"]).exists():  # no runtime on this machine's default socket
        files[cfg["cri_socket"]] = d / "cri.sock"
    return ds, files, standin


def test_image_builds_within_budget(image: Image) -> None:
    assert image.build_s < BUILD_BUDGET_S, f"the image took {image.build_s:.0f} s to build"
    venv = image.rootfs / "opt" / "lanner" / "venv" / "bin" / "lanner"
    assert venv.is_file()
    assert sorted(p.name for p in (image.rootfs / "opt" / "lanner" / "bpf").iterdir()) == \
        sorted(p.name for p in (ROOT / "build" / "bpf").glob("*.bpf.o"))
    assert (image.rootfs / "opt" / "lanner" / "cri" / "lanner_cri" / "api_pb2_grpc.py").is_file()
    assert image.config["Entrypoint"] == ["/usr/bin/tini", "-s", "--", "lanner"]
    assert image.config["Cmd"] == ["run", "-c", "/etc/lanner/lanner.yaml"]
    assert not list(image.rootfs.glob("tmp/wheels/*"))  # the wheels were bind-mounted, not copied


def test_doctor_passes_with_the_daemonsets_privileges(image: Image) -> None:
    ds, files, _ = agent_files(image, "monitor", f"127.0.0.1:{free_port()}")
    bundle = oci_spec(image, ds, "agent", ["doctor", "--json"], files, {})
    run = Running(image, bundle)
    rc = run.proc.wait(timeout=180)
    time.sleep(0.2)
    report = json.loads("\n".join(run.stdout))
    checks = {c["name"]: c for c in report["checks"]}
    assert rc == 0 and report["ok"], [c for c in report["checks"] if c.get("blocking")]
    for name in ("capabilities", "btf", "tracefs", "libbpf", "object:sensor.bpf.o", "sensor"):
        assert checks[name]["verdict"] == "ok", checks[name]
    assert "CAP_SYS_ADMIN" not in checks["capabilities"]["detail"].split(":")[1].split(";")[0]
    assert checks["object:sensor.bpf.o"]["detail"].startswith("/opt/lanner/bpf/")


def test_agent_runs_in_the_image_and_alerts(image: Image) -> None:
    metrics = f"127.0.0.1:{free_port()}"
    ds, files, standin = agent_files(image, "monitor", metrics)
    env = {"FALCO_HOSTNAME": NODE}  # the DaemonSet sets it from spec.nodeName
    assert any(e["name"] == "FALCO_HOSTNAME" for e in container(ds, "agent")["env"])
    bundle = oci_spec(image, ds, "agent", container(ds, "agent")["args"], files, env)
    run = Running(image, bundle)
    try:
        run.wait_for("running", timeout=90)
        assert urllib.request.urlopen(f"http://{metrics}/healthz", timeout=5).read().strip() == b"ok"
        subprocess.run(["python3", "-c", "open('/etc/shadow').read()"], check=True, timeout=30)

        def alert() -> dict[str, Any] | None:
            for line in run.stdout:
                if line.startswith("{"):
                    a: dict[str, Any] = json.loads(line)
                    if a["rule"] == "Read sensitive file by untrusted program":
                        return a
            return None
        a = wait_until(alert, "the alert on the container's stdout")
        assert a["hostname"] == NODE and a["output_fields"]["fd.name"] == "/etc/shadow"
        page = urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5).read().decode()
        assert 'lanner_alerts_total{priority="Warning",rule="Read sensitive file by untrusted program"}' in page
        assert "process_resident_memory_bytes" in page
        # docs/deploy.md's in-place rules reload, as `kubectl exec` would run it (runc exec is what
        # containerd runs for it): SIGHUP to the agent, found by its command line — never `kill 1`,
        # which with hostPID is the node's init.
        hup = subprocess.run([tool("runc"), "--root", str(image.runc_root), "exec", run.id, "sh", "-c", SIGHUP_AGENT],
                             capture_output=True, text=True, timeout=30)
        assert hup.returncode == 0, hup.stderr
        assert hup.stdout.count("SIGHUP sent to") == 1, hup.stdout
        wait_until(lambda: 'lanner_rules_reloads_total{result="ok"} 1.0' in
                   urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5).read().decode(), "the reload")
        # The read-only CRI socket mount still lets the agent connect.
        if files.get("/run/containerd/containerd.sock"):
            probe = subprocess.run([tool("runc"), "--root", str(image.runc_root), "exec", run.id, "python3", "-c",
                                    "import socket; socket.socket(socket.AF_UNIX).connect("
                                    "'/run/containerd/containerd.sock')"], capture_output=True, text=True,
                                   timeout=30)
            assert probe.returncode == 0, probe.stderr
            assert standin.connections >= 1
    finally:
        rc = run.stop()
    assert rc == 0, run.stderr
    assert any("stopped" in x for x in run.stderr)


def test_webhook_runs_in_the_image_as_restricted(image: Image) -> None:
    objs = render("monitor")
    deploy = find(objs, "Deployment", "lanner-admission")
    web = container(deploy, "admission")
    port = free_port()
    args = list(web["args"])
    args[args.index("--port") + 1] = str(port)
    tls = image.tmp / "tls"
    subprocess.run([str(ROOT / ".venv" / "bin" / "lanner"), "admission", "--generate-certs", str(tls),
                    "--generate-only"], check=True, capture_output=True, timeout=60)
    for f in tls.iterdir():
        f.chmod(0o644)  # a Secret volume's default mode
    cfg_dir = image.tmp / "admission-config"
    cfg_dir.mkdir()
    for key, text in configmap(objs, "lanner-admission-config")["data"].items():
        (cfg_dir / key).write_text(text)
        os.chmod(cfg_dir / key, 0o644)
    os.chmod(cfg_dir, 0o755)
    files = {"/tls": tls, "/etc/lanner-admission": cfg_dir}
    os.chmod(tls, 0o755)
    run = Running(image, oci_spec(image, deploy, "admission", args, files, {}))
    try:
        ctx = ssl.create_default_context(cafile=str(tls / "tls.crt"))

        def healthy() -> bool:
            assert run.proc.poll() is None, f"the webhook exited {run.proc.returncode}: {run.stderr}"
            try:
                with urllib.request.urlopen(f"https://localhost:{port}/healthz", context=ctx, timeout=2) as r:
                    return bool(r.status == 200)
            except OSError:
                return False
        wait_until(healthy, "the webhook's /healthz over TLS", timeout=60)
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "shop"},
               "spec": {"containers": [{"name": "app", "image": "nginx", "securityContext": {"privileged": True}}]}}
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                  "request": {"uid": "1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                              "resource": {"group": "", "version": "v1", "resource": "pods"},
                              "namespace": "shop", "operation": "CREATE", "object": pod,
                              "userInfo": {"username": "alice"}}}
        req = urllib.request.Request(f"https://localhost:{port}/validate", data=json.dumps(review).encode(),
                                     headers={"Content-Type": "application/json"})
        answer = json.load(urllib.request.urlopen(req, context=ctx, timeout=10))["response"]
        assert answer["uid"] == "1" and answer["allowed"] is False  # baseline is enforced by default
        assert "privileged" in answer["status"]["message"]
        status = subprocess.run([tool("runc"), "--root", str(image.runc_root), "exec", run.id, "python3", "-c",
                                 "import os; print(os.getuid(), open('/proc/self/status').read())"],
                                capture_output=True, text=True, timeout=30).stdout
        assert status.startswith("65532 ")
        assert "CapEff:\t0000000000000000" in status and "NoNewPrivs:\t1" in status
    finally:
        run.stop()


@pytest.mark.parametrize("overlay", ["enforce", "monitor"])
def test_kill_action_acts_only_under_the_enforce_overlay(image: Image, overlay: str, tmp_path: Path) -> None:
    """A rule with `action: kill` on a host program: under the enforce overlay's privileges and config
    the agent kills it (CAP_KILL); under the monitor overlay it only alerts (monitor_only)."""
    victim = Path("/var/tmp") / f"lanner-deploy-victim-{uuid.uuid4().hex[:8]}"
    shutil.copy("/bin/sleep", victim)
    metrics = f"127.0.0.1:{free_port()}"
    ds, files, _ = agent_files(image, overlay, metrics)
    rules = files["/etc/lanner/rules"] / "kill-test.yaml"
    rules.write_text(f"""
- rule: Deploy test victim started
  desc: tests/deploy kill action
  condition: evt.type in (execve, execveat) and proc.exepath = {victim}
  output: victim started (proc.exepath=%proc.exepath)
  priority: WARNING
  action: kill
""")
    cfg = yaml.safe_load(files["/etc/lanner/lanner.yaml"].read_text())
    cfg["rules_files"] = ["/etc/lanner/rules/kill-test.yaml"]
    files["/etc/lanner/lanner.yaml"].write_text(yaml.safe_dump(cfg))
    run = Running(image, oci_spec(image, ds, "agent", container(ds, "agent")["args"], files, {}))
    try:
        run.wait_for("running", timeout=90)
        proc = subprocess.run([str(victim), "5"], timeout=30)
        a = wait_until(lambda: next((json.loads(x) for x in run.stdout if "Deploy test victim" in x), None),
                       "the kill rule's alert")
    finally:
        run.stop()
        victim.unlink()
    if overlay == "enforce":
        assert proc.returncode == -9
        assert (a["lanner"]["mode"], a["lanner"]["result"]) == ("enforce", "killed")
    else:
        assert proc.returncode == 0
        assert (a["lanner"]["mode"], a["lanner"]["result"]) == ("monitor", "allowed")



def test_block_rule_on_a_host_program_works_from_the_container(image: Image) -> None:
    """Under the enforce overlay the agent, inside its container, blocks the exec of a program of the
    node (looked up through /proc/1/root with hostPID), and finds the node's protected programs."""
    forbidden = Path("/var/tmp") / f"lanner-deploy-forbidden-{uuid.uuid4().hex[:8]}"
    shutil.copy("/bin/true", forbidden)
    ds, files, _ = agent_files(image, "enforce", f"127.0.0.1:{free_port()}")
    rules = files["/etc/lanner/rules"] / "block-test.yaml"
    rules.write_text(f"""
- rule: Deploy test forbidden program
  desc: tests/deploy block action
  condition: evt.type in (execve, execveat) and proc.exepath = {forbidden}
  output: forbidden program started (proc.exepath=%proc.exepath)
  priority: WARNING
  action: block
""")
    cfg = yaml.safe_load(files["/etc/lanner/lanner.yaml"].read_text())
    cfg["rules_files"] = ["/etc/lanner/rules/block-test.yaml"]
    cfg["enforcement"]["protected_programs"] = ["/usr/sbin/runc"]  # this machine's runc
    files["/etc/lanner/lanner.yaml"].write_text(yaml.safe_dump(cfg))
    run = Running(image, oci_spec(image, ds, "agent", container(ds, "agent")["args"], files, {}))
    try:
        run.wait_for("running", timeout=90)
        try:
            subprocess.run([str(forbidden)], timeout=30)
            pytest.fail(f"the forbidden program ran; the agent said: {run.stderr}")
        except PermissionError:
            pass  # EPERM from the kernel: fanotify's answer
        a = wait_until(lambda: next((json.loads(x) for x in run.stdout if "Deploy test forbidden" in x), None),
                       "the block rule's alert")
    finally:
        run.stop()
        forbidden.unlink()
    assert (a["lanner"]["mode"], a["lanner"]["result"]) == ("enforce", "blocked")
    assert not [x for x in run.stderr if "does not exist" in x], run.stderr
