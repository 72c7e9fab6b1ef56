"""The Autobahn|Testsuite's uvicorn testee: wsstack.uvicorn with the suite's limits.

    python -m uvicorn asgi_echo:app --app-dir compliance --ws asgi_protocol:EchoProtocol

compliance/run.py starts it like this (testee ``uvicorn-server``), serving the
bare echo app of asgi_echo.py. uvicorn's flags cover the message size but
not the fragment count, and the suite sends 16 MiB messages, some in 65536
frames; the default limits would fail those cases on purpose.
``EchoProtocol`` lifts both the way ``python -m wsstack echo`` does and keeps
everything else as uvicorn's settings have it (compression on by default,
uvicorn's keepalive).
"""

from __future__ import annotations

import dataclasses
import functools

from uvicorn.config import Config

from wsstack.cli.echo import MAX_MESSAGE_SIZE
from wsstack.options import Options
from wsstack.uvicorn import WebSocketProtocol


@functools.lru_cache(maxsize=4)
def lifted(base: Options) -> Options:
    """``base`` with the suite's limits; cached, so that every connection shares one object."""
    return dataclasses.replace(base, max_message_size=MAX_MESSAGE_SIZE, max_fragments=None)


class EchoProtocol(WebSocketProtocol):
    """``--ws asgi_protocol:EchoProtocol``: wsstack.uvicorn with the limits lifted."""

    @classmethod
    def options(cls, config: Config) -> Options:
        return lifted(super().options(config))
