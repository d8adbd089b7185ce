"""Command line edge: the one place where errors become messages and exit codes."""

from __future__ import annotations

import os
import sys
import traceback

from gristmill.errors import GristmillError

INTERNAL_ERROR = 70


def main(argv: list[str] | None = None) -> None:
    from rich.markup import escape

    from gristmill.cli.app import app
    from gristmill.cli.render import err

    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("GRISTMILL_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    as_json = "--json" in args
    try:
        # Standalone mode lets typer report usage errors (exit 2); ours propagate to here.
        app(args=args, prog_name="gristmill", standalone_mode=True)
    except GristmillError as exc:
        _report(exc, as_json)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:
        err.print(f"[bold red]internal error:[/] {escape(f'{type(exc).__name__}: {exc}')}")
        if debug:
            err.print(traceback.format_exc(), markup=False)
        else:
            err.print(
                "  this is a bug in gristmill; rerun with --debug for the traceback and report it"
            )
        sys.exit(INTERNAL_ERROR)


def _report(exc: GristmillError, as_json: bool) -> None:
    from rich.markup import escape

    from gristmill.cli.render import emit_json, err

    if as_json:
        emit_json(exc.to_dict())
    else:
        where = f"{exc.location}: " if exc.location else ""
        err.print(f"[bold red]error:[/] {escape(where + exc.message)}")
        if exc.hint:
            err.print(f"  hint: {escape(exc.hint)}")
    sys.exit(exc.exit_code)
