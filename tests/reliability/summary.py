"""Run the reliability suite and print what it tried: faults survived, bad inputs rejected
clearly, rows lost, secrets leaked, hostile text that got through. The last line is one JSON object.

    python -m tests.reliability.summary
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest


class Collector:
    def __init__(self):
        self.tried: Counter = Counter()
        self.passed: Counter = Counter()
        self.failed: list[str] = []

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if report.when != "call" and not (report.when == "setup" and report.failed):
            return
        kinds = [m.kwargs.get("kind") for m in item.iter_markers("reliability")] or ["other"]
        for kind in kinds:
            self.tried[kind] += 1
            if report.passed:
                self.passed[kind] += 1
            else:
                self.failed.append(f"{item.nodeid} ({kind})")


def main() -> int:
    here = Path(__file__).resolve().parent
    collector = Collector()
    code = pytest.main([str(here), "-q", "-p", "no:cacheprovider"], plugins=[collector])
    rows = [("faults tried", collector.tried["fault"]), ("faults survived", collector.passed["fault"]),
            ("bad inputs tried", collector.tried["bad_input"]), ("bad inputs rejected clearly", collector.passed["bad_input"]),
            ("data-loss checks", collector.tried["rows_lost"]), ("rows lost (failed checks)", collector.tried["rows_lost"] - collector.passed["rows_lost"]),
            ("secret checks", collector.tried["secret"]), ("secrets leaked (failed checks)", collector.tried["secret"] - collector.passed["secret"]),
            ("injection checks", collector.tried["injection"]),
            ("injections through (failed checks)", collector.tried["injection"] - collector.passed["injection"])]
    width = max(len(r[0]) for r in rows)
    print("\nreliability summary")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    for f in collector.failed:
        print(f"  FAILED {f}")
    print(json.dumps({
        "faults_tried": collector.tried["fault"], "faults_survived": collector.passed["fault"],
        "bad_inputs_tried": collector.tried["bad_input"], "bad_inputs_rejected": collector.passed["bad_input"],
        "rows_lost_checks_failed": collector.tried["rows_lost"] - collector.passed["rows_lost"],
        "secrets_leaked_checks_failed": collector.tried["secret"] - collector.passed["secret"],
        "injection_checks": collector.tried["injection"],
        "injection_checks_failed": collector.tried["injection"] - collector.passed["injection"],
        "tests_failed": len(collector.failed), "pytest_exit": int(code),
    }))
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
