"""TomoSeg: 2D CNN annotation of tomograms (Chen et al. 2017; EMAN2 e2tomoseg).

Training set (tiles + painted masks) → network (40@15×15, pool, 40@15×15, 1@15×15) →
apply slice by slice → merge several features → extract particles (threshold and least mass
calibrated on an annotated tomogram: ``calibrate_extraction``). Also the 2.5D variant
(neighbouring slices as channels) and consensus maps of several networks.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
