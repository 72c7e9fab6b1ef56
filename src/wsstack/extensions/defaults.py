"""Which extensions a connection offers or accepts when the caller names none: what ``Options`` asks for."""

from __future__ import annotations

from ..options import Options
from .base import ClientExtensionFactory, ServerExtensionFactory


def server_extension_factories(options: Options) -> list[ServerExtensionFactory]:
    return []


def client_extension_factories(options: Options) -> list[ClientExtensionFactory]:
    return []
