"""Display names and citations of methods, numbered as one report cites them."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from bench.store.results import is_missing


@dataclass(frozen=True)
class MethodNames:
    """Display names and citations of methods (`bench report --display-names`): built from the registry's
    class attributes (`MethodNames.of(METHODS)`), so the report functions stay free of the method code.
    A variant `git-rebasin[max_sweeps=5]` shows as `Git Re-Basin (WM) [max_sweeps=5]`; bound to the variants
    of a report (`bind`), a method with a citation carries its reference's number, `[1]`, which
    `references` lists (one number per distinct citation, in order of the display names citing it)."""

    labels: dict  # method name -> display name
    cites: dict  # method name -> (citation, arXiv id)
    numbers: dict = field(default_factory=dict)  # (citation, arXiv id) -> its number in this report
    shown: frozenset = frozenset()  # the methods of this report

    @classmethod
    def of(cls, methods) -> MethodNames:
        """From a {name: Aligner class} mapping (the registry)."""
        labels = {n: c.label() for n, c in methods.items()}
        cites = {n: (c.citation, c.arxiv) for n, c in methods.items() if c.citation or c.arxiv}
        return cls(labels, cites)

    def bind(self, variants) -> MethodNames:
        """A copy numbering the references of these variants (the report's)."""
        numbers: dict = {}
        methods = {str(v).split("[")[0] for v in variants if not is_missing(v)}
        for method in sorted(methods, key=lambda m: (self.labels.get(m, m), m)):
            ref = self.cites.get(method)
            if ref is not None and ref not in numbers:
                numbers[ref] = len(numbers) + 1
        return MethodNames(self.labels, self.cites, numbers, frozenset(methods))

    def show(self, variant) -> str:
        """The display name (hyperparameters kept), with its reference's number when bound."""
        method, bracket, rest = str(variant).partition("[")
        ref = self.cites.get(method)
        mark = f" [{self.numbers[ref]}]" if ref in self.numbers else ""
        return self.labels.get(method, method) + (f" [{rest}" if bracket else "") + mark

    def references(self) -> list[tuple[int, list[str], str, str]]:
        """(number, display names of the report's methods citing it, citation, arXiv id) per bound reference."""
        return [(k, sorted({self.labels.get(m, m) for m, r in self.cites.items() if r == ref and m in self.shown}),
                 *ref)
                for ref, k in self.numbers.items()]

    def lines(self) -> list[str]:
        """'[1] Git Re-Basin (WM), MergeMany: Ainsworth, ..., ICLR 2023, arXiv:2209.04836' per reference."""
        return [f"[{k}] {', '.join(who)}: " + ", ".join(filter(None, (cit, f"arXiv:{ax}" if ax else "")))
                for k, who, cit, ax in self.references()]


def bound_names(names: MethodNames | None, table: pd.DataFrame) -> MethodNames | None:
    """`names` bound to the variants of `table` (unless unbound names were not given or are bound already)."""
    if names is None or names.numbers or "variant" not in table.columns:
        return names
    return names.bind(table["variant"])
