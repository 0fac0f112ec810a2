"""Camera-motion compensation: how the whole image moved since the previous frame.

As BoT-SORT does it: on a downscaled grey frame, either track corners with sparse
optical flow (``"sparse"``: Shi-Tomasi corners, pyramidal Lucas-Kanade, a RANSAC
partial-affine fit) or align the frames directly (``"ecc"``: OpenCV's enhanced
correlation coefficient, Euclidean motion). Detected boxes are masked out of the
corner search, since moving objects are not the camera. The result is a (2, 3)
affine from previous-frame pixels to current-frame pixels that the trackers apply
to their Kalman states before predicting.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

CMC_METHODS = ("none", "sparse", "ecc")
DEFAULT_DOWNSCALE = {"sparse": 2.0, "ecc": 4.0}  # BoT-SORT's choices
IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


class CameraMotion:
    """Estimates frame-to-frame camera motion; one instance per source.

    ``method``: one of ``CMC_METHODS``. ``downscale``: the frame is shrunk by this
    factor first (default 2 for sparse flow, 4 for ECC, as BoT-SORT); the returned
    affine is in full-resolution pixels.
    """

    def __init__(self, method: str = "sparse", downscale: float | None = None
                 ) -> None:
        if method not in CMC_METHODS:
            raise ValueError(f"cmc must be one of {CMC_METHODS}, got {method!r}")
        if downscale is None:
            downscale = DEFAULT_DOWNSCALE.get(method, 1.0)
        if not downscale >= 1:
            raise ValueError(f"cmc downscale must be >= 1, got {downscale!r}")
        self.method = method
        self.downscale = float(downscale)
        self.reset()

    def reset(self) -> None:
        self.previous: np.ndarray | None = None

    def _grey(self, image: np.ndarray) -> np.ndarray:
        import cv2

        if image.ndim != 2 and not (image.ndim == 3 and image.shape[2] in (3, 4)):
            raise ValueError(f"cmc: expected an H x W x 3 BGR or H x W grey image, "
                             f"got shape {image.shape}")
        grey = image if image.ndim == 2 else cv2.cvtColor(image[:, :, :3],
                                                          cv2.COLOR_BGR2GRAY)
        if self.downscale > 1:
            h, w = grey.shape
            size = (max(int(w / self.downscale), 1), max(int(h / self.downscale), 1))
            grey = cv2.resize(grey, size, interpolation=cv2.INTER_LINEAR)
        return grey

    def estimate(self, image: np.ndarray | None,
                 boxes: np.ndarray | None = None) -> np.ndarray:
        """(2, 3) affine previous -> current frame (identity on the first frame, when
        ``image`` is None or the estimate fails). ``boxes`` (N, 4) xyxy of this
        frame's detections, excluded from the corner search."""
        if self.method == "none" or image is None:
            return IDENTITY.copy()
        grey = self._grey(np.asarray(image))
        previous, self.previous = self.previous, grey
        if previous is None or previous.shape != grey.shape:
            return IDENTITY.copy()
        if self.method == "sparse":
            affine = self._sparse(previous, grey, boxes)
        else:
            affine = self._ecc(previous, grey)
        if affine is None:
            return IDENTITY.copy()
        affine = affine.astype(np.float64)
        affine[:, 2] *= self.downscale
        return affine

    def _sparse(self, previous: np.ndarray, grey: np.ndarray,
                boxes: np.ndarray | None) -> np.ndarray | None:
        import cv2

        mask = np.full(previous.shape, 255, np.uint8)
        if boxes is not None and len(boxes):
            b = np.round(np.asarray(boxes, np.float64) / self.downscale).astype(int)
            h, w = mask.shape
            b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, w)
            b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, h)
            for x1, y1, x2, y2 in b:
                mask[y1:y2, x1:x2] = 0
        corners = cv2.goodFeaturesToTrack(previous, maxCorners=500, qualityLevel=0.01,
                                          minDistance=1, blockSize=3, mask=mask)
        if corners is None or len(corners) < 8:
            return None
        moved, status, _ = cv2.calcOpticalFlowPyrLK(previous, grey, corners, None)
        ok = status.ravel() == 1
        if ok.sum() < 8:
            return None
        affine, _ = cv2.estimateAffinePartial2D(corners[ok], moved[ok],
                                                method=cv2.RANSAC)
        return affine

    def _ecc(self, previous: np.ndarray, grey: np.ndarray) -> np.ndarray | None:
        import cv2

        warp = np.eye(2, 3, dtype=np.float32)
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5)
        try:
            _, warp = cv2.findTransformECC(previous, grey, warp, cv2.MOTION_EUCLIDEAN,
                                           criteria, None, 1)
        except cv2.error as exc:
            log.debug("ECC did not converge: %s", exc)
            return None
        # With the previous frame as template, the warp maps its pixels to where
        # they are in the current frame: previous -> current already.
        return warp
