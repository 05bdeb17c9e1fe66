"""The http output against a real local HTTP(S) server."""

from __future__ import annotations

from typing import Any

import pytest

from lanner.outputs import HttpOutput, OutputError, RetryPolicy, build_outputs

from .conftest import WAIT, Pki, Receiver, make_alert, settled, wait_for

FAST = RetryPolicy(max_retries=-1, backoff_initial=0.01, backoff_max=0.1)


def test_posts_falco_json_with_custom_headers(receiver: Receiver) -> None:
    out = build_outputs([{"kind": "http", "url": receiver.url, "headers": {"Authorization": "Bearer s3cret",
                                                                           "X-Cluster": "lab"}}])["http"]
    out.start()
    alerts = [make_alert(i) for i in range(3)]
    for a in alerts:
        assert out.emit(a)
    wait_for(lambda: len(receiver.accepted) == 3, "3 requests")
    assert out.stop(WAIT)
    for a, req in zip(alerts, receiver.accepted, strict=True):
        assert req.path == "/alerts"
        assert req.body == a.to_json()
        assert req.headers["Content-Type"] == "application/json"
        assert req.headers["Authorization"] == "Bearer s3cret"
        assert req.headers["X-Cluster"] == "lab"
        assert req.headers["User-Agent"].startswith("lanner/")
    s = out.stats()
    assert (s.accepted, s.delivered, s.failed, s.retries) == (3, 3, 0, 0)


@pytest.mark.parametrize("keep_alive", [False, True], ids=["close", "keep-alive"])
def test_receiver_down_then_back_every_alert_once_in_order(keep_alive: bool) -> None:
    receiver = Receiver(keep_alive=keep_alive).start()
    out = HttpOutput(receiver.url, retry=FAST)
    out.start()
    try:
        for i in range(40):
            out.emit(make_alert(i))
        wait_for(lambda: len(receiver.accepted) >= 10, "the first alerts")
        receiver.stop()  # mid-stream
        for i in range(40, 80):
            out.emit(make_alert(i))
        wait_for(lambda: out.stats().retries >= 3, "retries while the receiver is down")
        assert out.stats().failed == 0
        receiver.start()  # same port
        wait_for(lambda: len(receiver.accepted) == 80, "all 80 alerts")
        assert receiver.seqs() == list(range(80))
        assert len(receiver.requests) == 80
        s = settled(out)
        assert (s.delivered, s.failed, s.dropped_queue_full) == (80, 0, 0)
        assert s.last_error is not None
    finally:
        out.stop(WAIT)
        receiver.stop()


@pytest.mark.parametrize("status", [503, 500, 429, 408])
def test_transient_answers_are_retried_until_2xx(status: int) -> None:
    receiver = Receiver(answer=lambda n, body: status if n < 2 else 200).start()
    out = HttpOutput(receiver.url, retry=FAST)
    out.start()
    try:
        out.emit(make_alert(7))
        s = settled(out)
        assert (s.delivered, s.failed, s.retries) == (1, 0, 2)
        assert f"HTTP {status}" in (s.last_error or "")
        assert [r.body["output_fields"]["seq"] for r in receiver.requests] == [7, 7, 7]
    finally:
        out.stop(WAIT)
        receiver.stop()


@pytest.mark.parametrize("status", [400, 404, 413])
def test_4xx_is_a_counted_permanent_failure(status: int) -> None:
    receiver = Receiver(answer=lambda n, body: status if body["output_fields"]["seq"] == 1 else 200).start()
    out = HttpOutput(receiver.url, retry=FAST)
    out.start()
    try:
        for i in range(3):
            out.emit(make_alert(i))
        s = settled(out)
        assert (s.delivered, s.failed, s.retries) == (2, 1, 0)
        assert f"HTTP {status}" in (s.last_error or "")
        assert receiver.seqs() == [0, 2]
        assert len(receiver.requests) == 3
    finally:
        out.stop(WAIT)
        receiver.stop()


def test_gives_up_after_max_retries_and_goes_on() -> None:
    receiver = Receiver().start()
    url = receiver.url
    receiver.stop()  # nothing listens on that port now
    out = HttpOutput(url, retry=RetryPolicy(max_retries=2, backoff_initial=0.01, backoff_max=0.02))
    out.start()
    out.emit(make_alert(0))
    out.emit(make_alert(1))
    s = settled(out)
    out.stop(WAIT)
    assert (s.accepted, s.delivered, s.failed, s.retries) == (2, 0, 2, 4)
    assert "ConnectionRefused" in (s.last_error or "")


def test_stop_delivers_everything_queued(receiver: Receiver) -> None:
    out = HttpOutput(receiver.url, queue_size=500)
    for i in range(300):
        assert out.emit(make_alert(i))  # queued before the worker even runs
    out.start()
    assert out.stop(WAIT)
    assert receiver.seqs() == list(range(300))
    assert out.stats().delivered == 300


def test_stop_while_receiver_down_counts_the_rest_as_failed() -> None:
    receiver = Receiver().start()
    url = receiver.url
    receiver.stop()
    out = HttpOutput(url, retry=FAST)
    out.start()
    for i in range(5):
        out.emit(make_alert(i))
    assert not out.stop(0.2)
    s = out.stats()
    assert (s.accepted, s.delivered, s.failed, s.queue_depth, s.in_flight) == (5, 0, 5, 0, 0)


# -- TLS ------------------------------------------------------------------------------------------

def _tls_run(receiver: Receiver, **kw: Any) -> HttpOutput:
    out = HttpOutput(receiver.url, retry=RetryPolicy(max_retries=1, backoff_initial=0.01, backoff_max=0.02), **kw)
    out.start()
    out.emit(make_alert(1))
    settled(out)
    out.stop(WAIT)
    return out


def test_tls_verified_against_the_test_ca(pki: Pki) -> None:
    receiver = Receiver(tls=pki.server_context()).start()
    try:
        out = _tls_run(receiver, ca_file=str(pki.ca))
        assert out.stats().delivered == 1
        assert receiver.seqs() == [1]
    finally:
        receiver.stop()


def test_tls_fails_against_a_wrong_ca(pki: Pki) -> None:
    receiver = Receiver(tls=pki.server_context()).start()
    try:
        out = _tls_run(receiver, ca_file=str(pki.other_ca))
        s = out.stats()
        assert (s.delivered, s.failed) == (0, 1)
        assert "CERTIFICATE_VERIFY_FAILED" in (s.last_error or "")
        assert receiver.requests == []
    finally:
        receiver.stop()


def test_tls_insecure_skips_verification(pki: Pki) -> None:
    receiver = Receiver(tls=pki.server_context()).start()
    try:
        out = _tls_run(receiver, ca_file=str(pki.other_ca), insecure=True)
        assert out.stats().delivered == 1
    finally:
        receiver.stop()


def test_tls_client_certificate(pki: Pki) -> None:
    receiver = Receiver(tls=pki.server_context(require_client_cert=True)).start()
    try:
        without = _tls_run(receiver, ca_file=str(pki.ca))
        assert without.stats().failed == 1
        with_cert = _tls_run(receiver, ca_file=str(pki.ca), client_cert=str(pki.client_cert),
                             client_key=str(pki.client_key))
        assert with_cert.stats().delivered == 1
        assert receiver.seqs() == [1]
    finally:
        receiver.stop()


def test_bad_ca_file_fails_at_start(pki: Pki, tmp_path: Any) -> None:
    bad = tmp_path / "not-a-cert.pem"
    bad.write_text("nonsense\n")
    out = HttpOutput("https://127.0.0.1:1/", ca_file=str(bad))
    with pytest.raises(OutputError, match="TLS set-up"):
        out.start()
