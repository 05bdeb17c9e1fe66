"""The CRI (k8s.io/cri-api runtime.v1) stubs that scripts/setup.sh generates into build/cri/lanner_cri.

Loaded on first use (`cri.pb`, `cri.connect(...)`), so that the harness imports, and the tests can
skip with a reason, on a machine where set-up has not generated them. The service stubs and grpc
come without type information, hence Any.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
STUBS = ROOT / "build" / "cri"

_loaded: dict[str, Any] = {}


class StubsMissing(ImportError):
    pass


def stubs_present() -> bool:
    return (STUBS / "lanner_cri" / "api_pb2_grpc.py").is_file()


def load() -> None:
    """Import the stubs (putting build/cri on sys.path) and grpc; StubsMissing when not generated."""
    if _loaded:
        return
    if not stubs_present():
        raise StubsMissing(f"CRI stubs not generated under {STUBS}: run `make setup`")
    if str(STUBS) not in sys.path:
        sys.path.insert(0, str(STUBS))
    grpc = importlib.import_module("grpc")
    _loaded.update(
        pb=importlib.import_module("lanner_cri.api_pb2"),
        pbg=importlib.import_module("lanner_cri.api_pb2_grpc"),
        grpc=grpc,
        RpcError=grpc.RpcError,
    )


def __getattr__(name: str) -> Any:
    """pb (messages), pbg (service stubs), grpc, RpcError."""
    if name in ("pb", "pbg", "grpc", "RpcError"):
        load()
        return _loaded[name]
    raise AttributeError(name)


def connect(socket: Path) -> tuple[Any, Any, Any]:
    """(channel, RuntimeServiceStub, ImageServiceStub) on a unix socket."""
    load()
    channel = _loaded["grpc"].insecure_channel(f"unix://{socket}")
    pbg = _loaded["pbg"]
    return channel, pbg.RuntimeServiceStub(channel), pbg.ImageServiceStub(channel)


def rpc_code(exc: BaseException) -> str:
    """The gRPC status name of an RpcError ("NOT_FOUND", ...), or "" for other exceptions."""
    code = getattr(exc, "code", None)
    if callable(code):
        value = code()
        return str(getattr(value, "name", value))
    return ""
