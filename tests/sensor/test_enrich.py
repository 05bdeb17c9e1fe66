"""Container metadata on events: a new container's first events wait for it, briefly and boundedly."""

from __future__ import annotations

from lanner.events import Container, Event, Process
from lanner.sensor.enrich import ContainerEnricher

CID = "a" * 64


class Lookup:
    def __init__(self) -> None:
        self.known: dict[str, Container] = {}
        self.asked: list[str] = []

    def get(self, cid: str) -> Container | None:
        self.asked.append(cid)
        return self.known.get(cid)


def ev(n: int, cid: str = CID) -> Event:
    return Event("execve", num=n, proc=Process(pid=100 + n, container_id=cid))


def test_host_events_never_wait() -> None:
    e = ContainerEnricher(Lookup())
    out = e.add(ev(1, cid=""))
    assert [x.num for x in out] == [1] and out[0].container is None and not e.held


def test_first_events_wait_for_metadata_then_go_in_order_with_it() -> None:
    now = [0.0]
    lk = Lookup()
    e = ContainerEnricher(lk, wait_s=2.0, clock=lambda: now[0])
    assert e.add(ev(1)) == [] and e.add(ev(2)) == []
    assert e.held == 2 and e.release() == []
    lk.known[CID] = Container(id=CID, name="web")
    now[0] += 0.01
    out = e.release()
    assert [x.num for x in out] == [1, 2] and all(x.container is not None and x.container.name == "web" for x in out)
    assert e.without_metadata == 0 and e.held == 0
    third = e.add(ev(3))
    assert [x.num for x in third] == [3] and third[0].container is lk.known[CID]


def test_a_runtime_that_does_not_answer_is_counted() -> None:
    now = [0.0]
    e = ContainerEnricher(Lookup(), wait_s=1.0, clock=lambda: now[0])
    e.add(ev(1))
    now[0] += 0.5
    assert e.release() == []
    now[0] += 0.6
    out = e.release()
    assert [x.num for x in out] == [1] and out[0].container is None and e.without_metadata == 1


def test_bounded() -> None:
    e = ContainerEnricher(Lookup(), max_held=3)
    assert e.add(ev(1, "b" * 64)) == [] and e.add(ev(2)) == [] and e.add(ev(3)) == []
    out = e.add(ev(4))                      # over the bound: the oldest container goes on as it is
    assert [x.num for x in out] == [1] and e.held == 3 and e.without_metadata == 1
    assert sorted(x.num for x in e.drain()) == [2, 3, 4] and e.held == 0


def test_a_removed_containers_last_events_keep_its_metadata() -> None:
    lk = Lookup()
    e = ContainerEnricher(lk)
    lk.known[CID] = Container(id=CID, name="web")
    assert e.add(ev(1))[0].container is not None
    del lk.known[CID]                       # the runtime forgot it (removed); its processes still exit
    late = e.add(ev(2))
    assert [x.num for x in late] == [2] and late[0].container is not None and late[0].container.name == "web"
    assert e.without_metadata == 0
