"""Tasks: lead tasks (task_) and inbox/system tasks (noti_)."""

from __future__ import annotations

from migration_assets.defs.close._common import close_asset, table_source

tasks = close_asset("tasks", "Close tasks, open and completed, of every type.", table_source("tasks"))
