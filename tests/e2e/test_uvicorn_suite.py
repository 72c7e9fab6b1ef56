"""uvicorn's own WebSocket tests, unmodified, against ``wsstack.uvicorn.WebSocketProtocol``.

The tests come from uvicorn's sdist of the installed (pinned) version,
downloaded once into a cache directory; a conftest of ours
(uvicorn_suite/ws_protocol_fixture.py) adds our class to the parameters of
their ``ws_protocol_cls`` fixture beside ``websockets-sansio``. Every test
that passes for uvicorn's implementation must pass for ours.

Deselected, for our class only: the two tests that assert
``isinstance(protocol, <uvicorn's own classes>)`` before anything else,
which no third-party class can pass. docs/asgi.md names them too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import uvicorn

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "uvicorn_suite" / "ws_protocol_fixture.py"
CACHE = Path(os.environ.get("WSSTACK_UVICORN_SUITE_HOME", Path.home() / ".cache" / "wsstack-uvicorn-suite"))
#: Test files of uvicorn's that take the ``ws_protocol_cls`` fixture.
FILES = [
    "tests/protocols/test_websocket.py",
    "tests/protocols/test_http.py",
    "tests/middleware/test_proxy_headers.py",
    "tests/middleware/test_logging.py",
]
HTTP_PROTOCOLS = ("httptools", "h11", "zttp")
#: They check ``isinstance(protocol, (WSProtocol, WebSocketsSansIOProtocol))`` first.
ISINSTANCE_TESTS = ("test_server_keepalive_ping_pong", "test_server_keepalive_disabled")


def suite_tree() -> Path:
    """uvicorn's sdist of the installed version, extracted once (tests/ and pyproject.toml)."""
    version = uvicorn.__version__
    root = CACHE / f"uvicorn-{version}"
    if (root / "pyproject.toml").exists():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
        download = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
        subprocess.run([*download, "--dest", scratch, f"uvicorn=={version}"], check=True)
        (sdist,) = Path(scratch).glob("uvicorn-*.tar.gz")
        with tarfile.open(sdist) as archive:
            archive.extractall(scratch, filter="data")
        shutil.move(str(Path(scratch) / f"uvicorn-{version}"), root)
    return root


def deselected() -> list[str]:
    return [f"{FILES[0]}::{name}[wsstack-{http}]" for name in ISINSTANCE_TESTS for http in HTTP_PROTOCOLS]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each test's outcome (passed, failed, skipped), by its name with parameters."""
    root = suite_tree()
    for folder in ("tests/protocols", "tests/middleware"):
        shutil.copyfile(FIXTURE, root / folder / "conftest.py")
    report = tmp_path_factory.mktemp("uvicorn-suite") / "report.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:benchmark"]
    command += ["-o", "addopts=", "-n", "2", f"--junitxml={report}", *FILES]
    for node in deselected():
        command += ["--deselect", node]
    # uvicorn's test tree imports itself as the package "tests"; ours must not shadow it.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    run = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert report.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    results: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped":
                outcome = "skipped"
        results[case.get("name", "")] = outcome
    if "failed" in results.values():
        print(run.stdout[-20000:])
    return results


def test_every_test_that_passes_for_websockets_sansio_passes_for_wsstack(outcomes: dict[str, str]) -> None:
    sansio = {name: outcome for name, outcome in outcomes.items() if "websockets-sansio" in name}
    assert len(sansio) > 150  # the suite ran whole, not a handful of it
    missing = []
    for name, outcome in sansio.items():
        ours = outcomes.get(name.replace("websockets-sansio", "wsstack"))
        if outcome == "passed" and ours != "passed":
            deselected_here = any(name.startswith(test + "[") for test in ISINSTANCE_TESTS)
            if not deselected_here:
                missing.append((name, ours))
    assert missing == []


def test_no_test_fails_for_wsstack(outcomes: dict[str, str]) -> None:
    ours = {name: outcome for name, outcome in outcomes.items() if "wsstack" in name}
    assert len(ours) > 150
    assert [name for name, outcome in ours.items() if outcome == "failed"] == []
    # Only the tests that skip for a reason of their own (an HTTP protocol's) may skip.
    skipped = sorted(name for name, outcome in ours.items() if outcome == "skipped")
    assert all("httptools" in name for name in skipped), skipped
