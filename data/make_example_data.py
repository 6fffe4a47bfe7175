"""Regenerate the example data in this folder from its public sources.

Usage (from the repository root)::

    python data/make_example_data.py --maps /path/to/maps_10A

``--maps`` is a folder of the PolNet template maps at 10 Å/voxel (``<name>.mrc``; the project's
optional reference data has them under ``structures/maps_10A``). Each map listed in
:data:`MAPS` is written to ``densities/<name>.mrc.gz``: float16 (MRC mode 12), gzip-compressed,
voxel size 10 Å, values unchanged apart from float16 rounding (≤ 3e-4 of the map's maximum).
The SHA-256 of every output is printed so that ``README.md`` can be checked against it.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import mrcfile
import numpy as np

# The densities the demo, the QUICK notebooks, the tests and the quick benchmarks name.
MAPS = {
    "4v4r": "70S ribosome (E. coli)",
    "3j9i": "20S proteasome (T. acidophilum)",
    "1bxn": "RuBisCO",
    "3cf3": "p97 / VCP",
    "2cg9": "Hsp90 complex",
    "1qvr": "ClpB",
    "1u6g": "Cul1-Cand1",
}

HERE = Path(__file__).resolve().parent


def main() -> None:
    """Write ``densities/*.mrc.gz`` from the PolNet maps and print their checksums."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=Path, required=True, help="folder of <name>.mrc at 10 Å")
    args = parser.parse_args()
    out_dir = HERE / "densities"
    out_dir.mkdir(exist_ok=True)
    for name in MAPS:
        with mrcfile.open(args.maps / f"{name}.mrc") as source:
            data = np.asarray(source.data, dtype=np.float32)
            voxel = float(source.voxel_size.x)
        if abs(voxel - 10.0) > 1e-3:
            raise SystemExit(f"{name}: expected 10 Å/voxel, got {voxel}")
        target = out_dir / f"{name}.mrc.gz"
        with mrcfile.new(target, overwrite=True, compression="gzip") as handle:
            handle.set_data(data.astype(np.float16))
            handle.voxel_size = voxel
            handle.update_header_stats()
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        print(f"{target.relative_to(HERE)}  {target.stat().st_size:>7d} B  sha256 {digest}")


if __name__ == "__main__":
    main()
