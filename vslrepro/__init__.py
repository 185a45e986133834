"""vslrepro: reproducibility package for Benchmarking Weakly-Supervised Audio-Visual Sound Localization."""

__version__ = "0.1.0"
