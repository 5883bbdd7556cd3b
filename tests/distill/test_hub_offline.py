"""An unreachable Hugging Face hub is detected at once (sinkd.distill.models.hub_reachable).

huggingface_hub retries an unreachable hub for about 52 s before its error; the law here is
that a hub id as teacher fails with the one clear error within a few seconds, and that the
reachability check answers by a real TCP connection: a listening local socket is reachable, a
closed port is not, and a black-holed address is declared unreachable within its timeout.
"""

from __future__ import annotations

import socket
import time

import pytest

from sinkd.distill import models


@pytest.fixture(autouse=True)
def fresh_answers(monkeypatch):
    """Each test asks afresh, online detection on (HF_HUB_OFFLINE unset)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    models.forget_hub_answers()
    yield
    models.forget_hub_answers()


def test_hub_id_fails_within_seconds_when_the_hub_is_unreachable(monkeypatch):
    """A hub id whose hub cannot be reached (this machine's real network, or a closed local
    port when this machine is online) gives the clear RuntimeError in under 5 s (52 s before)."""
    if models.hub_reachable():  # online here: make the hub a closed local port instead
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        monkeypatch.delenv("HTTPS_PROXY", raising=False)
        monkeypatch.delenv("https_proxy", raising=False)
        models.forget_hub_answers()
    models.load_tokenizer(models.packaged_model_path())  # transformers imported: not timed
    for load in (models.load_tokenizer, lambda name: models.load_classifier(name, 2)):
        t0 = time.monotonic()
        with pytest.raises(RuntimeError, match=r"could not load 'sinkd-tests/no-such-bert' from "
                                               r"the Hugging Face hub: the hub \(.*\) cannot be "
                                               r"reached from here .*pass a local folder"):
            load("sinkd-tests/no-such-bert")
        assert time.monotonic() - t0 < 5.0


def test_reachability_is_a_real_connection(monkeypatch):
    """A listening local socket is reachable; the same port once closed is not."""
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        assert models.hub_address() == ("127.0.0.1", port)
        assert models.hub_reachable() is True
    models.forget_hub_answers()
    assert models.hub_reachable() is False


def test_black_holed_address_is_unreachable_within_the_timeout(monkeypatch):
    """A non-routable address (TEST-NET-1, RFC 5737) never answers: False within timeout + 1 s."""
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://192.0.2.1")
    t0 = time.monotonic()
    assert models.hub_reachable(timeout=1.0) is False
    assert time.monotonic() - t0 < 2.0
    assert models.hub_address() == ("192.0.2.1", 443)


def test_proxy_is_what_a_download_connects_to(monkeypatch):
    """With HTTPS_PROXY set, the check connects to the proxy (host and port of its URL)."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert models.hub_address() == ("proxy.example", 3128)
