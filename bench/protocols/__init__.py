"""Protocols: what is measured, independent of method and zoo (one file each in this package).

Every module here is imported, so a protocol registers itself (`@register` in its own file) and
needs no edit anywhere else.
"""

from __future__ import annotations

import importlib
import pkgutil

from bench.protocols.base import PROTOCOLS, Metric, Option, OptionError, Protocol, Unit, metric, register
from zoos.names import unknown_name

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")


def make_protocol(name: str, **options) -> Protocol:
    if name not in PROTOCOLS:
        raise ValueError(unknown_name("protocol", name, PROTOCOLS))
    declared = PROTOCOLS[name].declared()
    unknown = sorted(set(options) - set(declared))
    if unknown:
        raise OptionError(f"protocol {name}: unknown option(s) {', '.join(map(repr, unknown))} "
                          f"(known: {', '.join(sorted(declared))})")
    protocol = PROTOCOLS[name](**options)  # __post_init__ checks each option's declared type and range
    if protocol.lambdas < 2:
        raise ValueError(f"protocol {name}: lambdas={protocol.lambdas} must be at least 2 (a path has two endpoints)")
    return protocol


__all__ = ["PROTOCOLS", "Metric", "Option", "OptionError", "Protocol", "Unit", "make_protocol", "metric", "register"]
