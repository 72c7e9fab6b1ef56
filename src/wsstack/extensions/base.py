"""The extension hook of the connection.

An extension works on data messages only (control frames pass untouched, as
RFC 6455 §5.5 leaves them no room for extension data). Outgoing, it sees a
whole message and returns the payload plus the RSV bits of the first frame;
incoming, it sees each frame's payload as it arrives, so a decompressor can
stream and enforce size limits before a whole message is buffered.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from ..handshake import ExtensionParams

__all__ = ["Extension", "ExtensionParams", "ClientExtensionFactory", "ServerExtensionFactory"]


class Extension(ABC):
    """A negotiated extension, bound to one connection.

    Not to be confused with ``handshake.ExtensionHeader``, one extension as
    the Sec-WebSocket-Extensions header lists it (a name and parameters):
    factories read offers and answers in that form and make one of these.
    """

    #: Registered extension token, e.g. ``"permessage-deflate"``.
    name: str
    #: RSV bits (as they sit in a frame's first byte) this extension may set.
    rsv_bits: int

    @abstractmethod
    def encode(self, payload: bytes) -> tuple[int, bytes]:
        """Transform an outgoing data message; return (RSV bits of its first frame, payload)."""

    def shared_encoding(self) -> object | None:
        """A key under which connections may share one encoded copy of a message, or ``None``.

        Connections whose extensions return equal keys turn a message into the
        same bytes, so a broadcast encodes it once for all of them. ``None``
        (the default) means the output depends on this connection's history.
        """
        return None

    @abstractmethod
    def decode(self, message_rsv: int, payload: bytes, fin: bool, max_size: int | None) -> bytes:
        """Transform one incoming data frame of a message whose first frame carried ``message_rsv``.

        ``max_size`` is how many more bytes the message may grow by; an
        extension that expands data must refuse (``MessageTooBig``) before it
        produces more, and raise ``InvalidPayloadData`` for corrupt input.
        """


class ServerExtensionFactory(ABC):
    """Decides, on the server, whether to accept one offer of its extension."""

    name: str

    @abstractmethod
    def accept(self, offer: ExtensionParams) -> tuple[ExtensionParams, Extension] | None:
        """Parameters to answer with and the extension, or ``None`` to decline this offer."""


class ClientExtensionFactory(ABC):
    """Makes the client's offer and checks the server's answer to it."""

    name: str

    @abstractmethod
    def offers(self) -> Sequence[ExtensionParams]:
        """Parameter sets to offer, in order of preference."""

    @abstractmethod
    def accept(self, response: ExtensionParams) -> Extension:
        """The extension the server agreed to; raise ``InvalidHandshake`` if the answer is not acceptable."""
