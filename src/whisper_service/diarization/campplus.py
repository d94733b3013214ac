"""CAM++, the speaker embedding network of 3D-Speaker, for its pretrained weights.

The network of Wang et al., "CAM++: A Fast and Efficient Network for Speaker
Verification Using Context-Aware Masking" (Interspeech 2023), as 3D-Speaker writes it
(github.com/modelscope/3D-Speaker, ``speakerlab/models/campplus``, Apache-2.0), with
the module names its checkpoints use, inference only. Input: (batch, frames, 80) log
mel filterbanks (Kaldi's, each window's mean removed); output: (batch, 192) embeddings.

The layers keep 3D-Speaker's names and shapes (the checkpoint's keys depend on them);
what is left out is training: checkpointing, initialisation, and the layer options the
pretrained configuration does not use.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

FEATURES = 80
EMBEDDING_SIZE = 192


def _batchnorm_relu(channels: int) -> nn.Sequential:
    layers = nn.Sequential()
    layers.add_module("batchnorm", nn.BatchNorm1d(channels))
    layers.add_module("relu", nn.ReLU())
    return layers


class _ResBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=(stride, 1), bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = functional.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return functional.relu(out + self.shortcut(x))


class _FCM(nn.Module):
    """The 2-D convolutional front end: frequency is downsampled by 8."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layer1 = nn.Sequential(
            _ResBlock(channels, channels, 2), _ResBlock(channels, channels, 1)
        )
        self.layer2 = nn.Sequential(
            _ResBlock(channels, channels, 2), _ResBlock(channels, channels, 1)
        )
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.out_channels = channels * (FEATURES // 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = functional.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        out = self.layer2(self.layer1(out))
        out = functional.relu(self.bn2(self.conv2(out)))
        return out.reshape(out.shape[0], out.shape[1] * out.shape[2], out.shape[3])


class _TDNNLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, 5, stride=2, padding=2, bias=False)
        self.nonlinear = _batchnorm_relu(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.nonlinear(self.linear(x))
        return out


class _CAMLayer(nn.Module):
    """A dilated convolution masked by context: the whole input's mean plus the mean
    of its 100-frame segment."""

    def __init__(self, bn_channels: int, out_channels: int, kernel: int, dilation: int) -> None:
        super().__init__()
        padding = (kernel - 1) // 2 * dilation
        self.linear_local = nn.Conv1d(
            bn_channels, out_channels, kernel, padding=padding, dilation=dilation, bias=False
        )
        self.linear1 = nn.Conv1d(bn_channels, bn_channels // 2, 1)
        self.relu = nn.ReLU()
        self.linear2 = nn.Conv1d(bn_channels // 2, out_channels, 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local: torch.Tensor = self.linear_local(x)
        segments = functional.avg_pool1d(x, kernel_size=100, stride=100, ceil_mode=True)
        spread = segments.unsqueeze(-1).expand(*segments.shape, 100)
        context = (
            x.mean(-1, keepdim=True) + spread.reshape(*segments.shape[:-1], -1)[..., : x.shape[-1]]
        )
        mask: torch.Tensor = self.sigmoid(self.linear2(self.relu(self.linear1(context))))
        return local * mask


class _DenseTDNNLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel: int, dilation: int) -> None:
        super().__init__()
        bn_channels = 4 * out_channels
        self.nonlinear1 = _batchnorm_relu(in_channels)
        self.linear1 = nn.Conv1d(in_channels, bn_channels, 1, bias=False)
        self.nonlinear2 = _batchnorm_relu(bn_channels)
        self.cam_layer = _CAMLayer(bn_channels, out_channels, kernel, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))
        return out


class _DenseTDNNBlock(nn.ModuleList):
    def __init__(
        self, layers: int, in_channels: int, growth: int, kernel: int, dilation: int
    ) -> None:
        super().__init__()
        for index in range(layers):
            layer = _DenseTDNNLayer(in_channels + index * growth, growth, kernel, dilation)
            self.add_module(f"tdnnd{index + 1}", layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class _TransitLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.nonlinear = _batchnorm_relu(in_channels)
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(self.nonlinear(x))
        return out


class _StatsPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=-1), x.std(dim=-1, unbiased=True)], dim=-1)


class _DenseLayer(nn.Module):
    """The embedding: a linear map and a batch norm without affine parameters (no
    ReLU: 3D-Speaker's ``batchnorm_`` configuration)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.nonlinear = nn.Sequential()
        self.nonlinear.add_module("batchnorm", nn.BatchNorm1d(out_channels, affine=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.nonlinear(self.linear(x.unsqueeze(-1)).squeeze(-1))
        return out


class CAMPPlus(nn.Module):
    """CAM++ as pretrained by 3D-Speaker (``speech_campplus_sv_zh_en_16k-common``)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = _FCM()
        channels = self.head.out_channels
        init_channels, growth = 128, 32
        self.xvector = nn.Sequential()
        self.xvector.add_module("tdnn", _TDNNLayer(channels, init_channels))
        channels = init_channels
        for index, (layers, kernel, dilation) in enumerate([(12, 3, 1), (24, 3, 2), (16, 3, 2)]):
            block = _DenseTDNNBlock(layers, channels, growth, kernel, dilation)
            self.xvector.add_module(f"block{index + 1}", block)
            channels += layers * growth
            self.xvector.add_module(f"transit{index + 1}", _TransitLayer(channels, channels // 2))
            channels //= 2
        self.xvector.add_module("out_nonlinear", _batchnorm_relu(channels))
        self.xvector.add_module("stats", _StatsPool())
        self.xvector.add_module("dense", _DenseLayer(channels * 2, EMBEDDING_SIZE))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, frames, 80) filterbanks -> (batch, 192) embeddings."""
        out: torch.Tensor = self.xvector(self.head(features.permute(0, 2, 1)))
        return out
