"""The ``bench`` command line.

One module per subcommand (``bench/cli/score.py`` defines ``bench score``, ...),
each exposing a click command named ``command``. Errors the user can fix are
:class:`~bench.errors.BenchError` and print as one line; ``--debug`` shows the
traceback. Ctrl-C exits with status 130 after the store has kept what finished.
"""

from __future__ import annotations

import importlib
import sys

import click

from bench import __version__
from bench.errors import BenchError

# each subcommand NAME is defined by the module bench/cli/NAME.py
_SUBCOMMANDS = ("score", "show", "query", "registry", "export", "push", "leaderboard", "submit",
                "ingest", "validate")


class _LazyGroup(click.Group):
    """Imports a subcommand's module only when it is used, so `bench --help` stays fast."""

    def list_commands(self, ctx):
        return sorted(_SUBCOMMANDS)

    def get_command(self, ctx, name):
        if name not in _SUBCOMMANDS:
            return None
        return importlib.import_module(f"bench.cli.{name}").command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="geometry-bench")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Geometry Bench: input-space geometry measurements for image classifiers."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI and turn user errors into one line."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="bench", standalone_mode=False, obj={"argv": list(args)})
    except BenchError as exc:
        if debug:
            raise
        click.echo(f"error: {exc.one_line()}", err=True)
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        if debug and isinstance(exc, KeyboardInterrupt):
            raise
        click.echo("interrupted: finished measurements are kept in the database.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
