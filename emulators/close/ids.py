"""New object ids in Close's format (close_api.md §1.6): `<prefix>_` + base62, 43 chars for the classic
resources (lead, cont, oppo, acti, task, ...), 22 for the newer ones (ev, req, ...)."""

from __future__ import annotations

import secrets

from emulators.orgdata.util import B62, SHORT_ID_PREFIXES


def new_id(prefix: str) -> str:
    length = 22 if prefix in SHORT_ID_PREFIXES else 43
    return prefix + "_" + "".join(secrets.choice(B62) for _ in range(length))


def token(length: int = 22) -> str:
    """A bare base62 token (file ids inside attachment URLs, e.g. `1Zx0AlY1DwBXzKKrVwpAoj`)."""
    return "".join(secrets.choice(B62) for _ in range(length))
