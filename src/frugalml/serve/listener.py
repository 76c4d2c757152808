"""Letting go of a listening socket without resetting a connection the kernel has completed.

Closing a listening socket resets every connection still in its accept queue: the client has
connected and sent its request, and gets ECONNRESET with no answer. So a server that stops first
makes the kernel drop new connection attempts (their SYNs; the client retries one a second later
and is refused once the socket is closed), then lets its accept loop take what is queued, and only
then closes the socket. The drop is a socket filter on the listening socket itself, so it holds
in every process that shares the socket (Linux; elsewhere the queue is only waited for).
"""

from __future__ import annotations

import asyncio
import ctypes
import select
import socket
import sys
import time
from collections.abc import Sequence

SO_ATTACH_FILTER = 26  # Linux, <asm-generic/socket.h>
BPF_RET_K = 0x06  # classic BPF: return the constant k (bytes to keep; 0 drops the packet)
DRAIN_QUEUE_S = 1.0  # longest wait for the accept loop to take the queued connections


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def stop_new_connections(listener) -> bool:
    """Make the kernel drop every new connection attempt on `listener` (a socket, or uvloop's or
    asyncio's stand-in for one) while the queued connections stay. False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    drop_all = (_SockFilter * 1)(_SockFilter(BPF_RET_K, 0, 0, 0))
    program = _SockFprog(1, drop_all)
    try:
        listener.setsockopt(
            socket.SOL_SOCKET,
            SO_ATTACH_FILTER,
            ctypes.string_at(ctypes.addressof(program), ctypes.sizeof(program)),
        )
    except OSError:
        return False
    return True


def connections_queued(listeners: Sequence) -> bool:
    """Whether a completed connection waits to be accepted on any of `listeners`."""
    live = [sock for sock in listeners if sock.fileno() >= 0]
    return bool(live) and bool(select.select(live, [], [], 0)[0])


def wait_for_accept_queue(listeners: Sequence, timeout_s: float = DRAIN_QUEUE_S) -> None:
    """Wait (blocking) until other processes sharing `listeners` have accepted what is queued."""
    deadline = time.monotonic() + timeout_s
    while connections_queued(listeners) and time.monotonic() < deadline:
        time.sleep(0.01)


async def drain_accept_queue(listeners: Sequence, timeout_s: float = DRAIN_QUEUE_S) -> None:
    """Stop new connections on `listeners`, then let this event loop accept what is queued."""
    for listener in listeners:
        stop_new_connections(listener)
    deadline = time.monotonic() + timeout_s
    while connections_queued(listeners) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
