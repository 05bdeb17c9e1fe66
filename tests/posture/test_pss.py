"""The PSS corpus: every control of both levels, failing and passing, pod vs container
precedence and version differences. Each manifest says what it expects in ``# expect`` lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lanner.posture.loader import load_paths
from lanner.posture.pss import CONTROLS, controls_for, parse_version
from lanner.posture.scan import ScanOptions, ScanResult, scan_documents

CORPUS = Path(__file__).parent / "manifests" / "pss"
EXPECT = re.compile(r"^# expect (baseline|restricted)@(v1\.\d+|latest): (.+)$")


def cases() -> list[tuple[str, str, str, frozenset[str]]]:
    out = []
    for f in sorted(CORPUS.glob("*.yaml")):
        for line in f.read_text().splitlines():
            m = EXPECT.match(line)
            if m:
                want = frozenset() if m.group(3).strip() == "-" else frozenset(m.group(3).split(","))
                out.append((f.name, m.group(1), m.group(2), want))
    return out


def scan(path: Path, level: str, version: str) -> ScanResult:
    loaded = load_paths([str(path)])
    assert not loaded.errors
    result = ScanResult()
    scan_documents(loaded.documents, ScanOptions(level=level, version=parse_version(version)),  # type: ignore[arg-type]
                   result)
    return result


@pytest.mark.parametrize(("name", "level", "version", "want"), cases(),
                         ids=[f"{c[0]}-{c[1]}@{c[2]}" for c in cases()])
def test_corpus(name: str, level: str, version: str, want: frozenset[str]) -> None:
    result = scan(CORPUS / name, level, version)
    got = frozenset(f.pss_control for f in result.findings if f.severity == "error" and f.pss_control)
    assert got == want, [(f.pss_control, f.message) for f in result.findings if f.severity == "error"]
    for f in result.findings:
        if f.severity == "error":
            assert f.check == f"pss.{f.pss_control}"
            assert f.line > 0 and f.file.endswith(name)


def test_corpus_covers_every_control_failing_and_passing() -> None:
    failing: set[str] = set()
    passing_levels: set[str] = set()
    for _name, level, _version, want in cases():
        failing |= want
        if not want:
            passing_levels.add(level)
    assert failing == {c.id for c in CONTROLS}
    assert passing_levels == {"baseline", "restricted"}
    assert len(list(CORPUS.glob("*-pass.yaml"))) >= 10


def test_overrides_replace_baseline_controls() -> None:
    ids = {c.id for c, _ in controls_for("restricted", parse_version("latest"))}
    assert "hostPathVolumes" not in ids and "restrictedVolumes" in ids
    assert "seccompProfile_baseline" not in ids and "capabilities_baseline" not in ids
    assert "procMount" not in ids and "procMount_restricted" in ids
    old = {c.id for c, _ in controls_for("restricted", parse_version("v1.18"))}
    assert "seccompProfile_baseline" in old and "seccompProfile_restricted" not in old
    assert "capabilities_baseline" in old and "runAsUser" not in old and "procMount" in old
    base = {c.id for c, _ in controls_for("baseline", parse_version("latest"))}
    assert base == {c.id for c in CONTROLS if c.level == "baseline"}


@pytest.mark.parametrize(("text", "want"), [("latest", (1, 37)), ("v1.25", (1, 25)), ("1.30", (1, 30)),
                                            ("v1.99", (1, 37)), ("v1.0", (1, 0))])
def test_parse_version(text: str, want: tuple[int, int]) -> None:
    assert parse_version(text) == want


@pytest.mark.parametrize("text", ["v2.1", "1", "newest", "v1.x", ""])
def test_parse_version_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"v1\.NN"):
        parse_version(text)


def test_precedence_findings_point_at_the_right_level() -> None:
    r = scan(CORPUS / "runAsNonRoot-container-overrides.yaml", "restricted", "latest")
    (f,) = [f for f in r.findings if f.pss_control == "runAsNonRoot"]
    assert f.container == "app" and f.path[-3:] == (0, "securityContext", "runAsNonRoot")
    r = scan(CORPUS / "runAsNonRoot-pod-false.yaml", "restricted", "latest")
    (f,) = [f for f in r.findings if f.pss_control == "runAsNonRoot"]
    assert f.container is None and f.path == ("spec", "securityContext", "runAsNonRoot")


def test_baseline_level_reports_restricted_controls_as_warnings() -> None:
    r = scan(CORPUS / "allowPrivilegeEscalation-missing.yaml", "baseline", "latest")
    assert not [f for f in r.findings if f.severity == "error"]
    warned = [f for f in r.findings if f.pss_control == "allowPrivilegeEscalation"]
    assert warned and warned[0].severity == "warning"
