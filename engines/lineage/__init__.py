"""The detection lineage as runnable detectors, one small module per step.

Localization as regression (``loc``) -> OverFeat's convolutional sliding window
(``overfeat``) -> HOG (``engines.hog``) -> deformable parts (``dpm``) -> Selective
Search + R-CNN (``rcnn``) -> Fast R-CNN (``fast_rcnn``) -> Faster R-CNN and YOLO
(``engines.faster_rcnn``, ``engines.yolo``). ``python -m training compare`` runs
them all on one generated set; docs/lineage.md has the measured table.
"""
