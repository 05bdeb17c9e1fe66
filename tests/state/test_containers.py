"""ContainerDirectory: asynchronous fill, wait, backoff, eviction, bound, threads."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

from lanner.events import Container
from lanner.state.containers import ContainerDirectory, Lookup, LookupStatus


def hex64() -> str:
    return os.urandom(32).hex()


class FakeSource:
    """A container source: ``known`` ids are FOUND, others NOT_FOUND; ``down`` makes every call an ERROR."""

    def __init__(self, delay: float = 0.0) -> None:
        self.known: dict[str, Container] = {}
        self.delay = delay
        self.down = False
        self.calls: list[str] = []
        self.lists = 0
        self.closed = False
        self.gate: threading.Event | None = None
        self.lock = threading.Lock()

    def add(self, cid: str | None = None, **kw: object) -> str:
        cid = cid or hex64()
        self.known[cid] = Container(id=cid, name=f"c-{cid[:6]}", **kw)  # type: ignore[arg-type]
        return cid

    def lookup(self, container_id: str, *, timeout_s: float | None = None) -> Lookup:
        with self.lock:
            self.calls.append(container_id)
        if self.gate is not None:
            self.gate.wait(5)
        if self.delay:
            time.sleep(self.delay)
        if self.down:
            return Lookup(LookupStatus.ERROR)
        c = self.known.get(container_id)
        return Lookup(LookupStatus.FOUND, c) if c is not None else Lookup(LookupStatus.NOT_FOUND)

    def list_ids(self, *, timeout_s: float | None = None) -> set[str] | None:
        self.lists += 1
        return None if self.down else set(self.known)

    def close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def source() -> FakeSource:
    return FakeSource()


@pytest.fixture
def directory(source: FakeSource) -> Iterator[ContainerDirectory]:
    d = ContainerDirectory(source, refresh_interval_s=0)
    yield d
    d.close()


def test_get_never_blocks_and_fills_asynchronously(source: FakeSource) -> None:
    source.delay = 0.2
    cid = source.add()
    d = ContainerDirectory(source, refresh_interval_s=0)
    t = time.monotonic()
    assert d.get(cid) is None
    assert time.monotonic() - t < 0.05
    c = d.wait(cid, 2.0)
    assert c is not None and c.id == cid
    assert d.get(cid) is c
    assert cid in d and len(d) == 1
    st = d.stats()
    assert st["cached"] == 1 and st["lookups"] == 1 and st["found"] == 1 and st["failures"] == 0
    d.close()


def test_host_is_never_looked_up(directory: ContainerDirectory, source: FakeSource) -> None:
    assert directory.get("") is None
    assert directory.wait("", 0.1) is None
    assert source.calls == []


def test_concurrent_gets_make_one_lookup(source: FakeSource) -> None:
    source.gate = threading.Event()
    cid = source.add()
    d = ContainerDirectory(source, refresh_interval_s=0)
    for _ in range(100):
        assert d.get(cid) is None
    assert d.stats()["pending"] == 1
    source.gate.set()
    assert d.wait(cid, 2.0) is not None
    assert source.calls == [cid]
    d.close()


def test_wait_times_out(source: FakeSource) -> None:
    source.delay = 0.3
    cid = source.add()
    d = ContainerDirectory(source, refresh_interval_s=0)
    t = time.monotonic()
    assert d.wait(cid, 0.05) is None
    assert time.monotonic() - t < 0.25
    assert d.wait(cid, 2.0) is not None  # the same lookup, still running
    assert source.calls == [cid]
    d.close()


def test_not_found_backs_off_per_id(source: FakeSource) -> None:
    clock = Clock()
    d = ContainerDirectory(source, refresh_interval_s=0, retry_s=1.0, max_retry_s=4.0, clock=clock)
    unknown = hex64()
    assert d.wait(unknown, 2.0) is None
    assert d.get(unknown) is None and d.wait(unknown, 1.0) is None  # in backoff: not asked again
    assert source.calls == [unknown]
    # Other ids are still looked up: the runtime answered.
    known = source.add()
    assert d.wait(known, 2.0) is not None
    clock.now += 1.01
    assert d.wait(unknown, 2.0) is None
    assert source.calls.count(unknown) == 2
    clock.now += 1.5  # the wait doubled to 2 s
    assert d.wait(unknown, 2.0) is None
    assert source.calls.count(unknown) == 2
    # Created meanwhile: found once the backoff has passed.
    source.add(unknown)
    clock.now += 1.0
    assert d.wait(unknown, 2.0) is not None
    st = d.stats()
    assert st["not_found"] == 2 and st["failures"] == 2 and st["found"] == 2 and st["errors"] == 0
    d.close()


def test_runtime_down_backs_off_for_every_id(source: FakeSource) -> None:
    clock = Clock()
    d = ContainerDirectory(source, refresh_interval_s=0, retry_s=1.0, clock=clock)
    source.down = True
    a, b = source.add(), source.add()
    assert d.wait(a, 2.0) is None
    assert d.get(b) is None and d.wait(b, 1.0) is None  # not even tried: the runtime is down
    assert source.calls == [a]
    source.down = False
    clock.now += 1.01
    assert d.wait(b, 2.0) is not None
    assert d.wait(a, 2.0) is not None
    st = d.stats()
    assert st["errors"] == 1 and st["failures"] == 1 and st["found"] == 2
    d.close()


def test_refresh_evicts_removed_containers(directory: ContainerDirectory, source: FakeSource) -> None:
    a, b = source.add(), source.add()
    assert directory.wait(a, 2.0) is not None and directory.wait(b, 2.0) is not None
    del source.known[a]
    assert directory.refresh() == 1
    assert a not in directory and b in directory
    assert directory.stats()["evicted"] == 1
    source.down = True
    assert directory.refresh() is None
    assert b in directory


def test_refresh_keeps_containers_cached_after_the_listing_started(source: FakeSource) -> None:
    clock = Clock()
    d = ContainerDirectory(source, refresh_interval_s=0, clock=clock)
    a = source.add()
    original = source.list_ids

    def list_then_fill(*, timeout_s: float | None = None) -> set[str] | None:
        ids = original(timeout_s=timeout_s)
        clock.now += 0.5
        source.add(a)
        assert d.wait(a, 2.0) is not None  # cached while the (stale) listing was in flight
        return ids - {a} if ids is not None else None

    source.list_ids = list_then_fill  # type: ignore[method-assign]
    assert d.refresh() == 0
    assert a in d
    d.close()


def test_periodic_refresh(source: FakeSource) -> None:
    a = source.add()
    d = ContainerDirectory(source, refresh_interval_s=0.05)
    assert d.wait(a, 2.0) is not None
    del source.known[a]
    deadline = time.monotonic() + 3
    while a in d:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert d.stats()["evicted"] == 1 and d.stats()["refreshes"] >= 1
    d.close()


def test_forget_then_not_found(source: FakeSource) -> None:
    clock = Clock()
    d = ContainerDirectory(source, refresh_interval_s=0, clock=clock)
    a = source.add()
    assert d.wait(a, 2.0) is not None
    d.forget(a)  # e.g. the state tracker saw the cgroup go
    assert a not in d and d.stats()["forgotten"] == 1
    del source.known[a]
    assert d.wait(a, 2.0) is None
    assert d.stats()["not_found"] == 1
    d.close()


def test_bounded(source: FakeSource) -> None:
    d = ContainerDirectory(source, refresh_interval_s=0, max_entries=3)
    ids = [source.add() for _ in range(5)]
    for cid in ids:
        assert d.wait(cid, 2.0) is not None
    assert len(d) == 3
    assert [cid in d for cid in ids] == [False, False, True, True, True]  # oldest out
    assert d.stats()["overflow"] == 2
    d.close()


def test_pending_bound_drops_lookups(source: FakeSource) -> None:
    source.gate = threading.Event()
    d = ContainerDirectory(source, refresh_interval_s=0, max_pending=2)
    ids = [source.add() for _ in range(5)]
    for cid in ids:
        d.get(cid)
    assert d.stats()["pending"] == 2 and d.stats()["dropped"] == 3
    source.gate.set()
    d.close()


def test_prefetch(directory: ContainerDirectory, source: FakeSource) -> None:
    ids = {source.add() for _ in range(3)}
    assert directory.prefetch() == 3
    deadline = time.monotonic() + 3
    while len(directory) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert directory.prefetch() == 0  # all known
    assert set(source.calls) == ids


def test_many_threads(source: FakeSource) -> None:
    source.delay = 0.001
    ids = [source.add() for _ in range(50)]
    d = ContainerDirectory(source, refresh_interval_s=0, workers=2)
    errors: list[BaseException] = []

    def hammer(offset: int) -> None:
        try:
            for i in range(400):
                cid = ids[(i + offset) % len(ids)]
                c = d.get(cid) if i % 3 else d.wait(cid, 2.0)
                assert c is None or c.id == cid
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for cid in ids:
        assert d.wait(cid, 2.0) is not None
    assert sorted(source.calls) == sorted(ids)  # each looked up exactly once
    d.close()


def test_close(source: FakeSource) -> None:
    source.gate = threading.Event()
    cid = source.add()
    d = ContainerDirectory(source, refresh_interval_s=0)
    d.get(cid)
    waiter_result: list[Container | None] = []
    waiter = threading.Thread(target=lambda: waiter_result.append(d.wait(cid, 10.0)))
    waiter.start()
    time.sleep(0.05)
    source.gate.set()
    d.close()
    waiter.join(3)
    assert not waiter.is_alive()
    assert source.closed
    other = source.add()
    assert d.get(other) is None and d.wait(other, 0.1) is None  # closed: nothing scheduled
    d.close()  # idempotent


def test_worker_survives_a_raising_source(source: FakeSource) -> None:
    bad = hex64()
    original = source.lookup

    def lookup(container_id: str, *, timeout_s: float | None = None) -> Lookup:
        if container_id == bad:
            raise RuntimeError("boom")
        return original(container_id, timeout_s=timeout_s)

    source.lookup = lookup  # type: ignore[method-assign]
    d = ContainerDirectory(source, refresh_interval_s=0)
    assert d.wait(bad, 2.0) is None
    good = source.add()
    assert d.wait(good, 2.0) is not None
    d.close()


def test_with_the_cri_client() -> None:
    """The directory over a real CriClient and the fake gRPC runtime."""
    from lanner.cri import CriClient
    from tests.cri.fake import FakeServer

    srv = FakeServer()
    try:
        sid = srv.runtime.add_pod("web-0", "shop")
        cid = srv.runtime.add_container(sid, "nginx")
        d = ContainerDirectory(CriClient(srv.socket), refresh_interval_s=0)
        assert d.get(cid) is None
        c = d.wait(cid, 2.0)
        assert c is not None and c.name == "nginx" and c.pod_name == "web-0"
        assert d.wait(sid, 2.0) is not None  # the pause container
        srv.runtime.remove(cid)
        assert d.refresh() == 1
        assert d.get(cid) is None
        d.close()
    finally:
        srv.close()
