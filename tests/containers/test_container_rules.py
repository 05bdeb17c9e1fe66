"""Container-scoped rules firing live through the agent, for behaviour performed inside real pods.

Two `python -m lanner run -c CONFIG` agents run for the module, both pointed at the harness's CRI socket
(`cri_socket`), with a JSON file output, throttling off and metrics on a free port:

- "lanner": Lanner's default rules plus a rules file loaded after them (K8S_API_RULES) that appends the
  loopback stand-in of the API server (API_HOST, the listener's port) to `lanner_k8s_api_server_ips` / `_ports`;
- "falco": Falco's stable rules (/work/shared/falco/rules/falco_rules.yaml), with `LANNER_HOSTS_FILE`
  mapping kubernetes.default.svc.cluster.local (what `fd.sip.name` is compared with) to API_HOST.

Both run with `raw_syscalls: true` (this kernel has no exit tracepoint for init_module/finit_module, which
the two kernel module rules need) and Falco's default `rule_matching: first`.

Pods are made after the agents run (so every pod's first events are the hard case: metadata not yet
known); pods are host-network, so API_HOST (a 127/8 address, nothing to configure) is the same loopback
for the pod and the host listener. Each test performs one behaviour for real in a pod, once, and waits
for the alert of every rule that behaviour must raise, in the agent that loaded it; the alert must carry
the pod's container context in output_fields (container.id = the 12-char short id, container.name,
container.image.repository, k8s.pod.name, k8s.ns.name — none of them `<NA>` or null).

Stand-ins, all harmless:
- sudo, apt-get and debugfs are shell scripts of those names in a tools image (the rules look at the
  process name, which for a script is the script's name);
- the kernel module is a file of 64 bytes that is not a module: insmod's init_module fails (ENOSYS on this
  kernel, which has no module support; ENOEXEC or EPERM on any other), and both rules look at attempts;
- the release_agent escape writes a regular file named release_agent inside the container (the rule's
  `fd.name endswith release_agent`), never a cgroup v1 release_agent (that one runs a program on the host);
- the API server is a host listener on API_HOST that accepts and closes.
The drift rules run a copy of busybox written into the container's upper layer (proc.is_exe_upper_layer).

test_every_container_rule_is_accounted_for checks that TESTED plus NOT_PERFORMED are exactly the rules of
each file whose condition requires a container (its container macro, not negated).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.agent_support import Agent, require_agent_machine, wait_until
from tests.conftest import ROOT
from tests.containers.harness import Containerd, Pod, busybox_rootfs
from tests.containers.rules_support.agent import Listener

DEFAULT_RULES = ROOT / "lanner" / "rules" / "default" / "lanner_rules.yaml"
FALCO_RULES = Path("/work/shared/falco/rules/falco_rules.yaml")
API_HOST = "127.77.0.1"  # the API server's loopback stand-in
K8S_API_DOMAIN = "kubernetes.default.svc.cluster.local"
NAMESPACE = "shop"  # an ordinary application namespace (not excluded by the API-server rules)
WAIT_S = 15.0  # generous: an alert normally shows up within a second
TOOLS_IMAGE = "localhost/lanner-rules-tools:local"
TOOLS_REPOSITORY = "localhost/lanner-rules-tools"
BUSYBOX_REPOSITORY = "localhost/busybox"
FAKE_MODULE = "/opt/lanner/not-a-module.ko"

# The rule each behaviour must raise, per agent ("lanner" = the default rules, "falco" = Falco's).
TESTED: dict[str, dict[str, str]] = {
    "lanner": {
        "Interactive shell in container": "test_terminal_shell",
        "Sudo or su executed in container": "test_sudo",
        "Package manager executed in container": "test_package_manager",
        "Container contacting Kubernetes API server": "test_contact_k8s_api_server",
        "Kernel module loaded from container": "test_kernel_module_attempt",
        "Drifted binary executed in container": "test_drift",
    },
    "falco": {
        "Terminal shell in container": "test_terminal_shell",
        "Contact K8S API Server From Container": "test_contact_k8s_api_server",
        "Netcat Remote Code Execution in Container": "test_netcat_exec_and_redirect",
        "Redirect STDOUT/STDIN to Network Connection in Container": "test_netcat_exec_and_redirect",
        "Packet socket created in container": "test_packet_socket",
        "Linux Kernel Module Injection Detected": "test_kernel_module_attempt",
        "Debugfs Launched in Privileged Container": "test_debugfs_in_privileged_container",
        "Detect release_agent File Container Escapes": "test_release_agent_write",
        "Drop and execute new binary in container": "test_drift",
    },
}
# Container rules of the two files that are not performed here, with the reason.
NOT_PERFORMED: dict[str, dict[str, str]] = {"lanner": {}, "falco": {}}
RULES_FILES = {"lanner": DEFAULT_RULES, "falco": FALCO_RULES}
CONTAINER_MACRO = {"lanner": "lanner_container", "falco": "container"}

K8S_API_RULES = """\
- list: lanner_k8s_api_server_ips
  items: [{host}]
  override:
    items: append

- list: lanner_k8s_api_server_ports
  items: [{port}]
  override:
    items: append
"""

STANDIN_SCRIPT = "#!/bin/sh\n# a harmless stand-in with the name a rule looks for\necho \"$0 $*\"\nexit 0\n"


@dataclass
class Agents:
    lanner: Agent
    falco: Agent
    api: Listener

    def of(self, name: str) -> Agent:
        agent: Agent = getattr(self, name)
        return agent


@pytest.fixture(scope="module")
def kernel_ready() -> None:
    require_agent_machine()


@pytest.fixture(scope="module")
def agents(kernel_ready: None, containerd: Containerd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agents]:
    tmp = tmp_path_factory.mktemp("container-rules")
    api = Listener(API_HOST)
    extra = tmp / "k8s_api.yaml"
    extra.write_text(K8S_API_RULES.format(host=API_HOST, port=api.port))
    hosts = tmp / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n{API_HOST} {K8S_API_DOMAIN}\n")
    config = f"cri_socket: '{containerd.socket}'\ncontainers: true\nraw_syscalls: true\n"
    started: list[Agent] = []
    try:
        started.append(Agent(tmp, "lanner", config, rules_files=[DEFAULT_RULES, extra], receiver=True))
        started.append(Agent(tmp, "falco", config, rules_files=[FALCO_RULES], receiver=True,
                             env={"LANNER_HOSTS_FILE": str(hosts)}))
        yield Agents(started[0], started[1], api)
    finally:
        rcs = {a.name: a.stop() for a in started}
        api.close()
    for a in started:
        assert rcs[a.name] == 0, f"the {a.name} agent exited {rcs[a.name]}: " + "\n".join(a.stderr[-30:])


@pytest.fixture(scope="module")
def tools_image(containerd: Containerd, tmp_path_factory: pytest.TempPathFactory) -> str:
    rootfs = busybox_rootfs(tmp_path_factory.mktemp("tools") / "rootfs")
    for name in ("sudo", "apt-get", "debugfs"):
        path = rootfs / "usr" / "local" / "bin" / name
        path.write_text(STANDIN_SCRIPT)
        path.chmod(0o755)
    module = rootfs / FAKE_MODULE.lstrip("/")
    module.parent.mkdir(parents=True)
    module.write_bytes(b"not a kernel module\n".ljust(64, b"\0"))
    return containerd.build_image(rootfs, TOOLS_IMAGE, cmd=["/bin/sh"])


def _pod_name(what: str) -> str:
    return f"{what}-{uuid.uuid4().hex[:6]}"


def expect_alert(agents: Agents, agent: str, rule: str, pod: Pod, repository: str) -> dict[str, Any]:
    """The output_fields of the agent's alert of `rule` for the pod's container, checked for the full
    container context."""
    short = pod.container_id[:12]
    a = agents.of(agent)

    def find() -> dict[str, Any] | None:
        for alert in a.json_alerts():
            if alert["rule"] == rule and alert["output_fields"].get("container.id") == short:
                return alert
        return None

    try:
        alert = wait_until(find, f"{agent} agent: {rule!r} for pod {pod.name} ({short})", WAIT_S)
    except AssertionError as exc:
        same_rule = [x["output_fields"] for x in a.json_alerts() if x["rule"] == rule]
        of_pod = sorted({x["rule"] for x in a.json_alerts() if x["output_fields"].get("container.id") == short})
        raise AssertionError(f"{exc}\n  alerts of that rule: {same_rule}\n  rules raised for the pod: {of_pod}\n"
                             f"  agent stderr: {a.stderr[-10:]}") from None
    fields: dict[str, Any] = alert["output_fields"]
    context = {k: fields.get(k) for k in ("container.id", "container.name", "container.image.repository",
                                          "k8s.pod.name", "k8s.ns.name")}
    assert context == {"container.id": short, "container.name": pod.container_name,
                       "container.image.repository": repository, "k8s.pod.name": pod.name,
                       "k8s.ns.name": pod.namespace}, (rule, context, fields)
    assert alert["source"] == "syscall" and alert["output"], alert
    # the same alert on every output and in the metrics, as for host behaviours (tests/kernel/test_agent_e2e.py)
    wait_until(lambda: alert["output"] in a.stdout, f"{rule!r} on the {agent} agent's stdout", WAIT_S)
    receiver = a.receiver
    assert receiver is not None
    wait_until(lambda: alert in receiver.bodies, f"{rule!r} at the {agent} agent's HTTP receiver", WAIT_S)
    key = ("lanner_alerts_total", (("priority", alert["priority"]), ("rule", rule)))
    wait_until(lambda: a.metrics().get(key, 0) >= 1, f"{rule!r} counted in the {agent} agent's metrics", WAIT_S)
    return fields


# --------------------------------------------------------------------------------------------------
# Behaviours


def test_terminal_shell(agents: Agents, containerd: Containerd) -> None:
    """`kubectl exec -it POD -- sh`: a shell with a terminal, started by the runtime."""
    pod = containerd.run_pod(_pod_name("tty"), namespace=NAMESPACE)
    assert pod.exec_sync(["sh", "-c", "exit 0"]).rc == 0  # a shell without a terminal: no alert
    res = pod.exec_tty(["sh", "-c", "tty"])
    assert res.rc == 0 and "/dev/pts/" in res.stdout, res
    for agent, rule in (("lanner", "Interactive shell in container"), ("falco", "Terminal shell in container")):
        fields = expect_alert(agents, agent, rule, pod, BUSYBOX_REPOSITORY)
        assert fields["proc.name"] == "sh" and fields["proc.tty"] not in (0, None), fields
        assert fields["proc.cmdline"] == "sh -c tty", fields
        raised = [a for a in agents.of(agent).json_alerts()
                  if a["rule"] == rule and a["output_fields"].get("container.id") == pod.container_id[:12]]
        assert len(raised) == 1, f"{agent}: the shell without a terminal raised {rule!r} too: {raised}"


def test_sudo(agents: Agents, containerd: Containerd, tools_image: str) -> None:
    pod = containerd.run_pod(_pod_name("sudo"), namespace=NAMESPACE, image=tools_image)
    res = pod.exec_sync(["sudo", "id"])
    assert res.rc == 0, res
    fields = expect_alert(agents, "lanner", "Sudo or su executed in container", pod, TOOLS_REPOSITORY)
    assert fields["proc.name"] == "sudo", fields


def test_package_manager(agents: Agents, containerd: Containerd, tools_image: str) -> None:
    pod = containerd.run_pod(_pod_name("apt"), namespace=NAMESPACE, image=tools_image)
    res = pod.exec_sync(["apt-get", "install", "-y", "netcat-openbsd"])
    assert res.rc == 0, res
    fields = expect_alert(agents, "lanner", "Package manager executed in container", pod,
                          TOOLS_REPOSITORY)
    assert fields["proc.name"] == "apt-get", fields


def test_contact_k8s_api_server(agents: Agents, containerd: Containerd) -> None:
    pod = containerd.run_pod(_pod_name("api"), namespace=NAMESPACE)
    before = agents.api.accepted
    pod.exec_sync(["nc", "-w", "2", API_HOST, str(agents.api.port)])  # (busybox wget crashes: SIGSEGV)
    wait_until(lambda: agents.api.accepted > before, "the stand-in API server accepted the connection", 5)
    fields = expect_alert(agents, "lanner", "Container contacting Kubernetes API server", pod,
                          BUSYBOX_REPOSITORY)
    assert (fields["fd.sip"], fields["fd.sport"]) == (API_HOST, agents.api.port), fields
    fields = expect_alert(agents, "falco", "Contact K8S API Server From Container", pod,
                          BUSYBOX_REPOSITORY)
    assert fields["fd.name"].endswith(f"->{API_HOST}:{agents.api.port}"), fields


def test_netcat_exec_and_redirect(agents: Agents, containerd: Containerd) -> None:
    """`nc -e PROG host port`: netcat hands the connection to a program as its stdin/stdout (dup2)."""
    pod = containerd.run_pod(_pod_name("nc"), namespace=NAMESPACE)
    res = pod.exec_sync(["nc", API_HOST, str(agents.api.port), "-e", "/bin/true"])  # busybox: -e PROG comes last
    assert res.rc == 0, res
    fields = expect_alert(agents, "falco", "Netcat Remote Code Execution in Container", pod,
                          BUSYBOX_REPOSITORY)
    assert fields["proc.name"] == "nc", fields
    fields = expect_alert(agents, "falco", "Redirect STDOUT/STDIN to Network Connection in Container", pod,
                          BUSYBOX_REPOSITORY)
    assert fields["fd.type"] == "ipv4" and fields["fd.sip"] == API_HOST, fields


def test_packet_socket(agents: Agents, containerd: Containerd) -> None:
    """arping opens an AF_PACKET socket first (CAP_NET_RAW is in the runtime's default set)."""
    pod = containerd.run_pod(_pod_name("arp"), namespace=NAMESPACE)
    pod.exec_sync(["arping", "-c", "1", "-w", "1", "-I", "lo", "127.0.0.1"])
    fields = expect_alert(agents, "falco", "Packet socket created in container", pod,
                          BUSYBOX_REPOSITORY)
    assert fields["proc.name"] == "arping", fields


def test_kernel_module_attempt(agents: Agents, containerd: Containerd, tools_image: str) -> None:
    """insmod of a file that is not a module, in a privileged pod (CAP_SYS_MODULE): the load fails."""
    pod = containerd.run_pod(_pod_name("kmod"), namespace=NAMESPACE, image=tools_image, privileged=True)
    res = pod.exec_sync(["insmod", FAKE_MODULE])
    assert res.rc != 0, f"insmod of a non-module succeeded?! {res}"
    fields = expect_alert(agents, "lanner", "Kernel module loaded from container", pod,
                          TOOLS_REPOSITORY)
    assert fields["proc.name"] == "insmod", fields
    fields = expect_alert(agents, "falco", "Linux Kernel Module Injection Detected", pod,
                          TOOLS_REPOSITORY)
    assert fields["proc.name"] == "insmod", fields


def test_debugfs_in_privileged_container(agents: Agents, containerd: Containerd, tools_image: str) -> None:
    pod = containerd.run_pod(_pod_name("debugfs"), namespace=NAMESPACE, image=tools_image, privileged=True)
    res = pod.exec_sync(["debugfs", "-w", "/dev/vda"])
    assert res.rc == 0, res
    fields = expect_alert(agents, "falco", "Debugfs Launched in Privileged Container", pod,
                          TOOLS_REPOSITORY)
    assert fields["proc.name"] == "debugfs", fields


def test_release_agent_write(agents: Agents, containerd: Containerd) -> None:
    pod = containerd.run_pod(_pod_name("relagent"), namespace=NAMESPACE, privileged=True)
    res = pod.exec_sync(["sh", "-c", "mkdir -p /tmp/cg && echo /cmd > /tmp/cg/release_agent"])
    assert res.rc == 0, res
    fields = expect_alert(agents, "falco", "Detect release_agent File Container Escapes", pod,
                          BUSYBOX_REPOSITORY)
    assert fields["fd.name"] == "/tmp/cg/release_agent", fields


def test_drift(agents: Agents, containerd: Containerd) -> None:
    """A binary copied into the container's writable layer after it started, then run."""
    pod = containerd.run_pod(_pod_name("drift"), namespace=NAMESPACE)
    res = pod.exec_sync(["sh", "-c", "cp /bin/busybox /root/true && /root/true"])
    assert res.rc == 0, res
    for agent, rule in (("lanner", "Drifted binary executed in container"),
                        ("falco", "Drop and execute new binary in container")):
        fields = expect_alert(agents, agent, rule, pod, BUSYBOX_REPOSITORY)
        assert fields["proc.exepath"] == "/root/true", fields


# --------------------------------------------------------------------------------------------------
# Bookkeeping


def container_rules(agent: str) -> set[str]:
    """The rules of the agent's file whose condition requires a container (its container macro, not negated)."""
    pattern = re.compile(rf"(?<![\w.])(not\s+)?\(?{CONTAINER_MACRO[agent]}(?![\w.])")
    out = set()
    for item in yaml.safe_load(RULES_FILES[agent].read_text()):
        if "rule" in item and any(not negated for negated in pattern.findall(item.get("condition", ""))):
            out.add(item["rule"])
    return out


def test_every_container_rule_is_accounted_for() -> None:
    for agent in ("lanner", "falco"):
        tested, skipped = set(TESTED[agent]), set(NOT_PERFORMED[agent])
        assert not tested & skipped
        assert tested | skipped == container_rules(agent), agent
        missing = {n for n in TESTED[agent].values() if n not in globals()}
        assert not missing, missing

