"""`lanner doctor` on the real machine: every verdict is compared with what the machine itself says
(kernel config, tracefs, securityfs, mounts), read here independently of the doctor's code."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from lanner import doctor
from lanner.sensor.loader import SensorError
from tests.conftest import ROOT, require_or_skip

VERDICTS = {"ok", "missing", "refused", "not-applicable"}
NOBODY = 65534


def _registered() -> bool:
    """Whether `lanner doctor` is in the command table yet (else the command object is used)."""
    from lanner.cli import cli

    return "doctor" in cli.list_commands(click.Context(cli))


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    """Run `lanner doctor --json ARGS`: exit code, parsed JSON, stderr."""
    if _registered():
        proc = subprocess.run([sys.executable, "-m", "lanner", "doctor", "--json", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})
        return proc.returncode, json.loads(proc.stdout), proc.stderr
    result = CliRunner().invoke(doctor.doctor_command, ["--json", *args], env=env)
    return result.exit_code, json.loads(result.stdout), result.stderr


def _kernel_config() -> dict[str, str]:
    opts: dict[str, str] = {}
    with gzip.open("/proc/config.gz", "rt") as f:
        for line in f:
            line = line.strip()
            if line.startswith("CONFIG_"):
                k, _, v = line.partition("=")
                opts[k] = v
    return opts


def _ftrace_function_tracing_refused() -> bool:
    try:
        with open("/sys/kernel/tracing/available_filter_functions", "rb") as f:
            f.read(1)
    except PermissionError:
        return True
    return False


def _fstypes() -> dict[str, str]:
    out = {}
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, where, fstype, *_ = line.split()
        out[where] = fstype
    return out


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    if os.geteuid() != 0:
        require_or_skip("lanner doctor's probes need root")
    t0 = time.perf_counter()
    code, data, stderr = _run()
    elapsed = time.perf_counter() - t0
    assert code == 0, stderr
    return {"code": code, "data": data, "elapsed": elapsed, "stderr": stderr,
            "checks": {c["name"]: c for c in data["checks"]}}


@pytest.fixture(scope="module")
def config() -> dict[str, str]:
    if not os.path.exists("/proc/config.gz"):
        require_or_skip("/proc/config.gz is needed to know what the kernel should allow")
    return _kernel_config()


def test_json_shape_and_exit(report: dict[str, Any]) -> None:
    data = report["data"]
    assert data["ok"] is True and report["code"] == 0
    names = [c["name"] for c in data["checks"]]
    assert len(names) == len(set(names))
    for c in data["checks"]:
        assert set(c) == {"name", "verdict", "detail", "needed_for", "required"}
        assert c["verdict"] in VERDICTS and c["detail"], c
    for name in ("root", "capabilities", "kernel", "btf", "tracefs", "bpffs", "securityfs", "lsm", "lockdown",
                 "libbpf", "clang", "bpftool", "object:sensor.bpf.o", "object:probes.bpf.o", "cgroup2", "sensor",
                 "fanotify", "seccomp", "cri", *doctor.PROBE_NAMES):
        assert name in report["checks"], name
    # Every required check passed, since the command said the sensor can run.
    assert all(c["verdict"] == "ok" for c in data["checks"] if c["required"])


def test_basics_match_machine(report: dict[str, Any]) -> None:
    checks = report["checks"]
    assert checks["root"]["verdict"] == "ok"
    capeff = next(int(ln.split()[1], 16) for ln in Path("/proc/self/status").read_text().splitlines()
                  if ln.startswith("CapEff:"))
    assert f"{capeff:016x}" in checks["capabilities"]["detail"]
    if not capeff >> 24 & 1:
        assert "CAP_SYS_RESOURCE absent (harmless" in checks["capabilities"]["detail"]
    assert os.uname().release in checks["kernel"]["detail"]
    assert checks["btf"]["verdict"] == ("ok" if os.path.exists("/sys/kernel/btf/vmlinux") else "missing")
    # The doctor mounts what set-up would mount; afterwards the mounts are there.
    mounts = _fstypes()
    assert mounts.get("/sys/kernel/tracing") == "tracefs" and checks["tracefs"]["verdict"] == "ok"
    assert mounts.get("/sys/fs/bpf") == "bpf" and checks["bpffs"]["verdict"] == "ok"
    assert mounts.get("/sys/kernel/security") == "securityfs"
    lsms = Path("/sys/kernel/security/lsm").read_text().strip()
    assert lsms in checks["lsm"]["detail"]
    lockdown = Path("/sys/kernel/security/lockdown").read_text()
    mode = lockdown[lockdown.index("[") + 1:lockdown.index("]")]
    assert f"lockdown={mode}" in checks["lockdown"]["detail"]
    assert checks["lockdown"]["verdict"] == ("refused" if mode == "confidentiality" else "ok")
    assert checks["libbpf"]["verdict"] == "ok" and "libbpf 1." in checks["libbpf"]["detail"]
    for tool in ("clang", "bpftool"):
        assert checks[tool]["verdict"] == ("ok" if shutil.which(tool) else "missing")


def test_bpf_program_kinds_match_kernel_config(report: dict[str, Any], config: dict[str, str]) -> None:
    checks = report["checks"]

    def expect(name: str, verdict: str, *in_detail: str) -> None:
        c = checks[name]
        assert c["verdict"] == verdict, c
        for piece in in_detail:
            assert piece in c["detail"], c

    events = config.get("CONFIG_BPF_EVENTS") == "y"
    syscalls_tp = os.path.isdir("/sys/kernel/tracing/events/syscalls/sys_enter_getpid")
    expect("bpf:tracepoint", "ok" if events and syscalls_tp else "missing")
    expect("bpf:raw_tracepoint", "ok" if events else "missing")
    btf = config.get("CONFIG_DEBUG_INFO_BTF") == "y"
    expect("bpf:tp_btf", "ok" if events and btf else "missing")
    if events and btf:
        assert "= stat()" in checks["bpf:tp_btf"]["detail"]  # the (dev, ino) pointer walk is right
    cgroup2 = "cgroup2" in _fstypes().values()
    expect("bpf:cgroup/connect4", "ok" if config.get("CONFIG_CGROUP_BPF") == "y" and cgroup2 else "missing")
    if checks["bpf:cgroup/connect4"]["verdict"] == "ok":
        assert "denied (EPERM)" in checks["bpf:cgroup/connect4"]["detail"]
    expect("bpf:iter/task", "ok" if btf else "missing", "iterated over")
    for name in ("bpf:bpf_loop", "bpf:ringbuf", "bpf:bpf_send_signal", "sensor"):
        expect(name, "ok")

    # KPROBES off: the program loads (the type exists for uprobes) but cannot attach.
    if config.get("CONFIG_KPROBES") == "y":
        expect("bpf:kprobe", "ok")
    else:
        expect("bpf:kprobe", "missing", "CONFIG_KPROBES is not set")

    # fentry/fexit and BPF-LSM share the BPF trampoline, like ftrace's function tracer. Where the
    # kernel refuses function tracing it refuses the trampoline too (EPERM at BPF_PROG_LOAD).
    if _ftrace_function_tracing_refused():
        expect("bpf:fentry", "refused", "EPERM")
        expect("bpf:lsm", "refused", "EPERM")
    else:
        expect("bpf:fentry", "ok")
        lsm_on = config.get("CONFIG_BPF_LSM") == "y" and "bpf" in Path("/sys/kernel/security/lsm").read_text()
        assert (checks["bpf:lsm"]["verdict"] == "ok") == lsm_on


def test_other_mechanisms_match_machine(report: dict[str, Any], config: dict[str, str]) -> None:
    checks = report["checks"]
    perm = config.get("CONFIG_FANOTIFY_ACCESS_PERMISSIONS") == "y"
    assert checks["fanotify"]["verdict"] == ("ok" if perm else "missing")
    actions = Path("/proc/sys/kernel/seccomp/actions_avail").read_text().split()
    assert checks["seccomp"]["verdict"] == ("ok" if "user_notif" in actions else "missing")
    fstypes = _fstypes()
    if fstypes.get("/sys/fs/cgroup") == "cgroup2":
        assert "pure cgroup v2 at /sys/fs/cgroup" in checks["cgroup2"]["detail"]
    elif fstypes.get("/sys/fs/cgroup/unified") == "cgroup2":
        assert "hybrid: cgroup2 at /sys/fs/cgroup/unified" in checks["cgroup2"]["detail"]
    sockets = [p for _, p in doctor.CRI_SOCKETS if os.path.exists(p)]
    if not sockets:
        assert checks["cri"]["verdict"] == "not-applicable"
    else:
        assert checks["cri"]["verdict"] in ("ok", "missing")
        assert any(p in checks["cri"]["detail"] for p in sockets)


def test_probes_leave_nothing_behind(report: dict[str, Any]) -> None:
    cg = next((w for w, t in _fstypes().items() if t == "cgroup2"), None)
    if cg is not None:
        assert not [d for d in os.listdir(cg) if d.startswith("lanner-doctor-")]
    progs = subprocess.run(["bpftool", "prog", "show", "--json"], capture_output=True, text=True, check=False)
    if progs.returncode == 0:
        assert not [p for p in json.loads(progs.stdout) if str(p.get("name", "")).startswith("probe_")]


def test_table_output() -> None:
    if os.geteuid() != 0:
        require_or_skip("lanner doctor's probes need root")
    result = CliRunner().invoke(doctor.doctor_command, [])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["CHECK", "VERDICT"]
    assert any(ln.startswith("bpf:tp_btf ") for ln in lines)
    assert "The sensor can run here." in result.stdout


def test_require_sensor_passes_as_root() -> None:
    if os.geteuid() != 0:
        require_or_skip("require_sensor() passes only as root")
    doctor.require_sensor()


def test_objects_not_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        require_or_skip("needs root to get past the root check")
    monkeypatch.setenv("LANNER_BPF_DIR", str(tmp_path))
    with pytest.raises(SensorError, match=r"objects not built .* run `make setup`"):
        doctor.require_sensor()
    result = CliRunner().invoke(doctor.doctor_command, ["--json"])
    assert result.exit_code == 2
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["object:sensor.bpf.o"]["verdict"] == "missing"
    assert checks["bpf:tracepoint"]["verdict"] == "not-applicable"
    assert checks["sensor"]["verdict"] == "not-applicable"
    assert "object:sensor.bpf.o" in result.stderr and "make setup" in result.stderr


def test_a_crashing_check_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(env: object) -> tuple[str, str]:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(doctor, "_check_seccomp", boom)
    checks = {c.name: c for c in doctor.run_checks(mount=False)}
    assert checks["seccomp"].verdict == "missing"
    assert "RuntimeError: kaboom" in checks["seccomp"].detail
    assert "cri" in checks  # the checks after it still ran


_UNPRIVILEGED = textwrap.dedent(f"""
    import json, os, sys
    import click
    from click.testing import CliRunner
    from lanner.cli import cli
    from lanner.doctor import doctor_command, require_sensor
    from lanner.sensor.loader import SensorError
    registered = "doctor" in cli.list_commands(click.Context(cli))
    # Everything is imported: the interpreter's own files need not be readable by nobody.
    os.setgroups([])
    os.setgid({NOBODY})
    os.setuid({NOBODY})
    try:
        require_sensor()
        message = None
    except SensorError as exc:
        message = str(exc)
    if registered:
        result = CliRunner().invoke(cli, ["doctor", "--json"])
    else:
        result = CliRunner().invoke(doctor_command, ["--json"])
    json.dump({{"message": message, "code": result.exit_code, "stdout": result.stdout,
               "stderr": result.stderr, "euid": os.geteuid()}}, sys.stdout)
""")


def test_unprivileged_user_is_told_it_needs_root() -> None:
    if os.geteuid() != 0:
        require_or_skip("dropping to an unprivileged uid needs root")
    proc = subprocess.run([sys.executable, "-c", _UNPRIVILEGED], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["euid"] == NOBODY
    assert out["message"] is not None and out["message"].startswith("not root")
    assert out["code"] == 2
    assert "root" in out["stderr"]
    data = json.loads(out["stdout"])
    checks = {c["name"]: c for c in data["checks"]}
    assert data["ok"] is False
    assert checks["root"]["verdict"] == "missing"
    assert checks["capabilities"]["verdict"] == "missing"
    assert checks["bpf:tp_btf"]["verdict"] == "not-applicable"
    assert checks["sensor"]["verdict"] == "not-applicable"
