"""xfer: detection-transfer benchmarks of pretrained ResNets with detectron2, from one command."""

__version__ = "0.1.0"
