"""The `bench` subcommands, one module per verb: its parser (`add_parser(sub, command)`) beside its handler
(`main(args, argv)`); `bench.cli` only dispatches."""
