"""Weight matching by the PyPI package `rebasin` (snimu/rebasin, PermutationCoordinateDescent), on pairs
written by `bench perf`. Run with the peer venv's python: `python peer_rebasin.py JOB_DIR OUT_DIR`.

Its API as installed (rebasin 0.0.47, read from site-packages): `PermutationCoordinateDescent(model_a,
model_b, input_data_b)` traces both models with torchview and builds the permutation graph (inputs
and outputs held at the identity); `.calculate_permutations(max_iterations)` runs coordinate
descent (random order, LAP per permutation, stop at the first sweep without progress);
`.apply_permutations()` permutes model_b in place. The time we report is all three: what a user
pays to align one pair; `calc_seconds` is the coordinate descent alone.
"""

import time

import torch
from _common import example_input, from_module, load_pair, run, to_module
from rebasin import PermutationCoordinateDescent


def align(spec, settings, case, job_dir):
    a, b = load_pair(job_dir, case)
    model_a, model_b = to_module(spec, a), to_module(spec, b)
    torch.manual_seed(settings.get("seed", 0))  # the package draws its sweep order from the global RNG
    start = time.perf_counter()
    pcd = PermutationCoordinateDescent(model_a, model_b, example_input(spec))
    traced = time.perf_counter()
    pcd.calculate_permutations(settings.get("max_sweeps", 100))
    calc = time.perf_counter()
    pcd.apply_permutations()
    return from_module(spec, model_b), {"init_seconds": traced - start, "calc_seconds": calc - traced}


if __name__ == "__main__":
    run(align)
