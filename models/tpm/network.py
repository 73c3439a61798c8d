"""The TPM two-stream policy network (Yang et al., Sec. III-C; layout as in the released code).

Per view: an RGB stream and an RGB+mask stream (torchvision ResNet trunks cut after layer3,
stride 16), concatenated and fused by convolutions with a CBAM block added residually; a learnable
2-D position embedding initialised with sin/cos and one attention block per view. The tokens of
all views then pass one global attention block and are mean-pooled; proprioception [x, y, z,
gripper] is embedded by a 4-32-D MLP and concatenated; two 4-layer LeakyReLU heads predict the
standardised move (dx, dy, dz) and the gripper's open/closed logits.

Why two streams: the RGB stream sees the scene, the RGB+mask stream sees which object is meant
(the role-coded mask: pick 1.0, place 0.5), so the same weights serve any object the upstream
foundation models point at. The mask channel of the RGB+mask trunk's first convolution is
initialised orthogonally, so pretrained RGB filters (when a user loads them) are kept intact.

Inputs are already normalised here (`normalise_inputs` does it, and the exported ONNX graph
includes it): images (B, V, 3, H, W) and masks (B, V, 1, H, W) as float.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from models.tpm.config import BackboneSpec, TPMConfig

IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
#: the mask channel is normalised "like an image channel" (released code): the mean channel's stats
MASK_MEAN, MASK_STD = 0.449, 0.226


class ResNetTrunk(nn.Module):
    """torchvision's ResNet stem and layer1-3 (its blocks and `_make_layer`), any base width.

    Attribute names match torchvision's, so an ImageNet state_dict (minus layer4 / fc) loads.
    """

    def __init__(self, spec: BackboneSpec, in_channels: int = 3) -> None:
        super().__init__()
        block = BasicBlock if spec.block == "basic" else Bottleneck
        w = spec.width
        # the attributes torchvision's ResNet._make_layer reads
        self.inplanes, self.dilation, self.groups, self.base_width = w, 1, 1, 64
        self._norm_layer = nn.BatchNorm2d
        self.conv1 = nn.Conv2d(in_channels, w, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = ResNet._make_layer(self, block, w, spec.layers[0])
        self.layer2 = ResNet._make_layer(self, block, 2 * w, spec.layers[1], stride=2)
        self.layer3 = ResNet._make_layer(self, block, 4 * w, spec.layers[2], stride=2)
        self.out_channels = spec.out_channels
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if in_channels > 3:
            _orthogonal_extra_channels(self.conv1, first=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer3(self.layer2(self.layer1(x)))

    def load_torchvision(self, path: str) -> None:
        """Load a torchvision ResNet state_dict file (layer4 / fc ignored, extra channels kept)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith(("layer4.", "fc."))}
        conv = state.get("conv1.weight")
        if conv is not None and conv.shape[1] != self.conv1.weight.shape[1]:
            merged = self.conv1.weight.detach().clone()
            merged[:, : conv.shape[1]] = conv
            state["conv1.weight"] = merged
        self.load_state_dict(state, strict=True)


def _orthogonal_extra_channels(conv: nn.Conv2d, first: int) -> None:
    with torch.no_grad():
        extra = torch.empty(
            conv.out_channels, (conv.in_channels - first) * math.prod(conv.kernel_size)
        )
        nn.init.orthogonal_(extra)
        conv.weight[:, first:] = extra.view(
            conv.out_channels, conv.in_channels - first, *conv.kernel_size
        )


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class CBAM(nn.Module):
    """Channel attention (shared MLP over avg- and max-pooled features) then a 7x7 spatial gate."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1)
        )
        self.spatial = nn.Conv2d(2, 1, kernel_size=7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        mx = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        x = x * torch.sigmoid(avg + mx)
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


class Fusion(nn.Module):
    """concat(streams) -> conv to `fuse` -> conv to d -> + CBAM(.) -> conv block (released code)."""

    def __init__(self, c_in: int, fuse: int, d: int, reduction: int) -> None:
        super().__init__()
        self.reduce = nn.Sequential(_conv_block(c_in, fuse), _conv_block(fuse, d))
        self.cbam = CBAM(d, reduction)
        self.out = _conv_block(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)
        return self.out(x + self.cbam(x))


def sincos_2d(grid: int, d: int) -> torch.Tensor:
    """(grid*grid, d) 2-D sine/cosine position embedding (half the channels per axis)."""
    quarter = d // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float64) / max(1, quarter)))
    ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    parts = []
    for coord in (ys.flatten(), xs.flatten()):
        angles = coord[:, None].double() * omega[None]
        parts += [angles.sin(), angles.cos()]
    emb = torch.cat(parts, dim=1)
    if emb.shape[1] < d:  # d not divisible by 4
        emb = torch.cat([emb, torch.zeros(emb.shape[0], d - emb.shape[1], dtype=emb.dtype)], 1)
    return emb.float()


def _attention(config: TPMConfig) -> nn.TransformerEncoderLayer:
    """A post-norm attention block with GELU, as in the released code."""
    return nn.TransformerEncoderLayer(
        config.d_model,
        config.heads,
        dim_feedforward=config.ff_mult * config.d_model,
        dropout=config.dropout,
        activation="gelu",
        batch_first=True,
        norm_first=False,
    )


def _mlp_head(c_in: int, hidden: int, c_out: int) -> nn.Sequential:
    """A 4-layer LeakyReLU MLP."""
    return nn.Sequential(
        nn.Linear(c_in, hidden),
        nn.LeakyReLU(),
        nn.Linear(hidden, hidden),
        nn.LeakyReLU(),
        nn.Linear(hidden, hidden // 2),
        nn.LeakyReLU(),
        nn.Linear(hidden // 2, c_out),
    )


def rgb_trunk(config: TPMConfig, *, pretrained: bool = True) -> nn.Module:
    """The RGB stream's trunk the config names; `pretrained=False` skips reading weight files
    (the caller loads a checkpoint over it)."""
    if config.rgb_trunk == "efficientnet_lite0":
        from models.tpm.efficientnet import EfficientNetLiteTrunk

        return EfficientNetLiteTrunk(
            config.rgb_weights, pretrained=pretrained, frozen=config.freeze_rgb
        )
    trunk = ResNetTrunk(config.rgb_backbone, 3)
    if pretrained and config.rgb_weights:
        trunk.load_torchvision(config.rgb_weights)
    if config.freeze_rgb:
        trunk.requires_grad_(False)
    return trunk


class ViewEncoder(nn.Module):
    """One camera view: the two streams, fusion, position embedding, one attention block.

    The RGB stream is this view's own trunk, or (a frozen trunk, `freeze_rgb`) one shared by all
    views that the network runs before: then `forward` gets its features.
    """

    def __init__(self, config: TPMConfig, *, pretrained: bool = True) -> None:
        super().__init__()
        own_rgb = config.use_rgb_stream and not config.freeze_rgb
        self.rgb = rgb_trunk(config, pretrained=pretrained) if own_rgb else None
        self.rgbm = ResNetTrunk(config.mask_backbone, 4)
        if pretrained and config.mask_weights:
            self.rgbm.load_torchvision(config.mask_weights)
        c_in = self.rgbm.out_channels + config.rgb_channels
        self.fusion = Fusion(c_in, config.fuse_channels, config.d_model, config.cbam_reduction)
        self.pos = nn.Parameter(sincos_2d(config.grid, config.d_model)[None])
        self.attention = _attention(config)

    def forward(
        self, image: torch.Tensor, mask: torch.Tensor, rgb_features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, 3, H, W), (B, 1, H, W) normalised [, (B, C, h, w) shared RGB features] ->
        (B, tokens, d)."""
        feats = [self.rgbm(torch.cat([image, mask], dim=1))]
        if self.rgb is not None:
            feats.insert(0, self.rgb(image))
        elif rgb_features is not None:
            feats.insert(0, rgb_features.to(feats[0].dtype))
        x = self.fusion(torch.cat(feats, dim=1))
        tokens = x.flatten(2).transpose(1, 2) + self.pos
        return self.attention(tokens)


class TPMNet(nn.Module):
    """The policy: views + proprio -> (standardised move (B, 3), gripper logits (B, 2)).

    `pretrained=False` builds the network without reading any weights file (for loading a
    checkpoint, which holds every weight).
    """

    bin_centres: torch.Tensor  # with a binned move head (`decode_move`)

    def __init__(self, config: TPMConfig, *, pretrained: bool = True) -> None:
        super().__init__()
        self.config = config
        shared = config.use_rgb_stream and config.freeze_rgb
        self.shared_rgb = rgb_trunk(config, pretrained=pretrained) if shared else None
        self.views = nn.ModuleList(ViewEncoder(config, pretrained=pretrained) for _ in config.views)
        self.fuse_views = _attention(config)
        self.proprio = nn.Sequential(
            nn.Linear(4, config.proprio_hidden),
            nn.ReLU(inplace=True),
            nn.Linear(config.proprio_hidden, config.proprio_dim),
        )
        self.joint_dim = joint = config.d_model + config.proprio_dim
        self.move_head = _mlp_head(joint, config.head_hidden, 3 * max(1, config.move_bins))
        if config.move_bins:  # derived from the config: not a weight, not in the state_dict
            limit = config.move_bin_range
            centres = torch.linspace(-limit, limit, config.move_bins)
            self.register_buffer("bin_centres", centres, persistent=False)
        self.gripper_head = _mlp_head(joint, config.head_hidden, 2)

    @torch.no_grad()
    def shared_features(self, images: torch.Tensor) -> torch.Tensor | None:
        """The frozen, shared RGB trunk's features of every view, (B, V, C, h, w), or None.

        Frozen features depend on the pixels only, so training computes them once per dataset
        frame (`models.tpm.features`) instead of at every step.
        """
        if self.shared_rgb is None:
            return None
        b, v = images.shape[:2]
        feats = self.shared_rgb(images.flatten(0, 1))
        return feats.view(b, v, *feats.shape[1:])

    def forward(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        proprio: torch.Tensor,
        rgb_features: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, V, 3, H, W), masks (B, V, 1, H, W), proprio (B, 4): all normalised.

        `rgb_features`: the shared trunk's features, if computed already (cached for training).
        """
        joint = self.encode(images, masks, proprio, rgb_features)
        return self.move_head(joint), self.gripper_head(joint)

    def encode(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        proprio: torch.Tensor,
        rgb_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The features both heads read (B, d_model + proprio_dim): pooled views + proprio.

        Public for training-only heads on the same features (`models.tpm.positions`)."""
        if not self.config.gripper_input:
            proprio = torch.cat([proprio[:, :3], torch.zeros_like(proprio[:, 3:])], dim=1)
        if rgb_features is None:
            rgb_features = self.shared_features(images)
        tokens = [
            enc(images[:, i], masks[:, i], None if rgb_features is None else rgb_features[:, i])
            for i, enc in enumerate(self.views)
        ]
        pooled = self.fuse_views(torch.cat(tokens, dim=1)).mean(dim=1)
        return torch.cat([pooled, self.proprio(proprio)], dim=1)


def decode_move(net: TPMNet, head: torch.Tensor) -> torch.Tensor:
    """The move head's output -> the standardised move (B, 3).

    Regression: as it is. Bins: per component the most likely bin's centre, averaged with its two
    neighbours by their probabilities (sub-bin resolution without averaging distant modes).
    """
    if not net.config.move_bins:
        return head
    probs = head.float().view(len(head), 3, net.config.move_bins).softmax(-1)
    best = probs.argmax(-1, keepdim=True)
    offsets = torch.arange(-1, 2, device=head.device)
    window = (best + offsets).clamp(0, net.config.move_bins - 1)
    p = probs.gather(-1, window)
    return (p * net.bin_centres[window]).sum(-1) / p.sum(-1)


def normalise_inputs(rgb: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8-range RGB (B, V, H, W, 3) and role masks (B, V, H, W) -> the network's float inputs.

    The images come back as contiguous NCHW, not as the channels-last view that permuting HWC
    pixels gives. A channels-last input makes the whole network run channels-last, and on CPUs
    whose best ISA is AVX2 torch 2.14's oneDNN corrupts the heap in the weight gradient of a 1x1
    stride-2 convolution on channels-last tensors with fewer than 8 input channels (a ResNet
    downsample of a trunk narrower than 8; `brgconv_strided:avx2`): training then aborts with
    "corrupted double-linked list". Contiguous inputs take oneDNN's plain-layout kernels, which
    handle every width; for the `cpu` preset a batch-24 training step took the same time either
    way (380-475 ms, within noise, on a 2-core AMD EPYC).
    """
    mean = torch.tensor(IMAGE_MEAN, device=rgb.device).view(1, 1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, device=rgb.device).view(1, 1, 3, 1, 1)
    images = ((rgb.permute(0, 1, 4, 2, 3).float() / 255.0 - mean) / std).contiguous()
    masks = (mask.float().unsqueeze(2) - MASK_MEAN) / MASK_STD
    return images, masks


def bc_loss(
    move_pred: torch.Tensor,
    gripper_logits: torch.Tensor,
    move_target: torch.Tensor,
    gripper_target: torch.Tensor,
    *,
    move_weight: float = 5000.0,
    gripper_weight: float = 5.0,
    bin_centres: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The paper's behaviour-cloning loss: 5000 x MSE(move) + 5 x CE(gripper) (ratio 1000:1).

    `move_target` is standardised with the dataset's mean / std; `gripper_target` is 0 open /
    1 closed. Returns the total and its parts (floats, for logging).

    With `bin_centres` (a binned move head, `move_pred` its logits (B, 3 * K)) the move's term is
    the cross-entropy against each component's nearest bin, weighted `move_weight / 1000`: the
    paper's 1000:1 made a squared error in metres comparable to a cross-entropy, and two
    cross-entropies are comparable as they are. "mse" then logs the most likely bins' error.
    """
    ce = nn.functional.cross_entropy(gripper_logits.float(), gripper_target.long())
    if bin_centres is None:
        mse = nn.functional.mse_loss(move_pred.float(), move_target.float())
        total = move_weight * mse + gripper_weight * ce
        parts = {"mse": float(mse.detach())}
    else:
        k = len(bin_centres)
        nearest = (move_target.float().unsqueeze(-1) - bin_centres).abs().argmin(-1)
        move_ce = nn.functional.cross_entropy(move_pred.float().view(-1, k), nearest.view(-1))
        total = move_weight / 1000 * move_ce + gripper_weight * ce
        centres = bin_centres[move_pred.detach().float().view(-1, 3, k).argmax(-1)]
        parts = {
            "mse": float(nn.functional.mse_loss(centres, move_target.float())),
            "move_ce": float(move_ce.detach()),
        }
    return total, {"loss": float(total.detach()), "ce": float(ce.detach()), **parts}
