import os

import pytest
import torch

from zoos.space import cnn_zoo_space, mlp_space, siren_space

torch.set_num_threads(1)


def random_params(space, n=1, seed=0, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(n, *s, generator=g) * scale for k, s in space.shapes().items()}


SPACES = {
    "siren": siren_space(),
    "mlp-relu": mlp_space([6, 12, 10, 4], "relu"),
    "mlp-tanh": mlp_space([6, 12, 10, 8, 4], "tanh"),
    "cnn-relu": cnn_zoo_space("relu"),
    "cnn-tanh": cnn_zoo_space("tanh"),
}


@pytest.fixture(autouse=True, scope="session")
def _user_cache(tmp_path_factory):
    """The harness's per-user cache (the empty MLflow store) in a temporary folder, not the tester's home."""
    os.environ.setdefault("REBASIN_CACHE", str(tmp_path_factory.mktemp("user-cache")))


@pytest.fixture(params=list(SPACES))
def space(request):
    return SPACES[request.param]


@pytest.fixture(scope="session")
def tiny_inr_zoo(tmp_path_factory):
    """A small real INR zoo (digits, 10 images x 2 fits) stored on disk."""
    from zoos.inr import build_inr_zoo
    from zoos.zoo import save_zoo

    zoo = build_inr_zoo("digits", n_images=10, fits_per_image=2, steps=200, progress=False)
    return save_zoo(zoo, tmp_path_factory.mktemp("zoo") / "inr")


def run_protocol(spec, zoo, protocol):
    """Rows of one method on every unit of a protocol, as a DataFrame."""
    import pandas as pd

    from methods import make_method
    from zoos.tasks import make_task

    task = make_task(zoo)
    method = make_method(spec)
    method.setup(zoo, task)
    return pd.DataFrame(protocol.run(method, zoo, task, protocol.units(zoo)))
