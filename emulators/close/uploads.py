"""The Files API (close_api.md §4.16): `POST /files/upload/` hands out an S3-style form upload, the file is
POSTed (multipart/form-data) to that URL — here the emulator itself, standing in for the S3 bucket — and
its `download.url` is then referenced in an email/note attachment, which persists it under
`/go/file/persisted/<orga>/activity.<type>/<acti>/<file id>/<filename>` where the existing file routes
(files.py) serve it.

Timing per developer.close.com/api/resources/files: the S3 POST must come within 60 s of /files/upload/,
and the uploaded file can be attached for at most 24 hours; both measured on the emulator's clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import Response

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
    """Bytes a client uploaded; served like the generated `FileBlob`s (same attributes and chunking)."""

    filename: str
    content_type: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def iter_chunks(self, chunk: int = 65536) -> Iterator[bytes]:
        for start in range(0, len(self.data), chunk):
            yield self.data[start : start + chunk]

    def read(self) -> bytes:
        return self.data

    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class _Slot:
    filename: str
    content_type: str
    issued_at: float
    data: bytes | None = None
    uploaded_at: float | None = None


@dataclass
class UploadRegistry:
    """Upload slots by S3 key, and the secret that signs their policies."""

    slots: dict[str, _Slot] = field(default_factory=dict)
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))

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


def _multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    """Form fields of a multipart/form-data body (RFC 7578), values as raw bytes."""
    boundary = ""
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        return {}
    out: dict[str, bytes] = {}
    for part in body.split(b"--" + boundary.encode())[1:]:
        if part.startswith(b"--"):
            break
        head, _, data = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        data = data.removesuffix(b"\r\n")
        for line in head.decode("utf-8", "replace").split("\r\n"):
            if line.lower().startswith("content-disposition:"):
                for item in line.split(";")[1:]:
                    key, _, value = item.strip().partition("=")
                    if key == "name":
                        out[value.strip('"')] = data
    return out


async def receive_upload(state: EmulatorState, request: Request) -> Response:
    """The S3 form POST: checks the policy signature and its 60 s window, stores the `file` field."""
    form = _multipart(await request.body(), request.headers.get("content-type", ""))
    key = form.get("key", b"").decode()
    policy = form.get("policy", b"").decode()
    signature = form.get("signature", b"").decode()
    registry = state.uploads
    slot = registry.slots.get(key)
    if slot is None or not hmac.compare_digest(signature, registry.sign(policy)):
        return _s3_error("AccessDenied", "Invalid according to Policy: Policy Condition failed")
    if state.config.clock() > slot.issued_at + UPLOAD_WINDOW_SECONDS:
        return _s3_error("AccessDenied", "Invalid according to Policy: Policy expired.")
    if "file" not in form:
        return Response(
            b"<Error><Code>InvalidArgument</Code><Message>POST requires exactly one file upload per request."
            b"</Message></Error>",
            status_code=400,
            media_type="application/xml",
        )
    slot.data = form["file"]
    slot.uploaded_at = state.config.clock()
    etag = hashlib.md5(slot.data).hexdigest()  # noqa: S324 - S3's ETag is the MD5 of the object
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
        if slot is None or slot.data is None or slot.uploaded_at is None:
            raise field_error("attachments", f"File {url} has not been uploaded.")
        if now > slot.uploaded_at + ATTACH_WINDOW_SECONDS:
            raise field_error("attachments", f"File {url} has expired; upload it again.")
        path = (
            f"go/file/persisted/{ctx.store.organization_id}/{object_type}/{activity['id']}/"
            f"{token()}/{slot.filename}"
        )
        files[path] = UploadedFile(slot.filename, slot.content_type, slot.data)  # type: ignore[assignment]
        out.append(
            {
                "url": "https://app.close.com/" + path,
                "filename": item.get("filename") or slot.filename,
                "size": len(slot.data),
                "content_type": item.get("content_type") or slot.content_type,
            }
        )
    return out


ROUTES = [("POST", "files/upload", create_upload)]
