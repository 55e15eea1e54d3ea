"""Schema writes: custom tables (incl. activity tables), columns, lookups, keys, options (reference §6).

Each operation takes the JSON body a client sends and is recorded in `env.schema_log`, so persistence can
replay the schema before it reloads the rows. `solution` is the unique name the request names
(`MSCRM.SolutionUniqueName` or the action's `SolutionUniqueName`): it decides the publisher prefix a custom
SchemaName needs and the solution the new component joins (emulators/dataverse/solutions.py).
"""

from __future__ import annotations

import time

from emulators.dataverse import solutions
from emulators.dataverse.config import deterministic_id
from emulators.dataverse.errors import DataverseError
from emulators.dataverse.metadata import TYPE_INFO, Attribute, Entity, Key, label, label_text
from emulators.dataverse.state import Environment

KEY_TYPES = frozenset({"Decimal", "Integer", "String", "DateTime", "Lookup", "Picklist"})
ODATA_KIND = {
    suffix: kind for kind, (_, suffix) in TYPE_INFO.items() if kind not in ("Customer", "Owner", "PartyList")
}
ODATA_KIND["LookupAttributeMetadata"] = "Lookup"
DEFAULT_RANGES: dict[str, tuple[float, float, int | None]] = {
    "Integer": (-2147483648, 2147483647, None),
    "BigInt": (-9223372036854775808, 9223372036854775807, None),
    "Decimal": (-100000000000.0, 100000000000.0, 2),
    "Double": (-100000000000.0, 100000000000.0, 2),
    "Money": (-922337203685477.0, 922337203685477.0, 2),
}
ACTIVITY_PARTIES = {
    "from": 1,
    "to": 2,
    "cc": 3,
    "bcc": 4,
    "requiredattendees": 5,
    "optionalattendees": 6,
    "customers": 11,
}


def invalid(message: str) -> DataverseError:
    return DataverseError(400, "0x80040203", message)


def plural(name: str) -> str:
    if name.endswith("y") and name[-2:-1] not in ("a", "e", "i", "o", "u"):
        return name[:-1] + "ies"
    if name.endswith(("s", "x", "z", "ch", "sh")):
        return name + "es"
    return name + "s"


def _kind_of(body: dict) -> str:
    odata = str(body.get("@odata.type") or "").lstrip("#").split(".")[-1]
    if odata in ODATA_KIND:
        return ODATA_KIND[odata]
    type_name = (
        (body.get("AttributeTypeName") or {}).get("Value")
        if isinstance(body.get("AttributeTypeName"), dict)
        else None
    )
    for kind, (tname, _) in TYPE_INFO.items():
        if tname == type_name:
            return kind
    if body.get("AttributeType") in TYPE_INFO:
        return str(body["AttributeType"])
    raise invalid(
        'The column definition needs "@odata.type" (e.g. Microsoft.Dynamics.CRM.StringAttributeMetadata).'
    )


def _options(body: dict, what: str) -> list[dict]:
    option_set = body.get("OptionSet")
    if not isinstance(option_set, dict) or not isinstance(option_set.get("Options"), list):
        if "GlobalOptionSet@odata.bind" in body:
            raise DataverseError(
                501,
                "0x80040216",
                "Global choices (GlobalOptionSet@odata.bind) are not supported by the emulator; use a local OptionSet.",
            )
        raise invalid(f"The choice column '{what}' needs an OptionSet with Options.")
    out, seen = [], set()
    for opt in option_set["Options"]:
        value = opt.get("Value") if isinstance(opt, dict) else None
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(f"Every option of '{what}' needs an integer Value.")
        if value in seen:
            raise invalid(f"The option value {value} appears twice in '{what}'.")
        seen.add(value)
        out.append({"Value": value, "Label": label(label_text(opt.get("Label")) or str(value))})
    return out


def build_attribute(
    env: Environment,
    ent: Entity,
    body: dict,
    existing: Attribute | None = None,
    target: solutions.Target | None = None,
) -> Attribute:
    kind = _kind_of(body)
    if existing is None:
        logical = solutions.check_prefix(target, body.get("SchemaName"), "Attribute")
    else:
        logical = existing.logical_name
    if kind in ("Lookup", "Customer", "Owner", "PartyList") and existing is None:
        raise invalid(
            "Lookup columns are created with POST RelationshipDefinitions (one-to-many) or CreateCustomerRelationships."
        )
    if kind in ("State", "Status", "EntityName", "Uniqueidentifier") and existing is None:
        raise invalid(f"Columns of type {kind} cannot be created.")
    required = (
        (body.get("RequiredLevel") or {}).get("Value", "None")
        if isinstance(body.get("RequiredLevel"), dict)
        else "None"
    )
    if required not in ("None", "ApplicationRequired", "Recommended", "SystemRequired"):
        raise invalid(f"RequiredLevel '{required}' is not one of None, ApplicationRequired, Recommended.")
    if required == "SystemRequired" and (existing is None or existing.is_custom):
        raise invalid("A custom column cannot be SystemRequired; use ApplicationRequired.")
    attr = Attribute(
        entity=ent.logical_name,
        logical_name=logical,
        schema_name=str(body.get("SchemaName") or logical),
        kind=kind,
        required=required,
        is_custom=True if existing is None else existing.is_custom,
        display_name=label_text(body.get("DisplayName")) or logical,
        description=label_text(body.get("Description")),
        metadata_id=existing.metadata_id
        if existing
        else deterministic_id("attribute", ent.logical_name, logical),
        targets=list(existing.targets) if existing else [],
        valid_create=existing.valid_create if existing else True,
        valid_update=existing.valid_update if existing else True,
        is_primary_name=bool(body.get("IsPrimaryName")) or bool(existing and existing.is_primary_name),
    )
    if kind in ("String", "Memo"):
        limit = 4000 if kind == "String" else 1048576
        max_length = body.get("MaxLength", 100 if kind == "String" else 2000)
        if isinstance(max_length, bool) or not isinstance(max_length, int) or not 1 <= max_length <= limit:
            raise invalid(
                f"MaxLength of a {kind} column must be an integer between 1 and {limit}; got {max_length!r}."
            )
        attr.max_length = max_length
        fmt = body.get("FormatName")
        attr.format = fmt.get("Value") if isinstance(fmt, dict) else body.get("Format")
    elif kind in DEFAULT_RANGES:
        lo, hi, prec = DEFAULT_RANGES[kind]
        attr.min_value = body.get("MinValue", lo) if body.get("MinValue") is not None else lo
        attr.max_value = body.get("MaxValue", hi) if body.get("MaxValue") is not None else hi
        attr.precision = (
            body.get("Precision", prec) if kind != "Money" or body.get("PrecisionSource") == 0 else 2
        )
        if (
            not isinstance(attr.min_value, int | float)
            or not isinstance(attr.max_value, int | float)
            or attr.min_value > attr.max_value
        ):
            raise invalid(f"MinValue/MaxValue of '{logical}' are not a valid range.")
        if kind == "Money":
            attr.extra["PrecisionSource"] = body.get("PrecisionSource", 2)
    elif kind == "DateTime":
        attr.format = body.get("Format") or "DateAndTime"
        behavior = body.get("DateTimeBehavior")
        attr.behavior = behavior.get("Value") if isinstance(behavior, dict) else (behavior or "UserLocal")
        if attr.format not in ("DateOnly", "DateAndTime") or attr.behavior not in (
            "UserLocal",
            "DateOnly",
            "TimeZoneIndependent",
        ):
            raise invalid(
                f"'{logical}': Format must be DateOnly or DateAndTime and DateTimeBehavior UserLocal, DateOnly or TimeZoneIndependent."
            )
    elif kind == "Boolean":
        option_set = body.get("OptionSet") or {}
        attr.true_label = label_text((option_set.get("TrueOption") or {}).get("Label")) or "Yes"
        attr.false_label = label_text((option_set.get("FalseOption") or {}).get("Label")) or "No"
        attr.default = bool(body.get("DefaultValue", False))
    elif kind in ("Picklist", "MultiSelectPicklist"):
        attr.options = (
            _options(body, logical) if (existing is None or "OptionSet" in body) else list(existing.options)
        )
    elif existing is not None:
        attr.options, attr.max_length = existing.options, existing.max_length
    return attr


def create_attribute(env: Environment, ent: Entity, body: dict, solution: str | None = None) -> Attribute:
    with env.metadata.lock:
        target = solutions.target(env, solution)
        attr = build_attribute(env, ent, body, target=target)
        if attr.logical_name in ent.attributes:
            raise invalid(
                f"A column named '{attr.logical_name}' already exists on the '{ent.logical_name}' table."
            )
        ent.attributes[attr.logical_name] = attr
        env.metadata.version += 1
        solutions.record(env, target, solutions.ATTRIBUTE, attr.metadata_id, table=ent)
        env.schema_log.append(
            {"op": "attribute", "entity": ent.logical_name, "body": body, "solution": solution}
        )
        return attr


def named_target(env: Environment, solution: str | None) -> solutions.Target | None:
    """The solution an update names: the component joins it (the header is how the maker portal decides where
    a change lands); an unknown name is refused like on create. Without a name nothing moves."""
    return solutions.target(env, solution) if solution and solution.strip() else None


def update_attribute(
    env: Environment, ent: Entity, existing: Attribute, body: dict, solution: str | None = None
) -> None:
    with env.metadata.lock:
        target = named_target(env, solution)
        if existing.kind in (
            "Lookup",
            "Customer",
            "Owner",
            "PartyList",
            "State",
            "Status",
            "Uniqueidentifier",
        ):
            existing.display_name = label_text(body.get("DisplayName")) or existing.display_name
        else:
            updated = build_attribute(env, ent, body, existing)
            if updated.kind != existing.kind:
                raise invalid(
                    f"The type of '{existing.logical_name}' cannot change from {existing.kind} to {updated.kind}."
                )
            ent.attributes[existing.logical_name] = updated
        env.metadata.version += 1
        solutions.record(env, target, solutions.ATTRIBUTE, existing.metadata_id, table=ent)
        env.schema_log.append(
            {
                "op": "put_attribute",
                "entity": ent.logical_name,
                "attribute": existing.logical_name,
                "body": body,
                "solution": solution,
            }
        )


def create_table(env: Environment, body: dict, solution: str | None = None) -> Entity:
    with env.metadata.lock:
        target = solutions.target(env, solution)
        logical = solutions.check_prefix(target, body.get("SchemaName"), "Entity")
        if logical in env.metadata.tables:
            raise invalid(f"A table named '{logical}' already exists.")
        is_activity = bool(body.get("IsActivity"))
        ownership = body.get("OwnershipType", "UserOwned")
        if ownership not in ("UserOwned", "OrganizationOwned"):
            raise invalid("OwnershipType must be UserOwned or OrganizationOwned.")
        attrs = body.get("Attributes") or []
        primaries = [a for a in attrs if isinstance(a, dict) and a.get("IsPrimaryName")]
        if len(primaries) != 1 or _kind_of(primaries[0]) != "String":
            raise invalid(
                "A new table needs exactly one String attribute with IsPrimaryName true in Attributes."
            )
        primary = primaries[0]
        if is_activity:
            # Custom activity rules (reference §6.3).
            if ownership != "UserOwned":
                raise invalid("A custom activity table must be UserOwned.")
            if primary.get("SchemaName") != "Subject":
                raise invalid(
                    "The primary name column of an activity table must have SchemaName 'Subject' (no prefix)."
                )
            if body.get("HasActivities"):
                raise invalid("An activity table cannot have activities (HasActivities must be false).")
        display = label_text(body.get("DisplayName")) or logical
        spec = {
            "set": plural(logical),
            "otc": 10000 + sum(1 for t in env.metadata.tables.values() if t.is_custom),
            "id": "activityid" if is_activity else f"{logical}id",
            "primary": "subject" if is_activity else str(primary["SchemaName"]).lower(),
            "ownership": ownership,
            "display": [display, label_text(body.get("DisplayCollectionName")) or display + "s"],
            "is_activity": is_activity,
            "has_activities": bool(body.get("HasActivities")),
            "has_notes": bool(body.get("HasNotes")) or is_activity,
            "bulk": not is_activity,
            "families": ["audit", "owned", "activity"]
            if is_activity
            else ["audit", "owned"]
            if ownership == "UserOwned"
            else ["audit"],
            "parties": ACTIVITY_PARTIES if is_activity else {},
        }
        if is_activity:
            spec["states"] = [[0, "Open", 1], [1, "Completed", 2], [2, "Canceled", 3]]
            spec["statuses"] = [[1, "Open", 0], [2, "Completed", 1], [3, "Canceled", 2]]
        else:
            spec["states"] = [[0, "Active", 1], [1, "Inactive", 2]]
            spec["statuses"] = [[1, "Active", 0], [2, "Inactive", 1]]
        ent = env.metadata.entity_from_spec(logical, spec, custom=True, schema_name=str(body["SchemaName"]))
        for a in attrs:
            if not isinstance(a, dict):
                continue
            if a is primary and is_activity:
                subject = ent.attributes.get("subject") or Attribute(logical, "subject", "Subject", "String")
                subject.max_length = int(a.get("MaxLength") or 200)
                subject.is_primary_name, subject.display_name = (
                    True,
                    label_text(a.get("DisplayName")) or "Subject",
                )
                subject.metadata_id = subject.metadata_id or deterministic_id("attribute", logical, "subject")
                ent.attributes["subject"] = subject
                continue
            attr = build_attribute(env, ent, a, target=target)
            ent.attributes[attr.logical_name] = attr
        ent.extra = {
            k: v
            for k, v in body.items()
            if k not in ("Attributes", "@odata.type") and not isinstance(v, dict | list)
        }
        env.store.table(logical)
        env.metadata.add_table(ent)
        env.metadata.relink()
        # The table is a root component that includes its subcomponents (the columns created with it).
        solutions.record(env, target, solutions.ENTITY, ent.metadata_id)
        env.schema_log.append({"op": "table", "body": body, "solution": solution})
        return ent


def create_key(env: Environment, ent: Entity, body: dict, solution: str | None = None) -> Key:
    with env.metadata.lock:
        target = solutions.target(env, solution)
        schema = body.get("SchemaName")
        solutions.check_prefix(target, schema, "EntityKey")
        names = body.get("KeyAttributes")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise invalid("KeyAttributes must be a non-empty list of column logical names.")
        if len(names) > 16:
            raise invalid("An alternate key can have at most 16 columns.")
        if len(ent.keys) >= 10:
            raise invalid(f"The '{ent.logical_name}' table already has the maximum of 10 alternate keys.")
        for name in names:
            attr = ent.attributes.get(name)
            if attr is None:
                raise invalid(f"The key column '{name}' does not exist on the '{ent.logical_name}' table.")
            if attr.kind not in KEY_TYPES:
                raise invalid(
                    f"'{name}' is a {attr.kind} column; key columns must be Decimal, Integer, String, DateTime, Lookup or Picklist."
                )
        for key in ent.keys:
            if key.schema_name.lower() == str(schema).lower():
                raise invalid(f"An alternate key named '{schema}' already exists on '{ent.logical_name}'.")
            if sorted(key.key_attributes) == sorted(names):
                raise invalid(
                    f"The alternate key '{key.schema_name}' already covers the columns {', '.join(names)}."
                )
        key = Key(
            entity=ent.logical_name,
            schema_name=str(schema),
            key_attributes=list(names),
            display_name=label_text(body.get("DisplayName")),
            metadata_id=deterministic_id("key", ent.logical_name, str(schema).lower()),
            created_at=time.monotonic(),
        )
        ent.keys.append(key)
        env.metadata.version += 1
        solutions.record(env, target, solutions.ENTITY_KEY, key.metadata_id, table=ent)
        env.schema_log.append({"op": "key", "entity": ent.logical_name, "body": body, "solution": solution})
        return key


def delete_key(env: Environment, ent: Entity, key: Key) -> None:
    """DELETE EntityDefinitions(...)/Keys(...) (PAD define-alternate-keys-entity.md): the index goes too."""
    with env.metadata.lock, env.store.lock:
        ent.keys = [k for k in ent.keys if k is not key]
        env.store.key_index.pop((ent.logical_name, key.schema_name), None)
        env.metadata.version += 1
        solutions.forget(env, [key.metadata_id])
        env.schema_log.append(
            {"op": "delete_key", "entity": ent.logical_name, "key": key.schema_name, "body": {}}
        )


def insert_option_value(env: Environment, body: dict, solution: str | None = None) -> int:
    """InsertOptionValue: the action's SolutionUniqueName parameter names the solution (the header otherwise)."""
    with env.metadata.lock:
        named = body.get("SolutionUniqueName") or solution
        target = solutions.target(env, str(named) if named else None)
        ent = env.metadata.tables.get(str(body.get("EntityLogicalName")))
        attr = ent.attributes.get(str(body.get("AttributeLogicalName"))) if ent else None
        if attr is None or attr.kind not in ("Picklist", "MultiSelectPicklist"):
            raise invalid(
                "InsertOptionValue needs EntityLogicalName and the AttributeLogicalName of a choice column."
            )
        value = body.get("Value")
        if value is None:
            value = solutions.next_option_value(target, attr.option_values)
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid("Value must be an integer.")
        if value in attr.option_values:
            raise invalid(f"The option value {value} already exists in '{attr.logical_name}'.")
        attr.options.append({"Value": value, "Label": label(label_text(body.get("Label")) or str(value))})
        env.metadata.version += 1
        if named:
            solutions.record(env, target, solutions.ATTRIBUTE, attr.metadata_id, table=ent)
        env.schema_log.append({"op": "option", "body": {**body, "Value": value}, "solution": solution})
        return value


def delete_option_value(env: Environment, body: dict, solution: str | None = None) -> None:
    """DeleteOptionValue (PAD webapi/reference/deleteoptionvalue): removes one option of a choice column.

    [INFERENCE] A value the column does not have answers 404 ObjectDoesNotExist, like other metadata that is
    not there (the service's exact wording for this case is not published)."""
    with env.metadata.lock:
        named = body.get("SolutionUniqueName") or solution
        named_target(env, str(named) if named else None)  # an unknown solution is refused
        ent = env.metadata.tables.get(str(body.get("EntityLogicalName")))
        attr = ent.attributes.get(str(body.get("AttributeLogicalName"))) if ent else None
        if attr is None or attr.kind not in ("Picklist", "MultiSelectPicklist"):
            raise invalid(
                "DeleteOptionValue needs EntityLogicalName and the AttributeLogicalName of a choice column."
            )
        value = body.get("Value")
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid("Value must be an integer.")
        if value not in attr.option_values:
            raise DataverseError(
                404, "0x80040217", f"The option value {value} does not exist in '{attr.logical_name}'."
            )
        attr.options = [o for o in attr.options if o["Value"] != value]
        env.metadata.version += 1
        env.schema_log.append({"op": "delete_option", "body": body, "solution": solution})


def delete_attribute(env: Environment, ent: Entity, attr: Attribute) -> None:
    """DELETE .../Attributes(...): custom columns only; the column's data goes with it."""
    with env.metadata.lock, env.store.lock:
        if not attr.is_custom:
            raise DataverseError(
                403, "0x80040220", f"The system column '{attr.logical_name}' cannot be deleted."
            )
        for key in ent.keys:
            if attr.logical_name in key.key_attributes:
                raise invalid(
                    f"'{attr.logical_name}' is used by the alternate key '{key.schema_name}'; delete the key first."
                )
        del ent.attributes[attr.logical_name]
        gone = [
            r
            for r in env.metadata.custom_relationships
            if r["referencing"] == ent.logical_name and r["attribute"] == attr.logical_name
        ]
        env.metadata.custom_relationships = [r for r in env.metadata.custom_relationships if r not in gone]
        solutions.forget(env, [attr.metadata_id, *(r["metadata_id"] for r in gone)])
        for row in env.store.table(ent.logical_name).values():
            row.pop(attr.logical_name, None)
        env.metadata.relink()
        env.schema_log.append(
            {"op": "delete_attribute", "entity": ent.logical_name, "attribute": attr.logical_name, "body": {}}
        )


def delete_table(env: Environment, ent: Entity) -> None:
    """DELETE EntityDefinitions(...): custom tables only, with their rows and the lookups that target them."""
    with env.metadata.lock, env.store.lock:
        if not ent.is_custom:
            raise DataverseError(
                403, "0x80040220", f"The system table '{ent.logical_name}' cannot be deleted."
            )
        for other in env.metadata.tables.values():
            for attr in list(other.attributes.values()):
                if other is not ent and attr.is_custom and attr.targets == [ent.logical_name]:
                    raise invalid(
                        f"The lookup '{other.logical_name}.{attr.logical_name}' targets '{ent.logical_name}'; delete it first."
                    )
        del env.metadata.tables[ent.logical_name]
        del env.metadata.by_set[ent.entity_set]
        env.store.rows.pop(ent.logical_name, None)
        gone = [
            r
            for r in env.metadata.custom_relationships
            if ent.logical_name in (r["referencing"], r["referenced"])
        ]
        env.metadata.custom_relationships = [r for r in env.metadata.custom_relationships if r not in gone]
        solutions.forget(
            env,
            [
                ent.metadata_id,
                *(a.metadata_id for a in ent.attributes.values()),
                *(k.metadata_id for k in ent.keys),
                *(r["metadata_id"] for r in gone),
            ],
        )
        env.metadata.relink()
        env.schema_log.append({"op": "delete_table", "entity": ent.logical_name, "body": {}})
