"""The four-stage process the pure sales-process tests plan against, and the opportunity link every
instance they build carries."""

from __future__ import annotations

from migration_assets.load.sales_process_plan import Stage

STAGES = [
    Stage("q", "Qualify", 0),
    Stage("d", "Develop", 1),
    Stage("p", "Propose", 2),
    Stage("c", "Close", 3),
]
LINKS = {"opportunityid@odata.bind": "/opportunities(o1)"}
