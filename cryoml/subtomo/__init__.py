"""Subtomogram classification and subdivision (Xu et al. 2017; after AITom, re-implemented).

Inception3D / DSRF3D classifiers (:class:`SubtomoClassifier`), the RIF-SVM baseline
(:class:`RIFSVM`), deep linear features, k-means over-partitioning and the pose-normalisation
baseline, t-SNE, missing-wedge-aware alignment, reference-free classification and averaging,
FSC, and leave-one-class-out discovery of unseen structures.
:func:`features_file` writes one set file's features (the task of many-file
``cryoml subtomo features`` runs on Dask).
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
