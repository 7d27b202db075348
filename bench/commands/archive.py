"""`bench archive`: a results folder's rows, zoo records and zoos in compact form, to commit beside its tables."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub, command) -> None:
    arc = command("archive", "copy a results folder's rows (one part), zoo records and zoos into a compact folder"
                             " that `bench report --results` reads: the committable source of its tables")
    arc.add_argument("--results", type=Path, default=Path("results"))
    arc.add_argument("--out", type=Path, required=True,
                     help="the archive folder (absent, empty, or an archive this command wrote, which is replaced)")
    arc.add_argument("--no-weights", action="store_true",
                     help="keep each zoo's spec and metadata only: every report still works, rescoring does not")


def main(args, argv) -> int:
    from bench.store.archive import archive_results

    manifest = archive_results(args.results, args.out, weights=not args.no_weights)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out}: {manifest['rows']} rows, zoos {', '.join(manifest['zoos']) or 'none'}, "
          f"{size / 2**20:.1f} MiB; regenerate its tables with `bench report --results {args.out} --into DIR` (and "
          f"its reproductions with `bench reproduce --report-only --results {args.out} --into DIR`)")
    return 0
