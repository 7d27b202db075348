"""The `bench` command line."""

from __future__ import annotations

import argparse
import gc
import sys

EXAMPLES = """examples:
  bench run                                  # the embedded default benchmark (zoos built and cached)
  bench run --preset smoke                   # seconds: a tiny zoo, for checking an install
  bench run --methods naive "git-rebasin[init=identity]" --results results/
  bench run --zoo path/to/my-zoo --protocols pairs
  bench run --workers 2                      # units on a local Dask cluster of 2 worker processes
  bench zoo build inr --images 64 --fits-per-image 2 --out zoos/inr64
  bench zoo build cnn --activation tanh --nets 16 --epochs 3 --out zoos/cnn-tanh
  bench zoo build resnet --channels 8 --blocks 1 --nets 16 --out zoos/resnet   # BatchNorm, residual streams
  bench zoo import cnnzoo path/to/mnist_cnn_zoo --activation relu --out zoos/cnnzoo-relu
  bench zoo import state-dicts path/to/checkpoints --module mypkg.nets:ResNet --kwargs '{"width": 16}' --out zoos/mine
  bench zoo import dwsnets path/to/mnist-inrs --images path/to/mnist-idx --out zoos/mnist-inr
  bench zoo info zoos/inr64
  bench methods                              # registered methods and their hyperparameters
  bench methods --include my_methods/        # ... with the methods of every *.py file in my_methods/
  bench run --include my_methods/ --methods naive my-method   # a method from outside the repository
  bench ae train --zoo results/zoos/<id>     # train the ScaleGMN autoencoder (cached, resumable)
  bench ae eval --zoo results/zoos/<id> --method gnn-ae
  bench report                               # leaderboard.*, comparison.* and figures from results/
  bench report --zoos 'cnn-*' --methods naive git-rebasin --protocols pairs --format tex --out table.tex
  bench report --metric loss_barrier --format csv   # one matrix, every number unrounded
  bench report --results results/archive/default --into results   # the committed tables, from their rows
  bench archive --results results --out results/archive/default   # rows, zoo records and zoos, compacted
  bench report --claims                      # the papers' claims tested: runs what they need, results/claims.md
  bench reproduce git-rebasin --peer-rebasin /tmp/peer-rebasin/bin/python   # a paper in its regime: reproductions.md
  bench mirror --check                       # is the MLflow mirror the Parquet table? (--rebuild: make it so)
  bench perf --suites evaluation             # timings side by side into results/perf.*
  bench perf --suites gpu                    # CPU vs accelerator into results/perf_gpu.* (a few minutes)
  bench perf --peer-rebasin /tmp/peer-rebasin/bin/python --peer-sinkhorn /tmp/peer-sinkhorn/bin/python
  bench sweep git-rebasin --zoo default:1 --protocols pairs --trials 20 --workers 2   # Optuna
  bench sweep "sinkhorn-rebasin[objective=l2]" --zoo zoos/cnn --params tau lr --trials 30
"""



def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench", description="Weight alignment and model merging benchmark.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, parent=sub) -> argparse.ArgumentParser:
        """A subcommand whose --help ends with its own lines of EXAMPLES."""
        words = ("bench " + " ".join(filter(None, (getattr(parent, "_bench_path", ""), name)))).split()
        mine = [line for line in EXAMPLES.splitlines()[1:] if line.split()[:len(words)] == words]
        cmd = parent.add_parser(name, help=help, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n" + "\n".join(mine) if mine else None)
        return cmd

    for module in _commands().values():
        module.add_parser(sub, command)
    return p


def _commands() -> dict:
    """Verb -> its module (bench/commands/, one per verb): add_parser(sub, command) and main(args, argv), in the
    order `bench --help` lists them."""
    from bench.commands import ae, archive, methods, mirror, perf, report, reproduce, run, sweep, zoo

    return {"reproduce": reproduce, "run": run, "report": report, "archive": archive, "methods": methods,
            "mirror": mirror, "perf": perf, "sweep": sweep, "ae": ae, "zoo": zoo}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rebasin-bench")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    from methods import UnknownMethod
    from zoos.data import DataError
    from zoos.files import WorkerError, interrupted
    from zoos.space import SpecError
    from zoos.zoo import ZooError

    try:
        if getattr(args, "include", None):
            from methods import include

            for path in args.include:
                include(path)
        return _commands()[args.command].main(args, argv)
    except (ZooError, DataError, SpecError, UnknownMethod, ValueError, OSError, WorkerError) as error:
        if interrupted(error):  # a cleanup that failed under Ctrl-C: the interrupt is what happened
            return _interrupted()
        print(f"bench: error: {str(error).splitlines()[0] if str(error) else type(error).__name__}", file=sys.stderr)
        return 2
    except MemoryError as error:  # what no estimate caught: one line, not a traceback
        print(f"bench: error: out of memory ({' '.join(str(error).split()) or 'MemoryError'}); lower the sizes "
              f"asked for, or raise the memory limit (ulimit -v)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as error:
        if interrupted(error):
            return _interrupted()
        raise


def _interrupted() -> int:
    print("bench: interrupted; rerun the same command to resume", file=sys.stderr)
    return 130


def run() -> int:
    """The `bench` command: `main`, in a process that ends with it."""
    code = main()
    # Python's teardown clears each module torch, torch-geometric and POT loaded, and every clearing sets off
    # a garbage collection over all the objects they made: 1-2 s at the end of each command. Frozen objects
    # are left out of collections (`main` called in a longer-lived process keeps collecting them).
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(run())
