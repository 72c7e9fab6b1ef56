"""Build, once, the Python 2.7 environment that the Autobahn|Testsuite runs on.

    python compliance/autobahn_env.py            # build it, or check the one there
    python compliance/autobahn_env.py --force    # build it anew

wstest (the PyPI package autobahntestsuite) still runs on Python 2.7 only,
and Debian 12 no longer packages a Python 2.7. Debian 11 (bullseye) does,
and its packages unpack into any folder, so the environment is made from
the two package registries alone and nothing is installed on the system:
apt-get downloads bullseye's python2.7 packages (with package lists of our
own, so the system's apt state is left as it was), ``dpkg -x`` unpacks them
into a private prefix, the last pip for Python 2 is taken from PyPI with
this Python's pip, and that pip installs the pinned requirements-py27.txt
and autobahntestsuite.

The environment is about 115 MiB and takes up to a minute to build, so it
lives in a cache outside the repository, is shared by every clone on the
machine and is kept between runs: ``$WSSTACK_AUTOBAHN_HOME`` or
``~/.cache/wsstack-autobahn`` (``$XDG_CACHE_HOME`` is honoured). A lock
there serializes concurrent setups (two test runs starting at once). An
environment counts as ready only when its stamp, written last, names the
current recipe and wstest starts from it; anything else (a build cut short,
deleted files, other pins) is wiped and built again.

The environment holds no path of a repository: each clone runs wstest
through its own wstest_launcher.py (see Wstest.command).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import platform
import pwd
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements-py27.txt"
LAUNCHER = HERE / "wstest_launcher.py"

HOME_VARIABLE = "WSSTACK_AUTOBAHN_HOME"
MIRROR_VARIABLE = "WSSTACK_DEBIAN_MIRROR"

AUTOBAHNTESTSUITE = "25.10.1"
# pip 20.3 is the last pip that runs on Python 2.7; setuptools 44 and wheel
# 0.37 the last of theirs.
PY2_BOOTSTRAP = ("pip==20.3.4", "setuptools==44.0.0", "wheel==0.37.1")
DEBIAN_SUITE = "bullseye"
# The interpreter, its standard library and headers (wsaccel, wstest's C
# UTF-8 validator and masking, is compiled), and the two libraries it links
# that Debian 12 has only in newer, incompatible versions (OpenSSL 3, libffi 8).
DEBIAN_PACKAGES = (
    "python2.7",
    "python2.7-minimal",
    "libpython2.7",
    "libpython2.7-minimal",
    "libpython2.7-stdlib",
    "libpython2.7-dev",
    "libssl1.1",
    "libffi7",
)
MULTIARCH = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# Environment variables for pip that we pass on: how to reach the registry.
# The others (extra indexes, constraints, find-links) are the machine's
# settings for its Python 3 and would break a Python 2 install.
PIP_PASSED_ON = ("PIP_INDEX_URL", "PIP_CERT", "PIP_CLIENT_CERT", "PIP_PROXY", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT")
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Bump when the way the environment is built changes, so old ones are rebuilt.
BUILD_FORMAT = 1

# The interpreter must not see the caller's Python 3 settings (the tests run
# with PYTHONPATH=src), and finds its own libraries and home beside itself.
PYTHON_WRAPPER = """#!/bin/sh
# Python 2.7 of the Autobahn|Testsuite environment (made by autobahn_env.py).
env_dir="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONHOME="$env_dir/py27/usr"
export LD_LIBRARY_PATH="$env_dir/py27/usr/lib/{multiarch}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"
export PYTHONNOUSERSITE=1
unset PYTHONPATH PYTHONSTARTUP PYTHONSAFEPATH
exec "$env_dir/py27/usr/bin/python2.7" "$@"
"""


_Say = Callable[[str], None]


class SetupError(Exception):
    """The environment could not be built; the message says which step failed and why."""


@dataclass(frozen=True)
class Wstest:
    """A ready environment: how to start wstest from it."""

    env: Path
    version: str

    @property
    def python(self) -> Path:
        return self.env / "bin" / "python2.7"

    def command(self, *args: str) -> list[str]:
        return [str(self.python), str(LAUNCHER), *args]


def default_home() -> Path:
    if os.environ.get(HOME_VARIABLE):
        return Path(os.environ[HOME_VARIABLE]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "wsstack-autobahn"


def recipe() -> str:
    """A digest of everything that decides what gets built."""
    parts = [
        str(BUILD_FORMAT),
        AUTOBAHNTESTSUITE,
        DEBIAN_SUITE,
        *PY2_BOOTSTRAP,
        *DEBIAN_PACKAGES,
        REQUIREMENTS.read_text(encoding="utf-8"),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def ensure(home: Path | None = None, *, force: bool = False, log: bool = True) -> Wstest:
    """The environment in ``home``, built first if it is missing, stale or broken."""
    home = (home or default_home()).resolve()
    env = home / "env"
    say = _say if log else _quiet
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home / "lock", say):
        if not force:
            ready = check(env)
            if ready is not None:
                return ready
            if env.exists():
                say(f"the environment in {env} is incomplete, stale or broken: building it again")
        started = time.monotonic()
        shutil.rmtree(env, ignore_errors=True)
        _build(env, say)
        ready = check(env)
        if ready is None:
            raise SetupError(f"the environment was built in {env} but wstest does not start from it")
        say(f"built in {time.monotonic() - started:.0f} s: {env} (wstest {ready.version})")
        return ready


def check(env: Path) -> Wstest | None:
    """The environment if its stamp is current and wstest starts from it, else None."""
    try:
        stamp = json.loads((env / "stamp.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict) or stamp.get("recipe") != recipe():
        return None
    candidate = Wstest(env, AUTOBAHNTESTSUITE)
    try:
        proc = subprocess.run(
            candidate.command("--autobahnversion"), capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"AutobahnTestSuite (\S+)", proc.stdout)
    if proc.returncode != 0 or not found or found.group(1) != AUTOBAHNTESTSUITE:
        return None
    return candidate


# ------------------------------------------------------------------ building


def _build(env: Path, say: _Say) -> None:
    multiarch = _multiarch()
    _require_tools()
    logs = env / "logs"
    logs.mkdir(parents=True)
    prefix = env / "py27"

    say(f"downloading Debian {DEBIAN_SUITE}'s Python 2.7 packages")
    debs = _download_debs(env / "apt", logs)
    for deb in debs:
        _run(["dpkg", "-x", str(deb), str(prefix)], logs / "dpkg.log", f"unpacking {deb.name}")
    shutil.rmtree(env / "apt")

    python = env / "bin" / "python2.7"
    python.parent.mkdir()
    python.write_text(PYTHON_WRAPPER.format(multiarch=multiarch), encoding="utf-8")
    python.chmod(0o755)
    _run(
        [str(python), "-c", "import ssl, zlib, hashlib, ctypes, json, bz2"],
        logs / "python.log",
        "starting the unpacked Python 2.7 with the modules wstest needs",
    )

    pip_env = _pip_environment(prefix)
    say("installing pip for Python 2.7, then wstest's pinned requirements (compiles wsaccel)")
    wheels = env / "wheels"
    download = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:"]
    _run(
        [*download, "--dest", str(wheels), PY2_BOOTSTRAP[0]],
        logs / "pip-download.log",
        f"downloading {PY2_BOOTSTRAP[0]} with {Path(sys.executable).name}'s pip",
        pip_env,
    )
    (pip_wheel,) = wheels.glob("pip-*.whl")
    pip_install = ["install", "--no-cache-dir", "--no-warn-script-location", "--progress-bar", "off"]
    # A wheel is a zip archive that Python can run from: pip installs itself.
    bootstrap = [str(python), f"{pip_wheel}/pip", *pip_install, *PY2_BOOTSTRAP]
    _run(bootstrap, logs / "pip.log", "bootstrapping pip", pip_env)
    shutil.rmtree(wheels)
    _run(
        [str(python), "-m", "pip", *pip_install, "--requirement", str(REQUIREMENTS)],
        logs / "requirements.log",
        f"installing {REQUIREMENTS.name}",
        pip_env,
    )
    # The sdist lists no requirements of its own (its requirements file is
    # missing from it), which is why they are pinned in REQUIREMENTS.
    _run(
        [str(python), "-m", "pip", *pip_install, "--no-deps", f"autobahntestsuite=={AUTOBAHNTESTSUITE}"],
        logs / "autobahntestsuite.log",
        f"installing autobahntestsuite {AUTOBAHNTESTSUITE}",
        pip_env,
    )
    _run(
        [str(python), "-c", "import wsaccel.utf8validator, wsaccel.xormask, twisted, OpenSSL"],
        logs / "python.log",
        "importing wsaccel (the C UTF-8 validator and masking that keep wstest fast)",
    )
    stamp = {
        "recipe": recipe(),
        "autobahntestsuite": AUTOBAHNTESTSUITE,
        "debian_suite": DEBIAN_SUITE,
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (env / "stamp.json").write_text(json.dumps(stamp, indent=1) + "\n", encoding="utf-8")


def _multiarch() -> str:
    try:
        arch = subprocess.run(
            ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SetupError(f"dpkg is needed to unpack Debian's packages: {exc}") from None
    if arch not in MULTIARCH:
        raise SetupError(f"no recipe for the Debian architecture {arch!r} (known: {', '.join(MULTIARCH)})")
    return MULTIARCH[arch]


def _require_tools() -> None:
    missing = [tool for tool in ("apt-get", "dpkg", "gcc") if shutil.which(tool) is None]
    if missing:
        raise SetupError(
            f"{', '.join(missing)} not found: the environment is made from Debian's packages and "
            "compiles C extensions (on Debian: apt-get install gcc libc6-dev)"
        )


def _download_debs(apt_dir: Path, logs: Path) -> list[Path]:
    """Bullseye's packages, through apt-get with a sources list and state of our own."""
    mirror = os.environ.get(MIRROR_VARIABLE) or _system_mirror()
    signed_by = f"[signed-by={DEBIAN_KEYRING}] " if DEBIAN_KEYRING.exists() else ""
    for sub in ("lists/partial", "cache/archives/partial", "debs"):
        (apt_dir / sub).mkdir(parents=True)
    sources = apt_dir / "sources.list"
    sources.write_text(f"deb {signed_by}{mirror} {DEBIAN_SUITE} main\n", encoding="utf-8")
    options = [
        f"Dir::Etc::SourceList={sources}",
        "Dir::Etc::SourceParts=/nonexistent",
        f"Dir::State::Lists={apt_dir / 'lists'}",
        f"Dir::State::Status={apt_dir / 'status'}",
        f"Dir::Cache={apt_dir / 'cache'}",
        # Our own lists need no lock on the system's, and no switch to the
        # _apt user, who could not write into this folder.
        "Debug::NoLocking=1",
        f"APT::Sandbox::User={pwd.getpwuid(os.geteuid()).pw_name}",
    ]
    (apt_dir / "status").touch()
    apt = ["apt-get", "-q"] + [arg for option in options for arg in ("-o", option)]
    _run([*apt, "update"], logs / "apt.log", f"apt-get update for {mirror} {DEBIAN_SUITE}")
    # apt-get update only warns, and exits 0, when it could fetch nothing.
    if not any((apt_dir / "lists").glob("*_Packages*")):
        tail = "\n".join(_tail(logs / "apt.log"))
        raise SetupError(f"apt-get update got no package list from {mirror}; the end of {logs / 'apt.log'}:\n{tail}")
    _run([*apt, "download", *DEBIAN_PACKAGES], logs / "apt.log", "apt-get download", cwd=apt_dir / "debs")
    debs = sorted((apt_dir / "debs").glob("*.deb"))
    if len(debs) != len(DEBIAN_PACKAGES):
        raise SetupError(f"apt-get download gave {len(debs)} packages for {len(DEBIAN_PACKAGES)}; see {logs}/apt.log")
    return debs


def _system_mirror() -> str:
    """The Debian archive that this machine's apt already uses (one-line or deb822 sources)."""
    uris: list[str] = []
    etc = Path("/etc/apt")
    for path in [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*"))]:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if path.suffix == ".sources" and line.startswith("URIs:"):
                uris += line.split()[1:]
            elif path.suffix != ".sources" and line.startswith("deb "):
                fields = re.sub(r"\[[^]]*\]", " ", line).split()
                if len(fields) > 1:
                    uris.append(fields[1])
    for uri in uris:
        if re.search(r"/debian/?$", uri):
            return uri.rstrip("/")
    raise SetupError(f"no Debian archive found in /etc/apt; set {MIRROR_VARIABLE} to one")


def _pip_environment(prefix: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in PIP_PASSED_ON}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    if "PIP_CERT" not in env and SYSTEM_CA_BUNDLE.exists():
        env["PIP_CERT"] = str(SYSTEM_CA_BUNDLE)
    # Python.h and pyconfig.h are in the prefix, not where the interpreter's
    # build settings (made for /usr) look for them.
    include = prefix / "usr" / "include"
    env["CFLAGS"] = f"-I{include} -I{include / 'python2.7'} {env.get('CFLAGS', '')}".strip()
    return env


def _run(argv: list[str], log: Path, what: str, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
    """Run one build step, its output appended to ``log``; a failure shows the end of it."""
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        try:
            proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, check=False)
        except OSError as exc:
            raise SetupError(f"{what}: {exc}") from None
    if proc.returncode != 0:
        tail = "\n".join(_tail(log))
        raise SetupError(f"{what} failed (exit status {proc.returncode}); the end of {log}:\n{tail}")


def _tail(log: Path, lines: int = 25) -> list[str]:
    return log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]


# --------------------------------------------------------------- plumbing


def _say(message: str) -> None:
    print(f"autobahn_env: {message}", file=sys.stderr, flush=True)


def _quiet(message: str) -> None:
    pass


@contextmanager
def _locked(path: Path, say: _Say) -> Iterator[None]:
    """Hold an exclusive lock on ``path``; the kernel drops it when the process ends, however it ends."""
    with open(path, "a+", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another setup to finish (lock {path})")
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--home", type=Path, default=None, help=f"cache folder (default: ${HOME_VARIABLE} or ~/.cache/wsstack-autobahn)"
    )
    parser.add_argument("--force", action="store_true", help="build the environment anew even if it is ready")
    args = parser.parse_args(argv)
    if platform.system() != "Linux":
        print("autobahn_env: the environment is built from Debian packages, on Linux only", file=sys.stderr)
        return 2
    try:
        wstest = ensure(args.home, force=args.force)
    except SetupError as exc:
        print(f"autobahn_env: {exc}", file=sys.stderr)
        return 2
    print(f"wstest {wstest.version}: {' '.join(wstest.command())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
