"""Security roles and privileges, as the Web API exposes them (reference §7.5).

Sources (MicrosoftDocs/powerapps-docs): reference/entities/role.md (roles, BusinessOwned, AddPrivilegesRole /
RemovePrivilegeRole / ReplacePrivilegesRole / RetrieveRolePrivilegesRole), privilege.md (privileges,
read-only, N:N `roleprivileges_association` through the `roleprivileges` intersect), systemuser.md (N:N
`systemuserroles_association`), webapi/reference/retrieveuserprivileges.md + roleprivilege.md (RolePrivilege:
Depth, PrivilegeId, BusinessUnitId, PrivilegeName) and privilegedepth.md (Basic 0, Local 1, Deep 2,
Global 3; serialised by name in JSON). The intersect rows store `privilegedepthmask` (Basic 1, Local 2,
Deep 4, Global 8, as the SDK's PrivilegeDepth remarks give).

Privilege names: prv<Action><Entity>, where activities share `Activity` (Microsoft's custom activity sample
grants prvCreateActivity for its new activity table), annotation is `Note` and systemuser is `User`; a custom
table's privileges carry its SchemaName (prvCreatec2d_Thing).

Every application user of the configuration gets a seeded role holding every privilege at Global depth but
those listed in its `AppUser.missing_privileges`. Like System Administrator, these roles receive the
privileges of each custom table created later. Unlike the real System Administrator role they can be edited
(RemovePrivilegeRole), so that tests can take one privilege away.

Only the calling application user's roles decide a write (an impersonated user acts with the privileges of
the application user that impersonates it); depth is not modelled on records (any depth grants access).

Shipped roles, users' roles and teams (what a security-role plan reads)
-----------------------------------------------------------------------
Every business unit holds the roles a Dynamics 365 Sales org ships (SHIPPED_ROLES; the predefined roles of the
CRM SDK "Role (security role) entity privileges" tables, plus Basic User, Environment Maker and Sales Team
Member of current orgs), `roleid` = deterministic_id("role", <businessunitid>, <lower-case name>)
(`shipped_role_id`). System Administrator holds every privilege at Global depth; the other shipped roles are
served without their privilege sets (the emulator does not model them: only the application user's role
decides a write).

Each seeded Dynamics user (config.seed_users, from emulators/orgdata `dynamics_users`) holds the roles named in
its optional "roles" list, else: the first user System Administrator, the second Sales Manager when there are
three users or more, every other user Salesperson. Owner teams (teamtype 0), `teamid` =
deterministic_id("team", <org_name>, <lower-case team name>) (`team_id_for`): "Sales Team" (holders of
Salesperson or Sales Manager) and "Sales Leadership" (holders of System Administrator or Sales Manager), or the
teams named in a user's optional "teams" list; the business unit's default team (isdefault true, named after
the org) has every seeded user as member. Administrator of each team: the first seeded user.

Reads (N:N relationships systemuserroles_association and teammembership_association, both directions):
    GET roles?$select=name,_businessunitid_value
    GET systemusers(<id>)/systemuserroles_association        -> {"value": [<role rows>]}
    GET systemusers?$select=fullname&$expand=systemuserroles_association($select=name)
        -> each user row carries "systemuserroles_association": [{"roleid", "name", ...}]
    GET teams?$select=name,teamtype,isdefault&$expand=teammembership_association($select=fullname)
    GET teams(<id>)/teammembership_association, GET systemusers(<id>)/teammembership_association,
    GET roles(<id>)/systemuserroles_association (the users holding a role).
Writes: POST/DELETE systemusers(<id>)/systemuserroles_association/$ref as before; team membership is read-only.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from emulators.dataverse.config import deterministic_id
from emulators.dataverse.errors import DataverseError
from emulators.dataverse.http import API_ROOT, base_url, json_response, no_content, read_json
from emulators.dataverse.odata import parse_key, split_segment

if TYPE_CHECKING:
    from emulators.dataverse.metadata import Entity
    from emulators.dataverse.state import Caller, Environment

# Seeded metadata of the two readable tables (the intersect tables are reached through their relationships).
TABLES: dict[str, dict] = {
    "role": {
        "set": "roles",
        "otc": 1036,
        "id": "roleid",
        "primary": "name",
        "ownership": "BusinessOwned",
        "display": ["Security Role", "Security Roles"],
        "has_activities": False,
        "has_notes": False,
        "bulk": False,
        "families": ["audit"],
        "attrs": [
            ["name", "String", {"max": 100, "req": "SystemRequired", "name": "Name"}],
            [
                "businessunitid",
                "Lookup",
                {
                    "targets": ["businessunit"],
                    "req": "SystemRequired",
                    "access": "create",
                    "name": "Business Unit",
                },
            ],
            ["parentroleid", "Lookup", {"targets": ["role"], "access": "ro", "name": "Parent Role"}],
        ],
    },
    "privilege": {
        "set": "privileges",
        "otc": 1023,
        "id": "privilegeid",
        "primary": "name",
        "ownership": "None",
        "display": ["Privilege", "Privileges"],
        "has_activities": False,
        "has_notes": False,
        "bulk": False,
        "families": [],
        "attrs": [
            ["name", "String", {"max": 256, "access": "ro"}],
            ["accessright", "Integer", {"access": "ro"}],
            ["canbebasic", "Boolean", {"access": "ro", "default": False}],
            ["canbelocal", "Boolean", {"access": "ro", "default": False}],
            ["canbedeep", "Boolean", {"access": "ro", "default": False}],
            ["canbeglobal", "Boolean", {"access": "ro", "default": False}],
            ["versionnumber", "BigInt", {"access": "ro"}],
        ],
    },
}

DEPTHS = {"Basic": 0, "Local": 1, "Deep": 2, "Global": 3}  # PrivilegeDepth EnumType
DEPTH_NAMES = {value: name for name, value in DEPTHS.items()}
DEPTH_MASK = {0: 1, 1: 2, 2: 4, 3: 8}  # roleprivileges.privilegedepthmask
MASK_DEPTH = {mask: depth for depth, mask in DEPTH_MASK.items()}
# AccessRights of each record privilege (privilege.accessright).
ACCESS_RIGHTS = {
    "Read": 1,
    "Write": 2,
    "Append": 4,
    "AppendTo": 16,
    "Create": 32,
    "Delete": 65536,
    "Share": 262144,
    "Assign": 524288,
}
USER_OWNED_ACTIONS = ("Create", "Read", "Write", "Delete", "Append", "AppendTo", "Assign", "Share")
ORG_OWNED_ACTIONS = ("Create", "Read", "Write", "Delete", "Append", "AppendTo")
# Tables whose privileges are not named after their SchemaName.
PRIVILEGE_ENTITY = {
    "systemuser": "User",
    "annotation": "Note",
    "businessunit": "BusinessUnit",
    "transactioncurrency": "TransactionCurrency",
    "asyncoperation": "AsyncOperation",
    "organization": "Organization",
    "role": "Role",
    "team": "Team",
    "workflow": "Workflow",
    "processstage": "ProcessStage",
    "opportunitysalesprocess": "OpportunitySalesProcess",
}
# Privileges that are not about one table's records (the ones the loader and schema writes use).
MISC_PRIVILEGES = (
    "prvOverrideCreatedOnCreatedBy",
    "prvBypassCustomBusinessLogic",
    "prvBypassCustomPlugins",
    "prvActOnBehalfOfAnotherUser",
    "prvBulkDelete",
    *(
        f"prv{a}{what}"
        for what in ("Entity", "Attribute", "Relationship", "EntityKey")
        for a in ("Create", "Read", "Write", "Delete")
    ),
)
ROLE_SET = "roleprivileges"  # store table of the role <-> privilege intersect
USER_ROLES = "systemuserroles"  # store table of the systemuser <-> role intersect
TEAM_MEMBERS = "teammembership"  # store table of the team <-> systemuser intersect
SYSTEM_ADMINISTRATOR = "System Administrator"
SHIPPED_ROLES = (
    SYSTEM_ADMINISTRATOR,
    "System Customizer",
    "Basic User",
    "Environment Maker",
    "CEO-Business Manager",
    "Vice President of Sales",
    "Sales Manager",
    "Salesperson",
    "Sales Team Member",
    "Vice President of Marketing",
    "Marketing Manager",
    "Marketing Professional",
    "Customer Service Representative",
    "CSR Manager",
    "Delegate",
)
SALES_TEAM, LEADERSHIP_TEAM = "Sales Team", "Sales Leadership"
TEAMS_BY_ROLE = {
    "Salesperson": (SALES_TEAM,),
    "Sales Manager": (SALES_TEAM, LEADERSHIP_TEAM),
    SYSTEM_ADMINISTRATOR: (LEADERSHIP_TEAM,),
}
# N:N navigation properties: (table, property) -> (related table, intersect table, own column, other column).
MANY_TO_MANY = {
    ("systemuser", "systemuserroles_association"): ("role", USER_ROLES, "systemuserid", "roleid"),
    ("role", "systemuserroles_association"): ("systemuser", USER_ROLES, "roleid", "systemuserid"),
    ("team", "teammembership_association"): ("systemuser", TEAM_MEMBERS, "teamid", "systemuserid"),
    ("systemuser", "teammembership_association"): ("team", TEAM_MEMBERS, "systemuserid", "teamid"),
    ("role", "roleprivileges_association"): ("privilege", ROLE_SET, "roleid", "privilegeid"),
}
ACTION_PREFIX = "Microsoft.Dynamics.CRM."


def privilege_entity(ent: Entity) -> str | None:
    """The entity part of a table's privilege names, None when the table has no privileges of its own."""
    if ent.is_activity or ent.is_pointer:
        return "Activity"
    if ent.logical_name in PRIVILEGE_ENTITY:
        return PRIVILEGE_ENTITY[ent.logical_name]
    if ent.ownership == "None":
        return None
    return ent.schema_name if ent.is_custom else ent.schema_name[:1].upper() + ent.schema_name[1:]


def table_privileges(ent: Entity) -> list[tuple[str, str]]:
    """(PrivilegeType, privilege name) of each privilege the table declares."""
    entity = privilege_entity(ent)
    if entity is None:
        return []
    actions = USER_OWNED_ACTIONS if ent.ownership == "UserOwned" else ORG_OWNED_ACTIONS
    if ent.logical_name == "organization":
        actions = ("Read", "Write")
    return [(a, f"prv{a}{entity}") for a in actions]


def metadata_privileges(ent: Entity) -> list[dict[str, Any]]:
    """EntityMetadata.Privileges (SecurityPrivilegeMetadata): how a client learns a table's privilege names."""
    scoped = ent.ownership == "UserOwned"
    return [
        {
            "Name": name,
            "PrivilegeId": privilege_id(name),
            "PrivilegeType": kind,
            "CanBeBasic": scoped,
            "CanBeLocal": scoped,
            "CanBeDeep": scoped,
            "CanBeGlobal": True,
            "CanBeEntityReference": False,
            "CanBeParentEntityReference": False,
        }
        for kind, name in table_privileges(ent)
    ]


def table_privilege(action: str, ent: Entity) -> str:
    """The privilege an action on the table's records needs ("" when none is checked)."""
    name = privilege_entity(ent)
    return f"prv{action}{name}" if name else ""


def privilege_id(name: str) -> str:
    return deterministic_id("privilege", name.lower())


def role_id_for(systemuserid: str) -> str:
    return deterministic_id("role", systemuserid)


def shipped_role_id(businessunit_id: str, name: str) -> str:
    return deterministic_id("role", businessunit_id, name.lower())


def team_id_for(org_name: str, name: str) -> str:
    return deterministic_id("team", org_name, name.lower())


def default_roles(index: int, user_count: int) -> list[str]:
    """The roles a seeded user gets when its seed entry names none."""
    if index == 0:
        return [SYSTEM_ADMINISTRATOR]
    if index == 1 and user_count >= 3:
        return ["Sales Manager"]
    return ["Salesperson"]


def _depth(value: Any) -> int:
    if isinstance(value, str) and value in DEPTHS:
        return DEPTHS[value]
    if isinstance(value, int) and not isinstance(value, bool) and value in DEPTH_MASK:
        return value
    raise DataverseError(
        400, "0x80040203", f"Depth must be one of {', '.join(DEPTHS)} (PrivilegeDepth); got {value!r}."
    )


class Security:
    """Roles, privileges and their associations, kept in the record store (persisted with it)."""

    def __init__(self, env: Environment):
        self.env = env
        self.lock = threading.RLock()
        self.version = 0  # bumped on every change of an association: invalidates `_held`
        self._synced_metadata = -1
        self._held: dict[str, tuple[tuple[int, int], frozenset[str]]] = {}
        # role id -> privileges it must not receive (the seeded app-user roles get new tables' privileges)
        self.all_access: dict[str, frozenset[str]] = {}
        self._seed()

    # ---- seeding --------------------------------------------------------------------------------------
    def _seed(self) -> None:
        from emulators.dataverse.values import now_iso  # values imports metadata, which imports TABLES here

        store, now = self.env.store, now_iso()
        bu = ["businessunit", self.env.businessunit_id]
        for app in self.env.config.app_users:
            role_id = role_id_for(app.systemuserid)
            store.table("role")[role_id] = {
                "roleid": role_id,
                "name": f"{app.name} (application user role)",
                "businessunitid": bu,
                "createdon": now,
                "modifiedon": now,
                "versionnumber": store.next_version(),
                "createdby": ["systemuser", app.systemuserid],
                "modifiedby": ["systemuser", app.systemuserid],
            }
            self.all_access[role_id] = frozenset(app.missing_privileges)
            self._associate_user(app.systemuserid, role_id)
        self._seed_shipped_roles(now)
        self._seed_users_and_teams(now)
        self.sync()

    def _seed_shipped_roles(self, now: str) -> None:
        bu = self.env.businessunit_id
        admin = self.env.config.app_users[0].systemuserid if self.env.config.app_users else self.env.team_id
        for name in SHIPPED_ROLES:
            role_id = shipped_role_id(bu, name)
            self.env.store.table("role")[role_id] = {
                "roleid": role_id,
                "name": name,
                "businessunitid": ["businessunit", bu],
                "createdon": now,
                "modifiedon": now,
                "versionnumber": self.env.store.next_version(),
                "createdby": ["systemuser", admin],
                "modifiedby": ["systemuser", admin],
            }
        self.all_access[shipped_role_id(bu, SYSTEM_ADMINISTRATOR)] = frozenset()

    def _seed_users_and_teams(self, now: str) -> None:
        env, bu = self.env, self.env.businessunit_id
        users = [
            (
                str(
                    u.get("systemuserid")
                    or deterministic_id("systemuser", str(u["internalemailaddress"]).lower())
                ),
                u,
            )
            for u in env.config.seed_users
        ]
        teams: dict[str, list[str]] = {}
        for index, (user_id, user) in enumerate(users):
            roles = [str(r) for r in (user.get("roles") or default_roles(index, len(users)))]
            unknown = [r for r in roles if r not in SHIPPED_ROLES]
            if unknown:
                raise ValueError(
                    f"Seed user {user['internalemailaddress']} names unknown roles {unknown}; "
                    f"use names of {list(SHIPPED_ROLES)}."
                )
            for role in roles:
                self._associate_user(user_id, shipped_role_id(bu, role))
            names = user.get("teams")
            if names is None:
                names = [t for role in roles for t in TEAMS_BY_ROLE.get(role, ())]
            for team in dict.fromkeys(str(n) for n in names):
                teams.setdefault(team, []).append(user_id)
        admin = users[0][0] if users else None
        for name, members in teams.items():
            team_id = team_id_for(env.config.org_name, name)
            env.store.table("team")[team_id] = {
                "teamid": team_id,
                "name": name,
                "businessunitid": ["businessunit", bu],
                "administratorid": ["systemuser", admin] if admin else None,
                "isdefault": False,
                "teamtype": 0,
                "createdon": now,
                "modifiedon": now,
                "versionnumber": env.store.next_version(),
            }
            for member in members:
                self._add_member(team_id, member)
        for user_id, _ in users:  # the business unit's default team holds every user of the unit
            self._add_member(env.team_id, user_id)

    def _add_member(self, team_id: str, systemuserid: str) -> None:
        rid = deterministic_id("teammembership", team_id, systemuserid)
        self.env.store.table(TEAM_MEMBERS)[rid] = {
            "teammembershipid": rid,
            "teamid": team_id,
            "systemuserid": systemuserid,
            "versionnumber": self.env.store.next_version(),
        }

    def sync(self) -> None:
        """Create the privileges of tables created since the last call (and grant them to all-access roles)."""
        metadata = self.env.metadata
        if self._synced_metadata == metadata.version:
            return
        with self.lock:
            names: list[tuple[str, str]] = [(n, "misc") for n in MISC_PRIVILEGES]
            for ent in list(metadata.tables.values()):
                names += [(name, ent.ownership) for _, name in table_privileges(ent)]
            rows = self.env.store.table("privilege")
            for name, ownership in dict(names).items():
                pid = privilege_id(name)
                if pid in rows:
                    continue
                action = next(
                    (a for a in sorted(ACCESS_RIGHTS, key=len, reverse=True) if name.startswith(f"prv{a}")),
                    "",
                )
                scoped = ownership == "UserOwned"
                rows[pid] = {
                    "privilegeid": pid,
                    "name": name,
                    "accessright": ACCESS_RIGHTS.get(action, 0) if ownership != "misc" else 0,
                    "canbebasic": scoped,
                    "canbelocal": scoped,
                    "canbedeep": scoped,
                    "canbeglobal": True,
                    "versionnumber": self.env.store.next_version(),
                }
                for role_id, withheld in self.all_access.items():
                    if name not in withheld and role_id in self.env.store.table("role"):
                        self._grant(role_id, pid, 3)
            self._synced_metadata = metadata.version
            self.version += 1

    def before_restore(self, saved_rows: dict[str, Any]) -> None:
        """A saved org (persistence) replaces the seeded associations: a privilege removed before the save
        stays removed."""
        if saved_rows.get("role"):
            with self.lock:
                self.env.store.table(ROLE_SET).clear()
                self.env.store.table(USER_ROLES).clear()
                self.env.store.table(TEAM_MEMBERS).clear()
                self.version += 1

    # ---- associations ---------------------------------------------------------------------------------
    def _associate_user(self, systemuserid: str, role_id: str) -> None:
        rid = deterministic_id("systemuserrole", systemuserid, role_id)
        self.env.store.table(USER_ROLES)[rid] = {
            "systemuserroleid": rid,
            "systemuserid": systemuserid,
            "roleid": role_id,
            "versionnumber": self.env.store.next_version(),
        }
        self.version += 1

    def _grant(self, role_id: str, pid: str, depth: int) -> None:
        rid = deterministic_id("roleprivilege", role_id, pid)
        self.env.store.table(ROLE_SET)[rid] = {
            "roleprivilegeid": rid,
            "roleid": role_id,
            "privilegeid": pid,
            "privilegedepthmask": DEPTH_MASK[depth],
            "versionnumber": self.env.store.next_version(),
        }
        self.env.store.write_count += 1
        self.version += 1

    def _revoke(self, role_id: str, pid: str) -> None:
        if self.env.store.table(ROLE_SET).pop(deterministic_id("roleprivilege", role_id, pid), None):
            self.env.store.write_count += 1
            self.version += 1

    @staticmethod
    def is_many_to_many(table: str, nav: str) -> bool:
        return (table, nav) in MANY_TO_MANY

    def related(self, table: str, record_id: str, nav: str) -> tuple[str, list[dict]] | None:
        """(related table, related rows) of an N:N navigation property; None when `nav` is not one."""
        spec = MANY_TO_MANY.get((table, nav))
        if spec is None:
            return None
        other_table, intersect, own, other = spec
        rows = self.env.store.table(other_table)
        ids = [r[other] for r in self.env.store.table(intersect).values() if r[own] == record_id]
        return other_table, [rows[i] for i in dict.fromkeys(ids) if i in rows]

    def user_roles(self, systemuserid: str) -> list[str]:
        roles = self.env.store.table("role")
        return [
            r["roleid"]
            for r in self.env.store.table(USER_ROLES).values()
            if r["systemuserid"] == systemuserid and r["roleid"] in roles
        ]

    def role_privileges(self, role_id: str) -> dict[str, int]:
        """privilege id -> depth (PrivilegeDepth value) held by one role."""
        return {
            r["privilegeid"]: MASK_DEPTH[r["privilegedepthmask"]]
            for r in self.env.store.table(ROLE_SET).values()
            if r["roleid"] == role_id
        }

    def user_privileges(self, systemuserid: str) -> dict[str, tuple[int, str]]:
        """privilege id -> (deepest depth, business unit of the role granting it) over the user's roles."""
        out: dict[str, tuple[int, str]] = {}
        roles = self.env.store.table("role")
        for role_id in self.user_roles(systemuserid):
            bu = roles[role_id].get("businessunitid") or ["businessunit", self.env.businessunit_id]
            for pid, depth in self.role_privileges(role_id).items():
                if pid not in out or out[pid][0] < depth:
                    out[pid] = (depth, bu[1])
        return out

    def holds(self, systemuserid: str, privilege: str) -> bool:
        self.sync()
        marker = (self.version, len(self.env.store.table("role")))
        cached = self._held.get(systemuserid)
        if cached is None or cached[0] != marker:
            with self.lock:
                privileges = self.env.store.table("privilege")
                names = frozenset(
                    privileges[pid]["name"] for pid in self.user_privileges(systemuserid) if pid in privileges
                )
                cached = self._held[systemuserid] = (marker, names)
        return privilege in cached[1]

    # ---- the role actions -------------------------------------------------------------------------------
    def add_privileges(self, role_id: str, items: Any) -> None:
        if not isinstance(items, list):
            raise DataverseError(
                400, "0x80040203", "AddPrivilegesRole needs Privileges: [RolePrivilege, ...]."
            )
        with self.lock:
            for item in items:
                pid = str((item or {}).get("PrivilegeId") or "").lower() if isinstance(item, dict) else ""
                self._known_privilege(pid)
                self._grant(role_id, pid, _depth(item.get("Depth", "Global")))

    def remove_privilege(self, role_id: str, body: dict) -> None:
        ref = body.get("Privilege")
        pid = ""
        if isinstance(ref, dict):
            pid = str(ref.get("privilegeid") or "")
        elif isinstance(body.get("Privilege@odata.bind"), str):
            _, key = split_segment(body["Privilege@odata.bind"].rsplit("/", 1)[-1])
            pid = str(parse_key(key or ""))
        elif isinstance(body.get("PrivilegeId"), str):  # the SDK message's parameter name
            pid = body["PrivilegeId"]
        self._known_privilege(pid.lower())
        with self.lock:
            self._revoke(role_id, pid.lower())

    def replace_privileges(self, role_id: str, items: Any) -> None:
        with self.lock:
            for pid in list(self.role_privileges(role_id)):
                self._revoke(role_id, pid)
            self.add_privileges(role_id, items)

    def _known_privilege(self, pid: str) -> None:
        if not pid or pid not in self.env.store.table("privilege"):
            raise DataverseError(
                404, "0x80040217", f"Entity 'privilege' With Id = {pid or '(none)'} Does Not Exist"
            )

    def role_privilege_json(self, pid: str, depth: int, bu: str) -> dict[str, Any]:
        name = self.env.store.table("privilege").get(pid, {}).get("name")
        return {"Depth": DEPTH_NAMES[depth], "PrivilegeId": pid, "BusinessUnitId": bu, "PrivilegeName": name}


class SecurityRoutes:
    """Bound functions/actions and N:N navigation of systemusers(<id>) and roles(<id>)."""

    def __init__(self, env: Environment):
        self.env = env

    def _root(self, request: Request) -> str:
        return base_url(request, self.env.config.org_url) + API_ROOT

    def _record(self, ent: Entity, key: str) -> str:
        record_id = parse_key(key)
        if not isinstance(record_id, str) or record_id.lower() not in self.env.store.table(ent.logical_name):
            raise DataverseError(
                404, "0x80040217", f"Entity '{ent.logical_name}' With Id = {key} Does Not Exist"
            )
        return record_id.lower()

    async def handle(
        self, request: Request, ent: Entity, key: str, rest: list[str], caller: Caller
    ) -> Response | None:
        """The response for a security route, None when the path is not one."""
        if ent.logical_name not in ("systemuser", "role"):
            return None
        security, method = self.env.security, request.method
        sub = rest[0].removesuffix("()")
        nav, nav_key = split_segment(rest[0]) if not sub.startswith(ACTION_PREFIX) else (sub, None)
        security.sync()
        if ent.logical_name == "systemuser" and sub == ACTION_PREFIX + "RetrieveUserPrivileges":
            if method != "GET" or len(rest) != 1:
                return None
            user_id = self._record(ent, key)
            body = [
                security.role_privilege_json(pid, depth, bu)
                for pid, (depth, bu) in sorted(security.user_privileges(user_id).items())
            ]
            context = f"{self._root(request)}/$metadata#Microsoft.Dynamics.CRM.RetrieveUserPrivilegesResponse"
            return json_response({"@odata.context": context, "RolePrivileges": body})
        if ent.logical_name == "systemuser" and nav == "systemuserroles_association":
            return await self._user_roles(request, self._record(ent, key), nav_key, rest[1:], caller)
        if ent.logical_name != "role":
            return None
        role_id = self._record(ent, key)
        if sub == ACTION_PREFIX + "RetrieveRolePrivilegesRole" and method == "GET":
            bu = (self.env.store.table("role")[role_id].get("businessunitid") or ["", ""])[1]
            body = [
                security.role_privilege_json(pid, depth, bu)
                for pid, depth in sorted(security.role_privileges(role_id).items())
            ]
            context = (
                f"{self._root(request)}/$metadata#Microsoft.Dynamics.CRM.RetrieveRolePrivilegesRoleResponse"
            )
            return json_response({"@odata.context": context, "RolePrivileges": body})
        if sub in (
            ACTION_PREFIX + a for a in ("AddPrivilegesRole", "RemovePrivilegeRole", "ReplacePrivilegesRole")
        ):
            if method != "POST":
                return None
            self._check(caller, "prvWriteRole", ent)
            body = await read_json(request, "roles")
            body = body if isinstance(body, dict) else {}
            action = sub.removeprefix(ACTION_PREFIX)
            if action == "AddPrivilegesRole":
                security.add_privileges(role_id, body.get("Privileges"))
            elif action == "ReplacePrivilegesRole":
                security.replace_privileges(role_id, body.get("Privileges"))
            else:
                security.remove_privilege(role_id, body)
            return no_content()
        if nav == "roleprivileges_association" and method == "GET" and len(rest) == 1:
            rows = self.env.store.table("privilege")
            value = [
                {"privilegeid": pid, "name": rows[pid]["name"], "accessright": rows[pid]["accessright"]}
                for pid in sorted(security.role_privileges(role_id))
                if pid in rows
            ]
            return json_response(
                {"@odata.context": f"{self._root(request)}/$metadata#privileges", "value": value}
            )
        return None

    async def _user_roles(
        self, request: Request, user_id: str, role_key: str | None, rest: list[str], caller: Caller
    ) -> Response | None:
        security, roles = self.env.security, self.env.store.table("role")
        if rest != ["$ref"]:  # reads are served as every N:N navigation property (Security.related)
            return None
        user_table = self.env.metadata.tables["systemuser"]
        if request.method == "POST" and role_key is None:
            # POST systemusers(<id>)/systemuserroles_association/$ref {"@odata.id": ".../roles(<id>)"}
            body = await read_json(request, "systemusers")
            ref = body.get("@odata.id") if isinstance(body, dict) else None
            _, key = split_segment(str(ref or "").rsplit("/", 1)[-1])
            role_id = str(parse_key(key or "")).lower()
            if role_id not in roles:
                raise DataverseError(404, "0x80040217", f"Entity 'role' With Id = {role_id} Does Not Exist")
            self._check(caller, "prvWriteUser", user_table)
            with security.lock:
                security._associate_user(user_id, role_id)
                self.env.store.write_count += 1
            return no_content()
        if request.method == "DELETE" and role_key is not None:
            self._check(caller, "prvWriteUser", user_table)
            rid = deterministic_id("systemuserrole", user_id, str(parse_key(role_key)).lower())
            with security.lock:
                if self.env.store.table(USER_ROLES).pop(rid, None) is not None:
                    security.version += 1
                    self.env.store.write_count += 1
            return no_content()
        return None

    def _check(self, caller: Caller, privilege: str, ent: Entity) -> None:
        from emulators.dataverse.records import privilege_denied

        if caller.lacks(privilege, self.env.config):
            raise privilege_denied(caller, privilege, ent)
