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
        if as_json:  # usage errors become a JSON document too
            _json_mode(app, args)
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


def _json_mode(app: object, args: list[str]) -> None:
    """Run the command so that a usage error (a bad option value, an unknown option) is
    printed as the same JSON document as any other error, on stdout, exit 2."""
    from gristmill.cli.render import emit_json

    try:
        code = app(args=args, prog_name="gristmill", standalone_mode=False)  # type: ignore[operator]
    except Exception as exc:
        usage = type(exc).__mro__
        if type(exc).__name__ == "Abort":  # click's form of a KeyboardInterrupt
            raise KeyboardInterrupt from exc
        if not any(c.__name__ == "UsageError" for c in usage) or not hasattr(exc, "format_message"):
            raise
        command = next((a for a in args if not a.startswith("-")), "")
        emit_json(
            {
                "error": "UsageError",
                "message": exc.format_message(),
                "location": None,
                "hint": f"gristmill {command} --help".replace("  ", " "),
                "category": "invalid",
                "transient": False,
            }
        )
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


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
