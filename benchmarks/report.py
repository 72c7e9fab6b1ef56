"""Run the benchmarks once and print, per group, each library's speed as a ratio.

    python benchmarks/report.py [pytest args...]

The ratio is the peer's median time over wsstack's (above 1: wsstack is
faster), so every number comes from one run on one machine.
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
        name = bench["name"].split("[", 1)[-1].rstrip("]")
        library = bench["params"].get("library", name) if bench.get("params") else name
        groups[bench["group"]][library] = bench["stats"]["median"]
    print(f"\n{'group':<44} {'library':<22} {'median':>12} {'peer/wsstack':>13}")
    for group in sorted(groups):
        times = groups[group]
        base = next((t for lib, t in times.items() if lib.startswith("wsstack")), None)
        for library, median in sorted(times.items(), key=lambda item: item[1]):
            ratio = f"{median / base:.2f}x" if base else "-"
            print(f"{group:<44} {library:<22} {median * 1e6:>10.1f}us {ratio:>13}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
