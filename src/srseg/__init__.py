"""srseg: benchmark super-resolution models for EM by the neuron segmentations they yield."""

__version__ = "0.1.0"
