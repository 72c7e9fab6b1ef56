"""One run of wstest's fuzzing modes against one testee, and its summary.

wstest tests a server as its ``fuzzingclient`` (it connects to the server
and plays every case) and a client as its ``fuzzingserver`` (the client
fetches the case count, connects once per case, then asks for the report).
Either way it leaves ``index.json`` in the report folder: per agent and case
a ``behavior``, a ``behaviorClose`` and a ``duration`` in milliseconds, with
a detail file per case beside it. These functions start wstest from the
environment of autobahn_env.py, bound it in time, and check that every case
it announced has a result, since a run that stops early would otherwise
look clean. The verdicts themselves are left to the caller.

Each function returns None when the run worked, or why it did not.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from autobahn_env import Wstest

# How often a long run reports that it is still going.
PROGRESS_EVERY = 60.0
ANNOUNCED = re.compile(r"^Ok, will run (\d+) test cases", re.MULTILINE)
CASE_STARTED = re.compile(r"^Running test case ID (\S+)", re.MULTILINE)
# Chapter 9 is the suite's limits and performance group, whose summed
# durations the project compares between runs.
TIMED_CHAPTER = "9"


def spec(mode: str, url: str, outdir: Path, cases: str, exclude: str, agent: str) -> dict[str, Any]:
    """wstest's spec file for ``mode``; ``cases`` and ``exclude`` as comma separated patterns or a JSON array.

    failByDrop is off: with it on, wstest fails a case when the testee drops
    the TCP connection at once after a protocol error, which RFC 6455 allows.
    """
    doc: dict[str, Any]
    if mode == "fuzzingclient":
        doc = {"outdir": str(outdir), "servers": [{"url": url, "agent": agent}]}
    else:
        doc = {"url": url, "outdir": str(outdir)}
    doc.update(
        {
            "options": {"failByDrop": False},
            "cases": patterns(cases) or ["*"],
            "exclude-cases": patterns(exclude),
            "exclude-agent-cases": {},
        }
    )
    return doc


def patterns(text: str) -> list[str]:
    text = text.strip()
    if text.startswith("["):
        value = json.loads(text)
        if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
            raise ValueError(f"a case list must be a JSON array of strings: {text!r}")
        return value
    return [p.strip() for p in text.split(",") if p.strip()]


def test_server(
    wstest: Wstest, url: str, *, cases: str, exclude: str, agent: str, outdir: Path, timeout: float, verbose: bool
) -> str | None:
    """wstest as the client of the server at ``url``; it exits by itself after the last case."""
    (outdir / "spec.json").write_text(json.dumps(spec("fuzzingclient", url, outdir, cases, exclude, agent), indent=1))
    started = time.monotonic()
    log_path = outdir / "wstest.log"
    with open(log_path, "wb") as log:
        proc = start_wstest(wstest, ["--mode", "fuzzingclient", "--spec", "spec.json"], outdir, log)
    try:
        finished = watch(proc, log_path, started + timeout, verbose)
    finally:
        stop(proc)
    problem = None
    if not finished:
        problem = f"wstest had not finished after {timeout:.0f} s"
    elif proc.returncode != 0:
        problem = f"wstest exited with status {proc.returncode}; see wstest.log"
    incomplete = write_summary(outdir, log_path, time.monotonic() - started)
    return problem or incomplete


def test_client(
    wstest: Wstest,
    port: int,
    command: list[str],
    env: Mapping[str, str],
    cwd: Path,
    *,
    cases: str,
    exclude: str,
    agent: str,
    outdir: Path,
    timeout: float,
    verbose: bool,
) -> str | None:
    """wstest as the server on 127.0.0.1:``port`` for the client ``command``.

    ``{url}`` and ``{agent}`` in the command are replaced. The report is
    asked for once more after the client exits, so that a client that
    stopped half way still leaves the results it got.
    """
    url = f"ws://127.0.0.1:{port}"
    (outdir / "spec.json").write_text(json.dumps(spec("fuzzingserver", url, outdir, cases, exclude, agent), indent=1))
    log_path = outdir / "wstest.log"
    # --webport 0: no report web server, only the fuzzing server's port.
    with open(log_path, "wb") as log:
        server = start_wstest(wstest, ["--mode", "fuzzingserver", "--spec", "spec.json", "--webport", "0"], outdir, log)
    try:
        try:
            wait_listening(port, server, 60, "wstest")
        except RuntimeError as exc:
            return f"{exc}; see wstest.log"
        problem = None
        argv = [arg.replace("{url}", url).replace("{agent}", agent) for arg in command]
        started = time.monotonic()
        with open(outdir / "client.log", "wb") as client_log:
            client = subprocess.Popen(argv, cwd=cwd, env=dict(env), stdout=client_log, stderr=subprocess.STDOUT)
        try:
            finished = watch(client, log_path, started + timeout, verbose)
        finally:
            stop(client)
        wall = time.monotonic() - started
        if not finished:
            problem = f"the client had not finished after {timeout:.0f} s; see client.log"
        elif client.returncode != 0:
            problem = f"the client exited with status {client.returncode}; see client.log"
        try:
            update_reports(port, agent, 300)
        except (OSError, ValueError) as exc:
            problem = problem or f"wstest did not write its report: {exc}"
    finally:
        stop(server)
    incomplete = write_summary(outdir, log_path, wall)
    return problem or incomplete


def start_wstest(wstest: Wstest, args: list[str], outdir: Path, log: Any) -> subprocess.Popen[bytes]:
    # Python 2 buffers a piped stdout in blocks; unbuffered, the log shows progress as it happens.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(wstest.command(*args), cwd=outdir, env=env, stdout=log, stderr=subprocess.STDOUT)


def watch(proc: subprocess.Popen[bytes], log_path: Path, deadline: float, verbose: bool) -> bool:
    """Wait for ``proc`` until ``deadline``, showing wstest's progress; whether it ended in time."""
    next_report = time.monotonic() + PROGRESS_EVERY
    started = time.monotonic()
    with open(log_path, encoding="utf-8", errors="replace") as log:
        while True:
            try:
                proc.wait(timeout=1)
                finished = True
            except subprocess.TimeoutExpired:
                finished = False
            if verbose:
                show(log)
            now = time.monotonic()
            if finished or now >= deadline:
                return finished
            if now >= next_report:
                next_report += PROGRESS_EVERY
                begun = CASE_STARTED.findall(log_path.read_text(encoding="utf-8", errors="replace"))
                last = f" (last {begun[-1]})" if begun else ""
                print(f"    wstest: {now - started:.0f} s, {len(begun)} cases started{last}", flush=True)


def show(log: TextIO) -> None:
    for line in log.read().splitlines():
        print(f"    | {line}", flush=True)


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    """Return once 127.0.0.1:``port`` accepts connections; RuntimeError if ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (wstest's reactor and our testees shut down gracefully on it), SIGKILL after 15 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def update_reports(port: int, agent: str, timeout: float) -> None:
    """Have the fuzzing server write its report for ``agent``, and wait until it is written.

    The server writes the report when this WebSocket opens and closes the
    connection once it is done, so the close (or the end of the TCP
    stream) is the signal. A dozen lines of RFC 6455 suffice for that, and
    keep the harness independent of the library under test.
    """
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /updateReports?agent={quote(agent)} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request.encode())
        stream = sock.makefile("rb")
        status = stream.readline()
        if b" 101 " not in status:
            raise ValueError(f"/updateReports answered {status.decode(errors='replace').strip()!r}")
        while stream.readline() not in (b"\r\n", b""):
            pass
        while len(head := stream.read(2)) == 2:
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length >= 126:
                length = int.from_bytes(stream.read(2 if length == 126 else 8), "big")
            payload = stream.read(length)
            if opcode == 0x8:
                # Answer the close with the same code, masked as a client must.
                mask = os.urandom(4)
                code = bytes(b ^ mask[i] for i, b in enumerate(payload[:2]))
                sock.sendall(bytes([0x88, 0x80 | len(code)]) + mask + code)
                return


def write_summary(outdir: Path, log_path: Path, wall_seconds: float) -> str | None:
    """summary.json beside wstest's index.json; why the results are incomplete, if they are."""
    index_path = outdir / "index.json"
    if not index_path.exists():
        return "wstest wrote no index.json; see wstest.log"
    index = json.loads(index_path.read_text(encoding="utf-8"))
    summary = {
        "wall_seconds": round(wall_seconds, 1),
        "agents": {agent: summarize(cases) for agent, cases in index.items()},
    }
    (outdir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    announced = ANNOUNCED.search(log_path.read_text(encoding="utf-8", errors="replace"))
    have = max((len(cases) for cases in index.values()), default=0)
    if announced is None:
        return "wstest did not say how many cases it would run; see wstest.log"
    if have != int(announced.group(1)):
        return f"{have} of the {announced.group(1)} cases wstest announced have results"
    return None


def summarize(cases: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Counts per verdict, overall and per chapter, and the summed durations per chapter."""
    chapters: dict[str, Counter[str]] = {}
    durations: Counter[str] = Counter()
    for case, result in cases.items():
        chapter = case.split(".")[0]
        chapters.setdefault(chapter, Counter())[result["behavior"]] += 1
        duration = result.get("duration")
        durations[f"{chapter}.*"] += int(duration) if isinstance(duration, (int, float)) else 0
    durations_ms = {f"{c}.*": durations[f"{c}.*"] for c in sorted(chapters, key=int)}
    durations_ms.setdefault(f"{TIMED_CHAPTER}.*", 0)
    return {
        "cases": len(cases),
        "behavior": dict(Counter(r["behavior"] for r in cases.values())),
        "behaviorClose": dict(Counter(r["behaviorClose"] for r in cases.values())),
        "chapters": {c: dict(chapters[c]) for c in sorted(chapters, key=int)},
        "durations_ms": {"all": sum(durations.values()), **durations_ms},
    }
