"""Tiny networks for the detection lineage (engines/lineage) and their training.

``python -m training lineage train --model loc|overfeat|rcnn|fast-rcnn``.
"""
