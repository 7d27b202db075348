"""`bench zoo build | import | info`: the build and import flags are generated from the zoo kinds' configs and
the importers' options (`zoos.kinds`), so a recipe and the command line share one set of defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.commands.common import THREADS, integer, number
from zoos.options import Flag, flagged, help_text


def add_parser(sub, command) -> None:
    zoo = command("zoo", "build, import or inspect zoos").add_subparsers(dest="zoo_command", required=True)
    zoo._bench_path = "zoo"
    _add_build(command, zoo)
    _add_import(command, zoo)
    info = command("info", "summarise a stored zoo", zoo)
    info.add_argument("path", type=Path)


def _dest(flag: Flag) -> str:
    return flag.name.lstrip("-").replace("-", "_")


def _type(flag: Flag):
    if flag.type is int:
        return integer(int(flag.low), None if flag.high is None else int(flag.high))
    if flag.type is float and flag.low is not None:
        return number(flag.low, flag.high, flag.include_low)
    return None if flag.type is str else flag.type


def _add_flag(parser: argparse.ArgumentParser, flag: Flag, help: str) -> None:
    """`flag` as an argparse option; its default is None (not given: the config's default, or a recipe's)."""
    if flag.negates:
        parser.add_argument(flag.name, action="store_const", const=False, help=help)
        return
    kwargs = {k: v for k, v in (("type", _type(flag)), ("nargs", flag.nargs), ("choices", flag.choices),
                                ("metavar", flag.metavar)) if v is not None}
    parser.add_argument(flag.name, required=flag.required, help=help, **kwargs)


def _add_build(command, zoo) -> None:
    from zoos.kinds import KINDS

    build = command("build", "generate a zoo", zoo).add_subparsers(dest="kind", required=True)
    build._bench_path = "zoo build"
    for kind in KINDS.values():
        cmd = command(kind.name, kind.help, build)
        options = flagged(kind.config)
        for name in kind.flags:
            _add_flag(cmd, options[name][1], help_text(*options[name]))
        # the options every kind takes, in the order `--help` has always listed them
        cmd.add_argument("--workers", type=THREADS, default=2, help="processes fitting / training (default: 2)")
        cmd.add_argument("--data", default="auto", help="fashion-mnist | digits | IDX directory (default: auto)")
        _add_flag(cmd, options["seed"][1], help_text(*options["seed"]))
        cmd.add_argument("--out", type=Path, required=True, help="output zoo directory")
        if "splits" in options:  # INR zoos split by image, 0.6 / 0.2 / 0.2
            _add_flag(cmd, options["splits"][1], help_text(*options["splits"]))
        cmd.add_argument("--quiet", action="store_true")


def _import_flags() -> dict[str, tuple]:
    """flag name -> (field, flag, the formats taking it), in the order of the formats."""
    from zoos.kinds import FORMATS

    out = {}
    for fmt in FORMATS.values():
        for config_field, flag in flagged(fmt.options).values():
            out.setdefault(flag.name, (config_field, flag, []))[2].append(fmt.name)
    return out


def _add_import(command, zoo) -> None:
    from zoos.kinds import FORMATS

    imp = command("import", "read a published zoo format into our format", zoo)
    imp.add_argument("format", choices=tuple(FORMATS))
    imp.add_argument("path", type=Path, help="the published zoo; state-dicts: a folder of *.pt, *.pth or "
                                             "*.safetensors files, one network each")
    for config_field, flag, formats in _import_flags().values():
        _add_flag(imp, flag, f"{', '.join(formats)}: {help_text(config_field, flag)}")
    imp.add_argument("--out", type=Path, required=True)


def _given(args, config: type) -> dict:
    """The config's options given on the command line (lists as tuples)."""
    out = {}
    for name, (_, flag) in flagged(config).items():
        value = getattr(args, _dest(flag), None)
        if value is not None:
            out[name] = tuple(value) if isinstance(value, list) else value
    return out


def _build(args):
    from zoos.kinds import KINDS

    kind = KINDS[args.kind]
    options = _given(args, kind.config)
    if "splits" in options and abs(sum(options["splits"]) - 1) > 1e-6:
        raise ValueError(f"--splits {' '.join(map(str, options['splits']))}: the fractions must sum to 1")
    return kind.build(options, args.data, args.workers, not args.quiet, None, "cpu")


def _import(args):
    from zoos.kinds import FORMATS

    fmt = FORMATS[args.format]
    for config_field, flag, formats in _import_flags().values():
        if fmt.name not in formats and getattr(args, _dest(flag)) is not None:
            takes = ", ".join(f.name for _, f in flagged(fmt.options).values()) or "no options"
            raise ValueError(f"{flag.name} is for {' and '.join(formats)}; a {fmt.name} import takes {takes}")
    return fmt.read(args.path, fmt.options(**_given(args, fmt.options)))


def _info(args) -> int:
    from zoos.tasks import ClassifierTask, task_class
    from zoos.zoo import load_zoo

    zoo = load_zoo(args.path)
    print(f"{zoo.name}: {len(zoo)} networks of {zoo.space.name} ({zoo.space.n_params} parameters, input "
          f"{list(zoo.space.input_shape)}), task {zoo.task.get('kind')}, splits "
          f"{zoo.meta['split'].value_counts().to_dict()}")
    if issubclass(task_class(zoo), ClassifierTask):
        n_eval = zoo.task.get("n_eval", 2000)
        print(f"evaluated on: {zoo.task.get('dataset', 'auto')}, "
              f"{'the full test split' if n_eval is None else f'{n_eval} test images'}")
        if zoo.task.get("config"):
            from zoos.recipes import describe

            print(f"trained with: {describe(zoo.task['config'])}")
    numeric = zoo.meta.select_dtypes("number").drop(columns=["id"], errors="ignore")
    print(numeric.describe().T[["mean", "min", "max"]].to_string())
    return 0


def main(args, argv) -> int:
    from zoos.zoo import check_replaceable, save_zoo

    if args.zoo_command == "info":
        return _info(args)
    check_replaceable(args.out)  # before any work: never build a zoo only to refuse to save it
    zoo = _import(args) if args.zoo_command == "import" else _build(args)
    save_zoo(zoo, args.out)
    print(f"wrote {args.out}: {len(zoo)} networks of {zoo.space.name}")
    return 0
