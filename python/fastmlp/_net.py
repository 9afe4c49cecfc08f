"""HTTP(S) downloads with a deadline for the whole transfer.

urllib's ``timeout`` bounds each socket operation, not a transfer: a server that sends
one byte now and then holds a download for ever, in the headers as in the body. A
:class:`Deadline` shuts down the sockets of the connections opened through
:func:`opener` when its time is up, which wakes any read blocked on them; the read then
ends early or fails, and ``Deadline.expired`` says why.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import urllib.request

__all__ = ["Deadline", "opener"]


class Deadline:
    """A time limit, in seconds from ``__enter__``, for the connections it watches."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.expired = False
        self._sockets = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True  # never keeps the interpreter alive

    def __enter__(self):
        self._timer.start()
        return self

    def __exit__(self, *exc_info):
        self._timer.cancel()

    def watch(self, sock):
        """Shut ``sock`` down when the time is up (at once if it already is)."""
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def _expire(self):
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock):
    with contextlib.suppress(OSError):  # already closed: nothing to wake
        sock.shutdown(socket.SHUT_RDWR)


class _Watched:
    """Mixin for urllib's HTTP and HTTPS handlers: each connection they open, redirects
    included, is watched by ``self.deadline`` from the moment it is connected."""

    deadline: Deadline

    def do_open(self, http_class, req, **kwargs):
        deadline = self.deadline

        class Connection(http_class):
            def connect(self):
                super().connect()
                deadline.watch(self.sock)

        return super().do_open(Connection, req, **kwargs)


class _HTTPHandler(_Watched, urllib.request.HTTPHandler):
    pass


_HANDLERS: list[type[urllib.request.BaseHandler]] = [_HTTPHandler]
if hasattr(urllib.request, "HTTPSHandler"):  # Python built without ssl: http only

    class _HTTPSHandler(_Watched, urllib.request.HTTPSHandler):
        pass

    _HANDLERS.append(_HTTPSHandler)


def opener(deadline):
    """A urllib opener (proxies from the environment as usual) whose connections
    ``deadline`` cuts off."""
    handlers = [cls() for cls in _HANDLERS]
    for handler in handlers:
        handler.deadline = deadline
    return urllib.request.build_opener(*handlers)
