"""Benchmark evaluators: COCO box and mask AP (coco_eval) with the numbers of the reference implementations."""
