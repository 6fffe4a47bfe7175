"""Subtomogram classification and subdivision (Xu et al. 2017; after AITom, re-implemented).

Inception3D / DSRF3D classifiers (:class:`SubtomoClassifier`), the RIF-SVM baseline
(:class:`RIFSVM`), deep linear features, k-means over-partitioning and the pose-normalisation
baseline, t-SNE, missing-wedge-aware alignment, reference-free classification and averaging,
FSC, and leave-one-class-out discovery of unseen structures.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
