"""``lanner simulate --in-pod``: the container-only actions, performed in a throwaway pod made through the CRI.

The pod is made as kubelet makes one (RunPodSandbox with the io.kubernetes.pod.* labels, cgroup parent
/kubepods/besteffort/pod<uid>, the host's network with an empty hostname; CreateContainer, StartContainer),
each action is one ExecSync of ``sh -c SCRIPT`` in its container, and the pod is always removed at the end:
container, sandbox and the pod's cgroup folders (kubelet's job, which runc leaves undone).

ExecSync gives no terminal, so the TTY action (an interactive shell) goes another way when the runtime is
containerd and ``ctr`` is installed: ``ctr tasks exec --tty`` in the same container (namespace k8s.io; the CRI socket
is containerd's API socket too), under a pseudo-terminal of this process, as ``kubectl exec -it`` would.

Everything an action makes lives in a ``mktemp -d`` folder inside the container (removed by the script);
network traffic goes to a listener of this process on a 127/8 address (the pod shares the host's network).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from lanner.cri import DEFAULT_SOCKETS, CriSetupError, load_stubs
from lanner.simulate.actions import TAG, Action, SimulateError, Workspace
from lanner.simulate.listener import Listener
from lanner.simulate.terminal import TerminalTimeout, run_on_terminal
from lanner.simulate.verify import Metrics, Result, StartedAgent, perform_and_await
from lanner.state.cgroups import remove_cgroup

DEFAULT_IMAGE = "localhost/busybox:local"
POD_NAMESPACE = "lanner-simulate"
API_HOST = "127.77.0.1"
"""The Kubernetes API server's stand-in: a listener of ours (the pod shares the host's loopback)."""
K8S_API_DOMAIN = "kubernetes.default.svc.cluster.local"
RPC_TIMEOUT_S = 60.0
CONTAINERD_NAMESPACE = "k8s.io"
"""containerd's namespace for what its CRI plugin makes."""
TTY_TIMEOUT_S = 20.0
NEEDS_TTY = "needs a TTY, not simulated in a pod"
NO_CTR = f"{NEEDS_TTY}: ctr (containerd's client) is not on PATH"
NEEDS_API_STANDIN = "needs --start-agent (the agent must know the stand-in API server address)"


class PodError(Exception):
    """The pod could not be made (no CRI socket, image missing, runtime error)."""


@dataclass(frozen=True)
class PodStep:
    script: str | None
    """``sh -c`` script run with ExecSync; None: cannot be done with ExecSync (``reason``)."""
    argv: tuple[str, ...] = ()
    """Run as is instead of a script: a shell may run its own applets without execve (busybox's does)."""
    privileged: bool = False
    reason: str = ""
    api: bool = False
    """Connects to the API server stand-in ({host} {port} in the script)."""
    tty: bool = False
    """Needs a terminal: run with ``ctr tasks exec --tty`` (containerd only) instead of ExecSync."""


def _in_tmp(body: str) -> str:
    """Run body with $d a fresh folder in the container's writable layer, removed afterwards."""
    return f'd=$(mktemp -d) || exit 1\n{body}\nrc=$?\nrm -rf "$d"\nexit $rc'


# The programs with a rule-relevant name are symlinks to /bin/sh (their process name is the link's name;
# the file executed is the image's own shell, so nothing is installed or run but the shell).
POD_STEPS: dict[str, PodStep] = {
    "DropAndExecuteNewBinaryInContainer": PodStep(_in_tmp('cp /bin/true "$d/true" && "$d/true"')),
    "TerminalShellInContainer": PodStep("", argv=("sh", "-c", "tty"), tty=True),
    "SudoInContainer": PodStep(_in_tmp('ln -s /bin/sh "$d/sudo" && "$d/sudo" -c true; true')),
    "LaunchPackageManagementProcessInContainer": PodStep(
        _in_tmp('ln -s /bin/sh "$d/apt-get" && "$d/apt-get" install -y lanner-simulate 2>/dev/null; true')),
    "KernelModuleFromContainer": PodStep(
        _in_tmp('head -c 64 /dev/zero > "$d/lanner-simulate.ko" && insmod "$d/lanner-simulate.ko" 2>/dev/null; true'),
        privileged=True),
    "ContactK8sApiServerFromContainer": PodStep("nc -w 2 {host} {port} </dev/null; true", api=True),
    "PacketSocketCreatedInContainer": PodStep("arping -c 1 -w 1 -I lo 127.0.0.1 >/dev/null 2>&1; true"),
    "DebugfsLaunchedInPrivilegedContainer": PodStep(
        _in_tmp('ln -s /bin/sh "$d/debugfs" && "$d/debugfs" -c true; true'), privileged=True),
    "DetectReleaseAgentFileContainerEscapes": PodStep(_in_tmp('echo /lanner-simulate > "$d/release_agent"'),
                                                      privileged=True),
    "MountLaunchedInPrivilegedContainer": PodStep(
        _in_tmp('mount -t tmpfs lanner-simulate "$d" && umount "$d"'), privileged=True),
    "NetcatRemoteCodeExecutionInContainer": PodStep("", argv=("nc", "{host}", "{port}", "-e", "/bin/true"),
                                                    api=True),
}
"""What each container-only action runs in the pod."""

PRIVILEGED_ACTIONS = tuple(sorted(n for n, s in POD_STEPS.items() if s.privileged))


# --------------------------------------------------------------------------------------------------
# The pod


def find_socket(given: str | None) -> str:
    if given:
        if not os.path.exists(given):
            raise PodError(f"no CRI socket at {given}")
        return given
    for cand in DEFAULT_SOCKETS:
        if os.path.exists(cand):
            return cand
    raise PodError(f"no CRI socket found ({', '.join(DEFAULT_SOCKETS)}); pass --cri-socket")


class ThrowawayPod:
    """One pod with one container (`sleep`), made through the CRI; `remove()` undoes all of it."""

    def __init__(self, socket_path: str, image: str, privileged: bool) -> None:
        import grpc  # type: ignore[import-untyped, unused-ignore]

        try:
            self.pb, pbg = load_stubs()
        except CriSetupError as exc:
            raise PodError(str(exc)) from None
        self.grpc_error: type[Exception] = grpc.RpcError
        self.channel = grpc.insecure_channel(f"unix://{socket_path}")
        self.rt = pbg.RuntimeServiceStub(self.channel)
        self.images = pbg.ImageServiceStub(self.channel)
        self.socket_path = socket_path
        self.image = image
        self.privileged = privileged
        self.uid = str(uuid.uuid4())
        self.name = f"{TAG}-{uuid.uuid4().hex[:6]}"
        self.cgroup_parent = f"/kubepods/besteffort/pod{self.uid}"
        self.log_dir = Path(tempfile.mkdtemp(prefix=f"{TAG}-pod-"))
        self.sandbox_id = ""
        self.container_id = ""

    def start(self) -> None:
        pb, rt = self.pb, self.rt
        try:
            status = self.images.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=self.image)),
                                             timeout=RPC_TIMEOUT_S)
        except self.grpc_error as exc:
            raise PodError(f"the CRI does not answer: {_rpc_text(exc)}") from None
        if not status.image.id:
            raise PodError(f"image {self.image} is not on this node; pass --image with an image present here "
                           "(it needs sh, mktemp, cp, ln, nc, arping, insmod, mount: busybox has them)")
        labels = {"io.kubernetes.pod.name": self.name, "io.kubernetes.pod.namespace": POD_NAMESPACE,
                  "io.kubernetes.pod.uid": self.uid, "app.kubernetes.io/managed-by": TAG}
        ns = pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER, ipc=pb.POD)
        sandbox_config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=self.name, namespace=POD_NAMESPACE, uid=self.uid, attempt=0),
            hostname="",  # a host-network pod must leave it empty
            log_directory=str(self.log_dir),
            labels=labels,
            annotations={"kubernetes.io/config.source": "api"},
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent=self.cgroup_parent,
                security_context=pb.LinuxSandboxSecurityContext(namespace_options=ns, privileged=self.privileged)))
        try:
            self.sandbox_id = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=sandbox_config),
                                               timeout=RPC_TIMEOUT_S).pod_sandbox_id
            config = pb.ContainerConfig(
                metadata=pb.ContainerMetadata(name="main", attempt=0),
                image=pb.ImageSpec(image=self.image),
                command=["sleep", "3600"],
                labels={"io.kubernetes.container.name": "main", "io.kubernetes.pod.name": self.name,
                        "io.kubernetes.pod.namespace": POD_NAMESPACE, "io.kubernetes.pod.uid": self.uid},
                annotations={"io.kubernetes.container.restartCount": "0"},
                log_path="main/0.log",
                linux=pb.LinuxContainerConfig(
                    resources=pb.LinuxContainerResources(cpu_shares=2, oom_score_adj=1000),
                    security_context=pb.LinuxContainerSecurityContext(namespace_options=ns,
                                                                      privileged=self.privileged)))
            self.container_id = rt.CreateContainer(
                pb.CreateContainerRequest(pod_sandbox_id=self.sandbox_id, config=config,
                                          sandbox_config=sandbox_config), timeout=RPC_TIMEOUT_S).container_id
            rt.StartContainer(pb.StartContainerRequest(container_id=self.container_id), timeout=RPC_TIMEOUT_S)
        except self.grpc_error as exc:
            raise PodError(f"making the pod failed: {_rpc_text(exc)}") from None

    def exec_sync(self, cmd: Sequence[str], timeout_s: float = 20) -> tuple[int, str]:
        req = self.pb.ExecSyncRequest(container_id=self.container_id, cmd=list(cmd),
                                      timeout=max(1, round(timeout_s)))
        try:
            resp = self.rt.ExecSync(req, timeout=timeout_s + 10)
        except self.grpc_error as exc:
            raise SimulateError(f"ExecSync: {_rpc_text(exc)}") from None
        return int(resp.exit_code), bytes(resp.stderr).decode(errors="replace")

    def exec_tty(self, cmd: Sequence[str], timeout_s: float = TTY_TIMEOUT_S) -> tuple[int, str]:
        """Run cmd in the container with a terminal: ``ctr tasks exec --tty`` under a pseudo-terminal of ours.

        The exit code and the terminal's output (then ctr's stderr). On a timeout ctr is killed, the exec'd
        process too (``ctr tasks kill``/``delete --exec-id``), and SimulateError is raised."""
        base = ["ctr", "--address", self.socket_path, "--namespace", CONTAINERD_NAMESPACE, "tasks"]
        exec_id = f"{TAG}-tty-{secrets.token_hex(4)}"
        fifo_dir = tempfile.mkdtemp(prefix=f"{TAG}-fifo-")
        argv = [*base, "exec", "--exec-id", exec_id, "--fifo-dir", fifo_dir, "--tty", self.container_id, *cmd]
        try:
            rc, out, err = run_on_terminal(argv, timeout_s)
        except TerminalTimeout:
            self._drop_exec(base, exec_id)
            raise SimulateError(f"ctr tasks exec --tty {list(cmd)} still running after {timeout_s} s") from None
        finally:
            shutil.rmtree(fifo_dir, ignore_errors=True)
        return rc, out + err

    def _drop_exec(self, base: list[str], exec_id: str) -> None:
        """Kill and delete an exec'd process left by a killed ctr (errors ignored: it may be gone already)."""
        for args in (["kill", "--signal", "SIGKILL", "--exec-id", exec_id, self.container_id],
                     ["delete", "--force", "--exec-id", exec_id, self.container_id]):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run([*base, *args], capture_output=True, timeout=10, check=False)
            time.sleep(0.1)

    def remove(self) -> list[str]:
        """Stop and remove the container and the sandbox, then the pod's cgroup folders; the errors."""
        pb, rt = self.pb, self.rt
        calls: list[tuple[Any, Any]] = []
        if self.container_id:
            calls += [(rt.StopContainer, pb.StopContainerRequest(container_id=self.container_id, timeout=0)),
                      (rt.RemoveContainer, pb.RemoveContainerRequest(container_id=self.container_id))]
        if self.sandbox_id:
            calls += [(rt.StopPodSandbox, pb.StopPodSandboxRequest(pod_sandbox_id=self.sandbox_id)),
                      (rt.RemovePodSandbox, pb.RemovePodSandboxRequest(pod_sandbox_id=self.sandbox_id))]
        errors = []
        for call, req in calls:
            try:
                call(req, timeout=RPC_TIMEOUT_S)
            except self.grpc_error as exc:
                if "NOT_FOUND" not in _rpc_text(exc):
                    errors.append(f"{type(req).__name__}: {_rpc_text(exc)}")
        errors += remove_cgroup(self.cgroup_parent)
        shutil.rmtree(self.log_dir, ignore_errors=True)
        self.channel.close()
        return errors


def tty_unavailable(socket_path: str) -> str | None:
    """Why the TTY action cannot be performed through this CRI socket (None: it can, with ctr)."""
    if shutil.which("ctr") is None:
        return NO_CTR
    import grpc  # type: ignore[import-untyped, unused-ignore]

    try:
        pb, pbg = load_stubs()
    except CriSetupError as exc:
        raise PodError(str(exc)) from None
    channel = grpc.insecure_channel(f"unix://{socket_path}")
    try:
        name = pbg.RuntimeServiceStub(channel).Version(pb.VersionRequest(version="v1"),
                                                        timeout=RPC_TIMEOUT_S).runtime_name
    except grpc.RpcError as exc:
        raise PodError(f"the CRI does not answer: {_rpc_text(exc)}") from None
    finally:
        channel.close()
    if name != "containerd":
        return f"{NEEDS_TTY}: the runtime is {name or 'unnamed'}, not containerd (ctr tasks exec --tty needs it)"
    return None


def _rpc_text(exc: Exception) -> str:
    code = getattr(exc, "code", None)
    details = getattr(exc, "details", None)
    if callable(code) and callable(details):
        return f"{getattr(code(), 'name', code())}: {details()}"
    return str(exc)


# --------------------------------------------------------------------------------------------------
# The agent started for an in-pod run


class PodAgent(StartedAgent):
    """StartedAgent with container context: `cri_socket` set, `raw_syscalls: true` (init_module/finit_module
    have no tracepoint on some kernels), and the API server stand-in known to the rules: appended to
    `lanner_k8s_api_server_ips/_ports` when the rules define them, and kubernetes.default.svc.cluster.local
    resolving to it through LANNER_HOSTS_FILE (Falco's rule compares fd.sip.name)."""

    def __init__(self, rules_files: Sequence[str], cri_socket: str, api: Listener,
                 start_timeout_s: float = 120.0) -> None:
        workdir = Path(tempfile.mkdtemp(prefix="lanner-simulate-agent-"))
        rules = [str(Path(p).resolve()) for p in rules_files]
        if {"lanner_k8s_api_server_ips", "lanner_k8s_api_server_ports"} <= _list_names(rules):
            extra = workdir / "k8s_api_standin.yaml"
            extra.write_text(yaml.safe_dump([
                {"list": "lanner_k8s_api_server_ips", "items": [api.host], "override": {"items": "append"}},
                {"list": "lanner_k8s_api_server_ports", "items": [api.port], "override": {"items": "append"}}]))
            rules.append(str(extra))
        hosts = workdir / "hosts"
        try:
            system_hosts = Path("/etc/hosts").read_text()
        except OSError:
            system_hosts = "127.0.0.1 localhost\n"
        hosts.write_text(f"{system_hosts.rstrip()}\n{api.host} {K8S_API_DOMAIN}\n")
        super().__init__(rules, start_timeout_s, workdir=workdir,
                         config={"containers": True, "cri_socket": cri_socket, "raw_syscalls": True},
                         env={"LANNER_HOSTS_FILE": str(hosts)})


def _list_names(paths: Sequence[str]) -> set[str]:
    names: set[str] = set()
    for p in paths:
        doc = yaml.safe_load(Path(p).read_text()) or []
        names |= {str(item["list"]) for item in doc if isinstance(item, dict) and "list" in item}
    return names


# --------------------------------------------------------------------------------------------------
# The run


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises SystemExit, so the pod is removed when the run is killed politely too."""
    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _pod_action(act: Action, step: PodStep, pod: ThrowawayPod, api: Listener) -> Action:
    assert step.script is not None
    cmd = list(step.argv) if step.argv else ["sh", "-c", step.script]
    if step.api:
        cmd = [c.format(host=api.host, port=api.port) for c in cmd]

    def perform(ws: Workspace) -> float | None:
        t = time.monotonic()
        if step.tty:
            rc, err = pod.exec_tty(cmd)
            if rc == 0 and "/dev/pts/" not in err:
                raise SimulateError(f"ctr tasks exec --tty gave no terminal: {err.strip()[-300:]}")
        else:
            rc, err = pod.exec_sync(cmd)
        if rc != 0:
            raise SimulateError(f"exited {rc} in the pod: {err.strip()[-300:]}")
        return t

    return replace(act, perform=perform)


def run_in_pod(chosen: Sequence[tuple[Action, tuple[str, ...]]], *, socket_path: str | None, image: str,
               start_agent: bool, rules: Sequence[str], metrics_url: str, timeout_s: float) -> list[Result]:
    """Perform each (action, expected rules) in one throwaway pod; raises PodError / AgentUnavailable for
    an environment that cannot do it. Actions with no expected rule loaded are skipped."""
    sock = find_socket(socket_path)
    results: dict[str, Result] = {}
    todo: list[tuple[Action, PodStep, tuple[str, ...]]] = []
    needs_tty = any(expected and (s := POD_STEPS.get(act.name)) is not None and s.tty for act, expected in chosen)
    no_tty = tty_unavailable(sock) if needs_tty else None
    for act, expected in chosen:
        step = POD_STEPS.get(act.name)
        if step is None:
            results[act.name] = Result(act.name, act.rules, skipped="host action (run without --in-pod)")
        elif step.script is None:
            results[act.name] = Result(act.name, act.rules, skipped=step.reason)
        elif not expected:
            results[act.name] = Result(act.name, act.rules, skipped="rule not loaded")
        elif step.tty and no_tty is not None:
            results[act.name] = Result(act.name, act.rules, skipped=no_tty)
        elif step.api and not start_agent:
            results[act.name] = Result(act.name, act.rules, skipped=NEEDS_API_STANDIN)
        else:
            todo.append((act, step, expected))
    if todo:
        with _sigterm_unwinds():
            _perform_all(todo, results, sock, image, start_agent, rules, metrics_url, timeout_s)
    return [results[act.name] for act, _ in chosen]


def _perform_all(todo: list[tuple[Action, PodStep, tuple[str, ...]]], results: dict[str, Result], sock: str,
                 image: str, start_agent: bool, rules: Sequence[str], metrics_url: str, timeout_s: float) -> None:
    api = Listener(API_HOST)
    agent: PodAgent | None = None
    pod: ThrowawayPod | None = None
    ws = Workspace()
    try:
        if start_agent:
            agent = PodAgent(rules, sock, api)
            metrics_url = agent.metrics_url
        metrics = Metrics(metrics_url)
        metrics.alerts()
        pod = ThrowawayPod(sock, image, privileged=any(step.privileged for _, step, _ in todo))
        pod.start()
        pod.exec_sync(["true"])  # the agent learns the container's metadata before the first action
        for act, step, expected in todo:
            results[act.name] = perform_and_await(_pod_action(act, step, pod, api), expected, metrics, ws,
                                                  timeout_s)
    finally:
        problems = pod.remove() if pod is not None else []
        ws.cleanup()
        if agent is not None:
            agent.stop()
        api.close()
        if problems:
            print(f"lanner simulate: removing pod {POD_NAMESPACE}/{pod.name if pod else ''}: "
                  + "; ".join(problems), file=sys.stderr)
