"""Reading and writing images, volumes and particle coordinates.

Arrays are (Z, Y, X) / (Y, X); every image carries its voxel size in Å. Coordinates are box
centres in array-index order, converted to and from each file format's convention here.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
