"""fxplat.ports.free_port: the benchmarks' servers never get the same port, even when the kernel offers it twice
(grpc binds with SO_REUSEPORT, so two servers on one port would both start and split the calls)."""
from __future__ import annotations

import socket

import pytest

from fxplat import ports


def test_ports_handed_out_are_distinct_and_free():
    handed = [ports.free_port() for _ in range(50)]
    assert len(set(handed)) == 50
    for port in handed[:5]:  # free when handed out: a server can bind it
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def _kernel_offering(monkeypatch, offers, handed_out: set[int]) -> None:
    """The probe socket of free_port answers `offers` in turn: a kernel's repeat offer cannot be forced for real."""
    offers = iter(offers)

    class Probe:
        def __init__(self, *args):
            self.port = next(offers)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def bind(self, address):
            pass

        def getsockname(self):
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(ports, "_handed_out", handed_out)
    monkeypatch.setattr(ports.socket, "socket", Probe)


def test_a_port_the_kernel_offers_again_is_skipped(monkeypatch):
    _kernel_offering(monkeypatch, [41001, 41001, 41001, 41002], set())
    assert ports.free_port() == 41001
    assert ports.free_port() == 41002  # the two repeats of 41001 were passed over


def test_it_gives_up_rather_than_loop_forever(monkeypatch):
    _kernel_offering(monkeypatch, [41003] * 1000, {41003})
    with pytest.raises(RuntimeError, match="no free loopback port"):
        ports.free_port()
