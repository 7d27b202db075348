"""`bench archive`: a results folder's rows, zoo records and zoos in compact form, to commit beside its tables."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub, command) -> None:
    arc = command("archive", "copy a results folder's rows (one part), zoo records and zoos into a compact folder"
                             " that `bench report --results` reads: the committable source of its tables")
    arc.add_argument("--results", type=Path, default=Path("results"))
    arc.add_argument("--out", type=Path, required=True,
                     help="the archive folder (absent, empty, or an archive this command wrote, which is replaced)")


def main(args, argv) -> int:
    from bench.store.archive import archive_results

    manifest = archive_results(args.results, args.out)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out}: {manifest['rows']} rows, zoos {', '.join(manifest['zoos']) or 'none'}, "
          f"{size / 2**20:.1f} MiB; regenerate its tables with `bench report --results {args.out} --into DIR`")
    return 0
