"""Short-lived signed URLs on the emulator itself, standing in for pre-signed S3 URLs (X-Amz-Expires=60).

An expired or tampered URL gets the 403 S3 answers: an XML `<Error>` with Code `AccessDenied`
("Request has expired") or `SignatureDoesNotMatch`, Content-Type `application/xml`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from urllib.parse import urlencode
from xml.sax.saxutils import escape

from starlette.responses import Response


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class UrlSigner:
    def __init__(self, lifetime: float, clock: Callable[[], float]) -> None:
        self._secret = secrets.token_bytes(32)
        self.lifetime = lifetime
        self.clock = clock

    def _signature(self, path: str, issued: str, expires: str) -> str:
        msg = f"{path}\n{issued}\n{expires}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def sign(self, path: str, url_path: str | None = None) -> str:
        """`url_path?X-Amz-Date=..&X-Amz-Expires=..&X-Amz-Signature=..`, valid `lifetime` seconds from now.

        The signature covers the decoded `path` (what the server sees); `url_path` is its percent-encoded form.
        """
        issued = f"{self.clock():.3f}"
        expires = str(int(self.lifetime))
        query = {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Date": issued,
            "X-Amz-Expires": expires,
            "X-Amz-Signature": self._signature(path, issued, expires),
        }
        return f"{url_path or path}?{urlencode(query)}"

    def check(self, path: str, params: Mapping[str, str]) -> Response | None:
        """None when the URL is valid, else the 403 S3 would send."""
        issued = params.get("X-Amz-Date", "")
        expires = params.get("X-Amz-Expires", "")
        signature = params.get("X-Amz-Signature", "")
        try:
            float(issued), float(expires)
        except ValueError:
            issued = expires = ""
        if not issued or not hmac.compare_digest(signature, self._signature(path, issued, expires)):
            return _s3_error(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        now = self.clock()
        deadline = float(issued) + float(expires)
        if now > deadline:
            extra = f"<X-Amz-Expires>{escape(expires)}</X-Amz-Expires><Expires>{_iso(deadline)}</Expires><ServerTime>{_iso(now)}</ServerTime>"
            return _s3_error("AccessDenied", "Request has expired", extra)
        return None


def _s3_error(code: str, message: str, extra: str = "") -> Response:
    request_id = secrets.token_hex(8).upper()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>{extra}"
        f"<RequestId>{request_id}</RequestId><HostId>{secrets.token_urlsafe(24)}</HostId></Error>"
    )
    return Response(body.encode(), status_code=403, media_type="application/xml")
