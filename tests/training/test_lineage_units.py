"""Lineage building blocks that need no trained weights: OverFeat's dense
evaluation, RoI pooling geometry, box deltas, proposal labelling, DPM features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import roi_pool

from core.image import stretch
from engines.lineage.common import decode_deltas, encode_deltas
from engines.lineage.dpm import correlate, deformation_max, hog32
from engines.lineage.overfeat import decode_dense
from engines.lineage.proposals import selective_search
from engines.lineage.rcnn import warp_crops
from training.lineage.data import label_proposals
from training.lineage.models import (
    FastRCNNHead,
    FastRCNNTrunk,
    OverFeatNet,
    PooledHead,
    RCNNNet,
    truncated_svd,
)


def test_overfeat_dense_map_equals_classifier_on_each_window() -> None:
    torch.manual_seed(0)
    net = OverFeatNet(num_classes=4).eval()
    for m in net.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    image = torch.rand(1, 3, 44, 52)
    w, s = OverFeatNet.WINDOW, OverFeatNet.STRIDE
    with torch.no_grad():
        scores, offsets = net(image)
        rows, cols = scores.shape[2:]
        assert (rows, cols) == ((44 - w) // s + 1, (52 - w) // s + 1)
        crops = torch.cat([image[:, :, s * i:s * i + w, s * j:s * j + w]
                           for i in range(rows) for j in range(cols)])
        one_s, one_o = net(crops)  # the classifier on each window alone
    assert one_s.shape[2:] == (1, 1)
    torch.testing.assert_close(one_s[:, :, 0, 0], scores[0].flatten(1).T,
                               atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(one_o[:, :, 0, 0], offsets[0].flatten(1).T,
                               atol=1e-5, rtol=1e-4)


def test_overfeat_decode_places_window_boxes() -> None:
    scores = np.zeros((3, 4, 5), np.float32)
    scores[0] = 1.0
    scores[:, 2, 3] = (0.1, 0.0, 0.9)  # class 1 fires at row 2, column 3
    offsets = np.tile(np.float32([0.25, 0.25, 0.75, 0.75])[:, None, None], (1, 4, 5))
    boxes, conf, cls = decode_dense(scores, offsets, window=32, stride=4, scale=0.5,
                                    conf=0.5)
    # window top-left (12, 8) in the scaled image; object at [8, 8, 24, 24] in it
    np.testing.assert_allclose(boxes, [[(12 + 8) / 0.5, (8 + 8) / 0.5,
                                        (12 + 24) / 0.5, (8 + 24) / 0.5]])
    assert conf.tolist() == pytest.approx([0.9]) and cls.tolist() == [1]


def test_roi_pool_reads_the_region_its_box_covers() -> None:
    stride = FastRCNNTrunk.STRIDE
    features = torch.zeros(1, 1, 10, 12)
    features[0, 0, 6, 9] = 5.0  # the cell covering input pixels x 72..79, y 48..55
    rois = torch.tensor([[0, 70.0, 44.0, 86.0, 60.0],   # covers the marked cell
                         [0, 0.0, 0.0, 40.0, 40.0]])    # far from it
    pooled = roi_pool(features, rois, (2, 2), 1.0 / stride)
    assert pooled[0].max() == 5.0 and pooled[1].max() == 0.0


def test_fast_rcnn_rois_map_back_to_frame_pixels() -> None:
    frame = np.zeros((360, 640, 3), np.uint8)
    _, transform = stretch(frame, (224, 384))
    proposals = np.float32([[100, 50, 260, 200], [0, 0, 640, 360]])
    net = transform.to_network(proposals)
    np.testing.assert_allclose(net[1], [0, 0, 384, 224], atol=1e-4)
    same = decode_deltas(net, np.zeros((2, 4), np.float32))  # zero deltas
    np.testing.assert_allclose(transform.to_original(same), proposals, atol=1e-3)


def test_fast_rcnn_head_exports_roi_pool_to_onnx(tmp_path) -> None:
    import onnxruntime as ort

    torch.manual_seed(0)
    trunk, head = FastRCNNTrunk().eval(), FastRCNNHead(4).eval()
    with torch.no_grad():
        feats = trunk(torch.rand(1, 3, 64, 96))
        rois = torch.tensor([[0, 5.0, 6.0, 60.0, 40.0], [0, 0.0, 0.0, 96.0, 64.0]])
        expected = head(feats, rois)
    path = tmp_path / "head.onnx"
    torch.onnx.export(head, (feats, rois), str(path), input_names=["features", "rois"],
                      output_names=["logits", "deltas"],
                      dynamic_axes={"rois": {0: "k"}}, opset_version=17, dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"features": feats.numpy(), "rois": rois.numpy()})
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(e.numpy(), g, atol=1e-5)


def test_rcnn_runs_fast_rcnns_network_on_each_crop() -> None:
    """A crop of pool x stride pixels gives the trunk exactly the RoI-pooled
    grid: R-CNN on a region = Fast R-CNN on a frame that is that region."""
    torch.manual_seed(0)
    net = RCNNNet(4).eval()
    assert net.size == net.head.pool * net.trunk.stride == 40
    crops = torch.rand(3, 3, net.size, net.size)
    # roi_pool counts both end cells (x2 is a cell index, as in Caffe): cells
    # 0 .. pool - 1 are the RoI [0, (pool - 1) * stride] on each axis
    end = float((net.head.pool - 1) * net.trunk.stride)
    rois = torch.tensor([[i, 0.0, 0.0, end, end] for i in range(3)])
    with torch.no_grad():
        expected = net.head(net.trunk(crops), rois)  # Fast R-CNN's path
        got = net(crops)
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e)


def test_truncated_svd_is_the_best_rank_t_layer() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(40, 12)
    x = torch.randn(5, 40)
    with torch.no_grad():
        whole = truncated_svd(layer, 12)
        torch.testing.assert_close(whole(x), layer(x), atol=1e-5, rtol=1e-5)
        low = truncated_svd(layer, 3)
        assert [m.weight.shape for m in low] == [(3, 40), (12, 3)]
        w3 = low[1].weight @ low[0].weight
        s = torch.linalg.svdvals(layer.weight)
        # Eckart-Young: the error of the best rank-3 matrix is the tail of S
        torch.testing.assert_close(torch.linalg.norm(layer.weight - w3) ** 2,
                                   (s[3:] ** 2).sum(), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(low(x), x @ w3.T + layer.bias)
    with pytest.raises(ValueError, match="rank"):
        truncated_svd(layer, 13)


@pytest.mark.parametrize("rank", [None, 16])
def test_exported_head_reads_channels_last_pooling(rank: int | None) -> None:
    torch.manual_seed(0)
    head = FastRCNNHead(4).eval()
    if rank:
        head.fc[1] = truncated_svd(head.fc[1], rank)
    pooled = torch.randn(6, 64, 5, 5)
    with torch.no_grad():
        expected = head.fc_head(pooled)
        got = PooledHead(head)(pooled.permute(0, 2, 3, 1).contiguous())
        again = head.fc_head(pooled)  # the head itself is left as it was
    for e, g, a in zip(expected, got, again, strict=True):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a, e)


def test_box_deltas_round_trip() -> None:
    rng = np.random.default_rng(0)
    p = np.sort(rng.uniform(0, 300, (20, 4)).reshape(20, 2, 2), axis=1)
    proposals = p.transpose(0, 2, 1).reshape(20, 4).astype(np.float32)
    proposals = proposals[:, [0, 2, 1, 3]]
    proposals[:, 2:] += 5
    targets = proposals + rng.uniform(-4, 4, (20, 4)).astype(np.float32)
    np.testing.assert_allclose(decode_deltas(proposals, encode_deltas(
        proposals, targets)), targets, atol=1e-3)


def test_proposal_labels_follow_rcnn_thresholds() -> None:
    gt = np.float32([[0, 0, 100, 100]])
    proposals = np.float32([[0, 0, 100, 90],     # IoU 0.9  -> object
                            [0, 0, 100, 40],     # IoU 0.4  -> ignored
                            [0, 0, 100, 20],     # IoU 0.2  -> background
                            [200, 200, 260, 260]])
    labels, matched = label_proposals(proposals, gt, np.array([2]))
    assert labels.tolist() == [3, -1, 0, 0]
    np.testing.assert_array_equal(matched[0], gt[0])


def test_selective_search_and_warp_shapes() -> None:
    rng = np.random.default_rng(0)
    image = (rng.random((90, 160, 3)) * 40).astype(np.uint8)
    image[20:70, 40:110] = (0, 200, 255)
    boxes = selective_search(image, max_side=160, max_proposals=25)
    assert 0 < len(boxes) <= 25 and boxes.dtype == np.float32
    assert (boxes[:, 2] <= 160).all() and (boxes[:, 3] <= 90).all()
    assert (boxes[:, 2:] > boxes[:, :2]).all()
    crops = warp_crops(image, boxes, 32)
    assert crops.shape == (len(boxes), 3, 32, 32) and crops.max() <= 1.0
    with pytest.raises(ValueError, match="max_proposals"):
        selective_search(image, max_proposals=0)


def test_dpm_building_blocks() -> None:
    image = np.zeros((64, 48, 3), np.uint8)
    image[:, 24:] = 255  # one vertical edge
    feat = hog32(image, 8, 2, 3)
    assert feat.shape == (8 - 2 + 6, 6 - 2 + 4, 32)
    assert (feat[:3, :, 31] == 1).all() and (feat[3:-3, 2:-2, 31] == 0).all()
    assert feat[3:-3, 2:-2, :31].max() > 0  # the edge produced gradient energy
    rng = np.random.default_rng(0)
    f, k = rng.random((7, 9, 4)).astype(np.float32), rng.random((2, 3, 2, 4)).astype(
        np.float32)
    out = correlate(f, k)
    assert out.shape == (2, 5, 8)
    assert out[1, 2, 3] == pytest.approx(float((f[2:5, 3:5] * k[1]).sum()), rel=1e-5)
    scores = np.zeros((9, 9), np.float32)
    scores[4, 6] = 10.0
    dt = deformation_max(scores, np.float32([1.0, 0.0, 1.0, 0.0]), 4)
    # from (4, 4) the peak is 2 columns away: 10 - 1 * 2^2
    assert dt[4, 4] == pytest.approx(6.0) and dt[4, 6] == pytest.approx(10.0)
