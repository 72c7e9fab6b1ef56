"""Build hook for the optional C speedups; the metadata lives in pyproject.toml.

wsstack is complete without its C module (``wsstack.speedups`` falls back to
pure Python), so a machine without a working C compiler still gets a working
install: a failed C build is reported and skipped.  Where the speedups must
be there (CI, release wheels), ``WSSTACK_REQUIRE_SPEEDUPS=1`` turns that
failure back into an error.

``WSSTACK_STRICT_C=1`` compiles both C modules with ``-Wall -Wextra
-Werror``, so that CI fails on a compiler warning instead of shipping it; a
build that must be warning-free must also be there, so it implies
``WSSTACK_REQUIRE_SPEEDUPS=1``.  It is off by default because a user's
compiler, newer than ours, may warn about things ours does not, and that
must not stop an install.  GCC and Clang only: MSVC's flags differ.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

REQUIRE_ENV = "WSSTACK_REQUIRE_SPEEDUPS"
STRICT_ENV = "WSSTACK_STRICT_C"
STRICT_FLAGS = ["-Wall", "-Wextra", "-Werror"]

# What a missing or broken compiler, or missing Python headers, raise.
_BUILD_ERRORS = (CCompilerError, ExecError, PlatformError, OSError)


def _strict() -> bool:
    """True if the C must compile without a warning (GCC and Clang; MSVC's flags differ)."""
    return os.environ.get(STRICT_ENV) == "1" and sys.platform != "win32"


def _without_speedups(reason: str) -> None:
    """Report that the C module is skipped, or stop if it is required."""
    for env in (REQUIRE_ENV, STRICT_ENV):
        if os.environ.get(env) == "1":
            raise SystemExit(f"wsstack: {env}=1 but the C speedups cannot be built: {reason}")
    sys.stderr.write(
        f"\n*** wsstack: could not build the C speedups ({reason}).\n"
        "*** Installing in pure-Python mode: correct, but slower.\n"
        f"*** Set {REQUIRE_ENV}=1 to make this an error.\n\n"
    )


class OptionalBuildExt(build_ext):
    """build_ext that falls back to a pure-Python install when C fails."""

    def build_extension(self, ext: Extension) -> None:
        # Here rather than in the Extension arguments: the cffi module's
        # Extension is made by cffi, and gets the flags the same way.
        if _strict():
            ext.extra_compile_args = [*ext.extra_compile_args, *STRICT_FLAGS]
        super().build_extension(ext)

    def run(self) -> None:
        try:
            super().run()
        except _BUILD_ERRORS as exc:
            _without_speedups(f"{type(exc).__name__}: {exc}")
            # Later commands (install_lib, editable wheels) must not look for
            # the module that was never built.
            self.extensions = []
            self.distribution.ext_modules = []


# pyproject.toml makes pip install cffi for the build; a build run some other
# way without it would silently drop cffi_modules, so say so.
if importlib.util.find_spec("cffi") is None:
    _without_speedups("cffi is not installed")
    setup()
else:
    setup(
        cffi_modules=["src/wsstack/_speedups_build.py:ffibuilder"],
        # Masking and scanning run per frame, where cffi's call overhead
        # outweighs the work; csrc/fastcall.c says why they are plain C-API.
        ext_modules=[
            Extension(
                "wsstack._fastcall",
                sources=["csrc/fastcall.c", "csrc/mask.c", "csrc/scan.c"],
                include_dirs=["csrc"],
                depends=["csrc/wsstack.h"],
                extra_compile_args=[] if sys.platform == "win32" else ["-O3"],
            )
        ],
        cmdclass={"build_ext": OptionalBuildExt},
    )
