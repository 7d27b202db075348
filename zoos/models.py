"""Modules of the VGG and ResNet zoos, sized for 28x28 grey images; their weight spaces come from
`zoos.trace.trace_space` like any user's module.

- `VGG`: stages of 3x3 conv (padding 1) -> BatchNorm -> activation, 2x2 max pooling between stages
  (Git Re-Basin's and C2M3's VGG family, narrowed), global average pooling, one linear classifier.
- `ResNet`: the CIFAR ResNet-20 design (He et al.): a 3x3 stem, three stages of basic blocks at
  widths w, 2w, 4w (strides 1, 2, 2), a 1x1 conv-BN shortcut where the shape changes, global average
  pooling, a linear classifier. `blocks=3` and `width=16` is ResNet-20; the zoo preset uses fewer.
"""

from __future__ import annotations

import torch
from torch import nn

ACTIVATION = {"relu": nn.ReLU, "tanh": nn.Tanh}


class VGG(nn.Module):
    def __init__(self, width: int = 16, stages: tuple[int, ...] = (1, 1, 2), activation: str = "relu",
                 in_channels: int = 1, classes: int = 10, batchnorm: bool = True):
        super().__init__()
        layers, c_in = [], in_channels
        for s, convs in enumerate(stages):
            for _ in range(convs):
                c_out = width * 2**s
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batchnorm)]
                layers += [nn.BatchNorm2d(c_out)] if batchnorm else []
                layers += [ACTIVATION[activation]()]
                c_in = c_out
            if s < len(stages) - 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(c_in, classes)

    def forward(self, x):
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, activation: str):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.act1 = ACTIVATION[activation]()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act2 = ACTIVATION[activation]()
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, width: int = 16, blocks: int = 3, activation: str = "relu", in_channels: int = 1,
                 classes: int = 10):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.act = ACTIVATION[activation]()
        stages, c_in = [], width
        for s, stride in enumerate((1, 2, 2)):
            c_out = width * 2**s
            stages.append(nn.Sequential(*(BasicBlock(c_in if b == 0 else c_out, c_out, stride if b == 0 else 1,
                                                     activation) for b in range(blocks))))
            c_in = c_out
        self.stage1, self.stage2, self.stage3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, classes)

    def forward(self, x):
        x = self.act(self.bn(self.conv(x)))
        x = self.stage3(self.stage2(self.stage1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


ARCHITECTURES = {"vgg": VGG, "resnet": ResNet}

__all__ = ["ARCHITECTURES", "BasicBlock", "ResNet", "VGG"]
