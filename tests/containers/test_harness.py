"""The container harness itself: real pods on the private containerd, as the product will see them."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lanner.state.cgroups import cgroup_dirs
from tests.conftest import ROOT
from tests.containers.harness import BUSYBOX_IMAGE, Containerd, Mount, busybox_rootfs, cri, host, images

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def cgroup_paths(pid: int) -> set[str]:
    """The distinct cgroup paths of a process over every hierarchy (v1 controllers and 0::)."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    return {line.split(":", 2)[2] for line in lines}


def test_pod_runs_in_its_kubepods_cgroup(containerd: Containerd) -> None:
    pod = containerd.run_pod("harness-cgroup")
    assert HEX64.match(pod.container_id) and HEX64.match(pod.sandbox_id)
    assert pod.cgroup_path == f"/kubepods/besteffort/pod{pod.uid}/{pod.container_id}"
    assert cgroup_paths(pod.pid) == {pod.cgroup_path}
    assert Path(f"/proc/{pod.pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", b"3600"]
    assert cgroup_paths(pod.sandbox_pid) == {f"/kubepods/besteffort/pod{pod.uid}/{pod.sandbox_id}"}
    # its own pid namespace; the host network (the default)
    assert os.readlink(f"/proc/{pod.pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    assert os.readlink(f"/proc/{pod.pid}/ns/net") == os.readlink("/proc/self/ns/net")


def test_exec_sync_runs_in_the_container_cgroup(containerd: Containerd) -> None:
    pod = containerd.run_pod("harness-exec")
    rc, out, err = pod.exec_sync(["cat", "/proc/self/cgroup"])
    assert (rc, err) == (0, "")
    assert {line.split(":", 2)[2] for line in out.splitlines()} == {pod.cgroup_path}
    assert pod.exec_sync(["sh", "-c", "echo out; echo err >&2; exit 3"]) == (3, "out\n", "err\n")


def test_exec_tty_gives_a_terminal_in_the_container_cgroup(containerd: Containerd) -> None:
    pod = containerd.run_pod("harness-tty")
    rc, out, _ = pod.exec_tty(["sh", "-c", "tty; cat /proc/self/cgroup; exit 4"])
    assert rc == 4
    lines = out.splitlines()
    assert re.fullmatch(r"/dev/pts/\d+", lines[0])
    assert {line.split(":", 2)[2] for line in lines[1:]} == {pod.cgroup_path}


def test_labels_and_metadata_read_back_through_the_cri(containerd: Containerd) -> None:
    pod = containerd.run_pod("harness-labels", namespace="lanner-test", labels={"app": "web", "tier": "front"},
                             container_name="server", env={"GREETING": "hi"}, annotations={"example.com/a": "1"})
    rt, pb = containerd.runtime, cri.pb

    status = pod.container_status(verbose=True)
    assert status.status.metadata.name == "server"
    assert status.status.image.image == BUSYBOX_IMAGE
    assert status.status.image_ref == containerd.images[BUSYBOX_IMAGE].config_digest
    assert dict(status.status.labels) == {
        "io.kubernetes.container.name": "server",
        "io.kubernetes.pod.name": "harness-labels",
        "io.kubernetes.pod.namespace": "lanner-test",
        "io.kubernetes.pod.uid": pod.uid,
    }
    info = json.loads(status.info["info"])
    assert info["pid"] == pod.pid and info["sandboxID"] == pod.sandbox_id
    annotations = info["runtimeSpec"]["annotations"]
    assert annotations["io.kubernetes.cri.sandbox-name"] == "harness-labels"
    assert annotations["io.kubernetes.cri.sandbox-namespace"] == "lanner-test"
    assert annotations["io.kubernetes.cri.sandbox-uid"] == pod.uid
    assert info["runtimeSpec"]["linux"]["cgroupsPath"] == pod.cgroup_path

    found = rt.ListContainers(pb.ListContainersRequest(filter=pb.ContainerFilter(id=pod.container_id))).containers
    assert [c.pod_sandbox_id for c in found] == [pod.sandbox_id]

    sandbox = pod.sandbox_status().status
    assert (sandbox.metadata.name, sandbox.metadata.namespace, sandbox.metadata.uid) == (
        "harness-labels", "lanner-test", pod.uid)
    assert dict(sandbox.labels) == {"app": "web", "tier": "front", "io.kubernetes.pod.name": "harness-labels",
                                    "io.kubernetes.pod.namespace": "lanner-test", "io.kubernetes.pod.uid": pod.uid}
    assert sandbox.annotations["example.com/a"] == "1"
    by_label = rt.ListPodSandbox(pb.ListPodSandboxRequest(
        filter=pb.PodSandboxFilter(label_selector={"app": "web", "io.kubernetes.pod.namespace": "lanner-test"}))).items
    assert [s.id for s in by_label] == [pod.sandbox_id]

    assert pod.exec_sync(["sh", "-c", "echo $GREETING"]).stdout == "hi\n"


def test_pod_network_through_the_cni_bridge(containerd: Containerd) -> None:
    pod = containerd.run_pod("harness-podnet", host_network=False)
    assert os.readlink(f"/proc/{pod.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    ip = pod.sandbox_status().status.network.ip
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("198.18.0.0/24")
    assert pod.exec_sync(["hostname"]).stdout == "harness-podnet\n"
    assert ip in pod.exec_sync(["ip", "-4", "addr", "show", "eth0"]).stdout


def test_privileged_pod_and_host_mounts(containerd: Containerd, tmp_path: Path) -> None:
    plain = containerd.run_pod("harness-plain")
    privileged = containerd.run_pod("harness-priv", privileged=True, mounts=[Mount(str(tmp_path), "/data")])

    def cap_eff(pid: int) -> int:
        line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("CapEff:"))
        return int(line.split()[1], 16)

    assert cap_eff(privileged.pid) == cap_eff(os.getpid())
    assert cap_eff(plain.pid) < cap_eff(os.getpid())
    assert privileged.exec_sync(["sh", "-c", "echo from-pod > /data/f"]).rc == 0
    assert (tmp_path / "f").read_text() == "from-pod\n"


def test_extra_image_from_a_rootfs(containerd: Containerd, tmp_path: Path) -> None:
    rootfs = busybox_rootfs(tmp_path / "rootfs")
    tool = rootfs / "usr" / "local" / "bin" / "lanner-tool"
    tool.write_text("#!/bin/sh\necho tool-ran \"$@\"\n")
    tool.chmod(0o755)
    image = containerd.build_image(rootfs, "localhost/lanner-extra:local", cmd=["sleep", "3600"])
    pod = containerd.run_pod("harness-extra", image=image, command=["sleep", "3600"])
    assert pod.exec_sync(["lanner-tool", "x"]) == (0, "tool-ran x\n", "")
    assert pod.container_status().status.image.image == "localhost/lanner-extra:local"


def test_removed_pod_leaves_nothing(containerd: Containerd) -> None:
    pod = containerd.run_pod("harness-remove")
    pids = (pod.pid, pod.sandbox_pid)
    pod.remove()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists()
    with pytest.raises(cri.RpcError) as err:
        pod.sandbox_status()
    assert cri.rpc_code(err.value) == "NOT_FOUND"
    assert [d for d in cgroup_dirs(pod.cgroup_parent) if d.exists()] == []
    shims = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, pod.sandbox_id)]
    assert shims == []


def _cmdline_has(proc: Path, text: str) -> bool:
    try:
        return text.encode() in (proc / "cmdline").read_bytes()
    except OSError:
        return False


def test_teardown_leaves_nothing_running(containerd: Containerd) -> None:
    """A second instance, torn down while pods (host and pod network) still run."""
    second = Containerd().start()
    try:
        host = second.run_pod("teardown-host")
        podnet = second.run_pod("teardown-podnet", host_network=False)
        assert host.pid and podnet.pid
    finally:
        problems = second.close()
    assert problems == []
    assert second.leftovers() == []
    assert not second.dir.exists()


CRASHING_RUN = """
import json, sys, time
from tests.containers.harness import Containerd
cd = Containerd().start()
pods = [cd.run_pod("crash-host"), cd.run_pod("crash-podnet", host_network=False)]
print(json.dumps({"dir": str(cd.dir), "reaper": cd.process.pid, "bridge": cd.bridge,
                  "pids": [p for pod in pods for p in (pod.pid, pod.sandbox_pid)],
                  "cgroups": [pod.cgroup_parent for pod in pods]}), flush=True)
time.sleep(60)
"""


def test_killed_test_process_leaves_nothing_running(containerd: Containerd) -> None:
    """A test process killed with pods running: its reaper ends them all, reclaim_stale the rest."""
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_RUN], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        run = json.loads(proc.stdout.readline())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    folder = Path(run["dir"])
    started = {pid: host.start_time(pid) for pid in [run["reaper"], *run["pids"]]}
    deadline = time.monotonic() + 10
    while any(t and host.alive(pid, t) for pid, t in started.items()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [pid for pid, t in started.items() if t and host.alive(pid, t)] == []
    assert host.processes_mentioning(str(folder)) == {}

    assert str(folder) in Containerd.reclaim_stale()
    assert not folder.exists()
    assert host.mounts_under(folder) == []
    assert not host.link_exists(run["bridge"])
    assert [d for cg in run["cgroups"] for d in cgroup_dirs(cg) if d.exists()] == []


def test_oci_archives_are_deterministic(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "bin" / "tool").write_text("#!/bin/sh\n")
    (rootfs / "sh").symlink_to("bin/tool")
    first = images.build_oci_archive(rootfs, "localhost/det:local", tmp_path / "a.tar", cmd=["/sh"])
    os.utime(rootfs / "bin" / "tool", (1, 1))
    second = images.build_oci_archive(rootfs, "localhost/det:local", tmp_path / "b.tar", cmd=["/sh"])
    assert first.config_digest == second.config_digest
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
