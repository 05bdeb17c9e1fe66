"""An in-process fake CRI runtime: the RuntimeService RPCs Lanner's client calls, served by grpc on a
unix socket, with switches for slowness and errors."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc  # type: ignore[import-untyped, unused-ignore]

from lanner.cri import load_stubs

pb, pbg = load_stubs()


def hex64() -> str:
    return os.urandom(32).hex()


@dataclass
class FakeContainer:
    status: Any
    sandbox_id: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class FakeSandbox:
    status: Any
    info: dict[str, Any] = field(default_factory=dict)


def _abort(context: Any, code: Any, message: str) -> NoReturn:
    context.abort(code, message)  # raises
    raise AssertionError("unreachable")


_Servicer: Any = pbg.RuntimeServiceServicer


class FakeRuntime(_Servicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.containers: dict[str, FakeContainer] = {}
        self.sandboxes: dict[str, FakeSandbox] = {}
        self.delay = 0.0
        """Seconds each call sleeps before answering."""
        self.fail: grpc.StatusCode | None = None
        """Every call fails with this code."""
        self.calls: list[str] = []
        self.lock = threading.Lock()

    # --- building the world ---------------------------------------------------------------------

    def add_pod(self, name: str = "web-0", namespace: str = "shop", uid: str | None = None, *,
                labels: dict[str, str] | None = None, ip: str = "198.18.0.7", privileged: bool = False,
                image: str = "localhost/pause:local") -> str:
        sid = hex64()
        uid = uid or str(uuid.uuid4())
        all_labels = {"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": namespace,
                      "io.kubernetes.pod.uid": uid, **(labels or {})}
        status = pb.PodSandboxStatus(
            id=sid, metadata=pb.PodSandboxMetadata(name=name, namespace=namespace, uid=uid, attempt=0),
            state=pb.SANDBOX_READY, created_at=1_700_000_000_000_000_000,
            network=pb.PodSandboxNetworkStatus(ip=ip), labels=all_labels,
            annotations={"kubernetes.io/config.source": "api"})
        info = {"pid": 4242, "image": image,
                "config": {"metadata": {"name": name}, "linux": {"security_context": {"privileged": privileged}}},
                "runtimeSpec": {"annotations": {"io.kubernetes.cri.container-type": "sandbox"}}}
        self.sandboxes[sid] = FakeSandbox(status, info)
        return sid

    def add_container(self, sandbox_id: str, name: str = "app", *, image: str = "docker.io/library/nginx:1.25",
                      image_ref: str = "docker.io/library/nginx@sha256:" + "ab" * 32,
                      labels: dict[str, str] | None = None, mounts: list[Any] | None = None,
                      privileged: bool | None = False, info_style: str = "containerd",
                      annotations: dict[str, str] | None = None) -> str:
        cid = hex64()
        pod = self.sandboxes[sandbox_id].status.metadata
        all_labels = {"io.kubernetes.container.name": name, "io.kubernetes.pod.name": pod.name,
                      "io.kubernetes.pod.namespace": pod.namespace, "io.kubernetes.pod.uid": pod.uid,
                      **(labels or {})}
        status = pb.ContainerStatus(
            id=cid, metadata=pb.ContainerMetadata(name=name, attempt=0), state=pb.CONTAINER_RUNNING,
            created_at=1_700_000_001_000_000_000, started_at=1_700_000_002_000_000_000,
            image=pb.ImageSpec(image=image), image_ref=image_ref, labels=all_labels,
            annotations={"io.kubernetes.container.restartCount": "0"}, mounts=mounts or [])
        spec_annotations = {"io.kubernetes.cri.container-type": "container",
                            "io.kubernetes.cri.sandbox-id": sandbox_id, **(annotations or {})}
        info: dict[str, Any]
        if info_style == "containerd":
            info = {"sandboxID": sandbox_id, "pid": 4343, "runtimeSpec": {"annotations": spec_annotations},
                    "config": {"metadata": {"name": name}, "image": {"image": image},
                               "linux": {"security_context": {} if privileged is None else
                                         {"privileged": privileged}}}}
        elif info_style == "crio":
            info = {"sandboxID": sandbox_id, "pid": 4343, "privileged": bool(privileged),
                    "runtimeSpec": {"annotations": annotations or {}}}
        else:  # no verbose info at all: the client must ask ListContainers for the sandbox
            info = {}
        self.containers[cid] = FakeContainer(status, sandbox_id, info)
        return cid

    def remove(self, cid: str) -> None:
        self.containers.pop(cid, None)
        self.sandboxes.pop(cid, None)

    # --- RPCs ---------------------------------------------------------------------------------------

    def _enter(self, name: str, context: Any) -> None:
        with self.lock:
            self.calls.append(name)
        if self.delay:
            time.sleep(self.delay)
        if self.fail is not None:
            _abort(context, self.fail, f"fake {self.fail.name}")

    def Version(self, request: Any, context: Any) -> Any:
        self._enter("Version", context)
        return pb.VersionResponse(version="0.1.0", runtime_name="fake", runtime_version="1.0",
                                  runtime_api_version="v1")

    def ContainerStatus(self, request: Any, context: Any) -> Any:
        self._enter("ContainerStatus", context)
        c = self.containers.get(request.container_id)
        if c is None:
            _abort(context, grpc.StatusCode.NOT_FOUND, f"container {request.container_id!r}: not found")
        info = {"info": json.dumps(c.info)} if request.verbose and c.info else {}
        return pb.ContainerStatusResponse(status=c.status, info=info)

    def PodSandboxStatus(self, request: Any, context: Any) -> Any:
        self._enter("PodSandboxStatus", context)
        s = self.sandboxes.get(request.pod_sandbox_id)
        if s is None:
            _abort(context, grpc.StatusCode.NOT_FOUND, f"sandbox {request.pod_sandbox_id!r}: not found")
        info = {"info": json.dumps(s.info)} if request.verbose else {}
        return pb.PodSandboxStatusResponse(status=s.status, info=info)

    def ListContainers(self, request: Any, context: Any) -> Any:
        self._enter("ListContainers", context)
        wanted = request.filter.id if request.HasField("filter") else ""
        out = [pb.Container(id=cid, pod_sandbox_id=c.sandbox_id, metadata=c.status.metadata,
                            image=c.status.image, image_ref=c.status.image_ref, state=c.status.state,
                            labels=c.status.labels)
               for cid, c in self.containers.items() if not wanted or cid == wanted]
        return pb.ListContainersResponse(containers=out)

    def ListPodSandbox(self, request: Any, context: Any) -> Any:
        self._enter("ListPodSandbox", context)
        return pb.ListPodSandboxResponse(items=[
            pb.PodSandbox(id=sid, metadata=s.status.metadata, state=s.status.state, labels=s.status.labels)
            for sid, s in self.sandboxes.items()])


class FakeServer:
    """A FakeRuntime served on ``<tmpdir>/cri.sock``."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="lanner-cri-")
        self.socket = os.path.join(self.dir, "cri.sock")
        self.runtime = FakeRuntime()
        self.server: Any = None
        self.start()

    def start(self) -> None:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        pbg.add_RuntimeServiceServicer_to_server(self.runtime, self.server)
        self.server.add_insecure_port("unix:" + self.socket)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(0).wait()
            self.server = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
