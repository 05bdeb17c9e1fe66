"""Writes the PSS corpus in manifests/pss/: one small pod per case, each starting with
``# expect LEVEL@VERSION: control,control`` lines (``-`` for none) that test_pss.py checks.
Run it again after changing a case: ``.venv/bin/python tests/posture/make_corpus.py``."""

from __future__ import annotations

import copy
import os
from typing import Any

import yaml

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "manifests", "pss")


def base(name: str) -> dict[str, Any]:
    """A pod that passes restricted at every version."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name.lower(), "namespace": "corpus"},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "app",
                "image": "registry.example/app:1.0",
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }


def c0(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["spec"]["containers"][0]  # type: ignore[no-any-return]


CASES: list[tuple[str, str, Any, dict[str, str]]] = []


def case(name: str, doc: str, expect: dict[str, str]):  # type: ignore[no-untyped-def]
    def wrap(fn):  # type: ignore[no-untyped-def]
        pod = base(name)
        fn(pod)
        CASES.append((name, doc, pod, expect))
        return fn
    return wrap


ALL_OK = {"baseline@latest": "-", "restricted@latest": "-", "restricted@v1.0": "-"}


@case("restricted-pass", "Passes restricted at every version.", ALL_OK)
def _(p: dict[str, Any]) -> None:
    pass


# ---- privileged
@case("privileged-fail", "A privileged container.",
      {"baseline@latest": "privileged", "restricted@latest": "privileged", "baseline@v1.0": "privileged"})
def _(p):
    c0(p)["securityContext"]["privileged"] = True


@case("privileged-init-fail", "A privileged init container.",
      {"baseline@latest": "privileged", "restricted@latest": "privileged"})
def _(p):
    init = copy.deepcopy(c0(p))
    init["name"] = "setup"
    init["securityContext"]["privileged"] = True
    p["spec"]["initContainers"] = [init]


@case("privileged-ephemeral-fail", "A privileged ephemeral (debug) container.",
      {"baseline@latest": "privileged", "restricted@latest": "privileged"})
def _(p):
    eph = copy.deepcopy(c0(p))
    eph["name"] = "debugger"
    eph["securityContext"]["privileged"] = True
    p["spec"]["ephemeralContainers"] = [eph]


@case("privileged-pass", "privileged: false said out loud.", ALL_OK)
def _(p):
    c0(p)["securityContext"]["privileged"] = False


# ---- hostNamespaces
@case("hostNamespaces-fail", "hostPID and hostIPC.",
      {"baseline@latest": "hostNamespaces", "restricted@v1.0": "hostNamespaces"})
def _(p):
    p["spec"]["hostPID"] = True
    p["spec"]["hostIPC"] = True


@case("hostNamespaces-pass", "hostNetwork: false.", ALL_OK)
def _(p):
    p["spec"]["hostNetwork"] = False


# ---- hostPath volumes: at restricted, restrictedVolumes replaces hostPathVolumes
@case("hostPathVolumes-fail", "A hostPath volume.",
      {"baseline@latest": "hostPathVolumes", "restricted@latest": "restrictedVolumes",
       "restricted@v1.0": "restrictedVolumes"})
def _(p):
    p["spec"]["volumes"] = [{"name": "data", "hostPath": {"path": "/srv/data"}}]


# ---- hostPorts
@case("hostPorts-fail", "A container port bound on the host.",
      {"baseline@latest": "hostPorts", "restricted@latest": "hostPorts"})
def _(p):
    c0(p)["ports"] = [{"containerPort": 8080, "hostPort": 8080}]


@case("hostPorts-pass", "hostPort 0 means no host port.", ALL_OK)
def _(p):
    c0(p)["ports"] = [{"containerPort": 8080, "hostPort": 0}]


# ---- AppArmor
@case("appArmor-field-fail", "appArmorProfile Unconfined on a container.",
      {"baseline@latest": "appArmorProfile", "restricted@latest": "appArmorProfile"})
def _(p):
    c0(p)["securityContext"]["appArmorProfile"] = {"type": "Unconfined"}


@case("appArmor-annotation-fail", "The beta annotation set to unconfined.",
      {"baseline@latest": "appArmorProfile", "baseline@v1.0": "appArmorProfile"})
def _(p):
    p["metadata"]["annotations"] = {"container.apparmor.security.beta.kubernetes.io/app": "unconfined"}


@case("appArmor-pass", "RuntimeDefault at pod level, localhost/ annotation.", ALL_OK)
def _(p):
    p["spec"]["securityContext"]["appArmorProfile"] = {"type": "RuntimeDefault"}
    p["metadata"]["annotations"] = {"container.apparmor.security.beta.kubernetes.io/app": "localhost/my-profile"}


# ---- SELinux (container_engine_t allowed from v1.31)
@case("seLinux-fail", "A custom SELinux type and user.",
      {"baseline@latest": "seLinuxOptions", "restricted@latest": "seLinuxOptions"})
def _(p):
    p["spec"]["securityContext"]["seLinuxOptions"] = {"type": "spc_t"}
    c0(p)["securityContext"]["seLinuxOptions"] = {"user": "system_u", "level": "s0:c123,c456"}


@case("seLinux-engine-type", "container_engine_t: denied before v1.31, allowed from it.",
      {"baseline@v1.30": "seLinuxOptions", "baseline@v1.31": "-", "restricted@latest": "-"})
def _(p):
    c0(p)["securityContext"]["seLinuxOptions"] = {"type": "container_engine_t"}


@case("seLinux-pass", "container_t and a level.", ALL_OK)
def _(p):
    c0(p)["securityContext"]["seLinuxOptions"] = {"type": "container_t", "level": "s0:c1,c2"}


# ---- procMount (relaxed for hostUsers: false in baseline v1.35, not in restricted)
@case("procMount-hostUsers", "procMount Unmasked in a user namespace (hostUsers: false).",
      {"baseline@v1.34": "procMount", "baseline@v1.35": "-", "restricted@v1.34": "procMount",
       "restricted@v1.35": "procMount_restricted", "restricted@latest": "procMount_restricted"})
def _(p):
    p["spec"]["hostUsers"] = False
    c0(p)["securityContext"]["procMount"] = "Unmasked"


@case("procMount-fail", "procMount Unmasked without a user namespace.",
      {"baseline@latest": "procMount", "restricted@latest": "procMount_restricted",
       "baseline@v1.0": "procMount"})
def _(p):
    c0(p)["securityContext"]["procMount"] = "Unmasked"


@case("procMount-pass", "procMount Default.", ALL_OK)
def _(p):
    c0(p)["securityContext"]["procMount"] = "Default"


# ---- seccomp
@case("seccomp-annotation-fail", "The alpha annotation unconfined: checked only before v1.19.",
      {"baseline@v1.18": "seccompProfile_baseline", "baseline@v1.19": "-",
       "restricted@v1.18": "seccompProfile_baseline", "restricted@latest": "-"})
def _(p):
    p["metadata"]["annotations"] = {"seccomp.security.alpha.kubernetes.io/pod": "unconfined",
                                    "container.seccomp.security.alpha.kubernetes.io/app": "runtime/default"}


@case("seccomp-field-unconfined", "A container with seccompProfile Unconfined.",
      {"baseline@v1.18": "-", "baseline@v1.19": "seccompProfile_baseline",
       "restricted@v1.18": "-", "restricted@latest": "seccompProfile_restricted"})
def _(p):
    c0(p)["securityContext"]["seccompProfile"] = {"type": "Unconfined"}


@case("seccomp-missing", "No seccomp profile anywhere: restricted only, from v1.19.",
      {"baseline@latest": "-", "restricted@v1.18": "-", "restricted@v1.19": "seccompProfile_restricted"})
def _(p):
    del p["spec"]["securityContext"]["seccompProfile"]


@case("seccomp-pod-bad-container-good",
      "Pod Unconfined, the container RuntimeDefault: the pod level is still denied.",
      {"baseline@latest": "seccompProfile_baseline", "restricted@latest": "seccompProfile_restricted"})
def _(p):
    p["spec"]["securityContext"]["seccompProfile"] = {"type": "Unconfined"}
    c0(p)["securityContext"]["seccompProfile"] = {"type": "RuntimeDefault"}


@case("seccomp-container-only", "No pod profile, the only container sets Localhost.", ALL_OK)
def _(p):
    del p["spec"]["securityContext"]["seccompProfile"]
    c0(p)["securityContext"]["seccompProfile"] = {"type": "Localhost", "localhostProfile": "p.json"}


# ---- sysctls, by version
def _sysctl(name: str) -> Any:
    def f(p):  # type: ignore[no-untyped-def]
        p["spec"]["securityContext"]["sysctls"] = [{"name": name, "value": "1"}]
    return f


case("sysctls-fail", "A sysctl never allowed.",
     {"baseline@latest": "sysctls", "restricted@latest": "sysctls"})(_sysctl("kernel.msgmax"))
case("sysctls-reserved-ports", "ip_local_reserved_ports: allowed from v1.27.",
     {"baseline@v1.26": "sysctls", "baseline@v1.27": "-"})(_sysctl("net.ipv4.ip_local_reserved_ports"))
case("sysctls-keepalive", "tcp_keepalive_time: allowed from v1.29.",
     {"baseline@v1.28": "sysctls", "baseline@v1.29": "-"})(_sysctl("net.ipv4.tcp_keepalive_time"))
case("sysctls-rmem", "tcp_rmem: allowed from v1.32.",
     {"baseline@v1.31": "sysctls", "baseline@v1.32": "-"})(_sysctl("net.ipv4.tcp_rmem"))
case("sysctls-notsent-lowat", "tcp_notsent_lowat: allowed from v1.37.",
     {"baseline@v1.36": "sysctls", "baseline@v1.37": "-", "baseline@latest": "-"}
     )(_sysctl("net.ipv4.tcp_notsent_lowat"))
case("sysctls-pass", "A sysctl always allowed.", ALL_OK)(_sysctl("net.ipv4.ip_unprivileged_port_start"))


# ---- capabilities
@case("capabilities-sysadmin", "Adds SYS_ADMIN: baseline before v1.22 at restricted, restricted after.",
      {"baseline@latest": "capabilities_baseline", "restricted@v1.21": "capabilities_baseline",
       "restricted@v1.22": "capabilities_restricted", "restricted@latest": "capabilities_restricted"})
def _(p):
    c0(p)["securityContext"]["capabilities"]["add"] = ["SYS_ADMIN"]


@case("capabilities-lowercase", "Adds 'chown' (names are case-sensitive) and CAP_CHOWN.",
      {"baseline@latest": "capabilities_baseline", "restricted@latest": "capabilities_restricted"})
def _(p):
    c0(p)["securityContext"]["capabilities"]["add"] = ["chown", "CAP_CHOWN"]


@case("capabilities-baseline-ok", "Adds CHOWN: allowed by baseline, not by restricted.",
      {"baseline@latest": "-", "restricted@v1.21": "-", "restricted@latest": "capabilities_restricted"})
def _(p):
    c0(p)["securityContext"]["capabilities"]["add"] = ["CHOWN"]


@case("capabilities-no-drop", "Does not drop ALL: restricted from v1.22.",
      {"baseline@latest": "-", "restricted@v1.21": "-", "restricted@v1.22": "capabilities_restricted"})
def _(p):
    c0(p)["securityContext"]["capabilities"] = {"drop": ["NET_RAW"]}


@case("capabilities-pass", "Drops ALL, adds NET_BIND_SERVICE.", ALL_OK)
def _(p):
    c0(p)["securityContext"]["capabilities"]["add"] = ["NET_BIND_SERVICE"]


# ---- Windows HostProcess
@case("windowsHostProcess-fail", "A Windows HostProcess pod.",
      {"baseline@latest": "windowsHostProcess", "restricted@latest": "windowsHostProcess"})
def _(p):
    p["spec"]["securityContext"]["windowsOptions"] = {"hostProcess": True}


# ---- host probes and lifecycle hooks, from v1.34
@case("hostProbes-fail", "A liveness probe and a preStop hook aimed at another host.",
      {"baseline@v1.33": "-", "baseline@v1.34": "hostProbesAndHostLifecycle",
       "restricted@latest": "hostProbesAndHostLifecycle"})
def _(p):
    c0(p)["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": 8080, "host": "10.0.0.1"}}
    c0(p)["lifecycle"] = {"preStop": {"tcpSocket": {"port": 9000, "host": "metadata.internal"}}}


@case("hostProbes-pass", "Probes without host.", ALL_OK)
def _(p):
    c0(p)["readinessProbe"] = {"httpGet": {"path": "/ready", "port": 8080}}


# ---- restricted volumes
@case("restrictedVolumes-fail", "An nfs volume: fine for baseline, not for restricted.",
      {"baseline@latest": "-", "restricted@latest": "restrictedVolumes", "restricted@v1.0": "restrictedVolumes"})
def _(p):
    p["spec"]["volumes"] = [{"name": "share", "nfs": {"server": "nfs.example", "path": "/export"}}]


@case("restrictedVolumes-pass", "Allowed volume types, and one with no source (an emptyDir).", ALL_OK)
def _(p):
    p["spec"]["volumes"] = [
        {"name": "cfg", "configMap": {"name": "cfg"}}, {"name": "tmp", "emptyDir": {}},
        {"name": "tok", "projected": {"sources": []}}, {"name": "db", "persistentVolumeClaim": {"claimName": "db"}},
        {"name": "scratch"},
    ]


# ---- allowPrivilegeEscalation (from v1.8; Windows pods exempt from v1.25)
@case("allowPrivilegeEscalation-missing", "Not set: denied by restricted from v1.8.",
      {"baseline@latest": "-", "restricted@v1.7": "-", "restricted@v1.8": "allowPrivilegeEscalation",
       "restricted@latest": "allowPrivilegeEscalation"})
def _(p):
    del c0(p)["securityContext"]["allowPrivilegeEscalation"]


@case("allowPrivilegeEscalation-true", "Set to true.",
      {"restricted@latest": "allowPrivilegeEscalation", "baseline@latest": "-"})
def _(p):
    c0(p)["securityContext"]["allowPrivilegeEscalation"] = True


@case("windows-exempt", "A Windows pod without escalation, seccomp or capability settings.",
      {"restricted@v1.24": "allowPrivilegeEscalation,capabilities_restricted,seccompProfile_restricted",
       "restricted@v1.25": "-", "restricted@latest": "-"})
def _(p):
    p["spec"]["os"] = {"name": "windows"}
    del p["spec"]["securityContext"]["seccompProfile"]
    c0(p)["securityContext"] = {}


# ---- runAsNonRoot: pod level vs container level
@case("runAsNonRoot-container-overrides", "Pod true, container false: the container wins and is denied.",
      {"baseline@latest": "-", "restricted@latest": "runAsNonRoot", "restricted@v1.0": "runAsNonRoot"})
def _(p):
    c0(p)["securityContext"]["runAsNonRoot"] = False


@case("runAsNonRoot-pod-false", "Pod false, container true: the pod setting is still denied.",
      {"restricted@latest": "runAsNonRoot"})
def _(p):
    p["spec"]["securityContext"]["runAsNonRoot"] = False
    c0(p)["securityContext"]["runAsNonRoot"] = True


@case("runAsNonRoot-container-only", "Pod unset, every container true.", ALL_OK)
def _(p):
    del p["spec"]["securityContext"]["runAsNonRoot"]
    c0(p)["securityContext"]["runAsNonRoot"] = True


@case("runAsNonRoot-missing", "Pod unset, an init container unset.",
      {"restricted@latest": "runAsNonRoot", "baseline@latest": "-"})
def _(p):
    del p["spec"]["securityContext"]["runAsNonRoot"]
    c0(p)["securityContext"]["runAsNonRoot"] = True
    init = copy.deepcopy(c0(p))
    init["name"] = "setup"
    del init["securityContext"]["runAsNonRoot"]
    p["spec"]["initContainers"] = [init]


@case("runAsNonRoot-hostUsers", "hostUsers: false and no runAsNonRoot: allowed from v1.35.",
      {"restricted@v1.34": "runAsNonRoot", "restricted@v1.35": "-"})
def _(p):
    p["spec"]["hostUsers"] = False
    del p["spec"]["securityContext"]["runAsNonRoot"]


# ---- runAsUser (from v1.23; hostUsers: false allowed from v1.35)
@case("runAsUser-zero", "A container with runAsUser 0.",
      {"baseline@latest": "-", "restricted@v1.22": "-", "restricted@v1.23": "runAsUser",
       "restricted@latest": "runAsUser"})
def _(p):
    c0(p)["securityContext"]["runAsUser"] = 0


@case("runAsUser-pod-zero", "Pod runAsUser 0, container 1000: the pod setting is denied.",
      {"restricted@latest": "runAsUser"})
def _(p):
    p["spec"]["securityContext"]["runAsUser"] = 0
    c0(p)["securityContext"]["runAsUser"] = 1000


@case("runAsUser-hostUsers", "runAsUser 0 in a user namespace: allowed from v1.35.",
      {"restricted@v1.34": "runAsUser", "restricted@v1.35": "-"})
def _(p):
    p["spec"]["hostUsers"] = False
    c0(p)["securityContext"]["runAsUser"] = 0


def main() -> None:
    os.makedirs(HERE, exist_ok=True)
    for name, doc, pod, expect in CASES:
        head = [f"# {doc}"] + [f"# expect {k}: {v}" for k, v in expect.items()]
        body = yaml.safe_dump(pod, sort_keys=False, default_flow_style=False)
        with open(os.path.join(HERE, f"{name}.yaml"), "w") as f:
            f.write("\n".join(head) + "\n" + body)
    print(f"wrote {len(CASES)} cases to {HERE}")


if __name__ == "__main__":
    main()
