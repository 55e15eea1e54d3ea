"""The emulated environment: configuration, metadata, record store, and the seeded system rows."""

from __future__ import annotations

from dataclasses import dataclass

from emulators.dataverse import processes, solutions
from emulators.dataverse.config import AppUser, DataverseEmulatorConfig, deterministic_id
from emulators.dataverse.metadata import Key, Metadata
from emulators.dataverse.security import Security
from emulators.dataverse.store import Store
from emulators.dataverse.values import now_iso


@dataclass
class Caller:
    systemuserid: str
    app_user: AppUser | None
    security: Security | None = None

    def lacks(self, privilege: str, config: DataverseEmulatorConfig) -> bool:
        if privilege == "prvOverrideCreatedOnCreatedBy" and not config.allow_override_createdon:
            return True
        if not privilege or self.app_user is None or self.security is None:
            return False
        # The application user's security roles decide (emulators/dataverse/security.py).
        return not self.security.holds(self.app_user.systemuserid, privilege)


class Environment:
    def __init__(self, config: DataverseEmulatorConfig):
        self.config = config
        self.metadata = Metadata(config.key_activation_seconds)
        self.store = Store(self.metadata)
        self.organization_id = deterministic_id("organization", config.org_name)
        self.businessunit_id = deterministic_id("businessunit", config.org_name)
        self.currency_id = deterministic_id("transactioncurrency", "USD")
        self.team_id = deterministic_id("team", config.org_name)
        self.schema_log: list[dict] = []  # replayable schema writes (persistence)
        self._seed()
        self._seed_keys()
        solutions.seed(self)  # the default publishers and solutions
        processes.seed(self)  # the shipped Opportunity Sales Process
        self.security = Security(self)  # roles and privileges of the seeded application users

    def _row(self, table: str, record_id: str, values: dict, owner: str | None = None) -> None:
        ent = self.metadata.tables[table]
        now = now_iso()
        admin = self.config.app_users[0].systemuserid if self.config.app_users else record_id
        row = {
            ent.primary_id: record_id,
            "createdon": now,
            "modifiedon": now,
            "versionnumber": self.store.next_version(),
        }
        row["createdby"] = row["modifiedby"] = ["systemuser", admin]
        if "statecode" in ent.attributes:
            row["statecode"], row["statuscode"] = 0, ent.attributes["statuscode"].default
        if owner and "ownerid" in ent.attributes:
            row["ownerid"] = row["owninguser"] = ["systemuser", owner]
        row.update(values)
        self.store.table(table)[record_id] = row

    def _seed(self) -> None:
        cfg = self.config
        self._row("businessunit", self.businessunit_id, {"name": cfg.org_name})
        self._row(
            "transactioncurrency",
            self.currency_id,
            {
                "currencyname": "US Dollar",
                "isocurrencycode": "USD",
                "currencysymbol": "$",
                "exchangerate": 1.0,
            },
        )
        for iso, (name, symbol, rate) in cfg.extra_currencies.items():
            self._row(
                "transactioncurrency",
                deterministic_id("transactioncurrency", iso),
                {
                    "currencyname": name,
                    "isocurrencycode": iso,
                    "currencysymbol": symbol,
                    "exchangerate": rate,
                },
            )
        self._row(
            "organization",
            self.organization_id,
            {
                "name": cfg.org_name,
                "maxuploadfilesize": cfg.max_upload_file_size,
                "blockedattachments": "ade;adp;app;asa;ashx;asmx;asp;bas;bat;cdx;cer;chm;class;cmd;com;config;cpl;crt;csh;dll;exe;fxp;hlp;hta;htr;htw;ida;idc;idq;inf;ins;isp;its;js;jse;ksh;lnk;mad;maf;mag;mam;maq;mar;mas;mat;mau;mav;maw;mda;mdb;mde;mdt;mdw;mdz;msc;msh;msh1;msh1xml;msh2;msh2xml;mshxml;msi;msp;mst;ops;pcd;pif;prf;prg;printer;pst;reg;rem;scf;scr;sct;shb;shs;shtm;shtml;soap;stm;tmp;url;vb;vbe;vbs;vsmacros;vss;vst;vsw;ws;wsc;wsf;wsh",
                "basecurrencyid": ["transactioncurrency", self.currency_id],
                "languagecode": 1033,
            },
        )
        bu = ["businessunit", self.businessunit_id]
        for app in cfg.app_users:
            self._row(
                "systemuser",
                app.systemuserid,
                {
                    "firstname": "#",
                    "lastname": app.name,
                    "fullname": f"# {app.name}",
                    "domainname": f"{app.client_id}@{cfg.org_name}.onmicrosoft.com",
                    "internalemailaddress": f"{app.client_id}@{cfg.org_name}.onmicrosoft.com",
                    "applicationid": app.client_id,
                    "azureactivedirectoryobjectid": deterministic_id("aad", app.client_id),
                    "accessmode": 4,
                    "isdisabled": False,
                    "islicensed": False,
                    "businessunitid": bu,
                },
            )
        for user in cfg.seed_users:
            email = str(user.get("internalemailaddress") or "")
            if not email:
                raise ValueError(f"Every seed user needs an internalemailaddress; got {user!r}.")
            first, last = str(user.get("firstname") or ""), str(user.get("lastname") or "")
            disabled = bool(user.get("isdisabled"))
            # Optional overrides let a demo pin ids; by default they derive from the email address.
            record_id = str(user.get("systemuserid") or deterministic_id("systemuser", email.lower()))
            self._row(
                "systemuser",
                record_id,
                {
                    "firstname": first,
                    "lastname": last,
                    "fullname": f"{first} {last}".strip() or email,
                    "domainname": str(user.get("domainname") or email),
                    "internalemailaddress": email,
                    "azureactivedirectoryobjectid": str(
                        user.get("azureactivedirectoryobjectid") or deterministic_id("aad", email.lower())
                    ),
                    "accessmode": 0,
                    "isdisabled": disabled,
                    "islicensed": not disabled,
                    "businessunitid": bu,
                },
            )
        admin = cfg.app_users[0].systemuserid if cfg.app_users else None
        self._row(
            "team",
            self.team_id,
            {
                "name": cfg.org_name,
                "businessunitid": bu,
                "isdefault": True,
                "teamtype": 0,
                "administratorid": ["systemuser", admin] if admin else None,
            },
        )

    def _seed_keys(self) -> None:
        # Standard alternate key of systemuser (reference §7.5): systemusers(azureactivedirectoryobjectid=<guid>).
        ent = self.metadata.tables["systemuser"]
        key = Key(
            entity="systemuser",
            schema_name="AADObjectIdKey",
            key_attributes=["azureactivedirectoryobjectid"],
            display_name="Entra ID object id",
            metadata_id=deterministic_id("key", "systemuser", "aadobjectidkey"),
            created_at=float("-inf"),
            status="Active",
        )
        ent.keys.append(key)
        self.store.activate_key(ent, key)

    def caller(self, systemuserid: str | None, app_user: AppUser | None = None) -> Caller:
        if systemuserid is None:
            # No auth middleware (in-process tests of the core): act as the first application user.
            app_user = self.config.app_users[0] if self.config.app_users else None
            systemuserid = app_user.systemuserid if app_user else self.team_id
        if app_user is None:
            app_user = next((a for a in self.config.app_users if a.systemuserid == systemuserid), None)
        return Caller(systemuserid, app_user, self.security)
