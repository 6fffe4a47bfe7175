from ._fetch import REGISTRY as REGISTRY
from ._fetch import RemoteFile as RemoteFile
from ._fetch import fetch as fetch
from ._fetch import fetch_density as fetch_density
from ._fetch import fetch_emdb as fetch_emdb
from ._fetch import fetch_pdb as fetch_pdb
from ._fetch import fetch_url as fetch_url
from ._places import cache_dir as cache_dir
from ._places import density_folders as density_folders
from ._places import example_data_dir as example_data_dir
from ._places import reference_data as reference_data

__all__ = [
    "REGISTRY",
    "RemoteFile",
    "cache_dir",
    "density_folders",
    "example_data_dir",
    "fetch",
    "fetch_density",
    "fetch_emdb",
    "fetch_pdb",
    "fetch_url",
    "reference_data",
]
