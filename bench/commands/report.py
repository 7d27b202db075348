"""`bench report`: the leaderboard, comparison matrices and figures from the results table; --claims."""

from __future__ import annotations

import sys
from pathlib import Path

from bench.commands.finisher import finish, header, method_display_names


def add_parser(sub, command) -> None:
    rep = command("report", "leaderboard, comparison matrices and figures from the results table (or, with"
                            " a selection or --format, one comparison matrix)")
    rep.add_argument("--results", type=Path, default=Path("results"))
    rep.add_argument("--methods", nargs="+", help="method specs or names (all their variants); default: all")
    rep.add_argument("--zoos", nargs="+", help="zoo names or shell patterns ('cnn-*'); default: all")
    rep.add_argument("--protocols", nargs="+", help="protocol names; default: all")
    rep.add_argument("--metric", help="a declared metric (e.g. loss_barrier); default: each protocol's ranking one")
    rep.add_argument("--format", choices=("md", "tex", "html", "csv"), help="comparison matrix format (default: md)")
    rep.add_argument("--out", type=Path, help="write the comparison matrix here instead of printing it (- : stdout);"
                                              " an existing file is replaced only if `bench report --out` wrote it")
    rep.add_argument("--force", action="store_true", help="--out: replace an existing file that bench did not write")
    rep.add_argument("--into", type=Path, help="write the report files (tables, figures) here; default: --results")
    rep.add_argument("--display-names", action="store_true",
                     help="tables name methods by their display names (`bench methods`), numbered by citation, with"
                          " the references listed (LaTeX, HTML, Markdown); default: the registered names")
    rep.add_argument("--claims", action="store_true",
                     help="test the papers' claims: run what they need (resumable), write RESULTS/claims.md"
                          " and the other reports")
    rep.add_argument("--report-only", action="store_true",
                     help="--claims: run nothing; write claims.md from the claims' rows already under --results")
    rep.add_argument("--quiet", action="store_true", help="--claims: no progress bars")


def main(args, argv) -> int:
    if args.claims:
        return _claims(args, argv)
    if args.report_only:
        raise ValueError("--report-only is for --claims (`bench report` itself only reads the rows)")
    if not (args.results / "rows").is_dir():  # a typo must not create a folder and exit 0
        raise FileNotFoundError(f"{args.results}: no results table here (expected {args.results / 'rows'}/;"
                                f" `bench run --results {args.results}` writes one)")
    if any((args.methods, args.zoos, args.protocols, args.metric, args.format, args.out)):
        if args.into:
            raise ValueError("--into writes the whole report; a selection writes one matrix (--out FILE)")
        return _comparison(args)
    finish(args.results, argv, mirror=False, display_names=args.display_names, into=args.into)
    return 0


def _claims(args, argv) -> int:
    from bench.execution.claims import CLAIM_ZOOS, claim_hashes, run_claims
    from bench.execution.plan import RunOptions
    from bench.report.claims import evaluate, markdown
    from bench.report.files import write_text
    from bench.report.paper_claims import CLAIMS
    from bench.store.results import ResultStore, current_code

    if any((args.methods, args.zoos, args.protocols, args.metric, args.format, args.out)):
        raise ValueError("--claims runs and reads a fixed set of zoos and methods: it takes no selection or format")
    if args.report_only:  # e.g. from an archive (`bench archive`): the zoos' cards give their hashes
        summary, hashes = None, claim_hashes(args.results)
        missing = sorted(set(CLAIM_ZOOS) - set(hashes))
        if missing:
            raise FileNotFoundError(f"{args.results}: no zoo for claim zoo(s) {', '.join(missing)}: run "
                                    f"`bench report --claims --results {args.results}` first")
    else:
        summary, hashes = run_claims(RunOptions(results=args.results, progress=not args.quiet))
        print(f"units: {summary.done} run, {summary.skipped} already done, {summary.failed} failed")
    results = evaluate(CLAIMS, current_code(ResultStore(args.results).table()), hashes)
    path = write_text((args.into or args.results) / "claims.md", markdown(results, header(argv, args.results)))
    for r in results:
        print(f"claim {r.claim.number}: {r.verdict}")
    print(f"wrote {path}")
    if summary is None:
        return 0
    finish(args.results, argv)
    return 1 if summary.failed else 0


def _check_metric(metric: str, table) -> None:
    """A metric no protocol of the selection declares: one line naming the ones that would work here (the
    declared metrics with values in the selected rows), and the close ones."""
    from bench.protocols import PROTOCOLS
    from zoos.names import unknown_name

    protocols = sorted(set(table["protocol"].dropna().astype(str))) if "protocol" in table.columns else []
    declared = {m.name for p in protocols if p in PROTOCOLS for m in PROTOCOLS[p].metrics}
    if metric in declared:
        return
    valid = sorted(m for m in declared if m in table.columns and table[m].notna().any())
    text = unknown_name("metric", metric, valid).replace("known:", "valid here:", 1)
    if metric in {m.name for cls in PROTOCOLS.values() for m in cls.metrics}:
        text = text.replace("unknown metric", f"metric not declared by {', '.join(protocols)}:", 1)
    raise ValueError(text)


def normal_specs(specs: list[str] | None) -> list[str] | None:
    """Method specs as the table's `variant` column spells them (`git-rebasin[max_sweeps=100]` is
    `git-rebasin`); names and shell patterns as given."""
    from methods import METHODS, UnknownMethod, normalise_spec, parse_method

    out = []
    for spec in specs or []:
        try:
            known = parse_method(spec)[0] in METHODS
        except UnknownMethod:
            known = False
        try:
            out.append(normalise_spec(spec) if known else spec)
        except ValueError:
            out.append(spec)
    return out or specs


def _comparison(args) -> int:
    from bench.report.comparison import OUT_MARKER, comparison, mark, render, select
    from bench.report.files import write_text
    from bench.store.results import ResultStore, current_code
    from zoos.files import check_ours

    to_stdout = args.out is not None and str(args.out) == "-"
    if args.out and not to_stdout:  # before any work: the user's own file at --out is not ours to replace
        check_ours(args.out, OUT_MARKER, args.force, "`bench report --out`")
    table = select(current_code(ResultStore(args.results).table()), normal_specs(args.methods), args.zoos,
                   args.protocols)
    if args.metric:
        _check_metric(args.metric, table)
    matrices = comparison(table, args.metric, method_display_names() if args.display_names else None)
    if not matrices:
        raise ValueError(f"{args.results}: nothing to compare for this selection"
                         + (f" (no protocol declares metric {args.metric!r} with values here)" if args.metric else ""))
    fmt = args.format or (args.out.suffix.lstrip(".") if args.out and not to_stdout else "md") or "md"
    text = render(matrices, fmt)
    if args.out and not to_stdout:  # a regular file is replaced atomically, a FIFO or device written as a stream
        print(f"wrote {write_text(args.out, mark(text, fmt))}")
    else:
        sys.stdout.write(text)
    return 0

