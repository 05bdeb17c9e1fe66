"""CriClient against an in-process fake CRI runtime (tests/cri/fake.py)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import grpc  # type: ignore[import-untyped, unused-ignore]
import pytest

from lanner.cri import CriClient, CriSetupError, LookupStatus, load_stubs, parse_image
from lanner.rules.fields.container import split_image

from .fake import FakeServer, hex64, pb


@pytest.fixture
def client(fake_cri: FakeServer) -> Iterator[CriClient]:
    c = CriClient(fake_cri.socket, timeout_s=2.0)
    yield c
    c.close()


def test_container_fields(fake_cri: FakeServer, client: CriClient) -> None:
    rt = fake_cri.runtime
    sid = rt.add_pod("web-0", "shop", "0b8e3c4a-5f3e-4b59-9d5c-1a2b3c4d5e6f", labels={"app": "web", "tier": "front"},
                     ip="198.18.0.7")
    mounts = [
        pb.Mount(container_path="/data", host_path="/var/lib/kubelet/pods/x/volumes/data", readonly=False,
                 propagation=pb.PROPAGATION_PRIVATE),
        pb.Mount(container_path="/etc/cfg", host_path="/srv/cfg", readonly=True,
                 propagation=pb.PROPAGATION_HOST_TO_CONTAINER),
        pb.Mount(container_path="/host", host_path="/", readonly=False, propagation=pb.PROPAGATION_BIDIRECTIONAL),
    ]
    cid = rt.add_container(sid, "nginx", image="docker.io/library/nginx:1.25",
                           image_ref="docker.io/library/nginx@sha256:" + "ab" * 32, labels={"team": "a"},
                           mounts=mounts)
    c = client.container(cid)
    assert c is not None
    assert c.id == cid
    assert c.name == "nginx"
    assert c.image == "docker.io/library/nginx:1.25"
    assert (c.image_repository, c.image_tag, c.image_digest) == ("docker.io/library/nginx", "1.25",
                                                                 "sha256:" + "ab" * 32)
    assert c.privileged is False
    assert c.labels["team"] == "a"
    assert c.labels["io.kubernetes.container.name"] == "nginx"
    assert c.labels["io.kubernetes.sandbox.id"] == sid
    assert c.pod_name == "web-0"
    assert c.pod_namespace == "shop"
    assert c.pod_uid == "0b8e3c4a-5f3e-4b59-9d5c-1a2b3c4d5e6f"
    assert c.pod_ip == "198.18.0.7"
    assert c.pod_labels["app"] == "web" and c.pod_labels["tier"] == "front"
    assert c.start_ts == 1_700_000_002_000_000_000
    got = [(m.source, m.dest, m.mode, m.rw, m.propagation) for m in c.mounts]
    assert got == [("/var/lib/kubelet/pods/x/volumes/data", "/data", "", True, "private"),
                   ("/srv/cfg", "/etc/cfg", "", False, "rslave"),
                   ("/", "/host", "", True, "rshared")]
    # The sandbox id came from the verbose info: no ListContainers needed.
    assert rt.calls == ["ContainerStatus", "PodSandboxStatus"]
    assert client.stats()["errors"] == 0


def test_privileged_containerd_and_crio_forms(fake_cri: FakeServer, client: CriClient) -> None:
    rt = fake_cri.runtime
    sid = rt.add_pod()
    assert client.container(rt.add_container(sid, privileged=True)).privileged is True  # type: ignore[union-attr]
    assert client.container(rt.add_container(sid, privileged=None)).privileged is False  # type: ignore[union-attr]
    crio = rt.add_container(sid, privileged=True, info_style="crio")
    assert client.container(crio).privileged is True  # type: ignore[union-attr]
    crio_plain = rt.add_container(sid, privileged=False, info_style="crio")
    assert client.container(crio_plain).privileged is False  # type: ignore[union-attr]


def test_without_verbose_info_the_sandbox_comes_from_list_containers(fake_cri: FakeServer, client: CriClient) -> None:
    rt = fake_cri.runtime
    sid = rt.add_pod("db-0", "data")
    cid = rt.add_container(sid, "postgres", info_style="none")
    c = client.container(cid)
    assert c is not None
    assert c.pod_name == "db-0" and c.pod_namespace == "data"
    assert c.labels["io.kubernetes.sandbox.id"] == sid
    assert rt.calls == ["ContainerStatus", "ListContainers", "PodSandboxStatus"]


def test_sandbox_id_resolves_through_pod_sandbox_status(fake_cri: FakeServer, client: CriClient) -> None:
    rt = fake_cri.runtime
    sid = rt.add_pod("web-0", "shop", labels={"app": "web"}, ip="198.18.0.9", privileged=True)
    c = client.container(sid)
    assert c is not None
    assert c.id == sid
    assert c.name == "web-0"
    assert c.image == "localhost/pause:local"
    assert (c.image_repository, c.image_tag) == ("localhost/pause", "local")
    assert c.pod_name == "web-0" and c.pod_namespace == "shop" and c.pod_ip == "198.18.0.9"
    assert c.pod_labels["app"] == "web" and c.labels["app"] == "web"
    assert c.privileged is True
    assert c.mounts == []
    assert c.start_ts == 1_700_000_000_000_000_000
    assert rt.calls == ["ContainerStatus", "PodSandboxStatus"]
    assert client.stats()["not_found"] == 0


def test_image_as_id_falls_back_to_the_annotated_name(fake_cri: FakeServer, client: CriClient) -> None:
    rt = fake_cri.runtime
    sid = rt.add_pod()
    digest = "sha256:" + "cd" * 32
    cid = rt.add_container(sid, image=digest, image_ref=digest,
                           annotations={"io.kubernetes.cri.image-name": "localhost/busybox:local"})
    c = client.container(cid)
    assert c is not None
    assert c.image == "localhost/busybox:local"
    # A bare digest image_ref (containerd without registry digests: the config digest) is the digest.
    assert (c.image_repository, c.image_tag, c.image_digest) == ("localhost/busybox", "local", digest)


@pytest.mark.parametrize(("image", "ref", "want"), [
    ("docker.io/library/nginx:1.25", "", ("docker.io/library/nginx", "1.25", "")),
    ("registry.example.com:5000/foo/bar:latest", "", ("registry.example.com:5000/foo/bar", "latest", "")),
    ("registry.example.com:5000/foo/bar", "", ("registry.example.com:5000/foo/bar", "", "")),
    ("alpine", "", ("alpine", "", "")),
    ("quay.io/x/y:v1@sha256:" + "ef" * 32, "", ("quay.io/x/y", "v1", "sha256:" + "ef" * 32)),
    ("quay.io/x/y:v1", "quay.io/x/y@sha256:" + "01" * 32, ("quay.io/x/y", "v1", "sha256:" + "01" * 32)),
    ("localhost/busybox:local", "sha256:" + "02" * 32, ("localhost/busybox", "local", "sha256:" + "02" * 32)),
    ("", "quay.io/x/y@sha256:" + "03" * 32, ("quay.io/x/y", "", "sha256:" + "03" * 32)),
    ("localhost/busybox:local", "not-a-digest", ("localhost/busybox", "local", "")),
])
def test_parse_image(image: str, ref: str, want: tuple[str, str, str]) -> None:
    assert parse_image(image, ref) == want
    if not ref:
        assert parse_image(image) == split_image(image)  # the field layer splits the same way


def test_not_found(fake_cri: FakeServer, client: CriClient) -> None:
    res = client.lookup(hex64())
    assert res.status is LookupStatus.NOT_FOUND and res.container is None
    assert client.container(hex64()) is None
    st = client.stats()
    assert st["not_found"] == 2 and st["errors"] == 0 and st["lookups"] == 2
    # Container NOT_FOUND, then sandbox NOT_FOUND.
    assert fake_cri.runtime.calls[:2] == ["ContainerStatus", "PodSandboxStatus"]


def test_container_of_removed_pod_keeps_label_fields(fake_cri: FakeServer, client: CriClient) -> None:
    rt = fake_cri.runtime
    sid = rt.add_pod("gone-0", "tmp")
    cid = rt.add_container(sid)
    del rt.sandboxes[sid]
    c = client.container(cid)
    assert c is not None
    assert c.pod_name == "gone-0" and c.pod_namespace == "tmp"  # from the container's labels
    assert c.pod_ip is None and c.pod_labels == {}


def test_runtime_down() -> None:
    missing = f"/tmp/lanner-no-such-dir-{os.getpid()}/cri.sock"
    with CriClient(missing, timeout_s=1.0) as c:
        t = time.monotonic()
        res = c.lookup(hex64())
        assert res.status is LookupStatus.ERROR and res.container is None
        assert c.container(hex64()) is None
        assert c.list_ids() is None
        assert c.version() is None
        assert time.monotonic() - t < 3.0
        st = c.stats()
        assert st["errors"] >= 4 and st["unavailable"] >= 4 and st["not_found"] == 0
        assert "UNAVAILABLE" in c.last_error


def test_no_default_socket_exists() -> None:
    c = CriClient(sockets=[f"/tmp/lanner-none-{os.getpid()}.sock"])
    assert c.socket is None
    assert c.container(hex64()) is None
    assert c.stats()["unavailable"] == 1
    assert "no CRI socket" in c.last_error
    c.close()


def test_default_sockets_in_order(fake_cri: FakeServer) -> None:
    sid = fake_cri.runtime.add_pod()
    c = CriClient(sockets=[f"/tmp/lanner-none-{os.getpid()}.sock", fake_cri.socket])
    assert c.container(sid) is not None
    assert c.socket == fake_cri.socket
    c.close()


def test_runtime_stops_and_comes_back(fake_cri: FakeServer, client: CriClient) -> None:
    rt = fake_cri.runtime
    sid = rt.add_pod()
    assert client.container(sid) is not None
    fake_cri.stop()
    assert client.lookup(sid).status is LookupStatus.ERROR
    fake_cri.start()
    deadline = time.monotonic() + 5
    while client.container(sid) is None:  # the channel reconnects (backoff at most 2 s)
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_timeout(fake_cri: FakeServer) -> None:
    rt = fake_cri.runtime
    sid = rt.add_pod()
    rt.delay = 0.3
    c = CriClient(fake_cri.socket, timeout_s=0.1)
    t = time.monotonic()
    assert c.lookup(sid).status is LookupStatus.ERROR
    assert time.monotonic() - t < 0.25
    assert c.stats()["timeouts"] == 1
    # A per-call deadline overrides the default one.
    assert c.lookup(sid, timeout_s=3.0).status is LookupStatus.FOUND
    c.close()


def test_deadline_covers_the_whole_lookup(fake_cri: FakeServer) -> None:
    rt = fake_cri.runtime
    cid = rt.add_container(rt.add_pod(), info_style="none")  # three calls
    rt.delay = 0.1
    c = CriClient(fake_cri.socket, timeout_s=0.25)
    t = time.monotonic()
    assert c.lookup(cid).status is LookupStatus.ERROR
    assert time.monotonic() - t < 0.35
    c.close()


def test_runtime_errors_are_counted(fake_cri: FakeServer, client: CriClient) -> None:
    fake_cri.runtime.fail = grpc.StatusCode.INTERNAL
    assert client.lookup(hex64()).status is LookupStatus.ERROR
    st = client.stats()
    assert st["errors"] == 1 and st["timeouts"] == 0 and st["unavailable"] == 0
    assert "INTERNAL" in client.last_error


def test_malformed_verbose_info_is_ignored(fake_cri: FakeServer, client: CriClient) -> None:
    rt = fake_cri.runtime
    sid = rt.add_pod()
    cid = rt.add_container(sid)
    rt.containers[cid].info = {"sandboxID": sid, "config": "not an object", "runtimeSpec": ["x"]}
    c = client.container(cid)
    assert c is not None and c.privileged is False and c.pod_name == "web-0"


def test_list_ids_and_version(fake_cri: FakeServer, client: CriClient) -> None:
    rt = fake_cri.runtime
    sid = rt.add_pod()
    cids = {rt.add_container(sid), rt.add_container(sid)}
    assert client.list_ids() == cids | {sid}
    assert client.version() == {"runtime_name": "fake", "runtime_version": "1.0", "runtime_api_version": "v1"}


def test_missing_stubs_name_make_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANNER_CRI_STUBS", f"/tmp/lanner-no-stubs-{os.getpid()}")
    with pytest.raises(CriSetupError, match="make setup"):
        load_stubs()
    with pytest.raises(CriSetupError, match="make setup"):
        CriClient()
