"""Standard Webhooks signing/verification and the `paichan events send` client against a real HTTP server."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from paichan.adapters.webhooks import (
    WebhookSecret,
    WebhookVerificationError,
    sign,
    signed_headers,
    verify,
)
from paichan.service.cli import main

# The official test vector (standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py,
# test_sign_function; the same values appear in the other languages' tests).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mes"
NOW = 1_800_000_000


def reason(excinfo: pytest.ExceptionInfo[WebhookVerificationError]) -> str:
    return excinfo.value.reason


# ------------------------------------------------------------------------------------------ signing


def test_spec_vector_sign() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE


def test_spec_vector_verify() -> None:
    headers = {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TS), "webhook-signature": SPEC_SIGNATURE}
    assert verify([SPEC_SECRET], headers, SPEC_BODY, now=SPEC_TS + 10) == SPEC_ID
    # One flipped bit in the signature (the upstream "invalid signature" case) fails.
    bad = dict(headers, **{"webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="})
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify([SPEC_SECRET], bad, SPEC_BODY, now=SPEC_TS)


def test_round_trip_and_case_insensitive_headers() -> None:
    secret = WebhookSecret.generate()
    body = json.dumps({"events": []}).encode()
    headers = signed_headers(secret, body, timestamp=NOW)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-timestamp"] == str(NOW) and headers["webhook-id"].startswith("msg_")
    assert verify([secret], headers, body, now=NOW) == headers["webhook-id"]
    shouted = {k.upper() if i % 2 else k.title(): v for i, (k, v) in enumerate(headers.items())}
    assert verify([secret], shouted, body, now=NOW) == headers["webhook-id"]
    # a fresh id per call unless one is given
    assert signed_headers(secret, body)["webhook-id"] != signed_headers(secret, body)["webhook-id"]
    assert signed_headers(secret, body, msg_id="evt-7")["webhook-id"] == "evt-7"


def test_rotation_two_secrets() -> None:
    old, new = WebhookSecret.generate(), WebhookSecret.generate()
    body = b"<xml/>"
    # receiver knows both, sender still signs with the old one only
    headers = signed_headers(old, body, timestamp=NOW)
    assert verify([new, old], headers, body, now=NOW) == headers["webhook-id"]
    # sender signs with both, receivers that know only one of them accept
    both = signed_headers([old, new], body, timestamp=NOW)
    assert len(both["webhook-signature"].split()) == 2
    assert verify([old], both, body, now=NOW) == both["webhook-id"]
    assert verify([new], both, body, now=NOW) == both["webhook-id"]
    # a receiver that dropped the old secret rejects a message signed only with it
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify([new], headers, body, now=NOW)


def test_tampered_body_wrong_secret_and_changed_metadata() -> None:
    secret = WebhookSecret.generate()
    body = b'{"event_id": "e1", "state": "down"}'
    headers = signed_headers(secret, body, timestamp=NOW)
    with pytest.raises(WebhookVerificationError, match="no matching signature") as e:
        verify([secret], headers, body.replace(b"down", b"busy"), now=NOW)
    assert "1 v1 signature(s) checked against 1 secret(s)" in reason(e)
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify([WebhookSecret.generate()], headers, body, now=NOW)
    # the id and the timestamp are signed too
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify([secret], dict(headers, **{"webhook-id": "msg_other"}), body, now=NOW)
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify([secret], dict(headers, **{"webhook-timestamp": str(NOW - 1)}), body, now=NOW)


def test_timestamp_tolerance_both_ways() -> None:
    secret = WebhookSecret.generate()
    body = b"{}"
    headers = signed_headers(secret, body, timestamp=NOW)
    assert verify([secret], headers, body, now=NOW + 300)  # exactly 5 minutes is still fine
    assert verify([secret], headers, body, now=NOW - 300)
    with pytest.raises(WebhookVerificationError, match="too old") as e:
        verify([secret], headers, body, now=NOW + 301)
    assert "301 s before now" in reason(e)
    with pytest.raises(WebhookVerificationError, match="too new") as e:
        verify([secret], headers, body, now=NOW - 301)
    assert "301 s after now" in reason(e)
    assert verify([secret], headers, body, now=NOW + 3000, tolerance_s=3600)
    with pytest.raises(WebhookVerificationError, match="too new"):
        verify([secret], headers, body)  # now = the clock, and NOW is in 2027


@pytest.mark.parametrize("name", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_and_empty_headers_are_named(name: str) -> None:
    secret = WebhookSecret.generate()
    headers = signed_headers(secret, b"{}", timestamp=NOW)
    del headers[name]
    with pytest.raises(WebhookVerificationError) as e:
        verify([secret], headers, b"{}", now=NOW)
    assert reason(e) == f"missing header {name}"
    headers[name] = "  "
    with pytest.raises(WebhookVerificationError) as e:
        verify([secret], headers, b"{}", now=NOW)
    assert reason(e) == f"empty header {name}"


@pytest.mark.parametrize("stamp", ["hello", "1.5e9", "-1", "1614265330.0", "0x60378c72", "1" * 40])
def test_bad_timestamp(stamp: str) -> None:
    secret = WebhookSecret.generate()
    headers = signed_headers(secret, b"{}", timestamp=NOW)
    headers["webhook-timestamp"] = stamp
    with pytest.raises(WebhookVerificationError, match="bad webhook-timestamp") as e:
        verify([secret], headers, b"{}", now=NOW)
    assert len(reason(e)) < 120  # a huge header is not echoed whole


def test_multiple_signatures_one_valid_and_other_versions_ignored() -> None:
    # The upstream multi-signature case: junk v1, a v2 with the same bytes, the valid one, junk again.
    valid = sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY)
    junk = "Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
    headers = {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TS),
               "webhook-signature": f"v1,not-base64!! v1,{junk} v2,{junk} nocomma {valid} v1,{junk}"}
    assert verify([SPEC_SECRET], headers, SPEC_BODY, now=SPEC_TS) == SPEC_ID
    # The right bytes under another version tag do not count.
    digest = valid.partition(",")[2]
    for other in (f"v1a,{digest}", f"v2,{digest}", f"V1,{digest}", digest):
        headers["webhook-signature"] = other
        with pytest.raises(WebhookVerificationError, match="no valid v1 entry"):
            verify([SPEC_SECRET], headers, SPEC_BODY, now=SPEC_TS)


def test_secret_parsing_errors_are_clear_and_do_not_echo_the_secret() -> None:
    key = WebhookSecret.parse(SPEC_SECRET)
    assert key.key == base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") and len(key.key) == 24
    assert key.to_string() == SPEC_SECRET
    assert "MfKQ" not in repr(key)
    cases = {
        "": "empty",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw": "must start with 'whsec_'",
        "whsec_": "nothing after 'whsec_'",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS!": "not valid base64",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS": "not valid base64",  # bad padding
        "whsec_" + base64.b64encode(b"x" * 16).decode(): "has 16 bytes; Standard Webhooks needs 24 to 64",
        "whsec_" + base64.b64encode(b"x" * 65).decode(): "has 65 bytes",
    }
    for text, message in cases.items():
        with pytest.raises(ValueError, match=message) as e:
            WebhookSecret.parse(text)
        if len(text) > 12:
            assert text[6:] not in str(e.value)
    generated = WebhookSecret.generate()
    assert generated.startswith("whsec_") and len(WebhookSecret.parse(generated).key) == 32
    assert generated != WebhookSecret.generate()
    with pytest.raises(ValueError, match="at least one secret"):
        verify([], {}, b"")
    with pytest.raises(ValueError, match="must start with"):
        verify(["not-a-secret"], {}, b"")


def test_sign_refuses_ids_with_dots_and_verify_rejects_them() -> None:
    with pytest.raises(ValueError, match=r"without '\.'"):
        sign(SPEC_SECRET, "msg.1", SPEC_TS, b"")
    with pytest.raises(ValueError, match="non-negative integer"):
        sign(SPEC_SECRET, "msg_1", -5, b"")
    headers = {"webhook-id": "a.b", "webhook-timestamp": str(SPEC_TS), "webhook-signature": SPEC_SIGNATURE}
    with pytest.raises(WebhookVerificationError, match="bad webhook-id"):
        verify([SPEC_SECRET], headers, b"", now=SPEC_TS)


# ------------------------------------------------------------------------- `paichan events send`


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: str | None
    error: str | None


@dataclass
class Receiver:
    """A tiny webhook endpoint: verifies each POST with `verify`, records it, answers JSON."""

    secrets: list[str]
    url: str = ""
    requests: list[Received] = field(default_factory=list)
    status_for: dict[str, int] = field(default_factory=dict)  # webhook-id -> forced status


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(secrets=[WebhookSecret.generate()])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k: v for k, v in self.headers.items()}
            try:
                msg_id: str | None = verify(state.secrets, headers, body)
                error = None
            except WebhookVerificationError as e:
                msg_id, error = None, e.reason
            state.requests.append(Received(self.path, headers, body, msg_id, error))
            seen = sum(r.verified == msg_id for r in state.requests) if msg_id else 0
            reply: dict[str, Any]
            if error:
                status, reply = 401, {"error": error}
            elif msg_id in state.status_for:
                status, reply = state.status_for[msg_id], {"error": "forced"}
            else:
                status, reply = 202, {"accepted": msg_id, "duplicate": seen > 1}
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/mes/events"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAICHAN_API_KEY", raising=False)
    monkeypatch.delenv("PAICHAN_WEBHOOK_SECRET", raising=False)


def test_send_json_and_xml_signed(receiver: Receiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    single = tmp_path / "one-event.json"
    single.write_text('{"event_id": "e1", "source": "mes", "time": "2026-11-23T08:10:00Z", '
                      '"machine": "M1", "state": "down"}', encoding="utf-8")
    sniffed = tmp_path / "perf.dat"  # no telling extension: sniffed as XML
    sniffed.write_bytes((FIXTURES / "ops-performance-v0700.xml").read_bytes())
    files = [FIXTURES / "webhook-batch.json", FIXTURES / "prod-performance-v0600.xml", single, sniffed]
    code = main(["events", "send", *map(str, files), "--url", receiver.url, "--secret", receiver.secrets[0],
                 "--api-key", "k-123"])
    out, err = capsys.readouterr()
    assert code == 0, (out, err)
    assert len(receiver.requests) == 4
    for sent, req in zip(files, receiver.requests, strict=True):
        assert req.error is None and req.verified == req.headers["webhook-id"]
        assert req.body == sent.read_bytes()  # raw bytes, not re-serialised
        assert req.path == "/mes/events"
        assert req.headers["Authorization"] == "Bearer k-123"
    types = [r.headers["Content-Type"] for r in receiver.requests]
    assert types == ["application/json", "application/xml", "application/json", "application/xml"]
    assert len({r.verified for r in receiver.requests}) == 4  # a fresh id per file
    lines = out.splitlines()
    assert len(lines) == 4
    for sent, line, req in zip(files, lines, receiver.requests, strict=True):
        assert line.startswith(f"{sent}: 202 ")
        assert json.loads(line.split(" ", 2)[2]) == {"accepted": req.verified, "duplicate": False}
    assert "sending 1/4" in err and "sending 4/4" in err


def test_send_same_id_env_secret_and_key(receiver: Receiver, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PAICHAN_WEBHOOK_SECRET", receiver.secrets[0])
    monkeypatch.setenv("PAICHAN_API_KEY", "from-env")
    batch = str(FIXTURES / "webhook-batch.json")
    code = main(["events", "send", batch, batch, "--url", receiver.url, "--id", "evt-dup-1"])
    out, err = capsys.readouterr()
    assert code == 0, (out, err)
    assert [r.verified for r in receiver.requests] == ["evt-dup-1", "evt-dup-1"]
    assert "sending 1/2" in err and "sending 2/2" in err
    assert all(r.headers["Authorization"] == "Bearer from-env" for r in receiver.requests)
    assert [json.loads(line.split(" ", 2)[2])["duplicate"] for line in out.splitlines()] == [False, True]


def test_send_one_file_no_progress_no_key(receiver: Receiver, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["events", "send", str(FIXTURES / "webhook-batch.json"), "--url", receiver.url,
                 "--secret", receiver.secrets[0]])
    out, err = capsys.readouterr()
    assert code == 0 and out.count("\n") == 1 and "sending" not in err
    assert "Authorization" not in receiver.requests[0].headers


def test_send_rejected_is_exit_1(receiver: Receiver, capsys: pytest.CaptureFixture[str]) -> None:
    batch = str(FIXTURES / "webhook-batch.json")
    code = main(["events", "send", batch, "--url", receiver.url, "--secret", WebhookSecret.generate()])
    out, _ = capsys.readouterr()
    assert code == 1
    assert out.startswith(f"{batch}: 401 ") and "no matching signature" in out
    # one bad answer among good ones is still exit 1; all files are sent
    receiver.status_for["evt-500"] = 500
    code = main(["events", "send", batch, "--url", receiver.url, "--secret", receiver.secrets[0], "--id", "evt-500"])
    assert code == 1 and f"{batch}: 500 " in capsys.readouterr().out


def test_send_connection_refused_is_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    batch = str(FIXTURES / "webhook-batch.json")
    code = main(["events", "send", batch, "--url", f"http://127.0.0.1:{port}/", "--secret",
                 WebhookSecret.generate()])
    out, _ = capsys.readouterr()
    assert code == 1 and out.startswith(f"{batch}: failed: ")


@pytest.mark.parametrize(("setup", "args", "message"), [
    ("", ["missing.json"], "missing.json: no such file"),
    ("bad.json:{oops", ["bad.json"], "bad.json line 1: not JSON"),
    ("scalar.json:42", ["scalar.json"], "scalar.json: expected a JSON event, a list of events or {\"events\": [...]}"),
    ("what.txt:hello", ["what.txt"], "what.txt: neither JSON nor XML"),
    ("empty.xml:", ["empty.xml"], "empty.xml: empty file"),
    ("ok.json:[]", ["ok.json", "--secret", "nope"], "--secret: webhook secret must start with 'whsec_'"),
    ("ok.json:[]", ["ok.json", "--id", "a.b"], "--id: webhook id 'a.b' must be non-empty, without '.'"),
    ("ok.json:[]", ["ok.json", "--no-secret-given"], "no secret: give --secret or set PAICHAN_WEBHOOK_SECRET"),
])
def test_send_usage_errors_exit_2(receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str], setup: str, args: list[str],
                                  message: str) -> None:
    monkeypatch.chdir(tmp_path)
    if setup:
        name, _, text = setup.partition(":")
        (tmp_path / name).write_text(text, encoding="utf-8")
    secret = [] if "--no-secret-given" in args else ["--secret", receiver.secrets[0]]
    argv = ["events", "send", *[a for a in args if a != "--no-secret-given"], "--url", receiver.url]
    if "--secret" not in args:
        argv += secret
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2
    assert err.strip() == f"error: {message}" or err.strip().startswith(f"error: {message}"), err
    assert "Traceback" not in err and err.count("\n") == 1 and out == ""
    assert receiver.requests == []  # nothing is sent when any file is unusable


def test_send_argparse_usage_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["events", "send", "x.json"])  # no --url
    assert e.value.code == 2 and "--url" in capsys.readouterr().err
