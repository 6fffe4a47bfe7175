"""cryoml: deep-learning methods of cryo-EM and cryo-ET in one notebook-driven framework.

Subpackages load on first use, so ``import cryoml`` and ``cryoml --help`` stay fast and never
import a deep-learning backend.
"""

import lazy_loader as _lazy

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
