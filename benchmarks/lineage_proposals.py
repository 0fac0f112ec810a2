"""R-CNN against Fast R-CNN on the same proposals, network part only, by count.

R-CNN runs its CNN once per proposal (warp each to 40x40, then classify);
Fast R-CNN runs its trunk once per frame and pools each proposal from the
shared feature map. So R-CNN's cost grows with the number of proposals and
Fast R-CNN's mostly does not: this prints both per-frame times for the first
K proposals of each frame, K = 150 .. 600 (Selective Search run once, on a
640 px copy of the frame so that it yields ~600 of them; its time is not
counted). Same images (generated, seed 2026), same proposals, one thread; each
time is the best of ``--repeats`` passes (the machine may be shared).

    python -m benchmarks.lineage_proposals --images 10
"""

from __future__ import annotations

import argparse
import time

import numpy as np

COUNTS = (150, 300, 600)


def main(argv: list[str] | None = None) -> int:
    from engines.build import load_detector
    from engines.lineage.proposals import selective_search
    from engines.lineage.rcnn import warp_crops
    from training.data.generate import render_scene

    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=10)
    p.add_argument("--proposal-side", type=int, default=640)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    rng = np.random.default_rng(2026)
    images = [render_scene(rng)[0] for _ in range(args.images)]
    proposals = [selective_search(im, args.proposal_side, max(COUNTS))
                 for im in images]
    rcnn = load_detector("lineage-rcnn", threads=args.threads)
    fast = load_detector("lineage-fast-rcnn", threads=args.threads)

    def rcnn_ms(k: int) -> float:
        start = time.perf_counter()
        for im, props in zip(images, proposals, strict=True):
            rcnn.backend.infer(warp_crops(im, props[:k], rcnn.crop))
        return 1000 * (time.perf_counter() - start) / len(images)

    def fast_ms(k: int) -> float:
        start = time.perf_counter()
        for im, props in zip(images, proposals, strict=True):
            prepared = fast.prepare(im)
            (features,) = fast.backend.infer(prepared.input[0][None])
            rois = prepared.transform.to_network(props[:k])
            fast.head.infer(fast.roi_features(features[0], rois))
        return 1000 * (time.perf_counter() - start) / len(images)

    rcnn_ms(10)  # warm-up
    fast_ms(10)
    print(f"{len(images)} frames 360x640, proposals per frame (mean available "
          f"{np.mean([len(p) for p in proposals]):.0f}), {args.threads} thread(s)")
    print(f"{'proposals':>9} {'R-CNN ms':>9} {'Fast R-CNN ms':>14} {'ratio':>6}")
    for k in COUNTS:
        used = np.mean([min(k, len(p)) for p in proposals])
        r = min(rcnn_ms(k) for _ in range(args.repeats))
        f = min(fast_ms(k) for _ in range(args.repeats))
        print(f"{used:9.0f} {r:9.1f} {f:14.1f} {r / f:6.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
