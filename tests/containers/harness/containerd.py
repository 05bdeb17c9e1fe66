"""A private containerd with the CRI plugin, and kubelet-shaped pods on it (../shared/lab/CONTAINERD.md).

Everything of an instance lives in one folder /tmp/lanner-ctrd-XXXX (config, root, state, sockets,
runc state, CNI config and IPAM data, pod logs, extra images). containerd runs under a small
subreaper (reaper.py), so its shims are reaped at once and die with the test process if it is
killed. `close()` removes the pods (containers, sandboxes, pod cgroups), stops containerd and
removes what containerd 1.6 leaves outside its folder, but only what this instance created.
`Containerd.reclaim_stale()` cleans up after instances whose test process died.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from lanner.simulate.terminal import TerminalTimeout, run_on_terminal
from lanner.state.cgroups import cgroup_dirs, remove_cgroup
from tests.containers.harness import cri, host, images

ROOT = Path(__file__).resolve().parents[3]
CONFIG_TEMPLATE = ROOT / "scripts" / "containers" / "containerd.toml"
CNI_TEMPLATE = ROOT / "scripts" / "containers" / "cni.conflist"
REAPER = Path(__file__).resolve().parent / "reaper.py"
CNI_BIN = Path("/usr/lib/cni")
DIR_PREFIX = "lanner-ctrd-"
K8S_NAMESPACE = "k8s.io"  # containerd namespace of the CRI plugin
RPC_TIMEOUT = 30.0
POD_NETWORK = "198.18.0.0/24"  # the CNI bridge's range (scripts/containers/cni.conflist)

# Host folders that containerd 1.6 and libcni use whatever the config says (CONTAINERD.md §8),
# deepest first: removed at close when empty and absent before start.
HOST_DIRS = (Path("/run/containerd/s"), Path("/run/containerd/fifo"), Path("/run/containerd"),
             Path("/var/lib/cni/results"), Path("/var/lib/cni"), Path("/run/netns"))
KUBEPODS_DIRS = ("/kubepods/besteffort", "/kubepods")  # parents of the pod cgroups, deepest first


class HarnessError(RuntimeError):
    pass


class ExecResult(NamedTuple):
    rc: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Mount:
    """A host path bind-mounted into the container."""

    host_path: str
    container_path: str
    readonly: bool = False


def missing_prerequisites() -> list[str]:
    """What this machine lacks for a private containerd (empty when everything is there)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root")
    for tool in ("containerd", "containerd-shim-runc-v2", "ctr", "runc", "gcc", "ip"):
        if shutil.which(tool, path=host.path_env()) is None:
            missing.append(tool)
    if not images.BUSYBOX_BIN.is_file():
        missing.append(f"{images.BUSYBOX_BIN} (busybox-static)")
    if not (CNI_BIN / "bridge").is_file():
        missing.append(f"{CNI_BIN}/bridge (containernetworking-plugins)")
    if not cri.stubs_present():
        missing.append(f"CRI stubs in {cri.STUBS} (make setup)")
    return missing


def _pod_cgroup_parent(uid: str) -> str:
    return f"/kubepods/besteffort/pod{uid}"


@dataclass
class Pod:
    """A pod sandbox with one started container in it, made through the CRI as kubelet would."""

    cd: Containerd = field(repr=False)
    name: str
    namespace: str
    uid: str
    sandbox_id: str
    labels: dict[str, str]  # the sandbox's labels (user labels + io.kubernetes.pod.*)
    host_network: bool
    container_name: str
    image: str
    container_id: str = ""
    pid: int = 0  # host pid of the container's main process
    sandbox_pid: int = 0  # host pid of the pause process
    removed: bool = False
    _started: dict[int, int] = field(default_factory=dict, repr=False)  # pid -> start time

    @property
    def cgroup_parent(self) -> str:
        """/kubepods/besteffort/pod<uid>"""
        return _pod_cgroup_parent(self.uid)

    @property
    def cgroup_path(self) -> str:
        """The container's cgroup: /kubepods/besteffort/pod<uid>/<container id>."""
        return f"{self.cgroup_parent}/{self.container_id}"

    def exec_sync(self, cmd: Sequence[str], timeout: float = 10) -> ExecResult:
        """Run cmd in the container (CRI ExecSync) and wait for it: (exit code, stdout, stderr)."""
        req = cri.pb.ExecSyncRequest(container_id=self.container_id, cmd=list(cmd), timeout=max(1, round(timeout)))
        resp = self.cd.runtime.ExecSync(req, timeout=timeout + 10)
        return ExecResult(resp.exit_code, resp.stdout.decode(errors="replace"), resp.stderr.decode(errors="replace"))

    def exec_tty(self, cmd: Sequence[str], timeout: float = 10) -> ExecResult:
        """Run cmd in the container with a terminal, as `kubectl exec -it` does (ExecSync has none).

        Goes through `ctr tasks exec --tty` (same container, same cgroup; the process's stdin is
        the container's /dev/pts/N). stdout is the terminal's output with its CRLF line ends turned
        back into LF; stderr is ctr's own messages.
        """
        exec_id = f"lanner-tty-{secrets.token_hex(4)}"
        argv = ["ctr", "--address", str(self.cd.socket), "--namespace", K8S_NAMESPACE, "tasks", "exec",
                "--exec-id", exec_id, "--fifo-dir", str(self.cd.dir / "fifo"), "--tty", self.container_id, *cmd]
        try:
            rc, out, stderr = run_on_terminal(argv, timeout, env=dict(os.environ, PATH=host.path_env()))
        except TerminalTimeout as e:
            raise HarnessError(f"exec_tty {list(cmd)} still running after {timeout} s: {e.output!r}") from None
        return ExecResult(rc, out, stderr)

    def container_status(self, verbose: bool = False) -> Any:
        """The CRI ContainerStatusResponse (verbose: `.info["info"]` is containerd's JSON)."""
        req = cri.pb.ContainerStatusRequest(container_id=self.container_id, verbose=verbose)
        return self.cd.runtime.ContainerStatus(req, timeout=RPC_TIMEOUT)

    def sandbox_status(self, verbose: bool = False) -> Any:
        """The CRI PodSandboxStatusResponse."""
        req = cri.pb.PodSandboxStatusRequest(pod_sandbox_id=self.sandbox_id, verbose=verbose)
        return self.cd.runtime.PodSandboxStatus(req, timeout=RPC_TIMEOUT)

    def remove(self) -> None:
        """Stop and remove the container and the sandbox, then the pod's cgroups (kubelet's job)."""
        if self.removed:
            return
        errors = self.cd._remove_sandbox(self.sandbox_id, [self.container_id] if self.container_id else [],
                                         self.cgroup_parent)
        self.removed = True
        self.cd.pods.pop(self.sandbox_id, None)
        if errors:
            raise HarnessError(f"removing pod {self.namespace}/{self.name}: " + "; ".join(errors))


class Containerd:
    """A private containerd: `start()` it, make pods with `run_pod`, `close()` it (or use `with`).

    Start it from a thread that outlives it (the main thread): its subreaper takes the exit of the
    starting thread's process as the end of the test run.
    """

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
        self.socket = self.dir / "run" / "containerd.sock"  # the CRI (and containerd API) socket
        self.log = self.dir / "containerd.log"
        token = secrets.token_hex(3)
        self.network = f"lanner-test-{token}"  # CNI network name
        self.bridge = f"lnt{token}"  # bridge made by the CNI plugin (names are limited to 15 characters)
        self.pods: dict[str, Pod] = {}  # live pods by sandbox id
        self.images: dict[str, images.OciArchive] = {}  # imported images by name
        self.process: subprocess.Popen[bytes] | None = None  # the reaper, containerd's parent
        self.channel: Any = None
        self.runtime: Any = None  # CRI RuntimeServiceStub
        self.image_service: Any = None  # CRI ImageServiceStub
        self.timings: dict[str, float] = {}
        self._made: list[Pod] = []
        self._pre_existing: set[Path] = set()
        self._closed = False
        self._write_instance(ours=[])

    def _write_instance(self, ours: list[str]) -> None:
        """What reclaim_stale needs if the test process dies: owner, bridge, shared folders absent at start."""
        (self.dir / "instance.json").write_text(json.dumps({
            "owner_pid": os.getpid(), "owner_start": host.start_time(os.getpid()), "bridge": self.bridge,
            "network": self.network, "socket": str(self.socket), "shared_dirs": ours}))

    # ---- life cycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 20) -> Containerd:
        """Write the config, build (or reuse) the images, start containerd, import the images."""
        t0 = time.monotonic()
        for sub in ("root", "state", "run", "opt", "cni/net.d", "cni/ipam", "logs/pods", "images", "fifo"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o711)
        runc = shutil.which("runc", path=host.path_env()) or "/usr/sbin/runc"
        config = CONFIG_TEMPLATE.read_text().replace("@DIR@", str(self.dir)).replace("@RUNC@", runc)
        (self.dir / "containerd.toml").write_text(config)
        cni = CNI_TEMPLATE.read_text().replace("@DIR@", str(self.dir)).replace("@NETWORK@", self.network)
        (self.dir / "cni" / "net.d" / "10-lanner-test.conflist").write_text(cni.replace("@BRIDGE@", self.bridge))
        self._pre_existing = {p for p in self._shared_host_dirs() if p.exists()}
        self._write_instance(ours=[str(p) for p in self._shared_host_dirs() if p not in self._pre_existing])
        busybox, pause = images.base_images()
        self.timings["images"] = time.monotonic() - t0

        t1 = time.monotonic()
        env = dict(os.environ, PATH=host.path_env(), LANNER_REAPER_PARENT=str(os.getpid()))
        for var in ("CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE", "NOTIFY_SOCKET"):
            env.pop(var, None)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-S", str(REAPER), "containerd", "--config", str(self.dir / "containerd.toml")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        # Connect once the socket exists: a gRPC channel whose first attempt failed retries only after 1 s.
        while not self.socket.exists():
            self._check_running(deadline, timeout)
            time.sleep(0.005)
        self.channel, self.runtime, self.image_service = cri.connect(self.socket)
        while True:  # the CRI answers, and reports the runtime and the (CNI) network ready
            try:
                status = self.runtime.Status(cri.pb.StatusRequest(), timeout=1).status
                if {c.type for c in status.conditions if c.status} >= {"RuntimeReady", "NetworkReady"}:
                    break
            except cri.RpcError:
                pass
            self._check_running(deadline, timeout)
            time.sleep(0.01)
        self.timings["containerd"] = time.monotonic() - t1

        t2 = time.monotonic()
        for archive in (busybox, pause):  # one after the other: in parallel they took longer
            res = self.ctr("images", "import", str(archive.path), check=False)
            if res.returncode != 0:
                raise HarnessError(f"ctr images import {archive.path}: {res.stdout}{res.stderr}")
            self.images[archive.name] = archive
        self.timings["import"] = time.monotonic() - t2
        return self

    def _check_running(self, deadline: float, timeout: float) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise HarnessError(f"containerd exited ({self.process.returncode}):\n{self.log_tail()}")
        if time.monotonic() > deadline:
            raise HarnessError(f"containerd did not answer within {timeout} s:\n{self.log_tail()}")

    def close(self) -> list[str]:
        """Remove every pod, stop containerd, clean up; what could not be cleaned (empty when all was)."""
        if self._closed:
            return []
        self._closed = True
        problems: list[str] = []
        if self.process is not None and self.process.poll() is None and self.runtime is not None:
            problems += self.remove_pods()
            problems += self._remove_untracked()
        if self.channel is not None:
            self.channel.close()
        t0 = time.monotonic()
        problems += self._stop()
        problems += self._clean_host()
        self.timings["stop"] = time.monotonic() - t0
        return problems

    def __enter__(self) -> Containerd:
        return self

    def __exit__(self, *exc: object) -> None:
        problems = self.close()
        if problems:
            raise HarnessError("containerd teardown: " + "; ".join(problems))

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # ---- images ------------------------------------------------------------------------------

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `ctr` against this containerd, in the CRI's namespace (k8s.io)."""
        return subprocess.run(["ctr", "--address", str(self.socket), "--namespace", K8S_NAMESPACE, *args],
                              capture_output=True, text=True, check=check, timeout=60,
                              env=dict(os.environ, PATH=host.path_env()))

    def build_image(
        self,
        rootfs: Path,
        name: str,
        *,
        entrypoint: Sequence[str] | None = None,
        cmd: Sequence[str] | None = None,
        env: Sequence[str] = images.DEFAULT_ENV,
        labels: Mapping[str, str] | None = None,
    ) -> str:
        """Pack a rootfs folder into the image `name` (e.g. localhost/tools:local), import it; returns name.

        `images.busybox_rootfs(folder)` makes a busybox base to add files to.
        """
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        archive = images.build_oci_archive(rootfs, name, self.dir / "images" / f"{safe}.tar",
                                           entrypoint=entrypoint, cmd=cmd, env=env, labels=labels)
        res = self.ctr("images", "import", str(archive.path), check=False)
        if res.returncode != 0:
            raise HarnessError(f"ctr images import {archive.path}: {res.stdout}{res.stderr}")
        self.images[name] = archive
        return name

    # ---- pods --------------------------------------------------------------------------------

    def run_pod(
        self,
        name: str,
        namespace: str = "default",
        labels: Mapping[str, str] | None = None,
        image: str = images.BUSYBOX_IMAGE,
        command: Sequence[str] = ("sleep", "3600"),
        privileged: bool = False,
        mounts: Iterable[Mount] | None = None,
        host_network: bool = True,
        *,
        container_name: str = "main",
        env: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> Pod:
        """A running pod: a sandbox and one started container, labelled and placed as kubelet does.

        Sandbox labels: `labels` + io.kubernetes.pod.{name,namespace,uid}; container labels:
        io.kubernetes.container.name + io.kubernetes.pod.*; cgroup parent /kubepods/besteffort/pod<uid>;
        own pid namespace; the host's network unless host_network=False (then a CNI bridge,
        198.18.0.0/24, and the pod name as hostname).
        """
        uid = str(uuid.uuid4())
        pb = cri.pb
        pod_labels = {
            **(labels or {}),
            "io.kubernetes.pod.name": name,
            "io.kubernetes.pod.namespace": namespace,
            "io.kubernetes.pod.uid": uid,
        }
        log_dir = self.dir / "logs" / "pods" / f"{namespace}_{name}_{uid}"  # also read by reclaim_stale
        log_dir.mkdir(parents=True)
        namespaces = pb.NamespaceOption(network=pb.NODE if host_network else pb.POD, pid=pb.CONTAINER, ipc=pb.POD)
        sandbox_config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, namespace=namespace, uid=uid, attempt=0),
            hostname="" if host_network else name[:63],  # a host-network pod must leave it empty
            log_directory=str(log_dir),
            labels=pod_labels,
            annotations={"kubernetes.io/config.source": "api", **(annotations or {})},
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent=_pod_cgroup_parent(uid),
                security_context=pb.LinuxSandboxSecurityContext(namespace_options=namespaces, privileged=privileged),
            ),
        )
        t0 = time.monotonic()
        sandbox_id = self.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=sandbox_config),
                                                timeout=RPC_TIMEOUT).pod_sandbox_id
        pod = Pod(self, name, namespace, uid, sandbox_id, pod_labels, host_network, container_name, image)
        self.pods[sandbox_id] = pod
        self._made.append(pod)
        try:
            container_config = pb.ContainerConfig(
                metadata=pb.ContainerMetadata(name=container_name, attempt=0),
                image=pb.ImageSpec(image=image),
                command=list(command),
                envs=[pb.KeyValue(key=k, value=v.encode()) for k, v in (env or {}).items()],  # value is bytes
                mounts=[pb.Mount(container_path=m.container_path, host_path=m.host_path, readonly=m.readonly)
                        for m in (mounts or ())],
                labels={
                    "io.kubernetes.container.name": container_name,
                    "io.kubernetes.pod.name": name,
                    "io.kubernetes.pod.namespace": namespace,
                    "io.kubernetes.pod.uid": uid,
                },
                annotations={"io.kubernetes.container.restartCount": "0"},
                log_path=f"{container_name}/0.log",
                linux=pb.LinuxContainerConfig(
                    resources=pb.LinuxContainerResources(cpu_shares=2, oom_score_adj=1000),  # BestEffort QoS
                    security_context=pb.LinuxContainerSecurityContext(namespace_options=namespaces,
                                                                      privileged=privileged),
                ),
            )
            pod.container_id = self.runtime.CreateContainer(
                pb.CreateContainerRequest(pod_sandbox_id=sandbox_id, config=container_config,
                                          sandbox_config=sandbox_config),
                timeout=RPC_TIMEOUT).container_id
            self.runtime.StartContainer(pb.StartContainerRequest(container_id=pod.container_id), timeout=RPC_TIMEOUT)
            self.timings["pods"] = self.timings.get("pods", 0.0) + time.monotonic() - t0
            pod.pid = int(json.loads(pod.container_status(verbose=True).info["info"])["pid"])
            pod.sandbox_pid = int(json.loads(pod.sandbox_status(verbose=True).info["info"])["pid"])
            pod._started = {p: host.start_time(p) or 0 for p in (pod.pid, pod.sandbox_pid)}
        except BaseException:
            with contextlib.suppress(Exception):
                pod.remove()
            raise
        return pod

    def remove_pods(self, keep: Iterable[str] = ()) -> list[str]:
        """Remove every live pod whose sandbox id is not in keep; the errors."""
        kept = set(keep)
        errors = []
        for sandbox_id, pod in list(self.pods.items()):
            if sandbox_id not in kept:
                try:
                    pod.remove()
                except (HarnessError, cri.RpcError) as exc:
                    errors.append(str(exc))
        return errors

    def _remove_sandbox(self, sandbox_id: str, container_ids: Sequence[str], cgroup_parent: str) -> list[str]:
        pb, rt = cri.pb, self.runtime
        calls: list[tuple[str, Any, Any]] = []
        for cid in container_ids:
            what = f"container {cid[:12]}"
            calls += [(what, rt.StopContainer, pb.StopContainerRequest(container_id=cid, timeout=0)),
                      (what, rt.RemoveContainer, pb.RemoveContainerRequest(container_id=cid))]
        what = f"sandbox {sandbox_id[:12]}"
        calls += [(what, rt.StopPodSandbox, pb.StopPodSandboxRequest(pod_sandbox_id=sandbox_id)),
                  (what, rt.RemovePodSandbox, pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))]
        errors = []
        for what, call, req in calls:
            try:
                call(req, timeout=RPC_TIMEOUT)
            except cri.RpcError as exc:
                if cri.rpc_code(exc) != "NOT_FOUND":
                    errors.append(f"{what}: {exc}")
        if cgroup_parent.startswith("/kubepods/besteffort/pod"):  # runc leaves the pod level to kubelet
            errors += remove_cgroup(cgroup_parent)
        return errors

    def _remove_untracked(self) -> list[str]:
        """Containers and sandboxes made without run_pod (raw CRI calls in a test)."""
        pb = cri.pb
        try:
            containers = self.runtime.ListContainers(pb.ListContainersRequest(), timeout=RPC_TIMEOUT).containers
            sandboxes = self.runtime.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=RPC_TIMEOUT).items
        except cri.RpcError as exc:
            return [f"listing pods: {exc}"]
        by_sandbox: dict[str, list[str]] = {s.id: [] for s in sandboxes}
        for c in containers:
            by_sandbox.setdefault(c.pod_sandbox_id, []).append(c.id)
        errors: list[str] = []
        for sandbox_id, container_ids in by_sandbox.items():
            parent = ""
            with contextlib.suppress(cri.RpcError, ValueError, KeyError):
                status = self.runtime.PodSandboxStatus(
                    pb.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=True), timeout=RPC_TIMEOUT)
                parent = json.loads(status.info["info"])["config"]["linux"]["cgroup_parent"]
            errors += self._remove_sandbox(sandbox_id, container_ids, parent)
        return errors

    # ---- stopping and cleaning ----------------------------------------------------------------

    def _stop(self, timeout: float = 10) -> list[str]:
        proc = self.process
        if proc is None:
            return []
        problems = []
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the reaper hands it on to containerd
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                problems.append(f"containerd or shims still running {timeout} s after SIGTERM: killed")
                host.force_delete_runc_containers(self.dir / "run" / "runc" / K8S_NAMESPACE)
                host.kill(host.children(proc.pid))
                proc.wait(10)
        if proc.returncode != 0:
            problems.append(f"containerd exited with {proc.returncode}:\n{self.log_tail()}")
        return problems

    def _shared_host_dirs(self) -> list[Path]:
        """Folders outside ours that containerd, libcni or runc may create, deepest first."""
        paths = list(HOST_DIRS)
        for parent in KUBEPODS_DIRS:
            paths += cgroup_dirs(parent)
        return paths

    def _clean_host(self) -> list[str]:
        problems = []
        if err := host.delete_link(self.bridge):
            problems.append(err)
        for path in self._shared_host_dirs():
            if path not in self._pre_existing:
                host.rmdir_if_empty(path)
        if left := host.unmount_under(self.dir):
            problems.append(f"mounts left under {self.dir} (not removed): {left}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        return problems

    def leftovers(self) -> list[str]:
        """What of this instance is still on the machine: processes, pod cgroups, mounts, its folder, bridge."""
        out = []
        if self.process is not None and self.process.poll() is None:
            out.append(f"reaper {self.process.pid}")
        out += [f"process {pid}: {cmd}" for pid, cmd in host.processes_mentioning(str(self.dir)).items()]
        for pod in self._made:
            out += [f"process {pid} of pod {pod.name}" for pid, t in pod._started.items() if host.alive(pid, t)]
            out += [f"cgroup {d}" for d in cgroup_dirs(pod.cgroup_parent) if d.exists()]
        out += [f"mount {m}" for m in host.mounts_under(self.dir)]
        if self.dir.exists():
            out.append(f"folder {self.dir}")
        if host.link_exists(self.bridge):
            out.append(f"link {self.bridge}")
        return out

    @staticmethod
    def reclaim_stale(tmp: Path | None = None) -> list[str]:
        """Clean up after instances whose test process died (it was killed before its teardown).

        Only folders named lanner-ctrd-* with an instance.json whose owner process is gone; for each:
        its processes, runc containers, mounts, pod cgroups (from its pod log folders), bridge, folder,
        and the shared folders (/run/containerd, kubepods cgroups...) it may have made, when empty.
        """
        reclaimed = []
        for folder in sorted(Path(tmp or tempfile.gettempdir()).glob(DIR_PREFIX + "*")):
            try:
                meta = json.loads((folder / "instance.json").read_text())
                owner, started, bridge = int(meta["owner_pid"]), int(meta["owner_start"]), str(meta["bridge"])
                shared_dirs = [Path(p) for p in meta.get("shared_dirs", [])]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if host.alive(owner, started):
                continue
            host.force_delete_runc_containers(folder / "run" / "runc" / K8S_NAMESPACE)
            host.kill(list(host.processes_mentioning(str(folder))))
            tasks = folder / "state" / "io.containerd.runtime.v2.task" / K8S_NAMESPACE
            ids = [d.name for d in tasks.iterdir()] if tasks.is_dir() else []
            _remove_files_of_tasks(ids, str(meta.get("socket", "")), str(meta.get("network", "")))
            for log_dir in (folder / "logs" / "pods").glob("*_*_*"):
                remove_cgroup(_pod_cgroup_parent(log_dir.name.rsplit("_", 1)[1]))
            if bridge.startswith("lnt"):
                host.delete_link(bridge)
            if not host.unmount_under(folder):
                shutil.rmtree(folder, ignore_errors=True)
            for path in shared_dirs:  # deepest first, only when empty
                host.rmdir_if_empty(path)
            reclaimed.append(str(folder))
        return reclaimed


def _remove_files_of_tasks(ids: Sequence[str], socket: str, network: str) -> None:
    """Files of killed tasks outside the folder: shim sockets, libcni's cached results (named by id)."""
    for task_id in ids:
        if socket:  # containerd 1.6: /run/containerd/s/sha256(<address>/<namespace>/<id>)
            digest = hashlib.sha256(f"{socket}/{K8S_NAMESPACE}/{task_id}".encode()).hexdigest()
            (Path("/run/containerd/s") / digest).unlink(missing_ok=True)
        results = Path("/var/lib/cni/results")
        for name in (f"cni-loopback-{task_id}-lo", f"{network}-{task_id}-eth0" if network else ""):
            if name:
                (results / name).unlink(missing_ok=True)
