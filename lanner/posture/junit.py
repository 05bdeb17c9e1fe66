"""JUnit XML output: one test case per scanned object, failing when it has a finding at or above
the --fail-on threshold; unreadable inputs are test cases in error."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from lanner.posture.model import SEVERITY_RANK
from lanner.posture.pss import version_str
from lanner.posture.scan import ScanResult


def to_junit(result: ScanResult, fail_rank: int) -> str:
    suite_name = f"lanner scan ({result.options.level} {version_str(result.options.version)})"
    suites = ET.Element("testsuites", name="lanner")
    suite = ET.SubElement(suites, "testsuite", name=suite_name)
    tests = failures = errors = 0
    by_obj: dict[tuple[str, int, str], list[int]] = {}
    for i, f in enumerate(result.findings):
        by_obj.setdefault((f.file, f.doc_index, str(f.obj)), []).append(i)
    for o in result.objects:
        tests += 1
        case = ET.SubElement(suite, "testcase", classname=o.file, name=str(o.obj), file=o.file,
                             line=str(o.line))
        found = [result.findings[i] for i in by_obj.get((o.file, o.doc_index, str(o.obj)), [])]
        failing = [f for f in found if fail_rank and SEVERITY_RANK[f.severity] >= fail_rank]
        text = "\n".join(f"{f.file}:{f.line} [{f.severity}] {f.check} {f.container or '-'}: {f.message} "
                         f"(fix: {f.fix})" for f in found)
        if failing:
            failures += 1
            checks = sorted({f.check for f in failing})
            fail = ET.SubElement(case, "failure", message=f"{len(failing)} finding(s): {', '.join(checks)}",
                                 type="posture")
            fail.text = text
        elif found:
            ET.SubElement(case, "system-out").text = text
    for e in result.errors:
        tests += 1
        errors += 1
        case = ET.SubElement(suite, "testcase", classname=e.file, name=f"read {e.file}", file=e.file)
        ET.SubElement(case, "error", message=e.message, type="input").text = str(e)
    for el in (suite, suites):
        el.set("tests", str(tests))
        el.set("failures", str(failures))
        el.set("errors", str(errors))
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
