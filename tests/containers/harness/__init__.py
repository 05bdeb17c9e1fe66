"""Test harness: a private containerd with the CRI plugin, local images and kubelet-shaped pods.

Used through the `containerd` fixture of tests/containers/conftest.py; importable for other suites.
"""

from tests.containers.harness.containerd import (
    Containerd,
    ExecResult,
    HarnessError,
    Mount,
    Pod,
    missing_prerequisites,
)
from tests.containers.harness.images import BUSYBOX_IMAGE, PAUSE_IMAGE, busybox_rootfs

__all__ = [
    "BUSYBOX_IMAGE",
    "PAUSE_IMAGE",
    "Containerd",
    "ExecResult",
    "HarnessError",
    "Mount",
    "Pod",
    "busybox_rootfs",
    "missing_prerequisites",
]
