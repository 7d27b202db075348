"""The claims report: its verdict rule applied as stated, on synthetic rows, and its plan covering its checks."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.execution.claims import CLAIM_RUNS, CLAIM_ZOOS
from bench.report import paper_claims
from bench.report.claims import (
    FAILS,
    HOLDS,
    RULE,
    UNDECIDED,
    AboveChance,
    Below,
    Claim,
    Lower,
    Rate,
    Select,
    Setting,
    Shrinks,
    combined,
    deciding_check,
    evaluate,
    markdown,
    verdict,
)
from bench.store.claims_catalog import WIDTH_STUDIES
from methods import normalise_spec

HASHES = {"z": "hash-z", "w1": "hash-w1", "w2": "hash-w2", "w3": "hash-w3"}


def _rows(variant: str, values, zoo: str = "hash-z", protocol: str = "pairs", metric: str = "loss_excess",
          names=None, **extra) -> pd.DataFrame:
    names = names or [f"pair={i}-{i + 100}" for i in range(len(values))]
    return pd.DataFrame({"zoo_hash": zoo, "protocol": protocol, "variant": variant, "unit": names,
                         metric: list(values), "error": None, "time": pd.Timestamp("2026-01-01"), **extra})


def _one(check, table) -> str:
    return check.run(table, HASHES).verdict


# ---- the rule itself -------------------------------------------------------------------------------
@pytest.mark.parametrize("lo, hi, margin, p, want", [
    (0.1, 0.5, 0.0, 0.01, HOLDS),  # significant in the claimed direction
    (-0.5, -0.1, 0.0, 0.01, FAILS),  # significant in the opposite one
    (-0.1, 0.3, 0.0, 0.01, UNDECIDED),  # the interval straddles 0
    (0.1, 0.5, 0.0, 0.2, UNDECIDED),  # interval and test disagree
    (0.1, 0.5, 0.0, math.nan, UNDECIDED),  # too few shared units for the test
    (0.1, 0.5, 0.0, None, HOLDS),  # a rate: no test, the interval decides
    (-0.04, 0.2, 0.05, 0.5, HOLDS),  # at least as well: worse by less than the margin
    (-0.3, -0.06, 0.05, 0.5, FAILS),  # worse by more than the margin
    (-0.1, 0.2, 0.05, 0.5, UNDECIDED),
    (math.nan, math.nan, 0.0, None, UNDECIDED),  # nothing measured
])
def test_verdict_rule(lo, hi, margin, p, want):
    assert verdict(lo, hi, margin, p) == want


def test_combined_all_hold_one_fails():
    assert combined([HOLDS, HOLDS]) == HOLDS
    assert combined([HOLDS, FAILS, UNDECIDED]) == FAILS
    assert combined([HOLDS, UNDECIDED]) == UNDECIDED
    assert combined([]) == UNDECIDED


# ---- checks on synthetic rows ------------------------------------------------------------------------
def test_paired_lower_holds_fails_and_is_inconclusive():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 1.0, 16)
    check = Lower(Select("z", "pairs", "a"), Select("z", "pairs", "b"), "loss_excess", "a below b")
    clearly_lower = pd.concat([_rows("a", base - 0.3 + rng.normal(0, 0.02, 16)), _rows("b", base)])
    assert _one(check, clearly_lower) == HOLDS
    clearly_higher = pd.concat([_rows("a", base + 0.3 + rng.normal(0, 0.02, 16)), _rows("b", base)])
    assert _one(check, clearly_higher) == FAILS
    noise = pd.concat([_rows("a", base + rng.normal(0, 0.3, 16)), _rows("b", base)])
    assert _one(check, noise) == UNDECIDED
    few = pd.concat([_rows("a", base[:4] - 0.3), _rows("b", base[:4])])  # 4 shared units: no test
    out = check.run(few, HASHES)
    assert out.n == 4 and math.isnan(out.p) and out.verdict == UNDECIDED


def test_paired_units_are_matched_by_name_not_position():
    check = Lower(Select("z", "pairs", "a"), Select("z", "pairs", "b"), "loss_excess", "a below b")
    names = [f"pair={i}-{i + 100}" for i in range(10)]
    a = _rows("a", np.arange(10) * 1.0, names=names)
    b = _rows("b", np.arange(10)[::-1] + 0.5, names=names[::-1])  # b's unit i = i + 0.5, listed backwards
    out = check.run(pd.concat([a, b]), HASHES)
    assert out.n == 10 and out.effect == pytest.approx(0.5) and out.verdict == HOLDS


def test_at_least_as_well_uses_a_margin_of_the_inputs_loss():
    check = Lower(Select("z", "merge", "a"), Select("z", "merge", "b"), "loss_merged", "a at least as well",
                  tolerant=True)
    ends = {"loss_endpoints": [1.0] * 12}
    rng = np.random.default_rng(1)
    b = rng.uniform(1.0, 2.0, 12)
    slightly_worse = pd.concat([_rows("a", b + 0.02 + rng.normal(0, 0.001, 12), protocol="merge",
                                      metric="loss_merged", **ends),
                                _rows("b", b, protocol="merge", metric="loss_merged", **ends)])
    out = check.run(slightly_worse, HASHES)
    assert out.margin == pytest.approx(0.05) and out.verdict == HOLDS  # 0.02 worse: within 5% of 1.0
    much_worse = slightly_worse.assign(loss_merged=np.r_[b + 0.2 + rng.normal(0, 0.001, 12), b])
    assert _one(check, much_worse) == FAILS


def test_rate_uses_the_exact_interval():
    select = Select("z", "orbit", "a")
    at_least = Rate(select, "recovered", 0.75, True, "recovers")
    at_most = Rate(select, "recovered", 0.25, False, "does not recover")
    all32 = _rows("a", [1.0] * 32, protocol="orbit", metric="recovered")
    all16 = _rows("a", [1.0] * 16, protocol="orbit", metric="recovered")
    none32 = _rows("a", [0.0] * 32, protocol="orbit", metric="recovered")
    half = _rows("a", [1.0, 0.0] * 16, protocol="orbit", metric="recovered")
    assert _one(at_least, all32) == HOLDS and _one(at_least, all16) == HOLDS  # 16/16: lower bound 0.79
    assert _one(Rate(select, "recovered", 0.9, True, "x"), all16) == UNDECIDED  # 0.79 < 0.9 < 1
    assert _one(at_least, none32) == FAILS and _one(at_most, none32) == HOLDS and _one(at_most, all32) == FAILS
    assert _one(at_least, half) == FAILS  # 16/32: upper bound 0.68 < 0.75
    cycles = Rate(Select("z", "merge", "a"), "cycle_error", 0.75, True, "closes", zero=1e-12)
    zero = _rows("a", [0.0] * 16, protocol="merge", metric="cycle_error")
    assert _one(cycles, zero) == HOLDS and _one(cycles, zero.assign(cycle_error=0.3)) == FAILS
    assert Rate(Select("missing", "orbit", "a"), "recovered", 0.75, True, "x").run(all32, HASHES).n == 0


def test_above_chance_is_the_collapse_gate():
    check = AboveChance(Select("z", "pairs", "ae"))
    chance = {"ident_chance": [1 / 32] * 16}
    named = _rows("ae", [1.0, 0.5] * 8, metric="ident", **chance)  # 24 of 32 endpoints name their source
    collapsed = _rows("ae", [0.0] * 16, metric="ident", **chance)  # none: 0/32, interval [0, 0.11] holds chance
    out = check.run(named, HASHES)
    assert out.n == 16 and "24/32" in out.values and out.verdict == HOLDS
    assert _one(check, collapsed) == UNDECIDED
    assert _one(check, _rows("ae", [0.0] * 16, metric="ident", ident_chance=[0.5] * 16)) == FAILS


def test_shrinks_with_width():
    rng = np.random.default_rng(2)
    check = Shrinks(tuple((w, Select(z, "pairs", "a")) for w, z in ((8, "w1"), (16, "w2"), (32, "w3"))),
                    "loss_excess", "falls")

    def table(level):
        return pd.concat([_rows("a", level(w) + rng.normal(0, 0.05, 8), zoo=HASHES[z])
                          for w, z in ((8, "w1"), (16, "w2"), (32, "w3"))])

    assert _one(check, table(lambda w: 1.0 / w * 8)) == HOLDS
    assert _one(check, table(lambda w: w / 32)) == FAILS
    assert _one(check, table(lambda w: 0.5)) == UNDECIDED


def test_rows_of_other_zoos_errors_and_reruns_do_not_count():
    check = Rate(Select("z", "orbit", "a"), "recovered", 0.75, True, "recovers")
    good = _rows("a", [1.0] * 16, protocol="orbit", metric="recovered")
    other_zoo = _rows("a", [0.0] * 16, zoo="hash-other", protocol="orbit", metric="recovered")
    failed = _rows("a", [0.0] * 16, protocol="orbit", metric="recovered", names=[f"bad={i}" for i in range(16)])
    failed["error"] = "boom"
    claim = Claim(1, "c", "s", (Setting("z", (check,)),))
    [result] = evaluate([claim], pd.concat([good, other_zoo, failed]), HASHES)
    assert result.settings[0][1][0].n == 16 and result.verdict == HOLDS
    rerun = good.assign(recovered=0.0, time=pd.Timestamp("2026-02-01"))  # the same units run again later
    [result] = evaluate([claim], pd.concat([good, rerun]), HASHES)
    assert result.settings[0][1][0].n == 16 and result.verdict == FAILS  # the newest row of each unit


def test_markdown_states_the_rule_and_every_verdict():
    good = _rows("a", [1.0] * 32, protocol="orbit", metric="recovered")
    claims = [Claim(1, "first", "paper A", (Setting("z", (Rate(Select("z", "orbit", "a"), "recovered", 0.75, True,
                                                                    "recovers"),)),), paper="published 1.0"),
              Claim(2, "second", "paper B", (Setting("nowhere", (Rate(Select("gone", "orbit", "a"), "recovered", 0.75,
                                                                          True, "recovers"),)),))]
    text = markdown(evaluate(claims, good, HASHES), ["Produced by a test."])
    assert RULE in text and "Produced by a test." in text
    assert "| 1 | first (paper A) | **holds** |" in text and "| 2 | second (paper B) | **inconclusive** |" in text
    assert "published 1.0" in text and "32/32" in text and "not measured" in text


# ---- the committed claims and their plan ---------------------------------------------------------------
def _selects(check):
    if isinstance(check, Lower):
        return [check.better, check.worse]
    if isinstance(check, Rate | AboveChance | Below):
        return [check.select]
    return [s for _, s in check.selects]


def test_every_check_reads_what_the_plan_runs():
    planned = {(zoo, protocol, normalise_spec(m)) for run in CLAIM_RUNS for zoo in run.zoos
               for protocol in run.protocols for m in run.methods}
    for claim in paper_claims.CLAIMS:
        for setting in claim.settings:
            for check in setting.checks:
                for s in _selects(check):
                    assert s.zoo in CLAIM_ZOOS, s
                    assert (s.zoo, s.protocol, normalise_spec(s.variant)) in planned, (claim.number, s)


def test_claims_and_plan_agree_on_names():
    assert {zoo for study in WIDTH_STUDIES.values() for zoo in study.values()} <= set(CLAIM_ZOOS)
    assert [c.number for c in paper_claims.CLAIMS] == list(range(1, 9))
    for claim in paper_claims.CLAIMS:
        setting, check = claim.ours
        assert setting < len(claim.settings) and check < len(claim.settings[setting].checks)


def test_controls_are_shown_but_not_counted_and_the_summary_quotes_the_deciding_check():
    holds = Rate(Select("z", "orbit", "a"), "recovered", 0.75, True, "recovers")
    control = Rate(Select("z", "orbit", "b"), "recovered", 0.75, True, "b recovers", control=True)
    fails = Rate(Select("z", "orbit", "c"), "recovered", 0.75, True, "c recovers")
    table = pd.concat([_rows("a", [1.0] * 16, protocol="orbit", metric="recovered"),
                       _rows("b", [1.0] * 16, protocol="orbit", metric="recovered"),
                       _rows("c", [0.0] * 16, protocol="orbit", metric="recovered")])
    claim = Claim(1, "c", "s", (Setting("z", (control, holds)),), references=("A. Author, 'T', arXiv:0000.00000",))
    [result] = evaluate([claim], table, HASHES)
    assert result.verdict == HOLDS and deciding_check(result)[1].check == "recovers"  # the control is not quoted
    text = markdown([result])
    assert "control (not counted): b recovers" in text and "| z: recovers: a: 16/16" in text
    assert "## References" in text and "1. A. Author, 'T', arXiv:0000.00000" in text
    # a holding control is no evidence: the failing counted check decides
    [refuted] = evaluate([Claim(1, "c", "s", (Setting("z", (control, fails)),))], table, HASHES)
    assert refuted.verdict == FAILS and deciding_check(refuted)[1].check == "c recovers"


def test_a_control_that_does_not_hold_voids_its_setting():
    holds = Rate(Select("z", "orbit", "a"), "recovered", 0.75, True, "recovers")
    broken = Rate(Select("z", "orbit", "b"), "recovered", 0.75, True, "b recovers", control=True)
    table = pd.concat([_rows("a", [1.0] * 16, protocol="orbit", metric="recovered"),
                       _rows("b", [0.0] * 16, protocol="orbit", metric="recovered"),
                       _rows("few", [1.0] * 8, protocol="orbit", metric="recovered")])
    [result] = evaluate([Claim(1, "c", "s", (Setting("z", (broken, holds)),))], table, HASHES)
    assert result.settings[0][1][0].verdict == FAILS and result.settings[0][1][1].verdict == HOLDS
    assert result.verdict == UNDECIDED and deciding_check(result)[1].check == "b recovers"
    # an underpowered control (8 of 8: its interval reaches below 3/4) voids nothing ...
    few = Rate(Select("z", "orbit", "few"), "recovered", 0.75, True, "few recover", control=True)
    [kept] = evaluate([Claim(1, "c", "s", (Setting("z", (few, holds)),))], table, HASHES)
    assert kept.settings[0][1][0].verdict == UNDECIDED and kept.verdict == HOLDS
    # ... but a gate must hold: a decoder not shown to identify its sources voids the setting
    ident = _rows("ae", [0.0] * 16, metric="ident", ident_chance=1 / 16)
    gate = AboveChance(Select("z", "pairs", "ae"), control=True, gate=True)
    [gated] = evaluate([Claim(1, "c", "s", (Setting("z", (gate, holds)),))], pd.concat([table, ident]), HASHES)
    assert gated.settings[0][1][0].verdict == UNDECIDED and gated.verdict == UNDECIDED
    assert deciding_check(gated)[1].gate


def test_small_is_a_stated_threshold():
    small = Below(Select("z", "pairs", "a"), "loss_barrier", 0.1, "small")
    assert _one(small, _rows("a", [0.02 + 0.001 * i for i in range(16)], metric="loss_barrier")) == HOLDS
    assert _one(small, _rows("a", [1.7 + 0.01 * i for i in range(16)], metric="loss_barrier")) == FAILS
    assert paper_claims.SMALL_BARRIER == 0.1 and any(isinstance(c, Below) for s in paper_claims.CLAIMS[4].settings
                                                     for c in s.checks)


def test_the_committed_claims_cite_a_bibliography_not_paths():
    text = " ".join(c.paper + c.note + " ".join(c.references) for c in paper_claims.CLAIMS)
    assert "shared/" not in text and "arXiv:2209.04836" in text
    assert all(c.references for c in paper_claims.CLAIMS)


def test_settings_off_the_papers_regime_count_only_without_one_in_it():
    holds = Rate(Select("z", "orbit", "a"), "recovered", 0.75, True, "recovers")
    fails = Rate(Select("z", "orbit", "c"), "recovered", 0.75, True, "c recovers")
    table = pd.concat([_rows("a", [1.0] * 16, protocol="orbit", metric="recovered"),
                       _rows("c", [0.0] * 16, protocol="orbit", metric="recovered")])
    regime, off = Setting("paper's recipe", (holds,)), Setting("small zoo", (fails,), regime=False)
    [both] = evaluate([Claim(1, "c", "s", (regime, off))], table, HASHES)
    assert both.verdict == HOLDS and [v for _, _, v in both.settings] == [HOLDS, FAILS]  # shown, not counted
    text = markdown([both])
    assert "| **holds** | 1 / 0 / 0 | 0 / 1 / 0 |" in text and "(**does not hold**, off the paper's regime)" in text
    [only_off] = evaluate([Claim(1, "c", "s", (off,))], table, HASHES)
    assert only_off.verdict == FAILS and "(off the paper's regime only)" in markdown([only_off])
    # every claim but 3 has a setting in its paper's regime; claim 3's autoencoder cannot run on one here
    assert [c.number for c in paper_claims.CLAIMS if not any(s.regime for s in c.settings)] == [3]
