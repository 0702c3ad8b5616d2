"""MedAdapt: adapt a medical segmentation foundation model to a few painted slices."""

__version__ = "0.1.0"
