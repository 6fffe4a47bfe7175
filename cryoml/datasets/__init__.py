"""Example data shipped with cryoml, optional reference data, and public data fetched on demand.

Three places hold data, looked up in this order wherever a density is named:

1. ``data/`` in the repository: small example data the demo, the QUICK notebooks and the tests
   need (always present, no network).
2. The user cache (``$CRYOML_CACHE``, default the platform's cache folder): public data fetched
   with :func:`fetch`, :func:`fetch_pdb`, :func:`fetch_emdb` and :func:`fetch_density`.
3. The optional reference data of the project's tests and benchmarks (``$CRYOML_REFERENCE_DATA``
   or ``../shared/data`` beside the repository).
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
