"""Where the generated CRI gRPC stubs live, and loading them.

``make setup`` (scripts/setup.sh) generates the package ``lanner_cri`` (``api_pb2``,
``api_pb2_grpc``) from the CRI ``api.proto`` into ``<checkout>/build/cri``; ``$LANNER_CRI_STUBS``
names another folder holding ``lanner_cri``. The generated code is not imported before a client
needs it, so ``import lanner.cri`` works on a machine without stubs.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Final

ENV_VAR: Final = "LANNER_CRI_STUBS"
PACKAGE: Final = "lanner_cri"


class CriSetupError(RuntimeError):
    """The CRI client cannot work on this machine: grpcio or the generated stubs are missing."""


def stubs_dir() -> Path:
    """The folder that holds the ``lanner_cri`` package."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "build" / "cri"


def add_to_path() -> Path:
    """Put the stubs folder first on ``sys.path`` (once); returns it."""
    d = stubs_dir()
    text = str(d)
    if text not in sys.path:
        sys.path.insert(0, text)
    return d


def load_stubs() -> tuple[ModuleType, ModuleType]:
    """``(api_pb2, api_pb2_grpc)``; raises CriSetupError naming ``make setup`` when they are missing
    or do not import (e.g. generated for other grpcio/protobuf versions)."""
    d = add_to_path()
    if not (d / PACKAGE / "api_pb2_grpc.py").is_file():
        raise CriSetupError(
            f"the CRI gRPC stubs are missing: {d / PACKAGE}/api_pb2_grpc.py not found; run `make setup` "
            f"(it generates them from the CRI api.proto), or set ${ENV_VAR} to the folder holding {PACKAGE}/")
    try:
        pb = importlib.import_module(f"{PACKAGE}.api_pb2")
        pbg = importlib.import_module(f"{PACKAGE}.api_pb2_grpc")
    except Exception as e:  # ImportError, or the generated code's version checks (RuntimeError, VersionError)
        raise CriSetupError(
            f"the CRI gRPC stubs in {d / PACKAGE} do not import ({type(e).__name__}: {e}); run `make setup` "
            "to install grpcio/protobuf and regenerate them") from e
    return pb, pbg
