"""``paichan events send``: a test client that posts MES events the way a real MES would.

Integrators use it to try a paichan endpoint (or their own receiver) before the MES is wired:
each FILE (a webhook JSON body, a list of events or ``{"events": [...]}``, or a B2MML performance
XML) is sent as one POST, signed with Standard Webhooks headers (docs/ADAPTERS_MES.md, "Signing"),
with ``Authorization: Bearer KEY`` when an API key is given. It prints the status code and the
JSON reply per file; exit 0 when every reply was 2xx, 1 otherwise, 2 for usage errors. All files
are read and checked before the first one is sent, so a typo never leaves half a batch delivered.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from paichan.adapters.webhooks import WebhookSecret, check_message_id, new_message_id, signed_headers
from paichan.service.common import CliError

if TYPE_CHECKING:
    import httpx

SECRET_ENV = "PAICHAN_WEBHOOK_SECRET"
API_KEY_ENV = "PAICHAN_API_KEY"
JSON_TYPE = "application/json"
XML_TYPE = "application/xml"
BODY_FORMS = 'a JSON event, a list of events or {"events": [...]}'


@dataclass(frozen=True)
class Payload:
    """One file to send: its raw bytes (signed and sent unchanged) and content type."""

    path: Path
    body: bytes
    content_type: str


def _content_type(path: Path, body: bytes) -> str:
    """JSON or XML, from the extension, else from the first character."""
    suffix = path.suffix.lower()
    head = body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if suffix == ".json":
        return JSON_TYPE
    if suffix == ".xml":
        if head != b"<":
            raise CliError(f"{path}: does not look like XML (expected '<' first)")
        return XML_TYPE
    if head == b"<":
        return XML_TYPE
    if head in (b"{", b"["):
        return JSON_TYPE
    raise CliError(f"{path}: neither JSON nor XML (name it .json or .xml, or start it with '{{', '[' or '<')")


def read_payload(path: Path) -> Payload:
    """Read and check one FILE; CliError (exit 2) names the file and what is wrong."""
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    try:
        body = path.read_bytes()
    except OSError as e:
        raise CliError(f"{path}: cannot read ({e.strerror or e})") from e
    if not body.strip():
        raise CliError(f"{path}: empty file, expected {BODY_FORMS} or B2MML performance XML")
    content_type = _content_type(path, body)
    if content_type == JSON_TYPE:
        try:
            doc = json.loads(body)
        except json.JSONDecodeError as e:
            raise CliError(f"{path} line {e.lineno}: not JSON ({e.msg}), expected {BODY_FORMS}") from e
        except UnicodeDecodeError as e:
            raise CliError(f"{path}: not UTF-8 text ({e.reason}), expected {BODY_FORMS}") from e
        if not isinstance(doc, (dict, list)):
            raise CliError(f"{path}: expected {BODY_FORMS}, got a JSON {type(doc).__name__}")
    return Payload(path, body, content_type)


def _secrets(args: argparse.Namespace) -> list[WebhookSecret]:
    """The signing secrets: every --secret (several while rotating), else $PAICHAN_WEBHOOK_SECRET."""
    given: list[tuple[str, str]] = [("--secret", s) for s in args.secret or []]
    if not given and os.environ.get(SECRET_ENV):
        given = [(SECRET_ENV, os.environ[SECRET_ENV])]
    if not given:
        raise CliError(f"no secret: give --secret or set {SECRET_ENV} (a 'whsec_...' Standard Webhooks secret)")
    out = []
    for origin, text in given:
        try:
            out.append(WebhookSecret.parse(text))
        except ValueError as e:
            raise CliError(f"{origin}: {e}") from e
    return out


def _reply_text(response: httpx.Response) -> str:
    """The reply on one line: compact JSON when it is JSON, else the text (shortened)."""
    try:
        return json.dumps(response.json(), ensure_ascii=False, separators=(", ", ": "))
    except ValueError:
        text = " ".join(response.text.split())
        return json.dumps(text[:300] + ("..." if len(text) > 300 else ""), ensure_ascii=False)


def cmd_send(args: argparse.Namespace) -> int:
    """Sign and POST each file; one result line per file on stdout, progress on stderr."""
    import httpx  # here, not at the top: the rest of the command line does not need it

    keys = _secrets(args)
    if args.id is not None:
        try:
            check_message_id(args.id)
        except ValueError as e:
            raise CliError(f"--id: {e}") from e
    payloads = [read_payload(Path(f)) for f in args.files]
    api_key = args.api_key or os.environ.get(API_KEY_ENV)
    total, ok = len(payloads), 0
    with httpx.Client(timeout=args.timeout, follow_redirects=False) as client:
        for i, p in enumerate(payloads, 1):
            if total > 1:
                print(f"sending {i}/{total} {p.path} ...", file=sys.stderr, flush=True)
            headers = signed_headers(keys, p.body, msg_id=args.id or new_message_id())
            headers["Content-Type"] = p.content_type
            if api_key:
                headers["Authorization"] = f"Bearer {api_key}"
            try:
                response = client.post(args.url, content=p.body, headers=headers)
            except httpx.HTTPError as e:
                print(f"{p.path}: failed: {type(e).__name__}: {e}", flush=True)
                continue
            ok += response.is_success
            print(f"{p.path}: {response.status_code} {_reply_text(response)}", flush=True)
    return 0 if ok == total else 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``events send`` to the ``paichan`` command line."""
    ev = sub.add_parser("events", help="send MES events to a webhook endpoint (test client)")
    esub = ev.add_subparsers(dest="events_command", required=True)
    text = ("POST webhook JSON or B2MML performance XML files, signed with Standard Webhooks headers; "
            "exit 0 when every reply is 2xx, 1 otherwise, 2 for usage errors")
    s = esub.add_parser("send", help=text, description=text)
    s.add_argument("files", nargs="+", metavar="FILE",
                   help=f"{BODY_FORMS} (.json), or B2MML performance (.xml); one POST per file")
    s.add_argument("--url", required=True, help="the webhook endpoint")
    s.add_argument("--secret", action="append", metavar="SECRET",
                   help=f"whsec_... signing secret (default: ${SECRET_ENV}); give two to sign with both while rotating")
    s.add_argument("--api-key", metavar="KEY", help=f"send 'Authorization: Bearer KEY' (default: ${API_KEY_ENV})")
    s.add_argument("--id", metavar="ID", help="use this webhook-id for every file (to test duplicate handling); "
                   "default: a fresh id per file")
    s.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    s.set_defaults(func=cmd_send)
