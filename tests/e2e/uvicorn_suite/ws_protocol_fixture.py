"""The conftest.py dropped into uvicorn's own test tree (tests/protocols/ and tests/middleware/) at test time.

uvicorn's top-level conftest parametrizes ``ws_protocol_cls`` with its two
implementations; a conftest deeper in the tree overrides that fixture, so
this one runs every test that takes it once more, on wsstack's protocol.
uvicorn's files are not changed.
"""

import pytest
from uvicorn.importer import import_from_string


@pytest.fixture(
    params=[
        pytest.param(
            "uvicorn.protocols.websockets.websockets_sansio_impl:WebSocketsSansIOProtocol", id="websockets-sansio"
        ),
        pytest.param("wsstack.uvicorn:WebSocketProtocol", id="wsstack"),
    ]
)
def ws_protocol_cls(request: pytest.FixtureRequest) -> object:
    return import_from_string(request.param)
