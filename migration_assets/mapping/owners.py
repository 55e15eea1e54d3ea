"""Close users -> Dataverse systemusers (DESIGN §4, owners.yaml): matched by email, case-insensitively,
never created. Pure: the caller passes the Close users, the target's systemusers and the owners map.

Outcome per Close user (`status`):
  matched   email equals an enabled systemuser's internalemailaddress (or domainname)
  override  owners.yaml overrides (by Close user id or email) name an enabled systemuser
  fallback  unmatched or disabled, and the records go to owners.yaml's fallback_owner
  unmatched no systemuser has the email (queue; blocks loading unless a fallback is configured)
  disabled  the systemuser is disabled (queue; blocks unless disabled_users: fallback)
The reconciliation queue is every row that is not matched/override.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

OWNER_MAP_SCHEMA = {
    "close_user_id": pl.String,
    "close_email": pl.String,
    "close_name": pl.String,
    "systemuserid": pl.String,
    "status": pl.String,
    "reason": pl.String,
    "records_owned": pl.Int64,
}
RESOLVED = ("matched", "override", "fallback")
# close table -> column holding the Close user who owns the migrated record (field maps' `owner`).
OWNER_COLUMNS = {
    "opportunities": "user_id",
    "calls": "user_id",
    "emails": "user_id",
    "sms": "user_id",
    "meetings": "user_id",
    "tasks": "assigned_to",
    "custom_activities": "user_id",
}


class OwnerConfigError(ValueError):
    """owners.yaml names a Dataverse user that does not exist or is disabled."""


@dataclass(frozen=True)
class SystemUser:
    systemuserid: str
    email: str  # lower-cased
    fullname: str
    disabled: bool


def _lower(value: Any) -> str:
    return str(value or "").strip().lower()


def index_systemusers(rows: Sequence[Mapping[str, Any]]) -> dict[str, SystemUser]:
    """email (lower-case) -> SystemUser; internalemailaddress first, domainname as a second key.
    Application users (applicationid set) are never owners of migrated records."""
    out: dict[str, SystemUser] = {}
    for r in rows:
        if r.get("applicationid"):
            continue
        user = SystemUser(
            str(r["systemuserid"]),
            _lower(r.get("internalemailaddress")),
            str(r.get("fullname") or ""),
            bool(r.get("isdisabled")),
        )
        for key in (_lower(r.get("internalemailaddress")), _lower(r.get("domainname"))):
            # An enabled account wins over a disabled one with the same address.
            if key and (key not in out or (out[key].disabled and not user.disabled)):
                out[key] = user
    return out


def fix_for(status: str, uid: str, fallback_owner: str | None) -> str:
    """The owners.yaml setting that resolves an unmatched or disabled user (also the owner check's hint)."""
    override = f"add `overrides: {{{uid}: <enabled Dataverse user's email>}}`"
    if status == "disabled":
        if fallback_owner:
            return f"set `disabled_users: fallback` (records go to fallback_owner {fallback_owner}), or {override}"
        return f"{override}, or set `fallback_owner` and `disabled_users: fallback`, or enable the Dataverse user"
    return f"{override}, or set `fallback_owner` (receives the records of every unmatched user)"


def blocking_summary(blocking: pl.DataFrame, fallback_owner: str | None) -> str:
    """What blocks and the owners.yaml setting that fixes each case (the owners_resolved check's text)."""
    parts = []
    for status, what in (
        ("unmatched", "have no Dataverse user with their email"),
        ("disabled", "map to a disabled Dataverse user"),
    ):
        rows = blocking.filter(pl.col("status") == status)
        if rows.height:
            n = int(rows["records_owned"].sum())
            fix = fix_for(status, "<close user id>", fallback_owner)
            parts.append(f"{rows.height} Close users owning {n} records {what}: {fix}")
    return "; ".join(parts)


def match_owners(
    close_users: Sequence[Mapping[str, Any]],
    systemusers: Sequence[Mapping[str, Any]],
    overrides: Mapping[str, str],
    fallback_owner: str | None,
    disabled_users: str = "queue",
    records_owned: Mapping[str, int] | None = None,
) -> pl.DataFrame:
    """One row per Close user (and per unknown user id that owns records), OWNER_MAP_SCHEMA."""
    by_email = index_systemusers(systemusers)
    owned = dict(records_owned or {})
    fallback: SystemUser | None = None
    if fallback_owner:
        fallback = by_email.get(_lower(fallback_owner))
        if fallback is None or fallback.disabled:
            state = "disabled" if fallback else "not a Dataverse user"
            raise OwnerConfigError(
                f"owners.yaml fallback_owner {fallback_owner!r} is {state}; name an enabled systemuser's email"
            )
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for u in close_users:
        uid = str(u["id"])
        seen.add(uid)
        email = _lower(u.get("email"))
        name = " ".join(x for x in (u.get("first_name"), u.get("last_name")) if x) or None
        rows.append(
            _resolve(uid, email, name, by_email, overrides, fallback, disabled_users, owned.get(uid, 0))
        )
    for uid, n in sorted(owned.items()):
        if uid not in seen and n:
            row = _resolve(uid, "", None, by_email, overrides, fallback, disabled_users, n)
            if row["status"] in ("unmatched", "fallback"):
                row["reason"] = "not a user of the Close organization (deleted?); " + row["reason"]
            rows.append(row)
    return pl.DataFrame(rows, schema=OWNER_MAP_SCHEMA).sort("close_user_id")


def _resolve(
    uid: str,
    email: str,
    name: str | None,
    by_email: Mapping[str, SystemUser],
    overrides: Mapping[str, str],
    fallback: SystemUser | None,
    disabled_users: str,
    owned: int,
) -> dict[str, Any]:
    base = {"close_user_id": uid, "close_email": email or None, "close_name": name, "records_owned": owned}
    target = overrides.get(uid.lower()) or (overrides.get(email) if email else None)
    if target:
        user = by_email.get(_lower(target))
        if user is None or user.disabled:
            state = "disabled" if user else "not a Dataverse user"
            raise OwnerConfigError(f"owners.yaml override for {uid} names {target!r}, which is {state}")
        return {
            **base,
            "systemuserid": user.systemuserid,
            "status": "override",
            "reason": f"owners.yaml override -> {user.email}",
        }
    user = by_email.get(email) if email else None
    if user is not None and not user.disabled:
        return {**base, "systemuserid": user.systemuserid, "status": "matched", "reason": "email match"}
    if user is not None:
        why = f"Dataverse user {user.email} is disabled (disabled users cannot own records)"
        if fallback is not None and disabled_users == "fallback":
            return {
                **base,
                "systemuserid": fallback.systemuserid,
                "status": "fallback",
                "reason": f"{why}; records go to the fallback owner {fallback.email}",
            }
        hint = fix_for("disabled", uid, fallback.email if fallback else None)
        return {**base, "systemuserid": None, "status": "disabled", "reason": f"{why}; {hint}"}
    why = f"no Dataverse user with email {email}" if email else "no email to match"
    if fallback is not None:
        return {
            **base,
            "systemuserid": fallback.systemuserid,
            "status": "fallback",
            "reason": f"{why}; records go to the fallback owner {fallback.email}",
        }
    hint = f"provision the user in Dataverse, or {fix_for('unmatched', uid, None)}"
    return {**base, "systemuserid": None, "status": "unmatched", "reason": f"{why}; {hint}"}


def owner_lookup(owner_map: pl.DataFrame) -> dict[str, str]:
    """close_user_id -> systemuserid for every resolved user (the mapping engine's `owners`)."""
    ok = owner_map.filter(pl.col("systemuserid").is_not_null())
    return dict(zip(ok["close_user_id"].to_list(), ok["systemuserid"].to_list(), strict=True))


def blocking_owners(owner_map: pl.DataFrame) -> pl.DataFrame:
    """Unresolved users that own records: these block loading."""
    return owner_map.filter(~pl.col("status").is_in(RESOLVED) & (pl.col("records_owned") > 0))
