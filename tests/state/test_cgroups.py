"""cgroup path → container id / pod uid, and CgroupResolver against this machine's cgroup2 tree."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import lanner.state.cgroups as cgroups_module
from lanner.state.cgroups import (
    CgroupResolver,
    container_id_from_cgroup,
    container_id_from_proc,
    find_cgroup2_mount,
    has_cgroup_v1,
    pod_uid_from_cgroup,
    proc_cgroup_paths,
)
from tests.conftest import require_or_skip

CID = "3f1d8c1e0b6a4d2f9e8c7b6a5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c"
CID2 = "a" * 64
UID = "0b8e3c4a-5f3e-4b59-9d5c-1a2b3c4d5e6f"
UID_ = UID.replace("-", "_")
STATIC_UID = "6a2b8c0d1e2f3a4b5c6d7e8f9a0b1c2d"


CONTAINER_PATHS = [
    # containerd / CRI-O / Docker, cgroupfs driver
    f"/kubepods/besteffort/pod{UID}/{CID}",
    f"/kubepods/burstable/pod{UID}/{CID}",
    f"/kubepods/pod{UID}/{CID}",  # Guaranteed QoS: no QoS level
    f"/kubepods/burstable/pod{UID}/crio-{CID}",  # CRI-O, cgroupfs
    f"/k8s.io/{CID}",  # CRI without a cgroup_parent
    f"/docker/{CID}",
    f"/ecs/task-1/{CID}",
    # systemd driver
    f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID}.scope",
    f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{CID}.scope",
    f"/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{CID}.scope",
    f"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
    f"kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID}.scope",  # kind
    f"/system.slice/docker-{CID}.scope",
    f"/machine.slice/libpod-{CID}.scope",
    f"kubepods-besteffort-pod{UID_}.slice:cri-containerd:{CID}",  # the OCI cgroupsPath form
    # sub-cgroups a container makes inside its own
    f"/kubepods/besteffort/pod{UID}/{CID}/init.scope",
    f"/kubepods.slice/kubepods-pod{UID_}.slice/crio-{CID}.scope/container",
    f"/system.slice/docker-{CID}.scope/",
]

HOST_PATHS = [
    "", "/", "/init.scope", "/system.slice/containerd.service", "/system.slice/kubelet.service",
    "/user.slice/user-0.slice/session-1.scope", "/process_api/262dd6698b1f3ea4f37cddbfd4b9e6a5",
    f"/kubepods/besteffort/pod{UID}",  # the pod's own cgroup
    f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice",
    "/kubepods/besteffort", "/default/ctr-test1",  # `ctr run` names the cgroup after the container name
    # conmon watches the container from the host
    f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-conmon-{CID}.scope",
    f"/kubepods/burstable/pod{UID}/crio-conmon-{CID}",
    f"/machine.slice/libpod-conmon-{CID}.scope",
    # not exactly 64 lowercase hex
    f"/docker/{CID[:63]}", f"/docker/{CID}0", f"/docker/{CID.upper()}", f"/docker/x{CID}",
    f"/system.slice/docker-{CID}.service.d",
]


@pytest.mark.parametrize("path", CONTAINER_PATHS)
def test_container_paths(path: str) -> None:
    assert container_id_from_cgroup(path) == CID


@pytest.mark.parametrize("path", HOST_PATHS)
def test_host_paths(path: str) -> None:
    assert container_id_from_cgroup(path) == ""


def test_deepest_container_wins() -> None:
    assert container_id_from_cgroup(f"/docker/{CID}/docker/{CID2}") == CID2
    assert container_id_from_cgroup(f"/docker/{CID}/docker/{CID2}/x") == CID2


@pytest.mark.parametrize(("path", "uid"), [
    (f"/kubepods/besteffort/pod{UID}/{CID}", UID),
    (f"/kubepods/pod{UID}/{CID}", UID),
    (f"/kubepods/besteffort/pod{UID}", UID),
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID}.scope",
     UID),
    (f"/kubepods.slice/kubepods-pod{UID_}.slice/crio-{CID}.scope", UID),
    (f"kubepods-besteffort-pod{UID_}.slice:cri-containerd:{CID}", UID),
    (f"/kubepods/burstable/pod{STATIC_UID}/{CID}", STATIC_UID),  # static pod: a hash, not a UUID
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{STATIC_UID}.slice", STATIC_UID),
    (f"/k8s.io/{CID}", None),
    (f"/docker/{CID}", None),
    ("/", None),
    ("/system.slice/podman.service", None),
    (f"/kubepods/besteffort/mypod{UID}", None),
])
def test_pod_uid(path: str, uid: str | None) -> None:
    assert pod_uid_from_cgroup(path) == uid


# --- /proc and mountinfo ---------------------------------------------------------------------------------

def _fake_proc(root: Path, pid: int, text: str) -> str:
    (root / str(pid)).mkdir(parents=True)
    (root / str(pid) / "cgroup").write_text(text)
    return str(root)


def test_proc_cgroup_v2_line_first(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, 7, f"9:name=systemd:/\n4:memory:/docker/{CID2}\n0::/k8s.io/{CID}\n")
    assert proc_cgroup_paths(7, proc) == [f"/k8s.io/{CID}", "/", f"/docker/{CID2}"]
    assert container_id_from_proc(7, proc) == CID


def test_proc_cgroup_v1_only(tmp_path: Path) -> None:
    # Hybrid host, a runtime that placed the process in v1 hierarchies only.
    proc = _fake_proc(tmp_path, 8, f"4:memory:/docker/{CID}\n1:cpu:/docker/{CID}\n0::/\n")
    assert container_id_from_proc(8, proc) == CID


def test_proc_gone(tmp_path: Path) -> None:
    assert proc_cgroup_paths(99, str(tmp_path)) == []
    assert container_id_from_proc(99, str(tmp_path)) == ""


def test_proc_of_this_process() -> None:
    assert proc_cgroup_paths(os.getpid())  # at least the 0:: line


HYBRID = """\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 25 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
PURE_V2 = """\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
33 25 0:28 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
90 30 0:28 /kubepods /host/cg rw,relatime - cgroup2 cgroup2 rw
"""
ELSEWHERE = "90 30 0:28 / /mnt/cgroup\\040v2 rw,relatime - cgroup2 cgroup2 rw\n"


@pytest.mark.parametrize(("text", "want"), [
    (HYBRID, "/sys/fs/cgroup/unified"), (PURE_V2, "/sys/fs/cgroup"), (ELSEWHERE, "/mnt/cgroup v2"),
    ("25 30 0:23 / /sys rw - sysfs sysfs rw\n", None),
])
def test_find_cgroup2_mount(tmp_path: Path, text: str, want: str | None) -> None:
    f = tmp_path / "mountinfo"
    f.write_text(text)
    assert find_cgroup2_mount(str(f)) == want


@pytest.mark.parametrize(("text", "want"), [(HYBRID, True), (PURE_V2, False), ("", False)])
def test_has_cgroup_v1(tmp_path: Path, text: str, want: bool) -> None:
    f = tmp_path / "mountinfo"
    f.write_text(text)
    assert has_cgroup_v1(str(f)) is want


def test_cgroup2_root_on_hybrid_hosts_asks_proc(tmp_path: Path) -> None:
    """A runtime that ignores cgroup2 leaves its containers in the cgroup2 root (id 1) on a hybrid
    host: only the v1 lines tell, per process."""
    proc = _fake_proc(tmp_path, 5, f"4:memory:/docker/{CID}\n0::/\n")
    _fake_proc(tmp_path, 6, "4:memory:/\n0::/\n")
    hybrid = CgroupResolver(proc_root=proc, v1=True, use_handles=False)
    assert hybrid.container_of(1, 5) == CID
    assert hybrid.container_of(1, 6) == ""
    assert hybrid.container_of(1, 5) == CID  # not cached under the root id
    pure = CgroupResolver(proc_root=proc, v1=False, use_handles=False)
    assert pure.container_of(1, 5) == ""  # on a pure-v2 host the root cgroup is the host's


def test_without_cgroup2_proc_decides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroups_module, "find_cgroup2_mount", lambda *a: None)
    proc = _fake_proc(tmp_path, 5, f"4:memory:/kubepods/pod{UID}/{CID}\n")
    r = CgroupResolver(proc_root=proc, v1=True)
    assert r.root is None
    assert r.container_of(1, 5) == CID
    assert r.container_of(1234, 5) == CID
    assert r.path_of(1234) is None


def test_find_cgroup2_mount_here() -> None:
    root = find_cgroup2_mount()
    if root is None:
        require_or_skip("no cgroup2 mount on this machine")
    assert root is not None
    assert os.stat(root).st_ino == 1  # the root cgroup's id


# --- the resolver on the real cgroup2 tree ------------------------------------------------------------------

@pytest.fixture
def cgroup2() -> Iterator[tuple[str, str]]:
    """(mount, test folder relative to it): a private folder under the cgroup2 root, removed after."""
    root = find_cgroup2_mount()
    if root is None or os.geteuid() != 0:
        require_or_skip("needs root and a cgroup2 mount")
    assert root is not None
    rel = f"/lanner-test-{uuid.uuid4().hex[:12]}"
    try:
        os.mkdir(root + rel)
    except OSError as e:
        require_or_skip(f"cannot create a cgroup under {root}: {e}")
    try:
        yield root, rel
    finally:
        _rmtree_cgroup(root + rel)


def _rmtree_cgroup(top: str) -> None:
    """rmdir bottom-up (cgroup directories hold only kernel files)."""
    for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: -t[0].count("/")):
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(dirpath)


def _mk(root: str, rel: str) -> int:
    os.makedirs(root + rel)
    return os.stat(root + rel).st_ino


@pytest.mark.parametrize("use_handles", [True, False])
def test_resolver_maps_ids_to_paths(cgroup2: tuple[str, str], use_handles: bool) -> None:
    root, base = cgroup2
    pod = f"{base}/kubepods/besteffort/pod{UID}"
    cgid = _mk(root, f"{pod}/{CID}")
    systemd = f"{base}/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{CID2}.scope"
    cgid2 = _mk(root, systemd)
    r = CgroupResolver(use_handles=use_handles)
    assert r.root == root
    assert r.path_of(1) == "/"
    assert r.path_of(cgid) == f"{pod}/{CID}"
    assert r.path_of(cgid2) == systemd
    assert r.path_of(os.stat(root + pod).st_ino) == pod
    assert r.container_of(cgid, 0) == CID
    assert r.container_of(cgid2, 0) == CID2
    assert r.container_of(1, 0) == ""
    assert r.container_of(os.stat(root + base).st_ino, 0) == ""
    st = r.stats()
    assert st["handles"] == (1 if use_handles else 0)
    assert (st["handle"] > 0) == use_handles and (st["walks"] > 0) == (not use_handles)
    r.close()


def test_resolver_caches_per_cgroup_id(cgroup2: tuple[str, str]) -> None:
    root, base = cgroup2
    cgid = _mk(root, f"{base}/k8s.io/{CID}")
    r = CgroupResolver()
    assert r.container_of(cgid, 0) == CID
    before = r.stats()
    for _ in range(100):
        assert r.container_of(cgid, 0) == CID
    after = r.stats()
    assert after["hits"] == before["hits"] + 100
    assert after["handle"] == before["handle"] and after["walks"] == before["walks"]


def test_walk_finds_new_containers_beside_known_ones(cgroup2: tuple[str, str]) -> None:
    root, base = cgroup2
    for i in range(30):  # unrelated cgroups the hot pass does not need to list
        _mk(root, f"{base}/system.slice/svc-{i}.service")
    pod = f"{base}/kubepods/besteffort/pod{UID}"
    first = _mk(root, f"{pod}/{CID}")
    r = CgroupResolver(use_handles=False)
    assert r.container_of(first, 0) == CID
    full_walk = r.stats()["walked_dirs"]
    # A new container in the same pod, then a new pod: found by listing a few known directories.
    second = _mk(root, f"{pod}/{CID2}")
    assert r.container_of(second, 0) == CID2
    cid3 = "b" * 64
    third = _mk(root, f"{base}/kubepods/besteffort/pod{uuid.uuid4()}/{cid3}")
    assert r.container_of(third, 0) == cid3
    incremental = r.stats()["walked_dirs"] - full_walk
    assert incremental < full_walk
    assert r.stats()["walks"] == 3


def test_removed_cgroup(cgroup2: tuple[str, str]) -> None:
    root, base = cgroup2
    cgid = _mk(root, f"{base}/docker/{CID}")
    os.rmdir(f"{root}{base}/docker/{CID}")
    for handles in (True, False):
        r = CgroupResolver(use_handles=handles)
        assert r.path_of(cgid) is None
        assert r.container_of(cgid, 0) == ""
        assert r.stats()["unresolved"] >= 1


def test_forget(cgroup2: tuple[str, str]) -> None:
    root, base = cgroup2
    cgid = _mk(root, f"{base}/docker/{CID}")
    r = CgroupResolver()
    assert r.container_of(cgid, 0) == CID
    r.forget(cgid)
    os.rmdir(f"{root}{base}/docker/{CID}")
    assert r.container_of(cgid, 0) == ""


def test_bounded(cgroup2: tuple[str, str]) -> None:
    root, base = cgroup2
    ids = [_mk(root, f"{base}/docker/{os.urandom(32).hex()}") for _ in range(40)]
    r = CgroupResolver(max_entries=16)
    for cgid in ids:
        assert r.container_of(cgid, 0) != ""
    st = r.stats()
    assert st["paths"] <= 16 and st["containers"] <= 16 and st["evicted"] > 0
    assert r.container_of(ids[0], 0) != ""  # evicted entries are resolved again
    assert r.path_of(1) == "/"  # the root is never evicted


def test_process_fallbacks(cgroup2: tuple[str, str]) -> None:
    """A process moved into a container-shaped cgroup: /proc decides when the id is unknown (0),
    and its 0:: path is the hint when handles are not used."""
    root, base = cgroup2
    rel = f"{base}/kubepods/besteffort/pod{UID}/{CID}"
    cgid = _mk(root, rel)
    sleeper = subprocess.Popen([shutil.which("sleep") or "/bin/sleep", "30"])
    try:
        try:
            Path(root + rel, "cgroup.procs").write_text(str(sleeper.pid))
        except OSError as e:
            require_or_skip(f"cannot move a process into a cgroup2 cgroup: {e}")
        assert proc_cgroup_paths(sleeper.pid)[0] == rel
        r = CgroupResolver(use_handles=False)
        assert r.container_of(0, sleeper.pid) == CID
        assert r.stats()["proc_fallback"] == 1
        assert r.container_of(cgid, sleeper.pid) == CID
        st = r.stats()
        assert st["hint"] == 1 and st["walks"] == 0
    finally:
        sleeper.kill()
        sleeper.wait()


def test_cgroup_folders_in_every_hierarchy_and_their_removal(tmp_path: Path) -> None:
    from lanner.state.cgroups import cgroup_dirs, cgroup_hierarchies, remove_cgroup

    hierarchies = cgroup_hierarchies()
    assert hierarchies and all((h / "cgroup.procs").exists() for h in hierarchies)
    assert len(set(hierarchies)) == len(hierarchies)   # a link to a hierarchy counts once
    name = f"/lanner-test-{tmp_path.name}"
    dirs = cgroup_dirs(name)
    assert dirs == [h / name.lstrip("/") for h in hierarchies]
    for d in dirs:
        d.mkdir()
    assert remove_cgroup(name) == [] and not any(d.exists() for d in dirs)
    assert remove_cgroup(name) == []                   # already gone is not an error
