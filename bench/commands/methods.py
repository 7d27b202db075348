"""`bench methods`: the registered methods and their hyperparameters."""

from __future__ import annotations

from bench.commands.common import include_option


def add_parser(sub, command) -> None:
    include_option(command("methods", "list registered methods and their hyperparameters"))


def main(args, argv) -> int:
    from methods import METHODS, ORIGINS

    width = max(map(len, METHODS)) + 1
    print(f"{'method':{width}s} {'kind':8s} {'reads':14s} {'tasks':22s} hyperparameters (default)")
    for name, cls in METHODS.items():
        hp = ", ".join(f"{k}={h.default!r} ({h.kind})" for k, h in cls.search_space.items()) or "none"
        kind = "learned" if cls.learned else "exact" if cls.exact else "inexact"
        # what the default variant reads besides the weights (a hyperparameter may change it, e.g. otfusion's cost)
        print(f"{name:{width}s} {kind:8s} {cls().needs:14s} {','.join(cls.tasks):22s} {hp}")
        about = "; ".join(filter(None, (cls.description, cls.reference_text(),
                                        None if ORIGINS.get(name, "").startswith("methods.") else ORIGINS.get(name))))
        print(f"{'':{width}s} {cls.label()}{': ' + about if about else ''}")
    return 0
