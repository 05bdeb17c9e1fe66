"""Container and pod context on live events, from a real containerd and real pods.

The live sensor runs with the cgroup resolver and the CRI metadata directory, as the agent does;
pods are created after it started, so their first exec is the hard case."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator

import pytest

from lanner.cri import CriClient
from lanner.events import Event
from lanner.sensor.source import LiveSource
from lanner.state.cgroups import CgroupResolver
from lanner.state.containers import ContainerDirectory
from tests.containers.harness import Containerd, Pod
from tests.kernel._fields import extract as x
from tests.kernel.conftest import Live


class ContainerLive(Live):
    """The live sensor with container context, as the agent runs it."""

    def __init__(self, socket: str) -> None:
        self.directory = ContainerDirectory(CriClient(socket))
        super().__init__(LiveSource(None, cgroups=CgroupResolver(), containers=self.directory))

    def of(self, pod: Pod) -> Callable[[Event], bool]:
        return lambda e: e.proc is not None and e.proc.container_id == pod.container_id

    def close(self) -> None:
        super().close()
        self.directory.close()


def assert_all_have_metadata(live: ContainerLive, pod: Pod) -> None:
    """Every event of this pod's container so far carries its metadata. (The process-wide
    `without_metadata` counter is not used: another containerd on the machine, e.g. a parallel
    test run, has containers this CRI socket cannot describe.)"""
    with live.cond:
        mine = [e for e in live.events if live.of(pod)(e)]
    assert mine and all(e.container is not None and e.container.id == pod.container_id for e in mine), \
        [(e.type, e.proc.name if e.proc else None) for e in mine if e.container is None][:10]


@pytest.fixture(scope="module")
def live(containerd: Containerd) -> Iterator[ContainerLive]:
    lv = ContainerLive(str(containerd.socket))
    yield lv
    lv.close()


def test_a_new_pods_first_exec_has_full_metadata(live: ContainerLive, containerd: Containerd) -> None:
    pod = containerd.run_pod("web-1", namespace="shop", labels={"app": "web", "tier": "front"},
                             command=["sh", "-c", "cat /etc/passwd > /dev/null; sleep 3600"])
    first = live.wait_for(lambda e: live.of(pod)(e) and e.type == "execve")
    assert first.container is not None, "the very first exec of the container was judged without metadata"
    assert x(first, "container.id") == pod.container_id[:12]
    assert x(first, "container.name") == "main"
    assert x(first, "container.image.repository") == "localhost/busybox"
    assert x(first, "container.image.tag") == "local"
    assert x(first, "k8s.pod.name") == "web-1" and x(first, "k8s.ns.name") == "shop"
    assert x(first, "k8s.pod.uid") == pod.uid
    assert x(first, "k8s.pod.label[app]") == "web"
    assert x(first, "container.privileged") is False
    time.sleep(0.5)
    assert_all_have_metadata(live, pod)


def test_exec_sync_is_attributed_to_the_container(live: ContainerLive, containerd: Containerd) -> None:
    pod = containerd.run_pod("exec-1", namespace="ops", labels={"app": "tools"})
    res = pod.exec_sync(["cat", "/etc/hostname"])
    assert res.rc == 0
    ev = live.wait_for(lambda e: live.of(pod)(e) and e.type == "execve" and e.proc is not None
                       and e.proc.name == "cat")
    assert x(ev, "container.id") == pod.container_id[:12]
    assert x(ev, "k8s.pod.name") == "exec-1" and x(ev, "k8s.ns.name") == "ops"
    assert x(ev, "proc.cmdline") == "cat /etc/hostname"
    assert x(ev, "proc.vpid") != x(ev, "proc.pid")          # its own pid namespace
    assert_all_have_metadata(live, pod)


def test_host_processes_stay_host(live: ContainerLive) -> None:
    import subprocess

    subprocess.run(["/usr/bin/true"], check=True)
    ev = live.wait_for(lambda e: e.type == "execve" and e.proc is not None and e.proc.exepath == "/usr/bin/true")
    assert x(ev, "container.id") == "host" and ev.container is None


def test_drift_upper_layer_versus_image(live: ContainerLive, containerd: Containerd) -> None:
    """A binary written after the container started is in overlayfs' upper layer; the image's are not."""
    pod = containerd.run_pod("drift-1", namespace="default")
    # busybox picks the applet by argv[0]: a copy named "true" runs true
    assert pod.exec_sync(["sh", "-c", "cp /bin/busybox /tmp/true && /tmp/true"]).rc == 0
    dropped = live.wait_for(lambda e: live.of(pod)(e) and e.type == "execve" and e.proc is not None
                            and e.proc.exepath == "/tmp/true")
    assert x(dropped, "proc.is_exe_upper_layer") is True and x(dropped, "proc.is_exe_lower_layer") is False
    image = live.wait_for(lambda e: live.of(pod)(e) and e.type == "execve" and e.proc is not None
                          and e.proc.exepath == "/bin/busybox")
    assert x(image, "proc.is_exe_upper_layer") is False and x(image, "proc.is_exe_lower_layer") is True


def test_metadata_latency(live: ContainerLive, containerd: Containerd) -> None:
    """From a new container's first exec (the kernel's time stamp) to that event leaving the sensor
    with its metadata: what the wait for the runtime costs. Figures for docs/benchmarks.md."""
    delays: list[float] = []
    for i in range(10):
        pod = containerd.run_pod(f"lat-{i}", namespace="bench")
        first = live.wait_for(lambda e, p=pod: live.of(p)(e) and e.type == "execve")
        assert first.container is not None
        delays.append((live.received[first.num] - first.ts) / 1e6)
        assert_all_have_metadata(live, pod)
        pod.remove()
    delays.sort()
    print(f"\nfirst exec of a new container to its event with metadata: p50 {statistics.median(delays):.1f} ms, "
          f"p99/max {delays[-1]:.1f} ms over {len(delays)} pods")



def test_no_event_was_judged_without_metadata(live: ContainerLive) -> None:
    """Through the whole module (pods created, exec'd into, removed): every container event the
    sensor saw had its metadata. Only this suite's containerd may run containers meanwhile."""
    c = live.source.counters()
    with live.cond:
        blind = sorted({(e.proc.container_id[:12], e.type, e.proc.name) for e in live.events
                        if e.proc is not None and e.proc.container_id and e.container is None})[:15]
    assert c.without_metadata == 0, (c, blind)
