"""The `chiraljax` command line: one module per sub-command, each with a `register(app)`.

Exit codes: 0 success, 1 failure during a run, 2 bad input (a one-line reason on stderr),
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

from chiraljax._errors import ValidationError

COMMANDS = ("reproduce", "simulate", "params", "sweep", "plot", "optimize", "cache")
INTERRUPTED = 130  # the exit status of a run stopped by Ctrl-C
TRACEBACK_ENV = "CHIRALJAX_TRACEBACK"  # set: a failure during a run shows its traceback


def runtime_failure(err: BaseException) -> str:
    """One line for a failure during a run: its cause and, where one is known, what to change."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, MemoryError) or "RESOURCE_EXHAUSTED" in text or "Out of memory" in text:
        return (
            "out of memory during the run; lower n_save, the number of points per chunk (--chunk-size), "
            "max_excitations or the network's size"
        )
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.filename}: {err.strerror or text}"
    first = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(err).__name__}: {first}"


app = typer.Typer(
    name="chiraljax",
    help="Simulate and optimise chiral waveguide-QED networks of superconducting qubits.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        import jax

        from chiraljax import __version__

        print(f"chiraljax {__version__} (jax {jax.__version__}, {jax.default_backend()})")
        raise typer.Exit()


@app.callback()
def _group(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Show the version of chiraljax and JAX and exit.",
    ),
) -> None:
    """Keep `chiraljax COMMAND` a group even while only one sub-command is installed."""


for _name in COMMANDS:
    try:
        _module = importlib.import_module(f"{__name__}._{_name}")
    except ModuleNotFoundError as _err:
        if _err.name != f"{__name__}._{_name}":
            raise
        continue
    _module.register(app)


def main() -> None:
    """Entry point: run the app, mapping bad input to exit code 2 with a one-line message."""
    try:
        status = app(standalone_mode=False)
    except KeyboardInterrupt:
        status = INTERRUPTED
    except ValidationError as err:
        print(f"chiraljax: error: {err}", file=sys.stderr)
        sys.exit(2)
    except (typer.Exit, SystemExit) as err:
        code = getattr(err, "exit_code", getattr(err, "code", 0))
        sys.exit(code or 0)
    except Exception as err:  # click usage errors carry their own exit code (2)
        exit_code = getattr(err, "exit_code", None)
        if exit_code is not None:
            show = getattr(err, "show", None)
            if show is not None:
                show()
            sys.exit(exit_code)
        if os.environ.get(TRACEBACK_ENV):
            raise
        print(f"chiraljax: error: {runtime_failure(err)} (set {TRACEBACK_ENV}=1 for the traceback)", file=sys.stderr)
        sys.exit(1)
    # typer turns an interrupt into the status 130, which it returns instead of exiting with it
    if status == INTERRUPTED:
        print("chiraljax: interrupted; rerun the same command to resume", file=sys.stderr)
        sys.exit(INTERRUPTED)
    if isinstance(status, int) and not isinstance(status, bool) and status:
        sys.exit(status)


def console() -> None:
    """The installed `chiraljax` command: `main`, then an exit that skips the interpreter's
    teardown.

    Once a command is done, tearing down the interpreter (its modules, XLA's CPU client and
    thread pools) takes another 0.07-0.15 s, a tenth of a first `chiraljax simulate`. Nothing
    of it is needed: every file a command writes is written and closed (atomically) before it
    returns, and JAX writes its compilation cache when it compiles. So the command waits for
    any optimized build still compiling in the background (`chiraljax.solve._tiers`) and for
    the cache folder's daily prune if this process started it (`chiraljax.solve._cache`: about
    0.2 s for 20,000 files, once a day), flushes its output and ends the process with
    `os._exit`. Called in-process, `main` exits as usual.
    A failure shown with its traceback (`CHIRALJAX_TRACEBACK`) takes the ordinary exit.
    """
    code = None
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code
    if not isinstance(code, int):  # as Python's own exit: None is success, a message fails
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    tiers, cache = sys.modules.get("chiraljax.solve._tiers"), sys.modules.get("chiraljax.solve._cache")
    if tiers is not None:
        tiers.wait_for_optimized_builds()
    if cache is not None:  # the day's prune of the cache folder, if this process started it
        cache.wait_for_pruning()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`) or a closed stream
            pass
    os._exit(code)
