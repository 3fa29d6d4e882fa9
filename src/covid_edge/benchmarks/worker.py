"""One measurement in a fresh process: `python -m covid_edge.benchmarks.worker` reads a job as
JSON on stdin and prints its result on a line starting with RESULT_MARKER.

A process per configuration makes load time a cold start and peak memory that configuration's
own; the marker keeps the result apart from what native runtime code prints.
"""

from __future__ import annotations

import json
import sys

RESULT_MARKER = "COVID_EDGE_BENCH_RESULT "


def main() -> int:
    request = json.loads(sys.stdin.read())
    from .latency import Job, MeasurementError, measure, probe_edgetpu

    try:
        if request.get("action") == "probe-edgetpu":
            result = probe_edgetpu(request["runtime"])
        else:
            result = measure(Job(**request["job"]))
    except MeasurementError as exc:
        result = {"status": "skipped" if exc.skipped else "error", "reason": str(exc)}
    sys.stdout.write(RESULT_MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
