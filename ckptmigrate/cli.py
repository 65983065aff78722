"""The command line: parse, call the library, render, choose the exit code.

Exit codes follow diff(1): 0 fine, 1 incompatible (check) or a failed verification, 2
trouble (bad input, usage), 130 interrupted. Heavy imports (numpy, TensorFlow) happen inside
commands so ``--help``, ``--version`` and shell completion stay instant.
"""

from __future__ import annotations

import signal
import sys

EXIT_INTERRUPTED = 130
_STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# What a signal outside a command's library call means: nothing was written before the
# first call starts (start-up, parsing); after it, a command may have written its output.
_interrupt_message = ["interrupted; nothing was written"]


def _interrupted_outside_a_call(_signum: int, _frame: object) -> None:
    # One line and the interrupted exit code: Ctrl-C while typer, rich or a command's lazy
    # imports load was a KeyboardInterrupt traceback (or click's 'Aborted!' and exit 1),
    # SIGTERM a silent kill.
    sys.stderr.write(_interrupt_message[0] + "\n")
    raise SystemExit(EXIT_INTERRUPTED)


def _catch_stopping_signals() -> dict[int, Any]:
    """Route SIGINT and SIGTERM to one line and exit 130, where their handlers are still
    Python's defaults (not in a host that set its own, nor outside the main thread)."""
    defaults = (signal.default_int_handler, signal.SIG_DFL)
    replaced: dict[int, Any] = {}
    for signum in _STOPPING_SIGNALS:
        try:
            if signal.getsignal(signum) in defaults:
                replaced[signum] = signal.signal(signum, _interrupted_outside_a_call)
        except ValueError:  # not the main thread: signals are not ours to handle
            break
    return replaced


def _restore_signals(replaced: dict[int, Any]) -> None:
    for signum, handler in replaced.items():
        signal.signal(signum, handler)


# Before the imports below (typer, rich: most of start-up), undone at the end of this module
# so that importing it elsewhere changes nothing; main() catches them again.
_during_import = _catch_stopping_signals()

import contextlib  # noqa: E402
import os  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from typing import TYPE_CHECKING, Annotated, Any, TypeVar  # noqa: E402

import typer  # noqa: E402
from typer.core import TyperCommand  # noqa: E402

from ._version import __version__  # noqa: E402
from .output_format import OutputFormat  # noqa: E402

if TYPE_CHECKING:
    from rich.console import Console

    from .styled import Styled

# Shown under every command's --help and the app's: scripts and CI branch on these.
EXIT_CODES = (
    "Exit codes: 0 success; 1 incompatible (check) or verification failed (convert "
    "--verify); 2 trouble: bad input, unreadable checkpoint, unusable output, usage error; "
    "130 interrupted (nothing is left half-written). Colours only on a terminal; NO_COLOR=1 "
    "turns all styling off."
)

app = typer.Typer(
    name="ckptmigrate",  # the help is main_options' docstring, with its example
    epilog=EXIT_CODES,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)

T = TypeVar("T")

# The library's messages name options as API parameters ([[overwrite]]); on the command
# line they read as the flags that set them.
CLI_FLAGS = {
    "overwrite": "--force",
    "map": "--map M",
    "target": "--target T",
    "fill_missing_from_target": "--fill-missing-from-target",
    "format_keras": "--format keras",
    "verify": "--verify",
    "check_crc": "--check-crc",
    "strict": "--strict",
    "require_all": "--require-all",
    "min_match": "--min-match",
    "values": "--values",
    "ignore": "--ignore",
    "params": "--set",
    "max_shard_size": "--max-shard-size",
    "num_shards": "--num-shards",
    "workers": "--workers",
    "max_memory": "--max-memory",
    "dask": "--dask/--scheduler",
    "check_command": "`ckptmigrate check CKPT --target T`",
    "check_map_command": "`ckptmigrate check CKPT --target T --map M`",
    "suggest_command": "`ckptmigrate suggest CKPT --target T`",
}


def _stdout() -> Console:
    from rich.console import Console

    console = Console(no_color=bool(os.environ.get("NO_COLOR")) or None)
    if not console.is_terminal:
        # Piped output is read by tools and people in logs: don't fold names at 80 columns.
        console.width = 240
    return console


def _run(action: Callable[[], T], traceback: bool = False) -> T:
    """Call the library; our errors become one paragraph on stderr and exit code 2."""
    from .errors import CkptMigrateError, InterruptedAfterWriting

    def _terminate(_signum: int, _frame: object) -> None:
        # Turn SIGTERM into an exception so staged output is cleaned up like on Ctrl-C.
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    # Ctrl-C is KeyboardInterrupt while the library works: its clean-up catches it.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    _interrupt_message[0] = "interrupted"
    try:
        return action()
    except CkptMigrateError as e:
        if traceback:  # for bug reports: the whole traceback, and still our exit code
            import traceback as tb

            tb.print_exc()
        # Plain write: one unwrapped paragraph, so paths and names survive copy-paste.
        sys.stderr.write(f"error: {e.render(CLI_FLAGS)}\n")
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt as e:
        if isinstance(e, InterruptedAfterWriting):
            sys.stderr.write(f"interrupted: {e}\n")
        else:
            sys.stderr.write("interrupted; nothing was written\n")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def _styled(console: Console) -> bool:
    """Styles only for a terminal that wants them. NO_COLOR (no-color.org) and TERM=dumb
    turn off bold and underline as well as colour: a log of a pty should read as plain text."""
    return console.is_terminal and not console.no_color and not console.is_dumb_terminal


def _emit(styled: Styled) -> None:
    """Print a report: styled on a terminal, plain text otherwise."""
    from .styled import plain_text, to_rich

    # Rich decides what is a terminal (FORCE_COLOR, TTY_COMPATIBLE, ...), but a plain pipe
    # is the common case and needs no Rich at all (a tenth of a short command's run).
    if sys.stdout.isatty() or "FORCE_COLOR" in os.environ or "TTY_COMPATIBLE" in os.environ:
        console = _stdout()
        if _styled(console):
            console.print(to_rich(styled), soft_wrap=True)
            return
    sys.stdout.write(plain_text(styled))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ckptmigrate {__version__}")
        raise typer.Exit()


def _bundled_map_names(incomplete: str) -> list[str]:
    """Shell completion for --map: the bundled maps' names (a path being typed matches
    none, and the shell falls back to completing file names)."""
    from .mapping.schema import bundled_map_names

    return [name for name in bundled_map_names() if name.startswith(incomplete)]


class _Recorded(TyperCommand):
    """A command whose reports show the command line that made them (the HTML page, the
    JSON's ``produced_by``): its arguments are kept as given, before parsing."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta[_COMMAND_LINE] = ("ckptmigrate", ctx.info_name, *args)
        return super().parse_args(ctx, args)


_COMMAND_LINE = "ckptmigrate.command_line"


def _command_line(ctx: typer.Context) -> tuple[str, ...] | None:
    """The running command's line, as _Recorded kept it."""
    line: tuple[str, ...] | None = ctx.meta.get(_COMMAND_LINE)
    return line


class _TargetOption(_Recorded):
    """check and suggest take the model as --target: a second positional argument
    (``check A B``, a common slip) is answered with the command line that works, not
    with "Got unexpected extra argument"."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not ctx.resilient_parsing:  # not while completing
            opts, extra, _ = self.make_parser(ctx).parse_args(args=list(args))
            if len(extra) == 1 and opts.get("checkpoint") and opts.get("target") is None:
                import shlex

                checkpoint, target = shlex.quote(opts["checkpoint"]), shlex.quote(extra[0])
                ctx.fail(
                    f"{ctx.info_name} takes the model as --target, not as a second argument: "
                    f"ckptmigrate {ctx.info_name} {checkpoint} --target {target}"
                )
        return super().parse_args(ctx, args)


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Make TensorFlow checkpoints fit the model you want to restore them into.

    \b
    Example:
      ckptmigrate check runs/model.ckpt-1000 --target new.meta --min-match 0.9
    """


TracebackOption = Annotated[
    bool, typer.Option("--traceback", help="Show the Python traceback on errors (for bug reports).")
]
QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress and no summary lines on stderr.")
]


@app.command(epilog=EXIT_CODES)
def inspect(
    checkpoint: Annotated[
        str,
        typer.Argument(
            help="Checkpoint directory, prefix (model.ckpt-1000), .index or .data-* file; "
            "local or a URL (s3://, gs://)."
        ),
    ],
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
    filter: Annotated[
        str | None,
        typer.Option("--filter", "-f", help="Only variables whose name matches this regex."),
    ] = None,
    check_crc: Annotated[
        bool,
        typer.Option(
            "--check-crc", "--verify", help="Also read every tensor and check its CRC32C."
        ),
    ] = False,
    quiet: QuietOption = False,
    traceback: TracebackOption = False,
) -> None:
    """List the variables of a checkpoint: name, dtype, shape, size and role.

    \b
    Example:
      ckptmigrate inspect runs/model.ckpt-1000 --filter 'hiddenlayer_0'
    """
    from .inspection import inspect_checkpoint
    from .render import inspect_table, to_json

    with _progress(enabled=check_crc and not quiet and not json_output) as progress:
        report = _run(
            lambda: inspect_checkpoint(
                checkpoint, filter=filter, check_crc=check_crc, progress=progress.tracker
            ),
            traceback,
        )
    if json_output:
        sys.stdout.write(to_json(report.to_dict()) + "\n")
    else:
        _emit(inspect_table(report))


@app.command(epilog=EXIT_CODES, cls=_TargetOption)
def check(
    ctx: typer.Context,
    checkpoint: Annotated[
        str, typer.Argument(help="The checkpoint to restore from (a path or a URL).")
    ],
    target: Annotated[
        str,
        typer.Option(
            "--target",
            "-t",
            help="The model to restore into: a checkpoint, a .meta graph, a SavedModel, a Keras "
            ".keras/.weights.h5/.h5 file, a builder pkg.module:function or file.py:function, or "
            "a .yaml/.json spec.",
        ),
    ],
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Unused checkpoint entries fail the check too.")
    ] = False,
    ignore: Annotated[
        list[str] | None,
        typer.Option("--ignore", help="Leave out names matching this regex (repeatable)."),
    ] = None,
    min_match: Annotated[
        float | None,
        typer.Option(
            "--min-match",
            help="Fail when fewer than this fraction of target variables match.",
            min=0.0,
            max=1.0,
        ),
    ] = None,
    values: Annotated[
        bool,
        typer.Option("--values", help="Checkpoint targets: compare the values of matched pairs."),
    ] = False,
    show_matched: Annotated[
        bool, typer.Option("--show-matched", help="List matched variables too.")
    ] = False,
    map_file: Annotated[
        str | None,
        typer.Option(
            "--map",
            "-m",
            help="Check the checkpoint as this map would convert it.",
            autocompletion=_bundled_map_names,
        ),
    ] = None,
    html: Annotated[
        str | None,
        typer.Option("--html", help="Also write the report as a self-contained HTML page."),
    ] = None,
    quiet: QuietOption = False,
    traceback: TracebackOption = False,
) -> None:
    """Will CHECKPOINT restore into the --target model? Exit 0 yes, 1 no, 2 error.

    \b
    Example:
      ckptmigrate check runs/model.ckpt-1000 --target new_model/model.ckpt-0.meta
    """
    from .checker import check as run_check
    from .render import check_dict, check_text, to_json

    if html is not None:  # refused before the (possibly long) check, not after it
        from .html_report import check_html_output

        _run(lambda: check_html_output(html), traceback)
    with _progress(enabled=not quiet and not json_output) as progress:
        report = _run(
            lambda: run_check(
                checkpoint,
                target,
                ignore=tuple(ignore or ()),
                strict=strict,
                min_match=min_match,
                values=values,
                map=map_file,
                progress=progress.tracker,
            ),
            traceback,
        )
    command = _command_line(ctx)
    if html is not None:
        from .html_report import write_html

        _run(lambda: write_html(report, html, command=command), traceback)
    if json_output:
        sys.stdout.write(to_json(check_dict(report, command=command)) + "\n")
    else:
        _emit(check_text(report, show_matched=show_matched))
    raise typer.Exit(0 if report.ok else 1)


@app.command("report", epilog=EXIT_CODES, cls=_Recorded)
def report_page(
    ctx: typer.Context,
    saved: Annotated[
        str, typer.Argument(help="A check report saved as JSON (`check ... --json > saved.json`).")
    ],
    output: Annotated[
        str,
        typer.Option("--output", "-o", help="The HTML page to write (an earlier one is replaced)."),
    ],
    quiet: QuietOption = False,
    traceback: TracebackOption = False,
) -> None:
    """Render a saved `check --json` output as the self-contained HTML page `check --html`
    writes. Exit 0 when the page is written, 2 on errors (whatever the check's verdict).

    \b
    Example:
      ckptmigrate check runs/model.ckpt-1000 --target new.meta --json > saved.json
      ckptmigrate report saved.json -o report.html
    """
    from .html_report import check_html_output, load_saved_report, write_saved_report

    _run(lambda: check_html_output(output), traceback)  # before reading a large JSON
    data = _run(lambda: load_saved_report(saved), traceback)
    command = _command_line(ctx)
    out = _run(lambda: write_saved_report(data, output, command=command, source=saved), traceback)
    if not quiet:
        sys.stderr.write(f"wrote {out}: {data['summary']['headline']}\n")


@app.command(epilog=EXIT_CODES)
def convert(
    checkpoint: Annotated[
        str, typer.Argument(help="The checkpoint to convert (read only; a path or a URL).")
    ],
    map_file: Annotated[
        str | None,
        typer.Option(
            "--map",
            "-m",
            help="A YAML map file, or the name of a bundled map (`ckptmigrate maps`).",
            autocompletion=_bundled_map_names,
        ),
    ] = None,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="The new checkpoint directory to write.")
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            "-t",
            help="Write exactly what this model restores, under its own keys (a checkpoint, "
            ".meta, SavedModel, .keras, builder module:function, or spec file).",
        ),
    ] = None,
    root: Annotated[
        str,
        typer.Option(
            "--root",
            help="TF2 targets: the attribute the model is restored through, as in "
            "tf.train.Checkpoint(model=...); '' for the model itself (model.save_weights).",
        ),
    ] = "model",
    fill_missing_from_target: Annotated[
        bool,
        typer.Option(
            "--fill-missing-from-target",
            help="Target variables nothing supplies keep the target's initial values.",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; write nothing.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", "--overwrite", help="Replace the output directory if it exists."),
    ] = False,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="A rule that matches nothing is an error, not a warning."),
    ] = False,
    require_all: Annotated[
        bool,
        typer.Option(
            "--require-all", help="Every variable needs a rule that renames, keeps or drops it."
        ),
    ] = False,
    copy: Annotated[
        bool,
        typer.Option(
            "--copy", help="Copy unchanged shards instead of reflinking or hard-linking them."
        ),
    ] = False,
    durable: Annotated[
        bool,
        typer.Option("--durable", help="fsync every file before publishing the output (slower)."),
    ] = False,
    output_format: Annotated[
        OutputFormat,
        typer.Option(
            "--format",
            help="checkpoint (a TensorFlow checkpoint); keras: a Keras 3 .weights.h5 or "
            ".keras file for a Keras 3 --target; safetensors: a .safetensors file (or shards "
            "and an index); torch: a torch.save .pt/.bin file of a state_dict.",
        ),
    ] = OutputFormat.CHECKPOINT,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Restore the output into the target with TensorFlow (in a subprocess) and "
            "compare every value with the plan; exit 1 if any differs.",
        ),
    ] = False,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="NAME=VALUE",
            help="A value for a parameter the map declares (params: {heads: 12}); repeatable.",
        ),
    ] = None,
    max_shard_size: Annotated[
        str | None,
        typer.Option(
            "--max-shard-size",
            metavar="SIZE",
            help="Write data shards of at most SIZE (2GB, 512MiB, bytes); a bigger tensor "
            "gets a shard of its own.",
        ),
    ] = None,
    num_shards: Annotated[
        int | None,
        typer.Option("--num-shards", metavar="K", help="Write the tensors to K data shards."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            metavar="N",
            help="Threads computing the next variables while one is written (default: one "
            "per CPU, at most 8); the output is the same whatever N.",
        ),
    ] = None,
    max_memory: Annotated[
        str | None,
        typer.Option(
            "--max-memory",
            metavar="SIZE",
            help="Computed values waiting to be written, at most (default 128MiB).",
        ),
    ] = None,
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            metavar="local:N",
            help="Write the data shards on a Dask LocalCluster of N worker processes (one "
            "shard per worker unless --num-shards/--max-shard-size say); needs "
            "ckptmigrate[dask].",
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            metavar="ADDRESS",
            help="Write the data shards on the Dask cluster whose scheduler is at ADDRESS "
            "(tcp://host:8786); its workers must see the output's path.",
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
    quiet: QuietOption = False,
    traceback: TracebackOption = False,
) -> None:
    """Apply a YAML map to CHECKPOINT and write a new checkpoint that restores.

    With --target, the output holds exactly the target model's variables under its own
    keys (and a TF2 target's object graph), ready for its restore.

    \b
    Examples:
      ckptmigrate convert runs/model.ckpt-1000 --map widen.yaml -o runs-widened
      ckptmigrate convert old/x.ckpt -m tf-keras-to-keras3 -t new.keras -o out --verify
    """
    from .conversion import (
        ConvertOptions,
        ShardPolicy,
        dask_cluster,
        parse_size,
        plan,
        run_conversion,
    )
    from .conversion.options import frozen_params
    from .mapping.schema import parse_settings

    if dry_run:
        from .render import plan_text, to_json

        the_plan = _run(
            lambda: plan(
                checkpoint,
                map_file,
                target=target,
                root=root or None,
                fill_missing_from_target=fill_missing_from_target,
                strict=strict,
                require_all=require_all,
                format=output_format,
                params=parse_settings(settings or []),
            ),
            traceback,
        )
        if json_output:
            sys.stdout.write(to_json(the_plan.to_dict()) + "\n")
        else:
            _emit(plan_text(the_plan))
        return
    if output is None:
        sys.stderr.write("error: --output/-o is required (or use --dry-run)\n")
        raise typer.Exit(2)
    options = _run(
        lambda: ConvertOptions(
            root=root or None,
            format=output_format,
            fill_missing_from_target=fill_missing_from_target,
            strict=strict,
            require_all=require_all,
            overwrite=force,
            copy=copy,
            durable=durable,
            verify=verify,
            params=frozen_params(parse_settings(settings or [])),
            shards=ShardPolicy(
                None if max_shard_size is None else parse_size(max_shard_size), num_shards
            ),
            workers=workers,
            max_memory=None if max_memory is None else parse_size(max_memory),
            dask=dask_cluster(dask, scheduler),
        ),
        traceback,
    )
    with _progress(enabled=not quiet and not json_output) as progress:

        def warn(the_plan: Any) -> None:
            # Before anything is written, above the progress line: a rule that matches
            # nothing is seen while there is still time to stop.
            for warning in the_plan.source_warnings:
                progress.note(f"warning: {warning}")
            for warning in the_plan.warnings:
                progress.note(f"warning: {warning}; --strict makes this an error")

        result = _run(
            lambda: run_conversion(
                checkpoint,
                map_file,
                output,
                target,
                options,
                on_plan=warn,
                progress=progress.tracker,
            ),
            traceback,
        )
    if json_output:
        from .render import to_json

        sys.stdout.write(to_json(result.to_dict()) + "\n")
        _exit_on_failed_verification(result.verification)
        return
    if not quiet:
        _stdout().print(
            f"wrote {result.prefix}: {result.copied} copied unchanged, {result.transformed} "
            f"transformed, {result.initialised} initialised, "
            + (f"{result.from_target} from the target, " if result.from_target else "")
            + f"{len(result.plan.dropped)} dropped"
            + (f", {len(result.plan.left_out)} left out" if result.plan.left_out else "")
            + (
                f"; unchanged shards carried over by {', '.join(result.linked_shards)}"
                if result.linked_shards
                else ""
            ),
            markup=False,
            highlight=False,
        )
    if result.verification is not None:
        _stdout().print(result.verification.render(CLI_FLAGS), markup=False, highlight=False)
    _exit_on_failed_verification(result.verification)


def _exit_on_failed_verification(verification: Any) -> None:
    if verification is not None and not verification.ok:
        raise typer.Exit(1)


@app.command(epilog=EXIT_CODES, cls=_TargetOption)
def suggest(
    checkpoint: Annotated[
        str, typer.Argument(help="The checkpoint to migrate (read only; a path or a URL).")
    ],
    target: Annotated[
        str,
        typer.Option(
            "--target",
            "-t",
            help="The model it should fit: anything `check --target` takes.",
        ),
    ],
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", help="Write the map to this file (else: stdout)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", "--overwrite", help="Replace the map file if it exists.")
    ] = False,
    quiet: QuietOption = False,
    root: Annotated[
        str,
        typer.Option(
            "--root", help="As convert --root: the attribute a TF2 target is restored through."
        ),
    ] = "model",
    output_format: Annotated[
        OutputFormat,
        typer.Option("--format", help="As convert --format: checkpoint, or keras (Keras 3)."),
    ] = OutputFormat.CHECKPOINT,
    preserve_function: Annotated[
        bool,
        typer.Option(
            "--preserve-function/--random-growth",
            help="A widened layer's new units start without changing what the model computes "
            "(the rows they feed start at zero; their own weights random), or, with "
            "--random-growth, random everywhere.",
        ),
    ] = True,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the suggestion as a JSON object (rules, uncertain, notes, headline); "
            "-o still writes the YAML map.",
        ),
    ] = False,
    traceback: TracebackOption = False,
) -> None:
    """Write a map that makes CHECKPOINT fit the --target model; review the UNCERTAIN rules.

    \b
    Example:
      ckptmigrate suggest runs/model.ckpt-1000 --target new.meta -o migrate.yaml
    """
    from .suggestion import suggest as run_suggest
    from .suggestion import write_map

    with _progress(enabled=not quiet and not json_output) as progress:
        suggestion = _run(
            lambda: run_suggest(
                checkpoint,
                target,
                root=root or None,
                format=output_format,
                preserve_function=preserve_function,
                progress=progress.tracker,
            ),
            traceback,
        )
    path = None
    if output is not None:
        path = _run(lambda: write_map(suggestion, output, overwrite=force), traceback)
    if json_output:
        from .render import suggestion_dict, to_json

        data = suggestion_dict(suggestion)
        data["output"] = None if path is None else str(path)
        sys.stdout.write(to_json(data) + "\n")
        return
    if path is None:
        sys.stdout.write(suggestion.to_yaml())
        return
    if quiet:
        return
    headline = suggestion.predicted.headline if suggestion.predicted else ""
    sys.stderr.write(
        f"wrote {path}: {len(suggestion.rules)} rules, {len(suggestion.uncertain)} uncertain; "
        f"with it: {headline}\n"
    )


@app.command("maps", epilog=EXIT_CODES)
def list_maps(
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
    quiet: QuietOption = False,  # accepted on every command; maps prints nothing else
    traceback: TracebackOption = False,
) -> None:
    """List the bundled maps, usable as `--map NAME`.

    \b
    Example:
      ckptmigrate convert runs/model.ckpt-1000 --map strip-optimizer -o runs-slim
    """
    from .mapping.schema import bundled_maps

    maps = _run(bundled_maps, traceback)
    if json_output:
        from .render import to_json

        rows = [{"name": name, "description": description} for name, description in maps]
        sys.stdout.write(to_json({"maps": rows}) + "\n")
        return
    for name, description in maps:
        sys.stdout.write(f"{name}\t{description}\n")


@app.command("demo-files", epilog=EXIT_CODES)
def demo_files(
    directory: Annotated[str, typer.Argument(help="Where to make them (must not exist).")],
    force: Annotated[
        bool, typer.Option("--force", "--overwrite", help="Replace DIRECTORY if it exists.")
    ] = False,
    quiet: QuietOption = False,
    traceback: TracebackOption = False,
) -> None:
    """Make the example checkpoints, models and map the README uses, with TensorFlow:
    runs/h10 (a trained [10, 10] Estimator DNN), new/model.ckpt-0.meta (the [20, 20] model),
    old/x.ckpt (tf-keras save_weights), new.keras, model_builder.py and widen.yaml.

    \b
    Example:
      ckptmigrate demo-files try && cd try
      ckptmigrate check runs/h10 --target new/model.ckpt-0.meta
    """
    from pathlib import Path

    from .demo_files import make_demo_files

    made = _run(lambda: make_demo_files(Path(directory), overwrite=force), traceback)
    if not quiet:
        sys.stderr.write(f"made the README's example files in {made.root}\n")


class _Progress:
    """What a command reports while it works: ``tracker`` is handed to the library (None
    when progress is off), ``note`` prints a line on stderr that must stay visible (above
    a live progress line)."""

    def __init__(self, tracker: Any = None, note: Callable[[str], None] | None = None) -> None:
        self.tracker = tracker
        self.note = note or _stderr_line


def _stderr_line(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


@app.command("validate", epilog=EXIT_CODES)
def validate(
    maps: Annotated[
        list[str],
        typer.Argument(help="Map files, or bundled map names.", autocompletion=_bundled_map_names),
    ],
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the errors, not a line per good map.")
    ] = False,
    traceback: TracebackOption = False,
) -> None:
    """Check maps without a checkpoint: each is loaded and validated as convert loads it.
    Exit 0 when every map is valid, 2 when any is not.

    \b
    Example:
      ckptmigrate validate mappings/*.yaml
    """
    from .validate import validate_maps

    results = _run(lambda: validate_maps(maps), traceback)
    for result in results:
        if result.error is None:
            rules = f"{result.rules} rule{'s' if result.rules != 1 else ''}"
            if not quiet:
                sys.stdout.write(f"{result.map}: ok ({rules})\n")
        else:
            # The error names the file:line:column itself.
            sys.stderr.write(f"error: {result.error.render(CLI_FLAGS)}\n")
    if not all(result.ok for result in results):
        raise typer.Exit(2)


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[_Progress]:
    """Progress on stderr: a live bar with the task's totals, rate and time left on a
    terminal; in a log (stderr not a terminal) a line every few seconds."""
    if not enabled:
        yield _Progress()
        return
    from .progress import Progress

    if not sys.stderr.isatty():  # rich stays unimported for pipes and CI
        yield _Progress(Progress(listener=_log_every(LOG_EVERY)))
        return
    from rich.console import Console
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    console = Console(stderr=True)
    columns = (BarColumn(), TimeElapsedColumn(), TextColumn("{task.fields[line]}"))
    with Bar(*columns, console=console, transient=True) as bar:
        task = bar.add_task("work", total=None, line="")

        def redraw(tracker: Progress) -> None:
            total = 1.0 if tracker.determinate else None  # None: a pulsing bar
            bar.update(task, total=total, completed=tracker.fraction, line=tracker.line())

        # Rich prints above its live progress line; a plain write would be drawn over.
        yield _Progress(
            Progress(listener=redraw),
            lambda text: bar.console.print(text, markup=False, highlight=False),
        )


LOG_EVERY = 5.0  # seconds between progress lines in a log


def _log_every(seconds: float) -> Callable[[Any], None]:
    import time

    last = [time.monotonic()]

    def log(tracker: Any) -> None:
        now = time.monotonic()
        if now - last[0] >= seconds:
            last[0] = now
            _stderr_line(tracker.line(now))

    return log


def main() -> None:
    replaced = _catch_stopping_signals()
    try:
        app()
    finally:
        _restore_signals(replaced)


_restore_signals(_during_import)
