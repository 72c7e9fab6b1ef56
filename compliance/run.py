"""Run the Autobahn|Testsuite against wsstack and write docs/conformance.md.

    python compliance/run.py                    # 5 testees x 2 speedup modes, all 517 cases
    python compliance/run.py --quick            # chapters 1-10 only (a minute a testee)
    python compliance/run.py --testees asyncio-server --modes python --cases '6.*,7.*'

The suite itself (wstest) runs on Python 2.7, in an environment that
autobahn_env.py builds from the package registries the first time (up to a
minute) and keeps in a cache outside the repository (--autobahn, or
$WSSTACK_AUTOBAHN_HOME, default ~/.cache/wsstack-autobahn); fuzzing.py runs
wstest and leaves wstest's report and a summary.json in each report
directory. This script starts our echo server (``python -m wsstack echo``,
or uvicorn serving compliance/asgi_echo.py on wsstack.uvicorn) on a free
port in the requested speedup mode, or hands wstest's URL to a client testee, goes
through the testees one at a time (wstest and our side share two cores;
parallel runs would distort the timings and starve each other), and turns
the results into one table.

Testees that do not exist yet (the threaded transport is newer than this
script) are reported as "not available" instead of failing the whole run.

The document keeps its data in a JSON block at its end, so a partial rerun
(one testee, one mode) replaces only its own rows. By default the document is
written only for runs of the whole suite, whose counts mean "out of 517".

Exit status: 0 when every run finished with nothing FAILED, NON-STRICT or
UNIMPLEMENTED and every closing handshake OK (the ungraded cases' close
verdict is INFORMATIONAL by design); 1 otherwise; 2 when the suite is
missing or cannot be set up.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import autobahn_env
import fuzzing

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_REPORTS = HERE / "reports"
DOC = REPO / "docs" / "conformance.md"

TOTAL_CASES = 517
QUICK_EXCLUDE = "12.*,13.*"
BEHAVIORS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
# Any of these makes the run (and the script's exit status) a failure.
BAD_BEHAVIORS = {"NON-STRICT", "UNIMPLEMENTED", "FAILED"}
# wstest gives the ungraded cases (7.1.6, 7.13.*) an INFORMATIONAL close
# verdict whatever happens, so only other verdicts count as a bad close.
CLOSE_FINE = {"OK", "INFORMATIONAL"}
MODES = ("c", "python")  # wsstack.speedups.IMPLEMENTATION's values
DATA_BEGIN, DATA_END = "<!-- conformance-data", "-->"

# What the suite's INFORMATIONAL cases do, and which behaviour is sensible:
# the suite leaves them ungraded because RFC 6455 does not pin them down.
INFORMATIONAL_NOTES = {
    "7.1.6": "a 256 KiB text message, a short one, a close and a ping, back to back. RFC 6455 section "
    "5.5.1 lets an endpoint answer a close at once (then it sends no more data, so the echoes are "
    "dropped) or after finishing what it is sending; either is sensible if the close is answered "
    "with 1000 and the connection ends cleanly",
    "7.13.1": "a close with code 5000, outside every range RFC 6455 section 7.4 defines. The suite "
    "accepts 1000, 5000 or 1002; the sensible answer to an invalid code is 1002",
    "7.13.2": "a close with code 65535, likewise outside the defined ranges; 1002 is the sensible answer",
}


@dataclass(frozen=True)
class Testee:
    name: str
    kind: str  # "server": wstest connects to it; "client": it connects to wstest

    def command(self, port: int) -> list[str]:
        """The testee's command line; client testees get wstest's URL through {url}."""
        if self.name == "asyncio-server":
            return [sys.executable, "-m", "wsstack", "echo", "--port", str(port), "--compression"]
        if self.name == "sync-server":
            return [sys.executable, "-m", "wsstack", "echo", "--sync", "--port", str(port), "--compression"]
        if self.name == "uvicorn-server":
            # h11, not httptools: it is a dependency of uvicorn itself, so this runs wherever uvicorn
            # does, and it only parses the upgrade request before wsstack takes over. The stdlib
            # loop, not uvloop, for the same reason and to differ from asyncio-server only by the
            # adapter. Both are spelled out because uvicorn's "auto" picks whatever is installed.
            # compliance/asgi_protocol.py lifts the limits; compression is uvicorn's default (on).
            return [
                sys.executable,
                "-m",
                "uvicorn",
                "asgi_echo:app",
                "--app-dir",
                str(HERE),
                "--ws",
                "asgi_protocol:EchoProtocol",
                "--http",
                "h11",
                "--loop",
                "asyncio",
                "--lifespan",
                "off",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ]
        script = HERE / f"{self.name.split('-')[0]}_client.py"
        return [sys.executable, str(script), "--url", "{url}", "--agent", "{agent}"]


TESTEES = {
    t.name: t
    for t in (
        Testee("asyncio-server", "server"),
        Testee("asyncio-client", "client"),
        Testee("sync-server", "server"),
        Testee("sync-client", "client"),
        Testee("uvicorn-server", "server"),
    )
}


# ------------------------------------------------------------------ helpers


def mode_env(mode: str) -> dict[str, str]:
    """The environment for a speedup mode: WSSTACK_NO_SPEEDUPS=1 forces pure Python."""
    env = {k: v for k, v in os.environ.items() if k != "WSSTACK_NO_SPEEDUPS"}
    if mode == "python":
        env["WSSTACK_NO_SPEEDUPS"] = "1"
    return env


def python_says(code: str, env: dict[str, str]) -> tuple[bool, str]:
    """Run a snippet in a fresh interpreter: our own process must not import wsstack,
    since the speedup mode is fixed at first import."""
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=False)
    output = (proc.stdout if proc.returncode == 0 else proc.stderr).strip()
    return proc.returncode == 0, output.splitlines()[-1] if output else ""


def unavailable_reason(testee: Testee, mode: str) -> str | None:
    """Why this testee cannot run in this mode now, or None when it can."""
    env = mode_env(mode)
    ok, impl = python_says("import wsstack.speedups as s; print(s.IMPLEMENTATION)", env)
    if not ok:
        return f"wsstack does not import: {impl}"
    if impl != mode:
        return f"speedups are {impl!r} in this mode (is the C extension built?)"
    if testee.name == "sync-server":
        usage = subprocess.run(
            [sys.executable, "-m", "wsstack", "echo", "--help"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        if "--sync" not in usage:
            return "`python -m wsstack echo` has no --sync option yet"
    if testee.name == "sync-client":
        ok, out = python_says("from wsstack.sync import connect", env)
        return None if ok else f"wsstack.sync.connect is not importable: {out}"
    if testee.name == "uvicorn-server":
        ok, out = python_says("import wsstack.uvicorn", env)
        return None if ok else f"wsstack.uvicorn is not importable (is uvicorn installed?): {out}"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def src_revision() -> str:
    """The last commit that changed src/, and whether src/ differs from it now.

    Taken when each run starts: the tree is shared and commits land while
    the suite runs, and only the library's code decides the results.
    """

    def git(*argv: str) -> str:
        proc = subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    try:
        commit, dirty = git("log", "-1", "--format=%h", "--", "src"), git("status", "--porcelain", "--", "src")
    except OSError:
        return "unknown"
    return (commit or "unknown") + (" + uncommitted changes" if dirty else "")


# ---------------------------------------------------------------- one run


def run_one(testee: Testee, mode: str, args: argparse.Namespace, outdir: Path) -> dict[str, Any]:
    """Run the suite against one testee in one mode; the row for the table."""
    agent = f"wsstack-{testee.name}-{mode}"
    env = mode_env(mode)
    outdir.mkdir(parents=True, exist_ok=True)
    for stale in ("index.json", "summary.json"):
        (outdir / stale).unlink(missing_ok=True)
    port = free_port()
    row: dict[str, Any] = {"testee": testee.name, "mode": mode, "agent": agent}
    started = time.monotonic()
    server = None
    try:
        if testee.kind == "server":
            with open(outdir / "server.log", "wb") as log:
                server = subprocess.Popen(testee.command(port), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
            fuzzing.wait_listening(port, server, 20, "the server")
            url = f"ws://127.0.0.1:{port}"
            problem = fuzzing.test_server(
                args.wstest,
                url,
                cases=args.cases,
                exclude=args.exclude,
                agent=agent,
                outdir=outdir,
                timeout=args.timeout,
                verbose=args.verbose,
            )
        else:
            problem = fuzzing.test_client(
                args.wstest,
                port,
                testee.command(port),
                env,
                REPO,
                cases=args.cases,
                exclude=args.exclude,
                agent=agent,
                outdir=outdir,
                timeout=args.timeout,
                verbose=args.verbose,
            )
        if server is not None and server.poll() is not None:
            row["error"] = f"the server died during the run (exit status {server.returncode}); see server.log"
        elif problem:
            row["error"] = f"the run did not complete: {problem}"
    except RuntimeError as exc:
        row["error"] = str(exc)
    finally:
        if server is not None:
            fuzzing.stop(server)
    row["wall_seconds"] = round(time.monotonic() - started, 1)
    if (outdir / "summary.json").exists() and (outdir / "index.json").exists():
        row.update(read_results(outdir, agent))
    elif "error" not in row:
        row["error"] = "no summary.json was written"
    return row


def read_results(outdir: Path, agent: str) -> dict[str, Any]:
    """Counts from summary.json; the per-case lists from wstest's index.json."""
    summary = json.loads((outdir / "summary.json").read_text())["agents"]
    index = json.loads((outdir / "index.json").read_text())
    name = agent if agent in summary else next(iter(summary))
    s, cases = summary[name], index[name]
    informational = {}
    for case in sort_cases(cases):
        if cases[case]["behavior"] == "INFORMATIONAL":
            detail = json.loads((outdir / cases[case]["reportfile"]).read_text())
            informational[case] = f"{detail.get('result', '').strip()} Close code {cases[case].get('remoteCloseCode')}."
    return {
        "cases": s["cases"],
        "behavior": {b: s["behavior"].get(b, 0) for b in BEHAVIORS},
        "not_ok": {c: cases[c]["behavior"] for c in sort_cases(cases) if cases[c]["behavior"] != "OK"},
        "close_not_ok": {
            c: cases[c]["behaviorClose"] for c in sort_cases(cases) if cases[c]["behaviorClose"] not in CLOSE_FINE
        },
        "informational": informational,
        "perf_9_ms": s["durations_ms"]["9.*"],
        "report": str(outdir),
    }


def sort_cases(cases: dict[str, Any]) -> list[str]:
    return sorted(cases, key=lambda c: [int(p) if p.isdigit() else 0 for p in c.split(".")])


def row_is_clean(row: dict[str, Any]) -> bool:
    if "error" in row or "cases" not in row:
        return False
    return not any(row["behavior"][b] for b in BAD_BEHAVIORS) and not row["close_not_ok"]


# ------------------------------------------------------------ the document


def load_doc_rows() -> dict[tuple[str, str], dict[str, Any]]:
    if not DOC.exists():
        return {}
    text = DOC.read_text(encoding="utf-8")
    start = text.find(DATA_BEGIN)
    if start < 0:
        return {}
    body = text[start + len(DATA_BEGIN) : text.find(DATA_END, start)]
    return {(r["testee"], r["mode"]): r for r in json.loads(body)["rows"]}


def render_doc(rows: dict[tuple[str, str], dict[str, Any]]) -> str:
    ordered = [
        rows.get((t, m)) or {"testee": t, "mode": m, "unavailable": "not run yet"} for t in TESTEES for m in MODES
    ]
    out = [
        "# Conformance: the Autobahn|Testsuite",
        "",
        "[Autobahn|Testsuite](https://github.com/crossbario/autobahn-testsuite) is the usual conformance",
        "check for WebSocket implementations: 517 cases over framing, pings, reserved bits, opcodes,",
        "fragmentation, UTF-8 (fail-fast included), closing, limits and permessage-deflate. Each case gets a",
        "`behavior` (OK, NON-STRICT, INFORMATIONAL, UNIMPLEMENTED or FAILED) and a `behaviorClose` for",
        "the closing handshake. wsstack's goal is every case OK, strictly, on both sides and in both speedup",
        "modes; INFORMATIONAL is the suite's word for cases where RFC 6455 allows several behaviours, and",
        "is accepted when the behaviour is sensible (notes below).",
        "",
        "This file is written by `python compliance/run.py`; run it again to refresh it. asyncio-server and",
        "sync-server are `python -m wsstack echo` (compression on, limits lifted to the suite's 16 MiB",
        "messages); uvicorn-server is uvicorn (h11, the asyncio loop) with `--ws` set to wsstack.uvicorn's",
        "protocol, limits lifted the same way and compression on, serving the bare ASGI echo app in",
        '`compliance/asgi_echo.py`; the clients are the testees in `compliance/`. "c" is the default build',
        'with the C speedups, "python" is `WSSTACK_NO_SPEEDUPS=1`.',
        "",
        "## Results",
        "",
        headline(ordered),
        "",
        (
            "| testee | speedups | cases | OK | NON-STRICT | INFORMATIONAL | UNIMPLEMENTED | FAILED "
            "| close not OK | 9.* summed ms | wall | date |"
        ),
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in ordered:
        head = f"| {r['testee']} | {r['mode']} |"
        if "cases" not in r:
            why = r.get("unavailable") or f"error: {r.get('error')}"
            out.append(f"{head} {why} |" + " |" * 10)
            continue
        b = r["behavior"]
        cases = f"{r['cases']}" if r["cases"] == TOTAL_CASES else f"{r['cases']} of {TOTAL_CASES}"
        out.append(
            f"{head} {cases} | {b['OK']} | {b['NON-STRICT']} | {b['INFORMATIONAL']} | {b['UNIMPLEMENTED']} "
            f"| {b['FAILED']} | {len(r['close_not_ok'])} | {r['perf_9_ms']} | {r['wall_seconds']:.0f} s "
            f"| {r['date']} |"
        )
    out += [
        "",
        '"9.* summed ms" adds up wstest\'s per-case durations of the limits/performance cases (messages of',
        "up to 16 MiB, up to 65536 fragments, 1000 round trips); wstest's own Python 2 work is part of it,",
        'so it compares runs on one machine only. "wall" is the whole run including the compression',
        "chapters, which are mostly wstest's time.",
        "",
        "## Cases not OK",
        "",
    ]
    # One line per distinct finding, naming every run that had it: the same
    # bug usually shows in both modes and often on both transports.
    findings: dict[str, list[str]] = {}
    for r in ordered:
        if "cases" in r:
            for finding in row_findings(r):
                findings.setdefault(finding, []).append(f"{r['testee']} {r['mode']}")
    out += [f"- {', '.join(where)}: {finding}" for finding, where in findings.items()]
    if not findings:
        out.append("None, apart from the INFORMATIONAL cases below.")
    outcomes: dict[str, dict[str, list[str]]] = {}
    for r in ordered:
        for case, outcome in r.get("informational", {}).items():
            outcomes.setdefault(case, {}).setdefault(outcome, []).append(f"{r['testee']} {r['mode']}")
    if outcomes:
        out += [
            "",
            "The INFORMATIONAL cases, and what wstest recorded wsstack doing (wstest's close verdict",
            "for these is INFORMATIONAL too, whatever happens):",
            "",
        ]
        for case in sort_cases(outcomes):
            out.append(f"- {case}: {INFORMATIONAL_NOTES.get(case, 'see the case report')}.")
            for outcome, where in outcomes[case].items():
                who = "every run" if len(where) == sum("cases" in r for r in ordered) else ", ".join(where)
                out.append(f"  {who}: {outcome}")
    out += [
        "",
        "## How these were produced",
        "",
        "| testee | speedups | date (UTC) | cases run | wstest | Python | src/ at commit | command |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in ordered:
        if "cases" in r:
            out.append(
                f"| {r['testee']} | {r['mode']} | {r['date']} | {r['selection']} | {r['wstest']} "
                f"| {r['python']} | {r['revision']} | `{r['command']}` |"
            )
    keep = (
        "testee",
        "mode",
        "date",
        "selection",
        "wstest",
        "python",
        "revision",
        "command",
        "cases",
        "error",
        "behavior",
        "not_ok",
        "close_not_ok",
        "informational",
        "perf_9_ms",
        "wall_seconds",
    )
    data = {"rows": [{k: r[k] for k in keep if k in r} for r in ordered if "cases" in r]}
    out += ["", DATA_BEGIN, json.dumps(data, indent=1), DATA_END, ""]
    return "\n".join(out)


def headline(rows: list[dict[str, Any]]) -> str:
    """One sentence for the reader in a hurry."""
    done = [r for r in rows if "cases" in r and r["cases"] == TOTAL_CASES]
    clean = [r for r in done if row_is_clean(r)]
    text = (
        f"{len(clean)} of the {len(rows)} runs on the full suite have nothing FAILED, NON-STRICT or "
        "UNIMPLEMENTED and every graded closing handshake OK"
    )
    counts = {(r["behavior"]["OK"], r["behavior"]["INFORMATIONAL"]) for r in clean}
    if len(counts) == 1:
        ok, informational = counts.pop()
        text += f": {ok} OK and {informational} INFORMATIONAL out of {TOTAL_CASES}" + (
            " in each." if len(clean) > 1 else "."
        )
    return text + ("" if text.endswith(".") else ".")


def row_findings(row: dict[str, Any]) -> list[str]:
    """A run's problems as text: cases grouped by verdict, ranges collapsed."""
    verdicts: dict[str, list[str]] = {}
    for case in sort_cases({**row["not_ok"], **row["close_not_ok"]}):
        behavior = row["not_ok"].get(case, "OK")
        if behavior == "INFORMATIONAL" and case not in row["close_not_ok"]:
            continue
        close = row["close_not_ok"].get(case, "OK")
        verdicts.setdefault(f"{behavior}, close {close}", []).append(case)
    found = [f"{collapse(cases)} {verdict}" for verdict, cases in verdicts.items()]
    return found + ([f"run error: {row['error']}"] if "error" in row else [])


def collapse(cases: list[str]) -> str:
    """'13.4.1, 13.4.2, ..., 13.4.18, 13.6.1' -> '13.4.1-18, 13.6.1'."""
    runs: list[list[str]] = []
    for case in cases:
        head, _, tail = case.rpartition(".")
        last = runs[-1] if runs else None
        if last and last[0] == head and tail.isdigit() and last[2].isdigit() and int(tail) == int(last[2]) + 1:
            last[2] = tail
        else:
            runs.append([head, tail, tail])
    return ", ".join(f"{h}.{a}" + (f"-{b}" if b != a else "") for h, a, b in runs)


# ------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--testees", default=",".join(TESTEES), help=f"comma separated, from {', '.join(TESTEES)} (default: all)"
    )
    parser.add_argument("--modes", default=",".join(MODES), help="comma separated, from c, python (default: both)")
    parser.add_argument("--cases", default="*", help="case patterns, e.g. '1.*,6.4.*' (default: all)")
    parser.add_argument("--exclude", default="", help="case patterns to leave out")
    parser.add_argument("--quick", action="store_true", help=f"chapters 1-10 only (excludes {QUICK_EXCLUDE})")
    parser.add_argument(
        "--write-doc",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="update docs/conformance.md (default: only when the whole suite runs)",
    )
    parser.add_argument(
        "--reports",
        type=Path,
        default=None,
        help="report directory (default: compliance/reports/, git-ignored; 'tmp' for a temp dir)",
    )
    parser.add_argument(
        "--autobahn",
        type=Path,
        default=None,
        metavar="DIR",
        help="where wstest's Python 2.7 environment is built and kept "
        f"(default: ${autobahn_env.HOME_VARIABLE}, else ~/.cache/wsstack-autobahn)",
    )
    parser.add_argument("--timeout", type=int, default=3600, help="limit per run in seconds (default 3600)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show wstest's whole output as it runs")
    args = parser.parse_args(argv)
    args.testees = [t.strip() for t in args.testees.split(",") if t.strip()]
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [t for t in args.testees if t not in TESTEES] + [m for m in args.modes if m not in MODES]
    if unknown:
        parser.error(f"unknown testee or mode: {', '.join(unknown)}")
    if args.quick:
        args.exclude = ",".join(p for p in (args.exclude, QUICK_EXCLUDE) if p)
    args.full = args.cases.strip() == "*" and not args.exclude
    if args.write_doc is None:
        args.write_doc = args.full
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        args.wstest = autobahn_env.ensure(args.autobahn)
    except autobahn_env.SetupError as exc:
        print(f"run.py: wstest's environment could not be set up: {exc}", file=sys.stderr)
        return 2
    tmp = None
    if args.reports is None:
        reports = DEFAULT_REPORTS
    elif str(args.reports) == "tmp":
        tmp = tempfile.TemporaryDirectory(prefix="wsstack-autobahn-")
        reports = Path(tmp.name)
    else:
        reports = args.reports.resolve()

    common = {
        "selection": "all" if args.full else args.cases + (f", excluding {args.exclude}" if args.exclude else ""),
        "wstest": args.wstest.version,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "command": shlex.join(["python", "compliance/run.py", *(sys.argv[1:] if argv is None else argv)]),
    }
    rows: list[dict[str, Any]] = []
    for name in args.testees:
        for mode in args.modes:
            testee = TESTEES[name]
            reason = unavailable_reason(testee, mode)
            if reason:
                print(f"== {name} [{mode}]: not available: {reason}", flush=True)
                rows.append({"testee": name, "mode": mode, "unavailable": f"not available: {reason}"})
                continue
            print(f"== {name} [{mode}]: cases {common['selection']}", flush=True)
            date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
            revision = src_revision()
            row = run_one(testee, mode, args, reports / f"{name}-{mode}")
            row.update(common, date=date, revision=revision)
            rows.append(row)
            print(f"== {name} [{mode}]: {describe(row)}", flush=True)

    print("\nsummary:")
    for row in rows:
        print(f"  {row['testee']:15} {row['mode']:7} {describe(row)}")
    if args.write_doc:
        merged = load_doc_rows()
        merged.update({(r["testee"], r["mode"]): r for r in rows if "cases" in r})
        DOC.write_text(render_doc(merged), encoding="utf-8")
        print(f"wrote {os.path.relpath(DOC)}")
    if tmp is None:
        print(f"reports in {os.path.relpath(reports)}")
    else:
        tmp.cleanup()
    ran = [r for r in rows if "unavailable" not in r]
    return 0 if ran and all(row_is_clean(r) for r in ran) else 1


def describe(row: dict[str, Any]) -> str:
    if "unavailable" in row:
        return str(row["unavailable"])
    if "cases" not in row:
        return f"ERROR: {row['error']}"
    b = row["behavior"]
    text = (
        f"{b['OK']}/{row['cases']} OK, {b['NON-STRICT']} NON-STRICT, {b['INFORMATIONAL']} INFORMATIONAL, "
        f"{b['UNIMPLEMENTED']} UNIMPLEMENTED, {b['FAILED']} FAILED, {len(row['close_not_ok'])} close not OK, "
        f"9.* {row['perf_9_ms']} ms, {row['wall_seconds']:.0f} s"
    )
    bad = {c: v for c, v in row["not_ok"].items() if v != "INFORMATIONAL"}
    if bad or row["close_not_ok"]:
        text += f"\n      not OK: {bad}  close: {row['close_not_ok']}"
    if "error" in row:
        text += f"\n      ERROR: {row['error']}"
    return text


if __name__ == "__main__":
    sys.exit(main())
