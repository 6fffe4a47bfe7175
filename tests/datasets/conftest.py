import pytest

from cryoml._testing import reference_data


@pytest.fixture(scope="session")
def structures():
    root = reference_data()
    if root is None or not (root / "structures" / "maps_10A").is_dir():
        pytest.skip("shared reference data (structures/) is absent")
    return root / "structures"
