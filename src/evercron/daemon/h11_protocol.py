"""uvicorn's HTTP/1.1 protocol on h11, as the daemon serves it, and the one place that
reads a connection's request state.

The daemon serves through uvicorn's `H11Protocol` explicitly, whatever else is installed
(uvicorn's "auto" picks httptools when it is present): the hot-upgrade drain needs to
know whether a connection is answering a request or has bytes of a next one, and uvicorn
has no public way to tell. It reads that here from h11's own public state
(`Connection.trailing_data`) and from what uvicorn's `H11Protocol` keeps: its h11
connection `conn` and its request cycle `cycle` with `response_complete`.
tests/daemon/test_h11_protocol.py checks that shape, so an upgrade of uvicorn that changes
it fails a test rather than degrading the drain in silence.
"""

from __future__ import annotations

from uvicorn.protocols.http.h11_impl import H11Protocol


def is_answering(protocol: H11Protocol) -> bool:
    """A request was read and its response is not complete yet."""
    cycle = protocol.cycle
    return cycle is not None and not cycle.response_complete


def is_idle(protocol: H11Protocol) -> bool:
    """Between requests: none being answered and no byte of a next one received."""
    return not is_answering(protocol) and not protocol.conn.trailing_data[0]
