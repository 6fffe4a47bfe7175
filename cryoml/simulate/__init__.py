"""Simulated cryo-EM/ET data with ground truth: densities, optics, tilt series, subtomogram
sets, cellular tomogram phantoms and single-particle micrographs."""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
