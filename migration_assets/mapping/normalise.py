"""Scalar normalisation the product applies one value at a time: labels and Account names.

(The per-row transforms of names, emails, phones, HTML and URLs are vectorised in `text_exprs.py`; their
row-at-a-time specification is the test oracle `tests/unit/transform_oracle.py`.)
"""

from __future__ import annotations

import re
import unicodedata

_WS = re.compile(r"\s+")


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
