"""OData URL pieces for the Dataverse Web API: record segments by id or alternate key, bind values, and
query strings encoded the way Dataverse expects (reference §2.3–§2.5). Pure functions.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote


class InvalidKeyError(ValueError):
    """An alternate-key value Dataverse cannot address in a URL."""


_KEY_FORBIDDEN = set("/<>*%&:\\?+")  # break GET/PATCH by alternate key (reference §2.4)


def odata_bind(entity_set: str, record_id: str) -> str:
    """Value of a `<nav>@odata.bind` property: "/accounts(<guid>)"."""
    return f"/{entity_set}({record_id})"


def _key_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    bad = sorted(set(text) & _KEY_FORBIDDEN)
    if bad:
        raise InvalidKeyError(
            f"alternate key value {text!r} contains {bad}, which Dataverse cannot take in a key URL; "
            f"address the record by its id instead"
        )
    return "'" + text.replace("'", "''") + "'"


def odata_string(text: str) -> str:
    """A string literal in a $filter (quotes doubled, as OData requires)."""
    return "'" + text.replace("'", "''") + "'"


def key_segment(entity_set: str, key: str | dict[str, Any]) -> str:
    """`accounts(<guid>)` for an id, `accounts(c2d_closeid='x')` for an alternate key dict."""
    if isinstance(key, str):
        return f"{entity_set}({key})"
    if not key:
        raise InvalidKeyError("an alternate key needs at least one column")
    return f"{entity_set}(" + ",".join(f"{k}={_key_value(v)}" for k, v in key.items()) + ")"


def query_string(params: dict[str, str]) -> str:
    # OData wants %20 for spaces (not "+") and keeps $, quotes, parentheses and commas readable.
    return "&".join(f"{k}={quote(v, safe=chr(39) + '(),$@/:=')}" for k, v in params.items())
