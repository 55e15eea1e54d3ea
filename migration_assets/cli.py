"""The `close2d365` command line: demo, emulators, extract, propose-mapping, dry-run, run, observe, delta,
cutover, rollback, ui.

Every failure a user can cause (bad credentials, a CSV export, an unreachable endpoint) ends in one clear
line on stderr and exit status 2; `--debug` shows the traceback for bug reports.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from migration_assets.resources import env
from migration_assets.runtime import PRIVATE_UMASK, last_extraction_time, launch_ui


class CliError(RuntimeError):
    """A failure explained to the user in one message."""


def _cmd_demo(args: argparse.Namespace) -> int:
    from migration_assets.demo import run_demo

    if args.ui:
        _check_ui_port(args.ui_port, "--ui-port")  # before the run, not after it
    return run_demo(size=args.size, seed=args.seed, ui=args.ui, org=args.org, ui_port=args.ui_port)


def _ready_for_a_real_run(why: str = "") -> None:
    """The environment a run against the real endpoints needs (`why`: what the command needs it for), then
    the checks before any run."""
    from migration_assets.startup_checks import check_before_run

    missing = env.missing(env.REAL_RUN)
    if missing:
        raise CliError(f"set {', '.join(missing)} first{why} (see README: Running a real migration)")
    check_before_run()


def _cmd_run(args: argparse.Namespace) -> int:
    from migration_assets.runtime import run_migration

    _ready_for_a_real_run()
    return run_migration(tags={"close2d365/mode": "run"})


def _cmd_delta(args: argparse.Namespace) -> int:
    from migration_assets.runtime import run_delta

    _ready_for_a_real_run()
    return run_delta(tags={"close2d365/mode": "delta"})


def _cmd_observe(args: argparse.Namespace) -> int:
    from migration_assets.cutover import observe
    from migration_assets.startup_checks import check_before_run

    check_before_run(mappings=False, dataverse=False)
    return observe()


def _cmd_cutover(args: argparse.Namespace) -> int:
    from migration_assets.cutover import cutover

    if args.quiet_minutes <= 0:
        raise CliError(f"--quiet-minutes must be more than 0 (got {args.quiet_minutes})")
    _ready_for_a_real_run()
    return cutover(args.quiet_minutes)


def _cmd_dry_run(args: argparse.Namespace) -> int:
    from migration_assets.runtime import print_dry_run_outcome, run_job

    _ready_for_a_real_run(": the dry run reads the target's metadata to check every row")
    # Every problem of every layer in one run: the summary here, the details in the review file.
    return print_dry_run_outcome(run_job("dry_run", tags={"close2d365/mode": "dry_run"}))


def _cmd_rollback(args: argparse.Namespace) -> int:
    from migration_assets.load.rollback import rollback

    report = rollback(args.run, args.all)
    return 0 if report.ok else 2


def _cmd_emulators(args: argparse.Namespace) -> int:
    from migration_assets.demo import serve_emulators

    return serve_emulators(
        size=args.size,
        seed=args.seed,
        org=args.org,
        host=args.host,
        close_port=args.close_port,
        dataverse_port=args.dataverse_port,
        realistic=args.realistic,
    )


def _cmd_extract(args: argparse.Namespace) -> int:
    from migration_assets.runtime import print_job_outcome, run_job
    from migration_assets.startup_checks import check_before_run

    check_before_run(mappings=False, dataverse=False)
    result = run_job("extract")
    return print_job_outcome(result)


def _cmd_propose(args: argparse.Namespace) -> int:
    from migration_assets.target.propose import propose_all

    result = propose_all(extracted_at=last_extraction_time())
    for line in result.report():
        print(line)
    if result.open_decisions:
        print(
            f"{result.open_decisions} decision(s) to make: go through every `review:` (and `confirmed: false` in "
            "custom_fields.yaml), decide, delete the review line; nothing loads until none is left."
        )
    else:
        print("No open decision: check the files once, then `close2d365 dry-run`.")
    return 0


def _check_ui_port(port: int, option: str) -> None:
    from migration_assets.ports import PortError, port_problem

    # Checked here: `dagster dev` on a busy port fails after it started, with a message naming no option.
    problem = port_problem("127.0.0.1", port, option, zero_is_any=False)
    if problem:
        raise PortError(f"the Dagster UI cannot listen on {problem}")


def _cmd_ui(args: argparse.Namespace) -> int:
    _check_ui_port(args.port, "--port")
    return launch_ui(port=args.port)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Option help with its default, except where there is none to show (flags, options without one)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def _debug_option() -> argparse.ArgumentParser:
    """`--debug` for every subcommand, so that it is accepted after the subcommand too. SUPPRESS: when a
    subcommand does not see it, the value the main parser read (before the subcommand) stands."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return parent


DEBUG_HELP = "on an error, show the traceback (for a bug report) instead of one line"
SIZES = ["tiny", "demo", "typical", "large"]


def build_parser() -> argparse.ArgumentParser:
    from migration_assets.demo import DEFAULT_SHAPE, ORG_SHAPES

    org_help = "shape of the generated Close org"
    size_help = "size of the generated Close org (records per object)"
    seed_help = "seed of the generated Close org (the same seed, the same org)"
    parser = argparse.ArgumentParser(
        prog="close2d365",
        description=" ".join(__doc__.split("\n\n")[0].split()),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", default=False, help=DEBUG_HELP)
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="what to do (each has its own --help)"
    )
    common = [_debug_option()]

    def command(name: str, summary: str, details: str = "") -> argparse.ArgumentParser:
        """A subcommand: `summary` in the main --help, summary and `details` on its own --help page."""
        return sub.add_parser(
            name,
            help=summary,
            description=f"{summary[0].upper()}{summary[1:]}." + (f" {details}" if details else ""),
            formatter_class=_HelpFormatter,
            parents=common,
        )

    demo = command(
        "demo",
        "run against the bundled emulators on a generated Close org",
        "Extracts the org, proposes the mapping, accepts it as a scripted review would, runs the migration "
        "and prints the reconciliation.",
    )
    demo.add_argument("--size", default="demo", choices=SIZES, help=size_help)
    demo.add_argument("--seed", type=int, default=1, help=seed_help)
    demo.add_argument("--org", default=DEFAULT_SHAPE, choices=ORG_SHAPES, help=org_help)
    demo.add_argument(
        "--ui", action="store_true", help="afterwards keep the emulators up and open the Dagster UI"
    )
    demo.add_argument("--ui-port", type=int, default=3000, help="port of the UI on 127.0.0.1 (with --ui)")
    demo.set_defaults(func=_cmd_demo)

    emu = command(
        "emulators",
        "serve the Close and Dataverse emulators until Ctrl-C",
        "Prints the environment that points `extract`, `run` and the other commands at them.",
    )
    emu.add_argument("--size", default="demo", choices=SIZES, help=size_help)
    emu.add_argument("--seed", type=int, default=1, help=seed_help)
    emu.add_argument("--org", default=DEFAULT_SHAPE, choices=ORG_SHAPES, help=org_help)
    emu.add_argument("--host", default="127.0.0.1", help="address both emulators listen on")
    emu.add_argument(
        "--close-port", type=int, default=8765, help="port of the Close emulator (0: any free port)"
    )
    emu.add_argument(
        "--dataverse-port", type=int, default=8766, help="port of the Dataverse emulator (0: any free port)"
    )
    emu.add_argument(
        "--realistic",
        action="store_true",
        help="answer with the latency models on: network round trips, Close's server time per page, "
        "Dataverse's execution time per request and record",
    )
    emu.set_defaults(func=_cmd_emulators)

    extract = command(
        "extract",
        "extract every Close object into DuckDB",
        "Reads Close with CLOSE_API_KEY (or the export named by CLOSE2D365_CLOSE_SOURCE) from the environment.",
    )
    extract.set_defaults(func=_cmd_extract)

    run = command(
        "run",
        "the whole migration against the endpoints configured in the environment",
        "Prints each failed or halted step, then this run's reconciliation (reports/<run>/).",
    )
    run.set_defaults(func=_cmd_run)

    delta = command(
        "delta",
        "after a migration: move only what changed in Close since",
        "Deleted records are handled per delta.deleted_records in mappings/settings.yaml.",
    )
    delta.set_defaults(func=_cmd_delta)

    observe = command(
        "observe",
        "observe Close without extracting",
        "What changed since the last run, and which assets are now unsynced (what `delta` would move).",
    )
    observe.set_defaults(func=_cmd_observe)

    cutover = command(
        "cutover",
        "the final step: check that Close has been quiet, run the final delta, reconcile and spot-check "
        "the whole target, print go / no-go",
    )
    cutover.add_argument(
        "--quiet-minutes",
        type=float,
        default=15.0,
        help="how long Close must have had no change, by Close's clock",
    )
    cutover.set_defaults(func=_cmd_cutover)

    dry = command(
        "dry-run",
        "extract, stage and check everything; list every problem",
        "The review is written to reports/<run>/review.md; exit status 2 if it lists any problem.",
    )
    dry.set_defaults(func=_cmd_dry_run)

    rollback = command("rollback", "undo a migration run: delete what it created, restore updates")
    which = rollback.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", metavar="RUN_ID", help="the Dagster run id of the migration to undo")
    which.add_argument("--all", action="store_true", help="undo every migration run in the ledger")
    rollback.set_defaults(func=_cmd_rollback)

    propose = command(
        "propose-mapping",
        "write or update the org's mapping files for review",
        "Statuses, pipelines, fields, activity types and owners, in mappings/ (CLOSE2D365_MAPPINGS).",
    )
    propose.set_defaults(func=_cmd_propose)

    ui = command("ui", "open the Dagster UI on this project's instance")
    ui.add_argument("--port", type=int, default=3000, help="port of the UI on 127.0.0.1")
    ui.set_defaults(func=_cmd_ui)
    return parser


def _known_errors() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is meant for the user; anything else is a bug and says so."""
    errors: list[type[BaseException]] = [CliError]
    for module, names in (
        ("migration_assets.clients.close.http", ("CloseError",)),
        ("migration_assets.resources.warehouse", ("WarehouseError",)),
        ("migration_assets.demo", ("OrgDataError",)),
        ("migration_assets.ports", ("PortError",)),
        ("migration_assets.target.propose", ("ProposalInputError",)),
        ("migration_assets.load.rollback", ("RollbackError",)),
        ("migration_assets.resources", ("MissingEnvironmentError",)),
        ("migration_assets.mapping.yaml_loc", ("MappingError",)),
        ("migration_assets.mapping.scripted_review", ("ReviewError",)),
        ("migration_assets.clients.dataverse.errors", ("DataverseError",)),
        ("migration_assets.startup_checks", ("StartupCheckError",)),
    ):
        try:
            mod = __import__(module, fromlist=list(names))
        except ImportError:
            continue
        errors.extend(getattr(mod, n) for n in names if isinstance(getattr(mod, n, None), type))
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    previous_umask = os.umask(PRIVATE_UMASK)
    try:
        return func(args)
    except KeyboardInterrupt:
        print("close2d365: interrupted", file=sys.stderr)
        return 130
    except _known_errors() as exc:
        if args.debug:
            raise
        print(f"close2d365: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, not a traceback
        if args.debug:
            raise
        print(
            f"close2d365: unexpected error ({type(exc).__name__}): {exc}\n"
            "Re-run with --debug for the traceback and report it.",
            file=sys.stderr,
        )
        return 1
    finally:
        os.umask(previous_umask)


if __name__ == "__main__":
    raise SystemExit(main())
