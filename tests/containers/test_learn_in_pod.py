"""`lanner learn` against the harness's containerd: what a pod runs while it listens is learned by its
container-relative path, scoped by image repository (or namespace AND pod labels); programs of the host
and of other pods are not; the file passes `lanner rules validate`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.agent_support import require_agent_machine
from tests.conftest import ROOT
from tests.containers.harness import Containerd, Pod, busybox_rootfs
from tests.learn_support import Learn

IMAGE = "localhost/lanner-learn:local"
REPOSITORY = "localhost/lanner-learn"
# Copies of busybox (not symlinks), named after applets so they run: each is a program of its own.
TOOLS = ("/opt/tools/true", "/opt/tools/echo", "/usr/local/bin/hostname")


@pytest.fixture(scope="module")
def learn_image(containerd: Containerd, tmp_path_factory: pytest.TempPathFactory) -> str:
    require_agent_machine()
    rootfs = busybox_rootfs(tmp_path_factory.mktemp("learn") / "rootfs")
    for tool in TOOLS:
        dest = rootfs / tool.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(rootfs / "bin" / "busybox", dest)
        dest.chmod(0o755)
    return containerd.build_image(rootfs, IMAGE, cmd=["sleep", "3600"])


def _name(what: str) -> str:
    return f"{what}-{uuid.uuid4().hex[:6]}"


def _run(pod: Pod, *cmd: str) -> None:
    rc, out, err = pod.exec_sync(list(cmd))
    assert rc == 0, (cmd, rc, out, err)


def _items(path: Path) -> list[str]:
    items: list[str] = yaml.safe_load(path.read_text())[0]["items"]
    return items


def _validate(path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "lanner", "rules", "validate", "-r", str(path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_learn_by_image(containerd: Containerd, learn_image: str, learn_runs: list[Learn], tmp_path: Path) -> None:
    pod = containerd.run_pod(_name("learn-web"), namespace="learn", labels={"app": "web"}, image=learn_image)
    other = containerd.run_pod(_name("learn-other"), namespace="learn", labels={"app": "web"})  # stock busybox
    out = tmp_path / "web-allow.yaml"
    learn = Learn("--image", REPOSITORY, "--duration", "8", "--cri-socket", str(containerd.socket), "-o", str(out))
    learn_runs.append(learn)
    learn.wait_ready()
    t0 = time.monotonic()
    _run(pod, "/opt/tools/true")
    _run(pod, "/opt/tools/echo", "learning")
    _run(pod, "/usr/local/bin/hostname")
    _run(pod, "/opt/tools/true")
    _run(other, "/bin/cat", "/etc/passwd")  # another image: /bin/busybox must not be learned
    subprocess.run(["/usr/bin/true"], check=True)  # the host
    subprocess.run(["/usr/bin/env", "true"], check=True)
    assert time.monotonic() - t0 < 6, "the execs took longer than the learning window"
    rc, stdout, stderr = learn.finish(timeout=60)
    assert rc == 0, stderr
    assert stdout == ""  # the rules go to -o
    # exactly the programs run in the pod, by their path inside the container (its entrypoint ran before)
    assert _items(out) == sorted(TOOLS), stderr
    assert "5 execs" not in stderr and "4 execs of 3 programs by image localhost/lanner-learn" in stderr
    assert "        2  /opt/tools/true\n" in stderr
    text = out.read_text()
    assert f'container.image.repository = "{REPOSITORY}"' in text
    assert "- list: lanner_allowed_localhost_lanner_learn\n" in text
    _validate(out)


def test_learn_by_namespace_and_labels(containerd: Containerd, learn_image: str, learn_runs: list[Learn],
                                       tmp_path: Path) -> None:
    ns = "learn-shop"
    web = containerd.run_pod(_name("learn-web"), namespace=ns, labels={"app": "web", "tier": "front end"},
                             image=learn_image)
    api = containerd.run_pod(_name("learn-api"), namespace=ns, labels={"app": "web", "tier": "back"},
                             image=learn_image)
    elsewhere = containerd.run_pod(_name("learn-web"), namespace="learn-other",
                                   labels={"app": "web", "tier": "front end"}, image=learn_image)
    out = tmp_path / "shop-allow.yaml"
    learn = Learn("--namespace", ns, "--selector", "app=web,tier=front end", "--duration", "6",
                  "--cri-socket", str(containerd.socket), "-o", str(out))
    learn_runs.append(learn)
    learn.wait_ready()
    _run(web, "/opt/tools/echo", "hi")
    _run(api, "/opt/tools/true")  # same namespace, another tier
    _run(elsewhere, "/usr/local/bin/hostname")  # same labels, another namespace
    rc, _, stderr = learn.finish(timeout=60)
    assert rc == 0, stderr
    assert _items(out) == ["/opt/tools/echo"], stderr
    text = out.read_text()
    assert ('k8s.ns.name = "learn-shop" and k8s.pod.label[app] = "web" and k8s.pod.label[tier] = "front end"'
            in text)
    _validate(out)
