"""Why a server of the command line (an emulator, the Dagster UI) cannot listen on its port, said with the
option that changes it: a busy port is the user's to fix, not an "unexpected error"."""

from __future__ import annotations

import errno
import socket


class PortError(RuntimeError):
    """A server cannot listen where the options say; the message names the option to change."""


def listen_problem(error: OSError, host: str, port: int, option: str, zero_is_any: bool = True) -> str:
    """`host:port` and why it cannot be listened on, ending with what to change (`zero_is_any`: port 0
    is a valid choice, the server then prints the port it got)."""
    if error.errno == errno.EADDRINUSE:
        return (
            f"{host}:{port}: the port is already in use (by another program, or another close2d365 "
            f"command): choose another with {option} PORT" + (" (0 picks a free one)" if zero_is_any else "")
        )
    if error.errno == errno.EACCES:
        return (
            f"{host}:{port}: no permission to listen on that port: choose one above 1023 with {option} PORT"
        )
    return f"{host}:{port}: {error.strerror or error}: check the address and {option}"


def port_problem(host: str, port: int, option: str, zero_is_any: bool = True) -> str | None:
    """The problem listening on `host:port` has right now (None: it is free), for a server that binds later
    in another process. The same socket options as the servers, so a port in TIME_WAIT counts as free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return listen_problem(exc, host, port, option, zero_is_any)
    return None
