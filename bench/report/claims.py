"""The alignment papers' claims, tested on our zoos: `results/claims.md`, a pure function of the table.

A claim is tested in one or more settings (a zoo, and where it matters a noise level, a number of
models, a probe); a setting holds one or more checks, each an effect with its 95% CI and n. The
verdict of every check, setting and claim follows RULE below, mechanically; nothing is decided by
hand. `bench.execution.claims` runs what the checks read (`bench report --claims`).

Zoos are named by label ("inr", "cnn-tanh", "mlp-512", ...) and found by content hash (the caller
maps labels to hashes), so a zoo of the same name built from another recipe is never read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import stats

from bench.report.stats import ALPHA, CONFIDENCE, RESAMPLES, mean_ci, paired_p
from bench.store.results import is_missing, newest_per_unit

HOLDS, FAILS, UNDECIDED = "holds", "does not hold", "inconclusive"

RULE = f"""\
**Verdict rule.** Every check measures an effect *e*, signed so that *e* > 0 is what the claim says,
with its {CONFIDENCE:.0%} confidence interval [lo, hi] over n units, and a margin m >= 0 (0 unless the
check says "at least as well as", where m is the loss tolerated):

- a check **holds** when lo > -m; **does not hold** when hi < -m; otherwise it is **inconclusive**.
  With m = 0 this is "significant in the claimed direction" / "significant in the opposite one".
- A paired comparison with m = 0 must also pass the Wilcoxon signed-rank test (two-sided, p < {ALPHA})
  to hold or not hold; when interval and test disagree, or fewer than 6 units are shared, it is
  inconclusive.
- Effects and intervals: a **paired comparison** is the mean per-unit difference (claimed worse minus
  claimed better, units matched by name), CI by BCa bootstrap ({RESAMPLES} resamples, seed 0); a
  **rate** (share of units recovered, of cycles closed, of decoded networks whose nearest original is
  their own source) is compared with its threshold (for the last: chance) through the exact
  Clopper-Pearson interval; a **trend** is minus Spearman's rho between width and the metric over all
  units (claimed: shrinks with width), CI by a bootstrap within widths (percentile), p from Spearman's test.
- Margins of "at least as well as" checks: 5% of the inputs' mean loss (the networks merged or combined).
- A setting holds when all its checks hold, does not hold when one of them does not, and is inconclusive
  otherwise; a claim likewise over its settings (each claim is stated for all of its settings, so one
  counterexample refutes it). Settings **in the paper's regime** decide the verdict: zoos trained with the
  paper's own recipe (`bench reproduce`), and, for claims 1, 2 and 8 (exact symmetries; SIRENs fitted as
  the autoencoder paper's INRs), the zoos they run on. Settings **off the paper's regime** (our small
  zoos, trained for a few epochs) are shown with their own verdicts and count only for a claim that has no
  setting in the regime (claim 3: marked so in its row). **Controls** (checks that cannot fail in our
  setting: a noise-free planted element, a cycle error that is 0 by construction, identification above
  chance that 32 trials cannot refute) are shown, labelled, and never count as evidence; but a setting is
  inconclusive, whatever its counted checks say, when a control does not hold (the measurement is not
  valid) or when a **gate** is not shown to hold: identification above chance gates the autoencoder's
  settings (a decoder that may have collapsed to one network has low barriers that say nothing). An
  underpowered control voids nothing (8 of 8 cycles closed cannot show a rate above 3/4).
- A **"small"** claim is tested against a stated threshold: the mean's upper CI bound must lie below it.
- The summary's "ours" column quotes the **deciding check**: the first counted check whose verdict is the
  claim's, in the first setting that has the claim's verdict (or the control that voided that setting).
- Metrics are named as the leaderboard names them: "loss path excess" (worst loss on the path minus the
  original endpoints' mean), "loss barrier" (against the path's own endpoints), "empirical loss barrier"
  (combine probes: the worst sample minus the endpoints' mean).
"""


# ---- what a check reads ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Select:
    """Rows of one variant on one zoo (by label) and protocol, narrowed by section values."""

    zoo: str
    protocol: str
    variant: str
    where: tuple[tuple[str, object], ...] = ()

    def rows(self, table: pd.DataFrame, hashes: Mapping[str, str]) -> pd.DataFrame:
        if self.zoo not in hashes or table.empty:
            return table.iloc[0:0]
        keep = ((table["zoo_hash"].astype(str) == hashes[self.zoo]) & (table["protocol"] == self.protocol)
                & (table["variant"] == self.variant))
        for column, value in self.where:
            if column not in table.columns:
                return table.iloc[0:0]
            values = table[column]
            keep &= np.isclose(pd.to_numeric(values, errors="coerce"), value) if isinstance(value, float) \
                else values == value
        return table[keep]


def _unit_id(name: str) -> str:
    """A unit's name without its probe, so that probes of one pair (combine) are paired with each other."""
    return re.sub(r"\s*probe=\S+", "", str(name))


def _values(rows: pd.DataFrame, metric: str) -> dict[str, float]:
    if metric not in rows.columns:
        return {}
    values = pd.to_numeric(rows[metric], errors="coerce")
    return {_unit_id(u): float(v) for u, v in zip(rows["unit"], values, strict=True) if math.isfinite(v)}


def _cell(values) -> str:
    mean, lo, hi, n = mean_ci(list(values))
    return "–" if n == 0 else f"{_num(mean)} [{_num(lo)}, {_num(hi)}]"


def _num(x: float) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.3g}"


# ---- checks ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    check: str
    n: int
    values: str  # what was measured, each with its CI
    effect: float
    lo: float
    hi: float
    p: float  # NaN where the check has no test
    margin: float
    verdict: str
    control: bool = False  # a check that cannot fail here: shown, labelled, not counted toward a verdict
    gate: bool = False  # a control the setting's measurements are only valid under: it must hold


def verdict(lo: float, hi: float, margin: float = 0.0, p: float | None = None) -> str:
    """RULE for one check: CI [lo, hi] of the effect (> 0 = as claimed), margin m, and the paired or trend
    test's p where there is one (it must agree when m = 0)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return UNDECIDED
    tested = p is None or margin > 0 or (math.isfinite(p) and p < ALPHA)
    if lo > -margin and tested:
        return HOLDS
    if hi < -margin and tested:
        return FAILS
    return UNDECIDED


def combined(verdicts: Sequence[str]) -> str:
    """All hold: holds; one does not: does not hold; otherwise (or none): inconclusive."""
    if verdicts and all(v == HOLDS for v in verdicts):
        return HOLDS
    return FAILS if FAILS in verdicts else UNDECIDED


@dataclass(frozen=True)
class Lower:
    """Paired: `better`'s metric is lower than `worse`'s (or, with `tolerant`, at most 5% of the inputs'
    loss above it: "at least as well as")."""

    better: Select
    worse: Select
    metric: str
    text: str
    tolerant: bool = False
    worse_metric: str | None = None  # the other side's column, when it differs (e.g. another probe's)
    control: bool = False

    def run(self, table: pd.DataFrame, hashes: Mapping[str, str]) -> Outcome:
        return replace(self._run(table, hashes), control=self.control)

    def _run(self, table: pd.DataFrame, hashes: Mapping[str, str]) -> Outcome:
        good_rows, bad_rows = self.better.rows(table, hashes), self.worse.rows(table, hashes)
        good, bad = _values(good_rows, self.metric), _values(bad_rows, self.worse_metric or self.metric)
        shared = sorted(set(good) & set(bad))
        d = [bad[u] - good[u] for u in shared]
        effect, lo, hi, n = mean_ci(d)
        margin = 0.0
        if self.tolerant and n:
            scale = _values(pd.concat([good_rows, bad_rows]), "loss_endpoints")
            margin = 0.05 * float(np.mean([scale[u] for u in shared if u in scale])) if scale else math.nan
        p = paired_p({u: good[u] for u in shared}, {u: bad[u] for u in shared})[0] if n else math.nan
        values = f"{self.better.variant}: {_cell(good[u] for u in shared)}; {self.worse.variant}: " \
                 f"{_cell(bad[u] for u in shared)}"
        return Outcome(self.text, n, values, effect, lo, hi, p, margin,
                       verdict(lo, hi, margin, None if self.tolerant else p))


def _share_outcome(text: str, n: int, variant: str, hits: int, trials: int, threshold: float,
                   at_least: bool) -> Outcome:
    """A share of `hits` in `trials` against `threshold` (at least / at most), by its exact interval."""
    ci = stats.binomtest(hits, trials).proportion_ci(CONFIDENCE, method="exact")
    sign = 1 if at_least else -1
    lo, hi = sorted((sign * (ci.low - threshold), sign * (ci.high - threshold)))
    values = f"{variant}: {hits}/{trials} = {hits / trials:.2f} [{ci.low:.2f}, {ci.high:.2f}]"
    return Outcome(text, n, values, sign * (hits / trials - threshold), lo, hi, math.nan, 0.0, verdict(lo, hi))


@dataclass(frozen=True)
class Rate:
    """The share of units whose metric passes (`recovered` = 1, or a value <= `zero`) is at least / at most
    `threshold`."""

    select: Select
    metric: str
    threshold: float
    at_least: bool
    text: str
    zero: float | None = None  # count a unit as passing when metric <= zero (e.g. cycle error 0)
    control: bool = False

    def run(self, table: pd.DataFrame, hashes: Mapping[str, str]) -> Outcome:
        return replace(self._run(table, hashes), control=self.control)

    def _run(self, table: pd.DataFrame, hashes: Mapping[str, str]) -> Outcome:
        values = list(_values(self.select.rows(table, hashes), self.metric).values())
        n = len(values)
        passed = sum((v <= self.zero) if self.zero is not None else v >= 0.5 for v in values)
        if n == 0:
            return Outcome(self.text, 0, "not measured", math.nan, math.nan, math.nan, math.nan, 0.0, UNDECIDED)
        return _share_outcome(self.text, n, self.select.variant, passed, n, self.threshold, self.at_least)


@dataclass(frozen=True)
class AboveChance:
    """A function-changing method's decoded endpoints name their own source (nearest original by function)
    more often than chance (`ident` against `ident_chance`, two endpoints per unit): the leaderboard's
    collapse gate as a check. A decoder that maps every input near one network fails it, and its low
    barriers then say nothing."""

    select: Select
    text: str = "its decoded networks identify their own sources above chance (not collapsed)"
    control: bool = False
    gate: bool = False  # the setting counts only when this holds (a collapsed decoder's barriers say nothing)

    def run(self, table: pd.DataFrame, hashes: Mapping[str, str]) -> Outcome:
        return replace(self._run(table, hashes), control=self.control, gate=self.gate)

    def _run(self, table: pd.DataFrame, hashes: Mapping[str, str]) -> Outcome:
        rows = self.select.rows(table, hashes)
        ident, chance = _values(rows, "ident"), _values(rows, "ident_chance")
        units = sorted(set(ident) & set(chance))
        if not units:
            return Outcome(self.text, 0, "not measured", math.nan, math.nan, math.nan, math.nan, 0.0, UNDECIDED)
        trials = 2 * len(units)
        hits = int(round(sum(2 * ident[u] for u in units)))
        level = float(np.mean([chance[u] for u in units]))
        out = _share_outcome(self.text, len(units), self.select.variant, hits, trials, level, True)
        return replace(out, values=f"{out.values}, chance {level:.3f}")


@dataclass(frozen=True)
class Below:
    """'Small': the mean of the metric is below a stated threshold (its upper CI bound below it to hold)."""

    select: Select
    metric: str
    threshold: float
    text: str
    control: bool = False

    def run(self, table: pd.DataFrame, hashes: Mapping[str, str]) -> Outcome:
        got = list(_values(self.select.rows(table, hashes), self.metric).values())
        mean, lo, hi, n = mean_ci(got)
        if n == 0:
            return Outcome(self.text, 0, "not measured", math.nan, math.nan, math.nan, math.nan, 0.0, UNDECIDED,
                           self.control)
        effect_lo, effect_hi = self.threshold - hi, self.threshold - lo
        return Outcome(self.text, n, f"{self.select.variant}: {_cell(got)} against {self.threshold:g}",
                       self.threshold - mean, effect_lo, effect_hi, math.nan, 0.0, verdict(effect_lo, effect_hi),
                       self.control)


@dataclass(frozen=True)
class Shrinks:
    """The metric falls as width grows: minus Spearman's rho over every unit of every width."""

    selects: tuple[tuple[int, Select], ...]  # (width, rows of that width)
    metric: str
    text: str

    def run(self, table: pd.DataFrame, hashes: Mapping[str, str]) -> Outcome:
        widths, values, cells = [], [], []
        for width, select in self.selects:
            got = list(_values(select.rows(table, hashes), self.metric).values())
            widths += [width] * len(got)
            values += got
            cells.append(f"{width}: {_cell(got)}" + (f" (n={len(got)})" if got else ""))
        n = len(values)
        if n < 3 or len(set(widths)) < 2:
            return Outcome(self.text, n, "; ".join(cells), math.nan, math.nan, math.nan, math.nan, 0.0, UNDECIDED)
        w, v = np.array(widths, float), np.array(values, float)
        rho, p = stats.spearmanr(w, v)
        rng = np.random.default_rng(0)
        groups = [np.flatnonzero(w == x) for x in np.unique(w)]
        boot = []
        for _ in range(RESAMPLES):  # resample units within each width: the design (widths, counts) stays
            idx = np.concatenate([rng.choice(g, len(g)) for g in groups])
            r = stats.spearmanr(w[idx], v[idx])[0]
            if math.isfinite(r):
                boot.append(r)
        q_lo, q_hi = np.quantile(boot, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2]) if boot else (math.nan,) * 2
        lo, hi = -float(q_hi), -float(q_lo)
        text = f"{self.selects[0][1].variant} by width: " + "; ".join(cells) + f"; rho = {rho:.2f}"
        return Outcome(self.text, n, text, -float(rho), lo, hi, float(p), 0.0, verdict(lo, hi, 0.0, float(p)))


@dataclass(frozen=True)
class Setting:
    text: str
    checks: tuple
    # False: networks trained off the paper's recipe (our small, briefly trained zoos); shown with its verdict,
    # counted only when the claim has no setting in the paper's regime
    regime: bool = True


@dataclass(frozen=True)
class Claim:
    number: int
    text: str
    source: str
    settings: tuple[Setting, ...]
    paper: str = ""  # a published figure of a comparable setting, and how that setting differs
    note: str = ""
    ours: tuple[int, int] = (0, 0)  # unused by the report (it quotes the deciding check); kept for callers
    references: tuple[str, ...] = ()  # bibliography entries (authors, title, venue, arXiv id) the claim cites


@dataclass
class ClaimResult:
    claim: Claim
    settings: list[tuple[Setting, list[Outcome], str]] = field(default_factory=list)

    @property
    def counted(self) -> list[tuple[Setting, list[Outcome], str]]:
        """The settings the verdict rests on: those in the paper's regime, or every setting when none is."""
        regime = [s for s in self.settings if s[0].regime]
        return regime or self.settings

    @property
    def off_regime_only(self) -> bool:
        return not any(s.regime for s, _, _ in self.settings)

    @property
    def verdict(self) -> str:
        return combined([v for _, _, v in self.counted])


def evaluate(claims: Sequence[Claim], table: pd.DataFrame, hashes: Mapping[str, str]) -> list[ClaimResult]:
    """Every check of every claim on the table's good rows (the newest row of a unit when it was run twice)."""
    table = _latest(table)
    out = []
    for claim in claims:
        result = ClaimResult(claim)
        for setting in claim.settings:
            outcomes = [check.run(table, hashes) for check in setting.checks]
            result.settings.append((setting, outcomes, setting_verdict(outcomes)))
        out.append(result)
    return out


def setting_verdict(outcomes: Sequence[Outcome]) -> str:
    """The counted checks' combined verdict; inconclusive when a control does not hold (the measurement is
    not valid) or a gate is not shown to hold. Controls never count as evidence."""
    if any(_voids(o) for o in outcomes):
        return UNDECIDED
    return combined([o.verdict for o in outcomes if not o.control])


def _voids(o: Outcome) -> bool:
    """A control that fails, or a gate that does not hold (an underpowered sanity control voids nothing: 8 of 8
    cycles closed cannot show a rate above 3/4 at 95%, yet nothing is wrong)."""
    return o.control and (o.verdict == FAILS or (o.gate and o.verdict != HOLDS))


def _latest(table: pd.DataFrame) -> pd.DataFrame:
    """Good rows only, one per (zoo, protocol, variant, unit): a unit run again under other protocol
    options (another number of interpolation points) counts once, with its newest row."""
    if table.empty:
        return table
    if "error" in table.columns:
        table = table[table["error"].map(is_missing).astype(bool)]
    return newest_per_unit(table)


def deciding_check(result: ClaimResult) -> tuple[Setting, Outcome] | None:
    """The check the claim's verdict rests on: the first counted check, in the first setting that has the claim's
    verdict, whose own verdict is the claim's (for "holds", every counted check holds: the first is quoted), or
    the control that did not hold where that voided the setting."""
    for setting, outcomes, setting_verdict in result.counted:
        if setting_verdict != result.verdict:
            continue
        for o in outcomes:
            if not o.control and o.verdict == result.verdict:
                return setting, o
        for o in outcomes:  # a setting voided by its control: the control decided
            if _voids(o):
                return setting, o
    return None


# ---- rendering -------------------------------------------------------------------------------------
def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(results: Sequence[ClaimResult], header_lines: Sequence[str] = ()) -> str:
    lines = ["# The papers' claims, tested", ""] + [f"{h}  " for h in header_lines] + [""]
    lines += [RULE, "## Verdicts", "",
              "| # | claim | verdict | in the paper's regime (holds / not / inconclusive) | off it | published | "
              "ours: the deciding check |",
              "|---|---|---|---|---|---|---|"]
    for r in results:
        def counts(regime: bool) -> str:
            verdicts = [v for s, _, v in r.settings if s.regime == regime]  # noqa: B023 (used at once)
            return " / ".join(str(sum(v == x for v in verdicts)) for x in (HOLDS, FAILS, UNDECIDED)) \
                if verdicts else "–"
        deciding = deciding_check(r)
        ours = f"{deciding[0].text}: {deciding[1].check}: {deciding[1].values} ({deciding[1].verdict})" \
            if deciding else "–"
        verdict = f"**{r.verdict}**" + (" (off the paper's regime only)" if r.off_regime_only else "")
        lines.append(f"| {r.claim.number} | {_md(r.claim.text)} ({_md(r.claim.source)}) | {verdict} | "
                     f"{counts(True)} | {counts(False)} | {_md(r.claim.paper) or 'no published figure found'} | "
                     f"{_md(ours)} |")
    for r in results:
        lines += ["", f"## {r.claim.number}. {r.claim.text}", "",
                  f"Source: {r.claim.source}. Verdict: **{r.verdict}**.", ""]
        if r.claim.note:
            lines += [r.claim.note, ""]
        lines += ["| setting | check | n | measured: mean [95% CI] | effect [95% CI] | margin | p | verdict |",
                  "|---|---|---|---|---|---|---|---|"]
        for setting, outcomes, setting_verdict in r.settings:
            for i, o in enumerate(outcomes):
                regime = "" if setting.regime else ", off the paper's regime"
                name = f"{_md(setting.text)} (**{setting_verdict}**{regime})" if i == 0 else ""
                label = f"control (not counted): {o.check}" if o.control else o.check
                effect = "–" if not math.isfinite(o.effect) else f"{_num(o.effect)} [{_num(o.lo)}, {_num(o.hi)}]"
                p = "–" if not math.isfinite(o.p) else f"{o.p:.2g}"
                margin = "–" if o.margin == 0 else _num(o.margin)
                lines.append(f"| {name} | {_md(label)} | {o.n} | {_md(o.values)} | {effect} | {margin} | {p} | "
                             f"{o.verdict} |")
    references = list(dict.fromkeys(ref for r in results for ref in r.claim.references))
    if references:
        lines += ["", "## References", ""] + [f"{i}. {_md(ref)}" for i, ref in enumerate(references, 1)]
    return "\n".join(lines) + "\n"


__all__ = ["AboveChance", "Below", "Claim", "deciding_check",
           "ClaimResult", "FAILS", "HOLDS", "Lower", "Outcome", "RULE", "Rate", "Select",
           "Setting", "Shrinks", "UNDECIDED", "combined", "evaluate", "markdown", "verdict"]
