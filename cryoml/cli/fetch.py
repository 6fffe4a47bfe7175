"""Fetch public data into the user cache: atomic models, density maps, EMDB maps, data sets.

Downloads go to the cache (``$CRYOML_CACHE``, else ~/.cache/cryoml) once, with checksums; later
runs use the cached copy offline. Without a network the error names the address to download by
hand and where to put the file.

examples:
  cryoml fetch list                  # the named data sets and where the cache is
  cryoml fetch pdb 1u6g --map        # model -> 10 Å map; then `--density 1u6g` works anywhere
  cryoml fetch emdb 3228             # an EMDB map (.map.gz, readable by cryoml)
  cryoml fetch dataset czii-10445-ts_100_3
"""

from __future__ import annotations

import argparse


def add_args(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``cryoml fetch``."""
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    kinds.add_parser("list", help="list the named data sets and the cache folder")
    pdb = kinds.add_parser("pdb", help="an atomic model (mmCIF) from the RCSB PDB")
    pdb.add_argument("ids", nargs="+", help="four-character PDB identifiers, e.g. 1u6g")
    pdb.add_argument(
        "--map",
        action="store_true",
        help="also convert each model to a density map (gemmi) that loads by its identifier",
    )
    pdb.add_argument(
        "--voxel-size", type=float, default=10.0, help="Å per voxel of the map (default 10)"
    )
    pdb.add_argument(
        "--resolution", type=float, default=10.0, help="map resolution in Å (default 10)"
    )
    emdb = kinds.add_parser("emdb", help="a density map from the EMDB")
    emdb.add_argument("ids", nargs="+", help="EMDB numbers, e.g. 3228 or EMD-3228")
    dataset = kinds.add_parser("dataset", help="a named public data set (see `cryoml fetch list`)")
    dataset.add_argument("names", nargs="+", help="data set names")


def main(args: argparse.Namespace) -> int:
    """Fetch what was asked and print where each file is."""
    from cryoml import datasets

    progress = not getattr(args, "quiet", False)
    if args.kind == "list":
        print(f"cache: {datasets.cache_dir()}")
        for name, entry in sorted(datasets.REGISTRY.items()):
            print(f"{name} ({entry.size})\n  {entry.description}\n  {entry.licence}\n  {entry.url}")
        return 0
    if args.kind == "pdb":
        for pdb_id in args.ids:
            if args.map:
                path = datasets.fetch_density(
                    pdb_id,
                    voxel_size=args.voxel_size,
                    resolution=args.resolution,
                    progress=progress,
                )
                print(f"{path}  (use it by name: '{pdb_id.lower()}')")
            else:
                print(datasets.fetch_pdb(pdb_id, progress=progress))
        return 0
    if args.kind == "emdb":
        for emd_id in args.ids:
            print(datasets.fetch_emdb(emd_id, progress=progress))
        return 0
    for name in args.names:
        print(datasets.fetch(name, progress=progress))
    return 0
