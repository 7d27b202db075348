"""What a command names besides methods: a protocol with options over a preset's, a zoo by directory or preset.

`bench run --protocols`, `bench sweep` and `bench.api.load_zoo` read these the same way.
"""

from __future__ import annotations

import re
from pathlib import Path

from methods import parse_method
from zoos.names import unknown_name


class SpecError(ValueError):
    """A protocol or zoo named wrongly (the CLI prints it as one line)."""


def protocol_name(spec: str) -> str:
    """'pairs[n_pairs=8]' -> 'pairs'."""
    return parse_method(spec)[0]


def protocol_options(spec: str, preset: str = "default") -> tuple[str, dict]:
    """'pairs[n_pairs=8]' -> ('pairs', preset options updated with n_pairs=8). Tuples: 'probes=line;minmax'.
    Each option is read by its declared type and range (`bench.protocols.base.Option`): an unknown, ill-typed
    or out-of-range option is refused here, in one line, before any work."""
    from bench.execution.presets import PRESETS
    from bench.protocols import PROTOCOLS, OptionError

    name, given = parse_method(spec)
    if name not in PROTOCOLS:
        raise SpecError(unknown_name("protocol", name, PROTOCOLS))
    if preset not in PRESETS:
        raise SpecError(unknown_name("preset", preset, PRESETS))
    options = dict(PRESETS[preset].protocols.get(name, {}))
    declared = PROTOCOLS[name].declared()
    for key, text in given.items():
        if key not in declared or key == "seed":
            known = ", ".join(sorted(k for k in declared if k != "seed"))
            raise SpecError(f"protocol {name}: unknown option {key!r} (known: {known})")
        try:
            options[key] = declared[key].parse(f"protocol {name}: option {key}", text)
        except OptionError as error:
            raise SpecError(str(error)) from None
    return name, options


def resolve_zoo(zoo: str, results: Path, data: str = "auto", progress: bool = True) -> Path:
    """A stored zoo directory as given, or PRESET:INDEX built (once) into the zoo cache."""
    path = Path(zoo)
    if path.is_dir():
        return path
    match = re.fullmatch(r"(\w+):(\d+)", zoo)
    if not match:
        raise SpecError(f"{zoo}: no such zoo directory (or give PRESET:INDEX, e.g. default:1)")
    from bench.execution.presets import PRESETS
    from bench.execution.zoo_cache import get_zoo, recipe_id

    preset, index = match.group(1), int(match.group(2))
    if preset not in PRESETS or index >= len(PRESETS[preset].zoos):
        raise SpecError(f"{zoo}: no zoo {index} in preset {preset!r}")
    recipe = PRESETS[preset].zoos[index]
    get_zoo(recipe, results / "zoos", data, progress=progress)
    return results / "zoos" / recipe_id(recipe, data)

