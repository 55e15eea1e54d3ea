"""The Files API (close_api.md §4.16): `POST /files/upload/` hands out an S3-style form upload, the file is
POSTed (multipart/form-data) to that URL — here the emulator itself, standing in for the S3 bucket — and
its `download.url` is then referenced in an email/note attachment, which persists it under
`/go/file/persisted/<orga>/activity.<type>/<acti>/<file id>/<filename>` where the existing file routes
(files.py) serve it.

Timing per developer.close.com/api/resources/files: the S3 POST must come within 60 s of /files/upload/,
and the uploaded file can be attached for at most 24 hours; both measured on the emulator's clock.

Uploaded bytes go to disk (body_store.py): the form POST is spooled to a file as it arrives and its file
part copied into the emulator's body directory; downloads stream them back from there.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import Response

from .body_store import BodyDirectory, copy_range, iter_file, multipart_fields, read_range, spool
from .errors import field_error
from .ids import token
from .jsonutil import dumps
from .resources.base import Ctx
from .signing import _s3_error

if TYPE_CHECKING:
    from .state import EmulatorState

UPLOAD_PATH = "/_s3/upload/"
UPLOAD_WINDOW_SECONDS = 60.0
ATTACH_WINDOW_SECONDS = 24 * 3600.0
CLOSE_FILE_PREFIX = "https://app.close.com/go/file/"


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """Bytes a client uploaded, in a file on disk; served like the generated `FileBlob`s (same attributes
    and chunking)."""

    filename: str
    content_type: str
    path: Path
    size: int

    def iter_chunks(self, chunk: int = 65536) -> Iterator[bytes]:
        return iter_file(self.path, chunk)

    def read(self) -> bytes:
        return self.path.read_bytes()

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for piece in self.iter_chunks():
            digest.update(piece)
        return digest.hexdigest()


@dataclass
class _Slot:
    filename: str
    content_type: str
    issued_at: float
    path: Path | None = None  # the uploaded bytes, once POSTed
    size: int = 0
    uploaded_at: float | None = None


@dataclass
class UploadRegistry:
    """Upload slots by S3 key, the secret that signs their policies, and the directory of uploaded bytes."""

    slots: dict[str, _Slot] = field(default_factory=dict)
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    bodies: BodyDirectory = field(default_factory=BodyDirectory)

    def sign(self, policy: str) -> str:
        return base64.b64encode(hmac.new(self.secret, policy.encode(), hashlib.sha1).digest()).decode()


def create_upload(ctx: Ctx) -> bytes:
    """`POST /files/upload/` {"content_type", "filename"} -> {"download": {"url"}, "upload": {"url", "fields"}}."""
    body = ctx.body or {}
    for name in ("filename", "content_type"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise field_error(name, "This field is required.")
    filename, content_type = body["filename"], body["content_type"]
    users = ctx.store.org.users
    user_id = users[0]["id"] if users else "user"
    file_id = token()
    key = f"temporary/user/{user_id}/{file_id}/{filename}"
    now = ctx.config.clock()
    registry = ctx.state.uploads
    registry.slots[key] = _Slot(filename, content_type, now)
    policy = base64.b64encode(
        json.dumps({"expiration": now + UPLOAD_WINDOW_SECONDS, "conditions": [{"key": key}]}).encode()
    ).decode()
    fields = {
        "AWSAccessKeyId": "EMULATORACCESSKEY",
        "Content-Disposition": f'inline; filename="{filename}"',
        "Content-Type": content_type,
        "key": key,
        "policy": policy,
        "signature": registry.sign(policy),
        "success_action_status": "201",
    }
    return dumps(
        {
            "download": {"url": f"{CLOSE_FILE_PREFIX}temporary/{user_id}/{file_id}/{filename}/"},
            "upload": {"url": ctx.root + UPLOAD_PATH, "fields": fields},
        }
    )


async def receive_upload(state: EmulatorState, request: Request) -> Response:
    """The S3 form POST: checks the policy signature and its 60 s window, stores the `file` field."""
    registry = state.uploads
    spooled = registry.bodies.new_file(".form")
    try:
        await spool(request.stream(), spooled)
        return _store_upload(state, request, spooled)
    finally:
        spooled.unlink(missing_ok=True)


def _store_upload(state: EmulatorState, request: Request, spooled: Path) -> Response:
    fields = multipart_fields(spooled, request.headers.get("content-type", ""))

    def text(name: str) -> str:
        return read_range(spooled, fields[name]).decode() if name in fields else ""

    key, policy, signature = text("key"), text("policy"), text("signature")
    registry = state.uploads
    slot = registry.slots.get(key)
    if slot is None or not hmac.compare_digest(signature, registry.sign(policy)):
        return _s3_error("AccessDenied", "Invalid according to Policy: Policy Condition failed")
    if state.config.clock() > slot.issued_at + UPLOAD_WINDOW_SECONDS:
        return _s3_error("AccessDenied", "Invalid according to Policy: Policy expired.")
    if "file" not in fields:
        return Response(
            b"<Error><Code>InvalidArgument</Code><Message>POST requires exactly one file upload per request."
            b"</Message></Error>",
            status_code=400,
            media_type="application/xml",
        )
    start, end = fields["file"]
    slot.path = registry.bodies.new_file(".bin")
    etag = copy_range(spooled, (start, end), slot.path)
    slot.size = end - start
    slot.uploaded_at = state.config.clock()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<PostResponse>'
        f"<Location>{escape(str(request.url))}{escape(key)}</Location><Bucket>close-prd-files</Bucket>"
        f'<Key>{escape(key)}</Key><ETag>"{etag}"</ETag></PostResponse>'
    )
    return Response(body.encode(), status_code=201, media_type="application/xml")


def persist_attachments(
    ctx: Ctx, attachments: Any, activity: dict[str, Any], object_type: str
) -> list[dict[str, Any]]:
    """The `attachments` of a created/updated email or note, temporary upload URLs made persistent.

    URLs "must begin https://app.close.com/go/file/" (the emulator also accepts its own host, which is what
    its responses hand out); already persisted URLs of this org are kept.
    """
    if attachments is None:
        return []
    if not isinstance(attachments, list):
        raise field_error("attachments", "Not a valid list.")
    own_prefix = ctx.root + "/go/file/"
    files = ctx.store.org.files
    now = ctx.config.clock()
    out: list[dict[str, Any]] = []
    for item in attachments:
        url = item.get("url") if isinstance(item, dict) else None
        rest = None
        for prefix in (CLOSE_FILE_PREFIX, own_prefix):
            if isinstance(url, str) and url.startswith(prefix):
                rest = url[len(prefix) :]
        if rest is None:
            raise field_error("attachments", f"Attachment URLs must begin with {CLOSE_FILE_PREFIX}.")
        if rest.startswith("persisted/") and "go/file/" + rest in files:
            out.append(dict(item) | {"url": CLOSE_FILE_PREFIX + rest})
            continue
        parts = rest.strip("/").split("/")
        slot = None
        if len(parts) == 4 and parts[0] == "temporary":
            slot = ctx.state.uploads.slots.get(f"temporary/user/{parts[1]}/{parts[2]}/{parts[3]}")
        if slot is None or slot.path is None or slot.uploaded_at is None:
            raise field_error("attachments", f"File {url} has not been uploaded.")
        if now > slot.uploaded_at + ATTACH_WINDOW_SECONDS:
            raise field_error("attachments", f"File {url} has expired; upload it again.")
        path = (
            f"go/file/persisted/{ctx.store.organization_id}/{object_type}/{activity['id']}/"
            f"{token()}/{slot.filename}"
        )
        uploaded = UploadedFile(slot.filename, slot.content_type, slot.path, slot.size)
        files[path] = uploaded  # type: ignore[assignment]
        out.append(
            {
                "url": "https://app.close.com/" + path,
                "filename": item.get("filename") or slot.filename,
                "size": slot.size,
                "content_type": item.get("content_type") or slot.content_type,
            }
        )
    return out


ROUTES = [("POST", "files/upload", create_upload)]
