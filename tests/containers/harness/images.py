"""Local container images without a registry: rootfs folders packed into single-layer OCI archives.

The archives are deterministic (sorted entries, uid/gid 0, mtime 0, gzip without a time stamp), so
the same inputs give the same digests, and `ctr images import` takes them as they are (the index
annotations name the image). The two base images are cached under build/containers/images, keyed
by a hash of their inputs and of this file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PAUSE_C = ROOT / "scripts" / "containers" / "pause.c"
CACHE = ROOT / "build" / "containers" / "images"
BUSYBOX_BIN = Path("/bin/busybox")  # Debian's busybox-static

BUSYBOX_IMAGE = "localhost/busybox:local"
PAUSE_IMAGE = "localhost/pause:local"
DEFAULT_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)

_OCI_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


@dataclass(frozen=True)
class OciArchive:
    """An image archive on disk and what it holds."""

    path: Path
    name: str  # full reference, e.g. localhost/busybox:local
    config_digest: str  # what the CRI reports as image_ref / image id
    manifest_digest: str


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer_tar(rootfs: Path) -> bytes:
    """The rootfs as an uncompressed tar, sorted, owned by root, mtime 0."""
    paths: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(rootfs):
        dirnames.sort()
        paths.extend(Path(dirpath, n) for n in dirnames + filenames)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path in sorted(paths, key=lambda p: p.relative_to(rootfs).as_posix()):
            info = tf.gettarinfo(str(path), arcname=path.relative_to(rootfs).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            info.pax_headers = {}
            if info.isreg():
                with path.open("rb") as f:
                    tf.addfile(info, f)
            else:
                tf.addfile(info)
    return buf.getvalue()


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tf.addfile(info, io.BytesIO(data))


def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def build_oci_archive(
    rootfs: Path,
    name: str,
    out: Path,
    *,
    entrypoint: Sequence[str] | None = None,
    cmd: Sequence[str] | None = None,
    env: Sequence[str] = DEFAULT_ENV,
    workdir: str = "/",
    labels: Mapping[str, str] | None = None,
) -> OciArchive:
    """Pack rootfs into a one-layer OCI image archive at out (written atomically)."""
    layer_tar = _layer_tar(rootfs)
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=1) as g:  # level 9: 7 times slower
        g.write(layer_tar)
    layer = gz.getvalue()
    arch = _OCI_ARCH.get(platform.machine(), platform.machine())
    image_config: dict[str, object] = {"Env": list(env), "WorkingDir": workdir, "Labels": dict(labels or {})}
    if entrypoint is not None:
        image_config["Entrypoint"] = list(entrypoint)
    if cmd is not None:
        image_config["Cmd"] = list(cmd)
    config = _json({
        "created": "1970-01-01T00:00:00Z",
        "architecture": arch,
        "os": "linux",
        "config": image_config,
        "rootfs": {"type": "layers", "diff_ids": [_sha256(layer_tar)]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "lanner tests/containers/harness"}],
    })
    manifest = _json({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _sha256(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": _sha256(layer),
                    "size": len(layer)}],
    })
    last = name.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else "latest"
    index = _json({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": _sha256(manifest),
            "size": len(manifest),
            "platform": {"architecture": arch, "os": "linux"},
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag},
        }],
    })
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name + ".")
    try:
        with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tf:
            _add(tf, "oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
            _add(tf, "index.json", index)
            for blob in (layer, config, manifest):
                _add(tf, "blobs/sha256/" + hashlib.sha256(blob).hexdigest(), blob)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return OciArchive(out, name, _sha256(config), _sha256(manifest))


def busybox_rootfs(dest: Path) -> Path:
    """A busybox rootfs in dest: /bin/busybox, one symlink per applet, minimal /etc/passwd and /etc/group.

    Tests that need more (a binary that busybox lacks) start from this and add files, then pass the
    folder to Containerd.build_image.
    """
    for d in ("bin", "etc", "dev", "proc", "sys", "root", "run", "tmp", "var/tmp", "usr/local/bin"):
        (dest / d).mkdir(parents=True, exist_ok=True)
        (dest / d).chmod(0o755)
    for d in ("tmp", "var/tmp"):
        (dest / d).chmod(0o1777)
    shutil.copyfile(BUSYBOX_BIN, dest / "bin" / "busybox")
    (dest / "bin" / "busybox").chmod(0o755)
    applets = subprocess.run([str(BUSYBOX_BIN), "--list"], check=True, capture_output=True, text=True).stdout.split()
    for applet in applets:
        if applet != "busybox" and "/" not in applet:
            (dest / "bin" / applet).symlink_to("busybox")
    (dest / "usr" / "bin").symlink_to("../bin")
    (dest / "usr" / "sbin").symlink_to("../bin")
    (dest / "sbin").symlink_to("bin")
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    (dest / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    for f in ("passwd", "group"):
        (dest / "etc" / f).chmod(0o644)
    return dest


def pause_rootfs(dest: Path) -> Path:
    """A rootfs holding only /pause, built statically from scripts/containers/pause.c."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["gcc", "-static", "-Os", "-s", "-o", str(dest / "pause"), str(PAUSE_C)], check=True,
                   capture_output=True)
    (dest / "pause").chmod(0o755)
    return dest


def _cache_key(*inputs: bytes) -> str:
    h = hashlib.sha256(Path(__file__).read_bytes())
    for data in inputs:
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()[:16]


def _cached_or_build(
    cache: Path, stem: str, name: str, source: bytes, make_rootfs: Callable[[Path], Path], *,
    entrypoint: Sequence[str] | None = None, cmd: Sequence[str] | None = None,
) -> OciArchive:
    key = _cache_key(source)
    archive = cache / f"{stem}-{key}.tar"
    meta = cache / f"{stem}-{key}.json"
    if archive.is_file() and meta.is_file():
        saved = json.loads(meta.read_text())
        return OciArchive(archive, name, saved["config_digest"], saved["manifest_digest"])
    with tempfile.TemporaryDirectory(prefix=f"lanner-{stem}-rootfs-") as tmp:
        rootfs = make_rootfs(Path(tmp) / "rootfs")
        built = build_oci_archive(rootfs, name, archive, entrypoint=entrypoint, cmd=cmd)
    meta_tmp = cache / f".{stem}-{key}.json.{os.getpid()}"
    meta_tmp.write_text(json.dumps({"config_digest": built.config_digest, "manifest_digest": built.manifest_digest}))
    os.replace(meta_tmp, meta)
    for old in cache.iterdir():  # earlier builds from other inputs
        if re.fullmatch(rf"{stem}-[0-9a-f]{{16}}\.(tar|json)", old.name) and old not in (archive, meta):
            old.unlink(missing_ok=True)
    return built


def base_images(cache: Path = CACHE) -> tuple[OciArchive, OciArchive]:
    """The busybox and pause archives, built unless an identical build is cached."""
    busybox = _cached_or_build(cache, "busybox", BUSYBOX_IMAGE, BUSYBOX_BIN.read_bytes(), busybox_rootfs,
                               cmd=["/bin/sh"])
    pause = _cached_or_build(cache, "pause", PAUSE_IMAGE, PAUSE_C.read_bytes(), pause_rootfs, entrypoint=["/pause"])
    return busybox, pause
