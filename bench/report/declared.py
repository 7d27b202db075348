"""What the report tables show of each protocol, from the protocols' declarations (`Protocol.metrics`,
`.sections`): the metric columns, runtimes, labels, rate metrics and the columns that split a comparison."""

from __future__ import annotations

from bench.protocols import PROTOCOLS
from bench.protocols.combine import PROBES


def _declared(roles: tuple[str, ...]) -> tuple[str, ...]:
    """Metric names of the given roles over every protocol, in declaration order."""
    return tuple(dict.fromkeys(m.name for p in PROTOCOLS.values() for m in p.metrics if m.role in roles))


METRICS = _declared(("rank", "shown"))  # table columns (a section shows those of its protocol)
RUNTIMES = _declared(("runtime",))
SCORE_LABELS = {m.name: m.label for p in PROTOCOLS.values() for m in p.metrics}
# metrics whose per-unit value is the fraction of `trials` yes/no trials: exact (Clopper-Pearson) intervals
RATE_TRIALS = {m.name: m.trials for p in PROTOCOLS.values() for m in p.metrics if m.trials}
# split a comparison further: the protocols' declared section columns, and the protocol options the rows were
# made under where a zoo's rows of one protocol were made under several (`with_zoo_labels` fills `options`)
EXTRA_SECTION = tuple(dict.fromkeys(c for p in PROTOCOLS.values() for c in p.sections)) + ("options",)
PROBE_ORDER = PROBES


def protocol_metrics(protocol, roles: tuple[str, ...]) -> list:
    """The metric declarations of `protocol` with one of `roles` (none for an unknown protocol)."""
    cls = PROTOCOLS.get(str(protocol))
    return [m for m in cls.metrics if m.role in roles] if cls is not None else []
