"""This project's own method at an earlier commit, on pairs written by `bench perf --baseline REV`.

Run by `bench perf` with the project's python and PYTHONPATH set to a copy of the tree at REV
(`git archive`), so `methods` and `zoos` below are the old code: "faster than before" is then a
ratio measured side by side in one run, on the same pairs, under the same thread pinning.
`python peer_baseline.py JOB_DIR OUT_DIR`; settings["method"] is the method spec to run.
"""

from types import SimpleNamespace

from _common import load_pair, run

from methods import make_method
from zoos.space import WeightSpace


def align(spec, settings, case, job_dir):
    a, b = load_pair(job_dir, case)
    space = WeightSpace.from_dict(spec)
    method = make_method(settings["method"])
    method.setup(SimpleNamespace(space=space), None)
    out = method.align({k: v[None] for k, v in a.items()}, {k: v[None] for k, v in b.items()})
    return {k: v[0].contiguous() for k, v in out.others.items()}, {}


if __name__ == "__main__":
    run(align)
