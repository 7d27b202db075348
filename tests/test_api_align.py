"""`bench.api.align` / `merge` on a user's own models (issue 35): two independently trained nn.Modules (an MLP
and a torchvision-style ResNet with BatchNorm and a residual block, trained briefly on scikit-learn's digits)
are aligned; the barrier falls below naive averaging's and exact methods keep B's function."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from bench.api import align, merge


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return torch.tensor(d.data, dtype=torch.float32) / 16.0, torch.tensor(d.target)


class BasicBlock(nn.Module):  # written like torchvision's: one ReLU module called twice
    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


class SmallResNet(nn.Module):
    def __init__(self, c=8):
        super().__init__()
        self.conv1, self.bn1, self.relu = nn.Conv2d(1, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()
        self.layer1 = BasicBlock(c)
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(c, 10)

    def forward(self, x):
        x = self.layer1(self.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def mlp():
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def train(model, x, y, seed, epochs):
    torch.manual_seed(seed)
    for p in model.parameters():
        if p.dim() > 1:
            nn.init.kaiming_normal_(p)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(128):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def mlps(digits):
    x, y = digits
    return [train(mlp(), x, y, seed, 10) for seed in (0, 1, 2)]


@pytest.fixture(scope="module")
def resnets(digits):
    x, y = digits
    return [train(SmallResNet(), x.reshape(-1, 1, 8, 8), y, seed, 6) for seed in (0, 1)]


@pytest.mark.parametrize("method", ["git-rebasin", "activation-matching", "sinkhorn-rebasin[objective=mid,steps=20]"])
def test_align_mlp_lowers_the_barrier_and_keeps_b(digits, mlps, method):
    x, y = digits
    a, b = mlps[:2]
    aligned, report = align(a, b, method, data=(x, y))
    assert isinstance(aligned, nn.Module) and aligned is not b
    assert report.exact and report.deviation < 1e-5 and report.seconds > 0
    assert report.scores["loss_barrier_aligned"] < 0.5 * report.scores["loss_barrier_naive"]
    with torch.no_grad():
        torch.testing.assert_close(aligned(x), b(x), rtol=1e-4, atol=1e-4)
    assert any(not torch.equal(p, q) for p, q in zip(aligned.parameters(), b.parameters(), strict=True))


def test_align_resnet_with_batchnorm(digits, resnets):
    x, y = digits
    x = x.reshape(-1, 1, 8, 8)
    a, b = resnets
    aligned, report = align(a, b, data=(x, y))
    assert report.method == "git-rebasin" and report.exact and report.deviation < 1e-5
    assert report.scores["loss_barrier_aligned"] < report.scores["loss_barrier_naive"]
    with torch.no_grad():
        torch.testing.assert_close(aligned(x), b(x), rtol=1e-4, atol=1e-4)


def test_state_dicts_in_state_dicts_out(resnets):
    a, b = (m.state_dict() for m in resnets)
    with pytest.raises(ValueError, match="module="):
        align(a, b)
    aligned, report = align(a, b, module=SmallResNet(), input_shape=(1, 8, 8))
    assert set(aligned) == set(b) and all(aligned[k].dtype == b[k].dtype for k in b)
    assert report.deviation < 1e-5 and not report.scores  # no data: no scores


def test_merge_and_refusals(digits, mlps):
    x, y = digits
    merged, report = merge(mlps, "git-rebasin", data=(x, y))
    assert isinstance(merged, nn.Module)
    s = report.scores
    assert s["loss_merged_repaired"] <= s["loss_merged"] and s["acc_merged"] > 0.5
    with torch.no_grad():  # the returned network is the corrected one
        acc = float((merged(x).argmax(1) == y).float().mean())
    assert acc == pytest.approx(s["acc_merged_repaired"], abs=1e-6)
    with pytest.raises(ValueError, match="pass data"):
        align(mlps[0], mlps[1], "activation-matching")
    with pytest.raises(ValueError, match="zoo"):
        align(mlps[0], mlps[1], "constant")
    assert "deviation" in str(align(mlps[0], mlps[1])[1])
