"""The sockets of one API process in the cluster profile.

Guarantee: several API processes accept on the one API port (``SO_REUSEPORT``: the
kernel spreads new connections over the live processes, so a dead one receives none),
and each also listens alone on a port of its own (``api_member_port_base + i``) where
its health and its own ``/metrics`` are read.
"""

from __future__ import annotations

import socket

from core.settings import ApiSettings

_BACKLOG = 2048


def _listen(host: str, port: int, *, shared: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(_BACKLOG)
    sock.set_inheritable(True)
    return sock


def member_sockets(s: ApiSettings, member: int) -> tuple[socket.socket, socket.socket]:
    """(the shared API port, this member's own port), both listening."""
    shared = _listen(s.api_host, s.api_port, shared=True)
    own = _listen(s.api_host, s.api_member_port_base + member, shared=False)
    return shared, own
