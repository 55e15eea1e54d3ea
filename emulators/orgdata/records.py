"""Leads (with their contacts) and opportunities, including the edge cases a migration must survive."""

from __future__ import annotations

from . import pools
from .config import Ctx
from .util import (
    FIRST_LEAD_US,
    NOW_US,
    US_PER_DAY,
    day,
    money_formatted,
    phone_number,
    ts,
)

_SKIP = object()
LONG_WORDS = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt".split()


def long_text(length: int, start: str = "") -> str:
    """Readable filler of exactly `length` characters (for values longer than Dynamics columns)."""
    words = (start + " " + " ".join(LONG_WORDS * (length // 40 + 2))).strip()
    return words[:length]


def cf_value(ctx: Ctx, f: dict, contact_ids: list[str], base_us: int) -> object:
    """A value of the shape Close returns for the field's type, or _SKIP when it cannot have one."""
    rng = ctx.rng
    kind, multiple = f["type"], f["accepts_multiple_values"]
    if kind == "choices":
        if multiple:
            return rng.sample(f["choices"], rng.randint(1, min(3, len(f["choices"]))))
        return rng.choice(f["choices"])
    if kind == "text":
        return rng.choice(("Google Search", "Referral", "Webinar", "Trade show", "Partner", "Cold outreach"))
    if kind == "textarea":
        return rng.choice(pools.NOTES)
    if kind == "number":
        return rng.choice((rng.randint(1, 5000), round(rng.uniform(1, 100), 2)))
    if kind == "date":
        return day(base_us + rng.randrange(-400, 400) * US_PER_DAY)
    if kind == "datetime":
        return ts(base_us + rng.randrange(1, 90) * US_PER_DAY)
    if kind == "user":
        if multiple:
            return rng.sample(ctx.owner_ids, 2) if rng.random() < 0.5 else [rng.choice(ctx.owner_ids)]
        return rng.choice(ctx.owner_ids)
    if kind == "contact":
        return rng.choice(contact_ids) if contact_ids else _SKIP
    if kind == "hidden":
        return "legacy-" + ctx.ids.raw(10)
    raise AssertionError(f"unhandled custom field type {kind!r}")  # the field specs are static


def apply_custom(ctx: Ctx, obj: dict, kind: str, contact_ids: list[str], base_us: int, rate: float) -> dict:
    """Set flat `custom.cf_<id>` keys; returns the deprecated name-keyed dict for leads."""
    by_name: dict = {}
    for f in ctx.custom_fields[kind]:
        if ctx.rng.random() >= rate:
            continue
        value = cf_value(ctx, f, contact_ids, base_us)
        if value is _SKIP:
            continue
        obj["custom." + f["id"]] = value
        by_name[f["name"]] = value
    return by_name


def _company_name(ctx: Ctx) -> str:
    rng = ctx.rng
    return (
        rng.choice(pools.COMPANY_WORDS_A)
        + " "
        + rng.choice(pools.COMPANY_WORDS_B)
        + rng.choice(pools.COMPANY_SUFFIXES)
    )


def _lead_names(ctx: Ctx) -> list[str | None]:
    n = ctx.profile.leads
    special: list[str | None] = ["", None, "", None]
    special += ["Acme Corp", "ACME corp ", "acme  corp", "Acme\u00a0Corp", "Globex Inc.", " globex inc."]
    k = min(len(pools.NON_LATIN_COMPANIES), max(5, n // 100))
    special += list(pools.NON_LATIN_COMPANIES[:k])
    special.append(long_text(190, "Northern Territories Consolidated Mining, Exploration & Logistics"))
    names = special + [_company_name(ctx) for _ in range(n - len(special))]
    ctx.rng.shuffle(names)
    return names


def _contact_counts(ctx: Ctx) -> list[int]:
    n, total = ctx.profile.leads, ctx.profile.contacts
    counts = [0] * n
    single = min(total, int(n * 0.85))
    for i in ctx.rng.sample(range(n), single):
        counts[i] = 1
    for _ in range(total - single):
        counts[ctx.rng.randrange(n)] += 1
    return counts


def _slug(name: str | None) -> str:
    cleaned = "".join(ch for ch in (name or "").lower() if ch.isascii() and ch.isalnum())
    return cleaned[:24] or "company"


def _address(ctx: Ctx) -> dict:
    city, state, zipcode, country = ctx.rng.choice(pools.CITIES)
    return {
        "label": "business",
        "address_1": f"{ctx.rng.randint(1, 999)} {ctx.rng.choice(pools.STREETS)}",
        "address_2": ctx.rng.choice((None, "", "Suite 200", "Floor 3")),
        "city": city,
        "state": state,
        "zipcode": zipcode,
        "country": country,
    }


def build_leads(ctx: Ctx) -> tuple[list[dict], list[dict]]:
    rng, org = ctx.rng, ctx.org_id
    names = _lead_names(ctx)
    counts = _contact_counts(ctx)
    span = NOW_US - 30 * US_PER_DAY - FIRST_LEAD_US
    status_weights = tuple(w for _, w in ctx.shape.lead_statuses)
    leads: list[dict] = []
    contacts: list[dict] = []
    long_desc_done = False
    for i, name in enumerate(names):
        created = FIRST_LEAD_US + rng.randrange(span)
        owner = rng.choice(ctx.owner_ids)
        status = rng.choices(ctx.lead_statuses, status_weights)[0]
        lid = ctx.ids.new("lead")
        description = rng.choice(("", None, rng.choice(pools.NOTES)))
        if not long_desc_done and name and i > 0:
            description = long_text(2600, "Background: long-running account with a detailed history.")
            long_desc_done = True
        lead = {
            "id": lid,
            "name": name,
            "display_name": name or "",
            "url": f"https://www.{_slug(name)}.example.com" if rng.random() < 0.6 else None,
            "description": description,
            "status_id": status["id"],
            "status_label": status["label"],
            "addresses": [_address(ctx) for _ in range(rng.choice((0, 1, 1, 1, 2)))],
            "html_url": f"https://app.close.com/lead/{lid}/",
            "integration_links": [],
            "created_by": owner,
            "created_by_name": ctx.user_names[owner],
            "updated_by": owner,
            "updated_by_name": ctx.user_names[owner],
            "date_created": ts(created),
            "date_updated": ts(created + rng.randrange(NOW_US - created)),
            "organization_id": org,
            "_created_us": created,  # private: stripped before the org is returned
        }
        lead_contacts: list[dict] = []
        for _ in range(counts[i]):
            # "contact"-type fields on a contact point at an earlier contact of the same lead (an assistant).
            lead_contacts.append(build_contact(ctx, lead, created, owner, [c["id"] for c in lead_contacts]))
        contacts.extend(lead_contacts)
        if lead_contacts and not name:
            lead["display_name"] = lead_contacts[0]["name"]
        lead["custom"] = apply_custom(ctx, lead, "lead", [c["id"] for c in lead_contacts], created, 0.45)
        leads.append(lead)
    _contact_edge_cases(ctx, contacts)
    return leads, contacts


def build_contact(ctx: Ctx, lead: dict, lead_created: int, owner: str, siblings: list[str]) -> dict:
    rng = ctx.rng
    created = lead_created + rng.randrange(0, 5 * US_PER_DAY)
    if rng.random() < 0.03:
        name = rng.choice(pools.NON_LATIN_PEOPLE)
        first, last = "contact", ctx.ids.raw(6).lower()
    else:
        first, last = rng.choice(pools.FIRST_NAMES), rng.choice(pools.LAST_NAMES)
        name = f"{first} {last}"
    domain = _slug(lead["name"]) + ".example.com"
    emails = []
    if rng.random() < 0.85:
        emails.append(
            {"email": f"{first.lower()}.{last.lower()}@{domain}", "type": "office", "is_unsubscribed": False}
        )
    phones = []
    if rng.random() < 0.7:
        e164, formatted = phone_number(rng, rng.choice(("US", "US", "US", "US", "GB", "DE")))
        country = "US" if e164.startswith("+1") else ("GB" if e164.startswith("+44") else "DE")
        phones.append({"phone": e164, "phone_formatted": formatted, "type": "office", "country": country})
    cid = ctx.ids.new("cont")
    contact = {
        "id": cid,
        "lead_id": lead["id"],
        "organization_id": ctx.org_id,
        "name": name,
        "display_name": name,
        "title": rng.choice(pools.TITLES),
        "emails": emails,
        "phones": phones,
        "urls": [],
        "integration_links": [],
        "created_by": owner,
        "updated_by": owner,
        "date_created": ts(created),
        "date_updated": ts(created + rng.randrange(NOW_US - created)),
    }
    apply_custom(ctx, contact, "contact", siblings, created, 0.3)
    return contact


def _contact_edge_cases(ctx: Ctx, contacts: list[dict]) -> None:
    """Overwrite a few random contacts with the awkward shapes; the truth is recomputed from the data."""
    rng = ctx.rng
    picks = rng.sample(contacts, 10)
    for c, bad in zip(picks[:3], ("bob@", "no-at-sign.example.com", "a@b"), strict=True):
        c["emails"] = [{"email": bad, "type": "office", "is_unsubscribed": False}]
    for c in picks[3:7]:
        local = c["name"].split(" ")[0].lower() if c["name"].isascii() else "person"
        c["emails"] = [
            {"email": f"{local}@work.example.com", "type": "office", "is_unsubscribed": False},
            {"email": f"{local}.home@example.net", "type": "home", "is_unsubscribed": False},
            {"email": f"{local}@other.example.org", "type": "other", "is_unsubscribed": True},
        ]
        c["phones"] = []
        for kind in ("office", "mobile", "home", "direct", "fax"):
            e164, formatted = phone_number(rng)
            c["phones"].append({"phone": e164, "phone_formatted": formatted, "type": kind, "country": "US"})
        c["urls"] = [{"url": "https://www.linkedin.com/in/" + local, "type": "url"}]
    picks[7]["title"] = long_text(140, "Senior Executive Vice President of Global Strategic Partnerships")
    picks[8]["name"] = picks[8]["display_name"] = "Maximilian " + long_text(
        64, "Wolfeschlegelsteinhausenberger"
    )
    picks[9]["name"] = picks[9]["display_name"] = ""  # contact known only by e-mail address


_TYPE_WEIGHTS = {"active": 50, "won": 30, "lost": 20}
_CURRENCY_WEIGHTS = (85, 10, 5)  # applied to the shape's currencies, most used first
# (status type, value period, index into the shape's currencies)
_GUARANTEED = (
    ("won", "one_time", 0),
    ("lost", "one_time", 0),
    ("active", "monthly", 1),
    ("won", "annual", 2),
)


def build_opportunities(ctx: Ctx, leads: list[dict], contacts_by_lead: dict[str, list[dict]]) -> list[dict]:
    rng = ctx.rng
    by_pipeline = {
        p["id"]: [s for s in ctx.opportunity_statuses if s["pipeline_id"] == p["id"]] for p in ctx.pipelines
    }
    pipeline_weights = tuple(p.weight for p in ctx.shape.pipelines)
    currencies = ctx.shape.currencies
    opportunities = []
    for n in range(ctx.profile.opportunities):
        lead = rng.choice(leads)
        pipeline = rng.choices(ctx.pipelines, pipeline_weights)[0]
        statuses = by_pipeline[pipeline["id"]]
        kind = rng.choices(tuple(_TYPE_WEIGHTS), tuple(_TYPE_WEIGHTS.values()))[0]
        status = rng.choice([s for s in statuses if s["type"] == kind])
        period = rng.choices(("one_time", "monthly", "annual"), (65, 20, 15))[0]
        currency = rng.choices(currencies, _CURRENCY_WEIGHTS)[0]
        if n < len(_GUARANTEED):  # every org, however small, has each status type, period and currency
            kind, period, which = _GUARANTEED[n]
            currency = currencies[which]
            status = next(s for s in statuses if s["type"] == kind)
        created = lead["_created_us"] + rng.randrange(1, 20 * US_PER_DAY)
        closed = min(NOW_US - US_PER_DAY, created + rng.randrange(5, 120) * US_PER_DAY)
        value = rng.randrange(5, 2000) * 10_000 + (rng.choice((0, 0, 0, 50, 99)) if rng.random() < 0.2 else 0)
        if period == "monthly":  # a monthly fee is a fraction of a one-off deal
            value = max(1_000, value // 1_200 * 100)
        confidence = {"won": 100, "lost": 0}.get(status["type"], rng.choice((10, 25, 50, 75, 90)))
        annualized = value * 12 if period == "monthly" else value
        lead_contacts = contacts_by_lead.get(lead["id"], [])
        contact = rng.choice(lead_contacts) if lead_contacts and rng.random() < 0.8 else None
        owner = rng.choice(ctx.owner_ids)
        note = rng.choice(("", rng.choice(pools.NOTES)))
        if n == 0:
            note = long_text(2300, "Deal history: multi-year negotiation with procurement and legal.")
        oid = ctx.ids.new("oppo")
        opp = {
            "id": oid,
            "lead_id": lead["id"],
            "lead_name": lead["name"],
            "contact_id": contact["id"] if contact else None,
            "contact_name": contact["name"] if contact else None,
            "organization_id": ctx.org_id,
            "status_id": status["id"],
            "status_label": status["label"],
            "status_display_name": status["label"],
            "status_type": status["type"],
            "pipeline_id": pipeline["id"],
            "pipeline_name": pipeline["name"],
            "value": value,
            "value_currency": currency,
            "value_period": period,
            "value_formatted": money_formatted(value, currency, period),
            "confidence": confidence,
            "expected_value": value * confidence // 100,
            "annualized_value": annualized,
            "annualized_expected_value": annualized * confidence // 100,
            # For active deals Close uses date_won as the expected close date.
            "date_won": day(closed)
            if status["type"] == "won"
            else (day(closed) if rng.random() < 0.5 else None),
            "date_lost": day(closed) if status["type"] == "lost" else None,
            "note": note,
            "note_html": f"<body><p>{note}</p></body>" if note else "",
            "user_id": owner,
            "user_name": ctx.user_names[owner],
            "integration_links": [],
            "attachments": [],
            "is_stalled": False,
            "created_by": owner,
            "created_by_name": ctx.user_names[owner],
            "updated_by": owner,
            "updated_by_name": ctx.user_names[owner],
            "date_created": ts(created),
            "date_updated": ts(max(created, min(NOW_US - 1, closed + rng.randrange(US_PER_DAY)))),
            "_created_us": created,
            "_closed_us": closed,
        }
        if status["type"] == "lost":
            opp["date_won"] = None
        apply_custom(ctx, opp, "opportunity", [c["id"] for c in lead_contacts], created, 0.4)
        opportunities.append(opp)
    return opportunities
