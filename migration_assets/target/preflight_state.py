"""What the last full preflight read of the target's metadata, kept in the warehouse (`schema.preflight_known`)
for a delta run that reuses the deployed schema plan (target/plan_reuse.py): the privilege names each written
table declares and the findings of the checks that read metadata (required columns, custom tables against
the edition, publisher/solution). Such a run re-checks only what can change between runs cheaply (the
credentials, the application users' privileges, upload limit and currencies, disabled owners) and carries
these findings over, saying which run made them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb

from migration_assets.resources.warehouse import table_exists
from migration_assets.target import preflight as pf

SCHEMA = "schema"
TABLE = "preflight_known"


@dataclass(frozen=True)
class KnownTarget:
    """The metadata reads of a full preflight (for the plan with the same fingerprint)."""

    table_privileges: dict[str, dict[str, str]]  # written table -> PrivilegeType -> privilege name
    required: list[pf.Finding]  # business-required columns the mapping does not fill
    custom_tables: list[pf.Finding]  # custom tables against the edition's limit
    solution: list[pf.Finding]  # publisher/solution conflicts
    custom_tables_in_target: int
    run_id: str = ""  # the run whose preflight read them

    def to_json(self) -> str:
        return json.dumps(
            {
                "table_privileges": self.table_privileges,
                "required": [f.row() for f in self.required],
                "custom_tables": [f.row() for f in self.custom_tables],
                "solution": [f.row() for f in self.solution],
                "custom_tables_in_target": self.custom_tables_in_target,
            },
            sort_keys=True,
        )

    @staticmethod
    def from_json(text: str, run_id: str) -> KnownTarget:
        data = json.loads(text)
        return KnownTarget(
            {t: dict(p) for t, p in data["table_privileges"].items()},
            [pf.Finding(**r) for r in data["required"]],
            [pf.Finding(**r) for r in data["custom_tables"]],
            [pf.Finding(**r) for r in data["solution"]],
            int(data["custom_tables_in_target"]),
            run_id,
        )


def save_known(con: duckdb.DuckDBPyConnection, fingerprint: str, run_id: str, known: KnownTarget) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    con.execute(
        f"CREATE OR REPLACE TABLE {SCHEMA}.{TABLE} (fingerprint VARCHAR, run_id VARCHAR, known_json VARCHAR)"
    )
    con.execute(f"INSERT INTO {SCHEMA}.{TABLE} VALUES (?, ?, ?)", [fingerprint, run_id, known.to_json()])


def forget_known(con: duckdb.DuckDBPyConnection) -> None:
    """A full preflight that could not read everything leaves nothing for a later run to carry over."""
    con.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{TABLE}")


def load_known(con: duckdb.DuckDBPyConnection, fingerprint: str) -> KnownTarget | None:
    """What the last full preflight of the plan with this fingerprint read, or None."""
    if not table_exists(con, SCHEMA, TABLE):
        return None
    rows = con.execute(
        f"SELECT run_id, known_json FROM {SCHEMA}.{TABLE} WHERE fingerprint = ?", [fingerprint]
    ).fetchall()
    return KnownTarget.from_json(rows[0][1], str(rows[0][0])) if rows else None
