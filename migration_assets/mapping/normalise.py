"""Scalar normalisation of names, emails, phones, HTML and URLs.

These are the reference (row-at-a-time) implementations. The mapping engine uses vectorised Polars
twins in `transform_exprs.py`; unit tests check that both agree, so this module is the specification.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass

_WS = re.compile(r"\s+")
# Scripts whose names are conventionally written family-name first ("山田 太郎" = Yamada Taro).
_FAMILY_FIRST = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def collapse_ws(text: str) -> str:
    """Trim and collapse every run of whitespace (incl. NBSP and tabs) to a single space."""
    return _WS.sub(" ", text).strip()


def fold_label(value: object) -> str:
    """A label as matching compares it: whitespace collapsed, case folded ("  Real  Estate" ~ "real estate")."""
    return collapse_ws(str(value or "")).casefold()


def normalise_account_name(name: str | None) -> str | None:
    """Dedupe key of an Account: NFKC, casefold, trimmed, inner whitespace collapsed.

    Returns None for a missing or blank name (those leads go to the placeholder Account).
    NFKC first so that full-width and compatibility characters compare equal to their plain forms.
    """
    if name is None:
        return None
    key = collapse_ws(unicodedata.normalize("NFKC", name).casefold())
    return key or None


def split_person_name(name: str | None) -> tuple[str | None, str | None]:
    """Split a Close contact `name` into (firstname, lastname) for Dataverse.

    Rules, chosen so that "first + ' ' + last" always gives the original words back:
    - blank or None -> (None, None)
    - "Last, First" (exactly one comma) -> ("First", "Last")
    - one word -> (None, word): Dataverse's required-ish column is lastname, not firstname
    - CJK/Hangul with spaces -> family name first: "山田 太郎" -> ("太郎", "山田")
    - otherwise first word is the first name, the rest the last name ("Jan van der Berg" -> "Jan", "van der Berg")
    """
    if name is None:
        return None, None
    text = collapse_ws(name)
    if not text:
        return None, None
    if text.count(",") == 1:
        last, first = (collapse_ws(p) for p in text.split(","))
        if last and first:
            return first, last
        text = last or first
    if " " not in text:
        return None, text
    head, rest = text.split(" ", 1)
    if _FAMILY_FIRST.search(text):
        return rest, head
    return head, rest


@dataclass(frozen=True)
class EmailCheck:
    """Result of validating one address: `email` is the normalised form when valid, else None."""

    email: str | None
    reason: str | None

    @property
    def valid(self) -> bool:
        return self.reason is None


_LOCAL_OK = re.compile(r"^[\w.!#$%&'*+/=?^`{|}~-]+$")
_DOMAIN_OK = re.compile(r"^(?:[^\W_](?:[\w-]*[^\W_])?\.)+[^\W\d_]{2,}$")


def email_problem(raw: str) -> str | None:
    """Why `raw` (already trimmed) is not a usable address, or None. Reasons are stable strings."""
    if re.search(r"\s", raw):
        return "contains whitespace"
    if raw.count("@") != 1:
        return "must contain exactly one '@'"
    local, domain = raw.split("@")
    if not local:
        return "empty local part"
    if len(local) > 64:
        return "local part longer than 64 characters"
    if len(raw) > 254:
        return "longer than 254 characters"
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return "misplaced dot in local part"
    if not _LOCAL_OK.match(local):
        return "invalid character in local part"
    if not _DOMAIN_OK.match(domain):
        return "invalid domain"
    return None


def normalise_email(raw: str | None) -> EmailCheck:
    """Validate and normalise an address: trimmed, domain lower-cased (the local part keeps its case,
    as RFC 5321 allows case-sensitive mailboxes; matching elsewhere is case-insensitive)."""
    if raw is None or not raw.strip():
        return EmailCheck(None, "empty")
    text = raw.strip()
    reason = email_problem(text)
    if reason is not None:
        return EmailCheck(None, reason)
    local, domain = text.split("@")
    return EmailCheck(f"{local}@{domain.lower()}", None)


_PHONE_JUNK = re.compile(r"[\s().\-/]")


def normalise_phone(raw: str | None, default_country_code: str | None = None) -> str | None:
    """E.164 where the number allows it, else the trimmed raw text (never dropped).

    "+1 650-333-4444" -> "+16503334444"; "0049 30 1234567" -> "+49301234567";
    "(650) 333-4444" with default_country_code "1" -> "+16503334444"; "ext. 12" stays "ext. 12".
    """
    if raw is None:
        return None
    text = raw.strip()
    if not text:
        return None
    compact = _PHONE_JUNK.sub("", text)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if re.fullmatch(r"\+[0-9]{8,15}", compact):
        return compact
    if default_country_code and re.fullmatch(r"[0-9]+", compact):
        national = compact[1:] if compact.startswith("0") else compact
        full = default_country_code + national
        if 8 <= len(full) <= 15 and not (default_country_code == "1" and len(national) != 10):
            return "+" + full
    return text


_BLOCK_END = re.compile(r"(?i)<\s*(br\s*/?|/p|/div|/li|/h[1-6]|/tr)\s*>")
_TAG = re.compile(r"<[^>]*>")
_HEAD = re.compile(r"(?is)<(script|style|head)\b.*?</\1\s*>")
_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


def html_to_text(markup: str | None) -> str | None:
    """Readable plain text from Close `note_html`/`body_html`: line breaks for block ends, tags removed,
    entities decoded, runs of blank lines squeezed. None and blank input give None."""
    if markup is None:
        return None
    text = _HEAD.sub("", markup)
    text = _BLOCK_END.sub("\n", text)
    text = _TAG.sub("", text)
    text = html.unescape(text).replace("\xa0", " ")
    text = _BLANK_LINES.sub("\n\n", text).strip()
    return text or None


_URL = re.compile(r"^(?i:https?)://[^\s/?#.]+(?:\.[^\s/?#.]+)+(?::\d{1,5})?(?:[/?#]\S*)?$")


def url_problem(raw: str | None) -> str | None:
    """None if `raw` looks like a web address (scheme optional), else a reason."""
    if raw is None or not raw.strip():
        return None
    return (
        None
        if _URL.match(with_scheme(raw.strip()))
        else "not a web address (expected e.g. https://example.com)"
    )


def with_scheme(url: str) -> str:
    """Prefix "https://" when a URL has no scheme, so Dataverse renders it as a link."""
    return url if re.match(r"(?i)^[a-z][a-z0-9+.-]*://", url) else "https://" + url
