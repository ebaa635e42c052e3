"""Shared test setup: an isolated REFVIDEO_HOME per test, one torch thread, no network."""

from __future__ import annotations

import os
import socket

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_LOOPBACK = ("127.0.0.1", "::1", "localhost", "0.0.0.0", "")
_real_connect = socket.socket.connect
_real_create_connection = socket.create_connection
_real_getaddrinfo = socket.getaddrinfo


class NetworkBlocked(RuntimeError):
    """A test tried to reach the network; tests must run offline."""


def _host_of(address) -> str:
    if isinstance(address, tuple) and address:
        return str(address[0])
    return str(address)


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and _host_of(address) not in _LOOPBACK:
        raise NetworkBlocked(f"test tried to connect to {address!r}; tests must not use the network")
    return _real_connect(self, address)


def _guarded_create_connection(address, *args, **kwargs):
    if _host_of(address) not in _LOOPBACK:
        raise NetworkBlocked(f"test tried to connect to {address!r}; tests must not use the network")
    return _real_create_connection(address, *args, **kwargs)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if host is not None and str(host) not in _LOOPBACK:
        raise NetworkBlocked(f"test tried to resolve {host!r}; tests must not use the network")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect
socket.create_connection = _guarded_create_connection
socket.getaddrinfo = _guarded_getaddrinfo


@pytest.fixture(autouse=True)
def refvideo_home(tmp_path, monkeypatch):
    """Every test gets its own REFVIDEO_HOME and standalone locations."""
    from refvideo.engine import host

    home = tmp_path / "refvideo_home"
    home.mkdir()
    monkeypatch.setenv("REFVIDEO_HOME", str(home))
    monkeypatch.delenv("REFVIDEO_MODELS", raising=False)
    saved = host.settings()
    host.configure()
    host.clear_interrupt()
    host.set_progress_bars(False)
    yield home
    from refvideo.engine.credits.ledger import close_shared_ledgers

    close_shared_ledgers()
    host.configure(**{k: v for k, v in saved.items()})
    host.clear_interrupt()


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One thread: faster and steadier than two for tiny models on a 2-core machine."""
    try:
        import torch
    except ImportError:
        yield
        return
    torch.set_num_threads(1)
    yield


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds on a CPU (real compile, offload hooks)")
