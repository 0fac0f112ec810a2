"""Faster R-CNN builder: torchvision's ``FasterRCNN`` on a light FPN backbone.

``build_faster_rcnn(config)`` reads one plain dict (what checkpoints store), so a
checkpoint rebuilds exactly the model it was trained with:

- ``num_classes``: object classes, *without* background. torchvision wants
  labels 1..C with 0 = background; streamdet's ``Detections`` are 0-based. The
  model is built with ``num_classes + 1`` outputs and the shift happens at the
  boundaries only (``train.to_targets`` adds 1, the detector subtracts 1).
- ``backbone``: ``mobilenet_v3`` (MobileNetV3-Large FPN), ``resnet18``
  (ResNet-18 FPN) or ``csp`` (the YOLO's own CSP backbone, nano width, under
  the same FPN: both detectors then learn from the same features). Nothing is
  ever downloaded: ``weights=None`` everywhere.
- ``input_size``: (height, width) of the fixed network input, multiples of 32.
  ``min_size``/``max_size`` default to it so torchvision's own resize is the
  identity on pre-resized images (training and the ONNX export see one scale).
- ``anchor_sizes`` / ``aspect_ratios``: per FPN level, in input pixels.
- stage-prefixed torchvision options (``rpn_pre_nms_top_n_test``,
  ``rpn_post_nms_top_n_test``, ``box_score_thresh``, ``box_detections_per_img``,
  ...) are passed through unchanged.
- ``layout``: ``""`` (small-object anchors) or ``torchvision`` (torchvision's
  MobileNetV3-FPN layout, so its full state dicts load).
- ``fpn_channels`` / ``representation_size``: FPN width and box-head MLP width
  (128 / 256 by default to keep the ONNX small and fast on a CPU; torchvision's
  256 / 1024 with ``layout="torchvision"``).
- ``norm``: ``batch`` (BatchNorm, training from scratch) or ``frozen``
  (FrozenBatchNorm, torchvision's choice on top of pretrained weights).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

BACKBONES = ("mobilenet_v3", "resnet18", "csp")

# Anchor sizes (input pixels) per FPN level, sized for small objects (the
# generated scenes hold 16-120 px objects at 360 px, ~9-64 px at a 192 px input).
# MobileNetV3 returns stages 3, 4, 5 (strides 8, 16, 32) + a pooled level (64);
# ResNet-18-FPN yields 5 levels (strides 4..64). ``layout="torchvision"`` keeps
# torchvision's own MobileNetV3 layout (stages 4, 5 + pool, 15 anchors per
# location) so its COCO state dicts load with ``weights``.
DEFAULT_ANCHORS: dict[str, list[list[int]]] = {
    "mobilenet_v3": [[12, 20], [32, 48], [72, 104], [144, 208]],
    "resnet18": [[12], [24], [48], [96], [192]],
    "csp": [[12, 20], [32, 48], [72, 104], [144, 208]],
    "torchvision": [[32, 64, 128, 256, 512]] * 3,
}
RETURNED_LAYERS = {"mobilenet_v3": [3, 4, 5], "torchvision": None}
STRIDES = {"mobilenet_v3": [8, 16, 32, 64], "resnet18": [4, 8, 16, 32, 64],
           "csp": [8, 16, 32, 64]}
DEFAULT_ASPECT_RATIOS = [0.5, 1.0, 2.0]  # height / width, as torchvision

# Options forwarded verbatim to torchvision's FasterRCNN (stage-prefixed names).
FORWARDED = (
    "min_size", "max_size", "image_mean", "image_std",
    "rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test",
    "rpn_post_nms_top_n_train", "rpn_post_nms_top_n_test", "rpn_nms_thresh",
    "rpn_fg_iou_thresh", "rpn_bg_iou_thresh", "rpn_batch_size_per_image",
    "rpn_positive_fraction", "rpn_score_thresh",
    "box_score_thresh", "box_nms_thresh", "box_detections_per_img",
    "box_fg_iou_thresh", "box_bg_iou_thresh", "box_batch_size_per_image",
    "box_positive_fraction",
)

DEFAULT_CONFIG: dict[str, Any] = {
    "backbone": "mobilenet_v3",
    "input_size": [192, 320],
    "norm": "batch",
    "rpn_pre_nms_top_n_test": 500,
    "rpn_post_nms_top_n_test": 300,
    "rpn_pre_nms_top_n_train": 1000,
    "rpn_post_nms_top_n_train": 1000,
    "box_batch_size_per_image": 256,
    "box_score_thresh": 0.05,
    "box_detections_per_img": 100,
}


def make_config(num_classes: int, **options: Any) -> dict[str, Any]:
    """A complete config dict: defaults, then ``options`` (None values ignored)."""
    config = dict(DEFAULT_CONFIG)
    config.update({k: v for k, v in options.items() if v is not None})
    config["num_classes"] = int(num_classes)
    layout = ("torchvision" if config.get("layout") == "torchvision"
              else config["backbone"])
    config.setdefault("anchor_sizes", DEFAULT_ANCHORS.get(layout))
    config.setdefault("aspect_ratios", DEFAULT_ASPECT_RATIOS)
    validate_config(config)
    return config


ARCH_KEYS = ("num_classes", "backbone", "input_size", "norm", "layout", "anchor_sizes",
             "aspect_ratios", "fpn_channels", "representation_size", "trainable_layers",
             "weights", "backbone_weights")


def validate_config(config: dict[str, Any]) -> None:
    unknown = sorted(set(config) - set(ARCH_KEYS) - set(FORWARDED))
    if unknown:
        raise ValueError(f"unknown Faster R-CNN options {unknown}; expected some of "
                         f"{sorted(ARCH_KEYS + FORWARDED)}")
    if config.get("backbone") not in BACKBONES:
        raise ValueError(f"backbone {config.get('backbone')!r} is not one of "
                         f"{BACKBONES}")
    if int(config.get("num_classes", 0)) < 1:
        raise ValueError(f"num_classes must be >= 1, got {config.get('num_classes')}")
    h, w = (int(v) for v in config["input_size"])
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise ValueError(f"input_size must be positive multiples of 32, got {(h, w)}")
    if config.get("norm", "batch") not in ("batch", "frozen"):
        raise ValueError(f"norm must be 'batch' or 'frozen', got {config['norm']!r}")
    if config.get("backbone") == "csp" and (config.get("backbone_weights")
                                            or config.get("layout")):
        raise ValueError("backbone 'csp' trains from scratch: no backbone_weights "
                         "or layout")


def _backbone(config: dict[str, Any]) -> nn.Module:
    """The classification network (before FPN wrapping), with optional weights."""
    from torchvision.models import mobilenet_v3_large, resnet18
    from torchvision.ops.misc import FrozenBatchNorm2d

    norm = FrozenBatchNorm2d if config.get("norm") == "frozen" else nn.BatchNorm2d
    if config["backbone"] == "mobilenet_v3":
        net = mobilenet_v3_large(weights=None, norm_layer=norm)
    else:
        net = resnet18(weights=None, norm_layer=norm)
    if config.get("backbone_weights"):
        load_backbone_weights(net, config["backbone_weights"])
    return net


class CspFpn(nn.Module):
    """The YOLO's CSP backbone (strides 8, 16, 32) under a torchvision FPN with a
    max-pooled fourth level: the backbone interface ``FasterRCNN`` expects."""

    def __init__(self, channels: int, scale: str = "nano") -> None:
        from torchvision.ops import FeaturePyramidNetwork
        from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

        from engines.nets.yolo import SCALES, Backbone

        super().__init__()
        self.body = Backbone(*SCALES[scale])
        self.fpn = FeaturePyramidNetwork(list(self.body.channels), channels,
                                         LastLevelMaxPool())
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.fpn({str(i): f for i, f in enumerate(self.body(x))})


def build_faster_rcnn(config: dict[str, Any]) -> nn.Module:
    """torchvision ``FasterRCNN`` with ``config["num_classes"] + 1`` outputs.

    Input at train and eval time: a list of [3, H, W] float RGB tensors in [0, 1]
    (torchvision normalises inside). Eval output per image: ``boxes`` [N, 4]
    xyxy input pixels, ``labels`` [N] int64 1..C, ``scores`` [N].
    """
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import (
        _mobilenet_extractor,
        _resnet_fpn_extractor,
    )
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import FeaturePyramidNetwork
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    from engines.nets.roi_align import SparseMultiScaleRoIAlign

    config = {**DEFAULT_CONFIG, **config}
    validate_config(config)
    trainable = int(config.get("trainable_layers", 6 if config["backbone"] ==
                                "mobilenet_v3" else 5))
    layout = ("torchvision" if config.get("layout") == "torchvision"
              else config["backbone"])
    channels = int(config.get("fpn_channels", 256 if layout == "torchvision" else 128))
    backbone: nn.Module
    if config["backbone"] == "csp":
        backbone = CspFpn(channels)
        featmaps = ["0", "1", "2"]
    elif config["backbone"] == "mobilenet_v3":
        returned = RETURNED_LAYERS[layout]
        backbone = _mobilenet_extractor(_backbone(config), True, trainable, returned)
        featmaps = [str(i) for i in range(len(returned) if returned else 2)]
    else:
        backbone = _resnet_fpn_extractor(_backbone(config), trainable)
        featmaps = ["0", "1", "2", "3"]
    if channels != backbone.out_channels:  # torchvision hard-codes 256
        in_channels = [block[0].in_channels for block in backbone.fpn.inner_blocks]
        backbone.fpn = FeaturePyramidNetwork(in_channels, channels, LastLevelMaxPool())
        backbone.out_channels = channels
    representation = int(config.get("representation_size",
                                     1024 if layout == "torchvision" else 256))
    sizes = config.get("anchor_sizes") or DEFAULT_ANCHORS[layout]
    ratios = config.get("aspect_ratios") or DEFAULT_ASPECT_RATIOS
    levels = len(featmaps) + 1  # + the max-pooled top level
    if len(sizes) != levels:
        raise ValueError(f"anchor_sizes needs {levels} levels for "
                         f"{config['backbone']}, got {len(sizes)}")
    anchors = AnchorGenerator(tuple(tuple(int(s) for s in level) for level in sizes),
                              (tuple(float(r) for r in ratios),) * levels)
    h, w = (int(v) for v in config["input_size"])
    options = {k: config[k] for k in FORWARDED if k in config}
    options.setdefault("min_size", min(h, w))
    options.setdefault("max_size", max(h, w))
    model = FasterRCNN(
        backbone,
        rpn_anchor_generator=anchors,
        box_roi_pool=SparseMultiScaleRoIAlign(featmaps, output_size=7,
                                              sampling_ratio=2),
        box_head=TwoMLPHead(channels * 7 * 7, representation),
        box_predictor=FastRCNNPredictor(representation, int(config["num_classes"]) + 1),
        **options,
    )
    if config.get("weights"):
        load_model_weights(model, config["weights"])
    return model


def _read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a user's file; accepts {"model": sd} / {"state_dict": sd}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors come in many types
        raise ValueError(f"{path}: not a weights-only torch state dict "
                         f"({exc})") from exc
    for key in ("model", "state_dict"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(torch.is_tensor(v) for v in data.values()):
        raise ValueError(f"{path}: expected a state dict of tensors")
    return data


def _check_and_load(module: nn.Module, state: dict[str, torch.Tensor], path: str | Path,
                    skippable: tuple[str, ...], hint: str = "") -> None:
    """Load ``state``; keys under ``skippable`` prefixes may be missing or mismatch
    (a classifier head for another class count); anything else is an error."""
    own = module.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    unexpected = [k for k in state
                  if k not in own and not k.endswith("num_batches_tracked")]
    missing = [k for k in own
               if k not in state and not k.endswith("num_batches_tracked")]
    bad = [k for k in mismatched + unexpected + missing if not k.startswith(skippable)]
    if bad:
        details = "; ".join(
            f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
            if k in mismatched else f"{k}: {'unexpected' if k in state else 'missing'}"
            for k in bad[:8])
        more = " ..." if len(bad) > 8 else ""
        raise ValueError(f"{path}: {len(bad)} keys do not fit this "
                         f"{type(module).__name__} ({details}{more}){hint}")
    skipped = sorted(set(mismatched + unexpected + missing))
    if skipped:
        log.info("%s: not loaded (left as initialised): %s", path, skipped)
    module.load_state_dict({k: v for k, v in state.items() if k in own
                            and k not in mismatched}, strict=False)


def load_backbone_weights(net: nn.Module, path: str | Path) -> None:
    """Load a torchvision classification state dict (``mobilenet_v3_large`` /
    ``resnet18``) into the backbone; its classifier head is ignored."""
    _check_and_load(net, _read_state_dict(path), path, ("classifier.", "fc."),
                    hint="; is it the state dict of the chosen --backbone?")
    log.info("loaded backbone weights from %s", path)


def load_model_weights(model: nn.Module, path: str | Path) -> None:
    """Load a full torchvision Faster R-CNN state dict (e.g. COCO weights saved by
    ``torch.save(model.state_dict())``). The class head may differ in class count
    (it is re-initialised); every other tensor must fit."""
    _check_and_load(model, _read_state_dict(path), path, ("roi_heads.box_predictor.",),
                    hint="; torchvision's own models need layout='torchvision' "
                    "(--layout torchvision) and the same backbone")
    log.info("loaded model weights from %s", path)


OUTPUT_NAMES = ("boxes", "labels", "scores")  # the ONNX export's, in order


class FixedSizeFasterRCNN(nn.Module):
    """Inference form of a torchvision Faster R-CNN for one fixed-size image.

    ``images`` [1, 3, H, W] float RGB in [0, 1] -> ``(boxes [N, 4] xyxy input
    pixels, labels [N] int64 1..C, scores [N])``. Same numbers as
    ``model([image])`` when the model's own resize is the identity at (H, W).
    """

    def __init__(self, model: nn.Module, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.model = model
        self.input_size = (int(input_size[0]), int(input_size[1]))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from torchvision.models.detection.image_list import ImageList

        m = self.model
        x = m.transform.normalize(images[0])[None]
        image_list = ImageList(x, [self.input_size])
        features = m.backbone(x)
        proposals, _ = m.rpn(image_list, features)
        detections, _ = m.roi_heads(features, proposals, image_list.image_sizes)
        det = detections[0]
        return det["boxes"], det["labels"], det["scores"]
