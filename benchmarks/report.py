"""Run the benchmarks once and print, per group, each library's speed as a ratio.

    python benchmarks/report.py [pytest args...]

The ratio is each entry's median time over wsstack's (above 1: wsstack is
faster), so every number comes from one run on one machine. Where a group
has several wsstack variants (C copy, C in place, pure Python), the base is
the first C one in name order.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        cmd = [sys.executable, "-m", "pytest", str(HERE), "-q", "--benchmark-only", f"--benchmark-json={out}", *argv]
        result = subprocess.run(cmd, check=False)
        if result.returncode != 0 or not out.exists():
            return result.returncode or 1
        data = json.loads(out.read_text())
    groups: dict[str, dict[str, float]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        # Parametrized by library, or one test function per variant (test_wsstack_c_copy, ...).
        params = bench.get("params") or {}
        library = params.get("library") or bench["name"].split("[", 1)[0].removeprefix("test_")
        groups[bench["group"]][library] = bench["stats"]["median"]
    print(f"\n{'group':<44} {'library':<30} {'median':>12} {'x wsstack':>10}")
    for group in sorted(groups):
        times = groups[group]
        base = times.get("wsstack") or next(
            (t for lib, t in sorted(times.items()) if lib.startswith("wsstack_c")), None
        )
        for library, median in sorted(times.items(), key=lambda item: item[1]):
            ratio = f"{median / base:.2f}x" if base else "-"
            print(f"{group:<44} {library:<30} {median * 1e6:>10.2f}us {ratio:>10}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
