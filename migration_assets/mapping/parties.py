"""Activity parties (`_parties`, JSON) for email, appointment and phonecall deep inserts (reference §7.6).

A party is an enabled Dataverse user when the address or Close user belongs to the org (owner map), a
staged contact when the address or Close contact matches one, else the raw address (`addressused`), so
no participant is dropped. participationtypemask: 1 from, 2 to, 3 cc, 4 bcc, 5 required, 7 organizer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

from migration_assets.resources.warehouse import fetch_polars, table_exists

FROM, TO, CC, BCC, REQUIRED, ORGANIZER = 1, 2, 3, 4, 5, 7


@dataclass
class PartyIndex:
    user_by_email: dict[str, str]  # lower email -> systemuserid
    user_by_id: dict[str, str]  # Close user id -> systemuserid
    contact_by_email: dict[str, str]  # lower email -> contactid (staged)
    contact_ids: set[str]  # staged contactids
    sets: Mapping[str, str]

    def user(self, systemuserid: str, mask: int) -> dict[str, Any]:
        return {
            "participationtypemask": mask,
            "partyid_systemuser@odata.bind": f"/{self.sets.get('systemuser', 'systemusers')}({systemuserid})",
        }

    def contact(self, contactid: str, mask: int) -> dict[str, Any]:
        return {
            "participationtypemask": mask,
            "partyid_contact@odata.bind": f"/{self.sets.get('contact', 'contacts')}({contactid})",
        }

    def address(self, email: str | None, mask: int) -> dict[str, Any] | None:
        if not email:
            return None
        key = email.strip().lower()
        if key in self.user_by_email:
            return self.user(self.user_by_email[key], mask)
        if key in self.contact_by_email:
            return self.contact(self.contact_by_email[key], mask)
        return {"participationtypemask": mask, "addressused": email.strip()}


def party_index(con: duckdb.DuckDBPyConnection, sets: Mapping[str, str]) -> PartyIndex:
    users = fetch_polars(
        con,
        "SELECT close_user_id, close_email, systemuserid FROM staged.owner_map "
        "WHERE status IN ('matched', 'override') AND systemuserid IS NOT NULL",
    )
    by_email = {
        str(e).lower(): s for e, s in zip(users["close_email"], users["systemuserid"], strict=True) if e
    }
    by_id = dict(zip(users["close_user_id"].to_list(), users["systemuserid"].to_list(), strict=True))
    contact_by_email: dict[str, str] = {}
    contact_ids: set[str] = set()
    if table_exists(con, "staged", "contact"):
        cols = [c[0] for c in con.execute("DESCRIBE staged.contact").fetchall()]
        emails = [c for c in ("emailaddress1", "emailaddress2", "emailaddress3") if c in cols]
        rows = fetch_polars(
            con,
            f"SELECT contactid, {', '.join(emails) or 'NULL AS e'} FROM staged.contact ORDER BY contactid",
        )
        contact_ids = set(rows["contactid"].to_list())
        for row in rows.iter_rows():
            for email in row[1:]:
                if email:
                    contact_by_email.setdefault(str(email).lower(), row[0])
    return PartyIndex(by_email, by_id, contact_by_email, contact_ids, sets)


def _dump(parties: list[dict[str, Any] | None]) -> str | None:
    items = [p for p in parties if p]
    return json.dumps(items, ensure_ascii=False, separators=(",", ":")) if items else None


def email_parties(envelopes: pl.Series, idx: PartyIndex) -> pl.Series:
    """From the envelope's from/to/cc/bcc addresses."""
    out = []
    for env in envelopes.to_list():
        env = env or {}
        parties = []
        for key, mask in (("from", FROM), ("to", TO), ("cc", CC), ("bcc", BCC)):
            for addr in env.get(key) or []:
                parties.append(idx.address((addr or {}).get("email"), mask))
        out.append(_dump(parties))
    return pl.Series("_parties", out, dtype=pl.String)


def appointment_parties(attendees: pl.Series, idx: PartyIndex) -> pl.Series:
    """Organizer (7) and required attendees (5): Close user -> systemuser, contact -> contact, else address."""
    from migration_assets.mapping.ids import record_id

    out = []
    for items in attendees.to_list():
        parties = []
        for a in items or []:
            mask = ORGANIZER if a.get("is_organizer") else REQUIRED
            if a.get("user_id") in idx.user_by_id:
                parties.append(idx.user(idx.user_by_id[a["user_id"]], mask))
            elif a.get("contact_id") and record_id("contact", a["contact_id"]) in idx.contact_ids:
                parties.append(idx.contact(record_id("contact", a["contact_id"]), mask))
            else:
                parties.append(idx.address(a.get("email"), mask))
        out.append(_dump(parties))
    return pl.Series("_parties", out, dtype=pl.String)


def phonecall_parties(
    directions: pl.Series, users: pl.Series, contacts: pl.Series, idx: PartyIndex
) -> pl.Series:
    """The org user and the contact, from/to by direction (outbound: user calls contact)."""
    from migration_assets.mapping.ids import record_id

    out = []
    for direction, uid, cid in zip(directions.to_list(), users.to_list(), contacts.to_list(), strict=True):
        inbound = direction == "inbound"
        user = idx.user(idx.user_by_id[uid], TO if inbound else FROM) if uid in idx.user_by_id else None
        contactid = record_id("contact", cid) if cid else None
        other = idx.contact(contactid, FROM if inbound else TO) if contactid in idx.contact_ids else None
        out.append(_dump([user, other]))
    return pl.Series("_parties", out, dtype=pl.String)
