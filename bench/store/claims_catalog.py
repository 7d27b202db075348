"""The claims' catalog: the zoo labels and method specs under which the claim runs
(`bench.execution.claims`) store their rows and the claims (`bench.report.paper_claims`) read them
back. Both layers import it from here (the report may not import execution), so the two cannot
disagree on a name.
"""

from __future__ import annotations

# the default preset's zoos, in its order: the claim runs reuse the default benchmark's rows on them
INR, CNN_RELU, CNN_TANH = "inr", "cnn-relu", "cnn-tanh"

# width studies: Git Re-Basin's MLP 784-w-w-w-10 at each width, the ReLU CNN at each number of channels
MLP_WIDTHS = (64, 128, 256, 512)
CNN_CHANNELS = (8, 16, 32, 64)
DEFAULT_CHANNELS = 16  # the default ReLU zoo's: that study point is the default zoo itself


def mlp_zoo(width: int) -> str:
    return f"mlp-{width}"


def cnn_zoo(channels: int) -> str:
    return CNN_RELU if channels == DEFAULT_CHANNELS else f"cnn-relu-c{channels}"


WIDTH_STUDIES = {"mlp": {w: mlp_zoo(w) for w in MLP_WIDTHS}, "cnn": {c: cnn_zoo(c) for c in CNN_CHANNELS}}

# zoos trained with the papers' own recipes (`bench reproduce`): the claims' settings in the papers' regimes.
# Git Re-Basin's MLP at each width (512: its main zoo), Sinkhorn re-basin's and C2M3's MLPs, the CNN Zoo's recipe
GR_MLP_WIDTHS = (32, 64, 128, 256, 512)
SINKHORN_MLP, C2M3_MLP, CNN_ZOO_RECIPE = "sinkhorn-mlp", "c2m3-mlp", "cnn-zoo"
# Sinkhorn re-basin's Mid objective as its reproduction runs it (objective=mid is the default: the stored
# variant omits it)
SINKHORN_MID = "sinkhorn-rebasin[batch=1000,steps=180]"


def gr_mlp(width: int) -> str:
    return f"gr-mlp-{width}"

# the committed autoencoder of `bench ae study` (4000 training INRs), which the default preset runs too
DEFAULT_PRETRAINED = "inr-fashion-mnist-4000-0f5ee1d0"  # results/pretrained/<this>: `bench ae study --kinds inr`
AE = f"scalegmn-ae[pretrained={DEFAULT_PRETRAINED}]"
