"""`chiraljax cache`: where the compilation cache is, how large, and pruning or clearing it."""

from __future__ import annotations

import typer

_HELP = (
    "Show the folder of the compilation cache (compiled programs kept between processes), its "
    "size and its limit.\n\n"
    "The folder is kept below CHIRALJAX_CACHE_SIZE (default 2G; 'off' for no limit): once a day "
    "an import deletes the least recently used entries of a larger folder. --prune does that "
    "now; --clear deletes every entry. Only the cache's own files are touched; a deleted "
    "program is compiled again when it is next needed."
)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def cache_command(
    prune: bool = typer.Option(
        False, "--prune", help="Delete the least recently used entries down to 80% of the limit."
    ),
    clear: bool = typer.Option(False, "--clear", help="Delete every entry of the cache."),
) -> None:
    """Show, prune or clear the compilation cache."""
    from chiraljax._errors import require
    from chiraljax.solve._cache import (
        ENV_VAR,
        KEEP_FRACTION,
        cache_entries,
        cache_size_limit,
        clear_cache,
        compilation_cache_dir,
        prune_cache,
        wait_for_pruning,
    )

    require(not (prune and clear), "cache: give --prune or --clear, not both")
    wait_for_pruning()  # the import's own once-a-day prune, if it started one
    limit = cache_size_limit()
    folder = compilation_cache_dir()
    if folder is None:
        print(f"the compilation cache is off ({ENV_VAR}=off, or the folder could not be created)")
        return
    if clear:
        removed, freed = clear_cache(folder)
        print(f"deleted {removed} entries ({_size(freed)}) from {folder}")
    elif prune:
        if limit is None:
            print("no size limit is set (CHIRALJAX_CACHE_SIZE=off): nothing to prune")
        else:
            removed, freed = prune_cache(folder, limit)
            print(
                f"deleted {removed} entries ({_size(freed)}) from {folder}"
                if removed
                else f"{folder} is within its limit: nothing to prune"
            )
    entries = cache_entries(folder)
    total = sum(e.size for e in entries)
    limit_text = "none (CHIRALJAX_CACHE_SIZE=off)" if limit is None else _size(limit)
    print(f"folder: {folder}")
    print(f"size:   {_size(total)} in {len(entries)} entries")
    print(
        f"limit:  {limit_text}"
        + ("" if limit is None else f" (pruned to {KEEP_FRACTION:.0%} of it once a day when larger)")
    )


def register(app: typer.Typer) -> None:
    """Add the `cache` command to the chiraljax app."""
    app.command("cache", help=_HELP)(cache_command)
