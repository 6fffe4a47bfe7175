"""The public-data fetcher, against a file server on localhost (never the internet)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from cryoml import CryomlError, datasets
from cryoml.datasets import _fetch
from cryoml.simulate import available_maps, load_density
from cryoml.simulate._density import reference_structures_dir


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("CRYOML_CACHE", str(folder))
    monkeypatch.delenv("CRYOML_OFFLINE", raising=False)
    return folder


@pytest.fixture
def server(tmp_path):
    """Serve ``tmp_path / 'www'`` over HTTP on localhost; yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_download_is_checked_cached_and_reused_offline(cache, server, monkeypatch):
    root, base = server
    payload = b"cryo" * 1000
    (root / "a.bin").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    path = datasets.fetch_url(f"{base}/a.bin", sha256=digest, progress=False)
    assert path == cache / "downloads" / "a.bin" and path.read_bytes() == payload
    (root / "a.bin").unlink()  # a second call must not need the server
    monkeypatch.setenv("CRYOML_OFFLINE", "1")
    assert datasets.fetch_url(f"{base}/a.bin", sha256=digest, progress=False) == path


def test_checksum_mismatch_is_refused_and_leaves_no_file(cache, server):
    root, base = server
    (root / "a.bin").write_bytes(b"not what was promised")
    with pytest.raises(CryomlError, match="checksum"):
        datasets.fetch_url(f"{base}/a.bin", sha256="0" * 64, progress=False)
    assert not (cache / "downloads" / "a.bin").exists()


def test_first_download_is_pinned_and_a_damaged_cache_is_caught(cache, server):
    root, base = server
    (root / "b.bin").write_bytes(b"model" * 100)
    path = datasets.fetch_url(f"{base}/b.bin", progress=False)
    pin = path.with_name("b.bin.sha256")
    assert pin.read_text().strip() == hashlib.sha256(b"model" * 100).hexdigest()
    path.write_bytes(b"damaged")
    with pytest.raises(CryomlError, match="does not match its checksum"):
        datasets.fetch_url(f"{base}/b.bin", progress=False)


def test_no_network_says_what_to_download_and_where(cache):
    url = f"http://127.0.0.1:{_closed_port()}/c.mrc"
    with pytest.raises(CryomlError) as error:
        datasets.fetch_url(url, progress=False)
    text = str(error.value)
    assert url in text and str(cache / "downloads" / "c.mrc") in text and "by hand" in text
    assert not (cache / "downloads" / "c.mrc").exists()


def test_offline_setting_never_touches_the_network(cache, server, monkeypatch):
    root, base = server
    (root / "d.bin").write_bytes(b"x")
    monkeypatch.setenv("CRYOML_OFFLINE", "1")
    with pytest.raises(CryomlError, match="CRYOML_OFFLINE"):
        datasets.fetch_url(f"{base}/d.bin", progress=False)


def test_unknown_dataset_and_malformed_ids_are_refused(cache):
    with pytest.raises(CryomlError, match="known:"):
        datasets.fetch("no-such-set")
    with pytest.raises(CryomlError, match="PDB id"):
        datasets.fetch_pdb("1u6g; rm -rf /")
    with pytest.raises(CryomlError, match="EMDB id"):
        datasets.fetch_emdb("EMD-12ab")


def _tiny_mmcif() -> bytes:
    import gemmi

    structure = gemmi.Structure()
    structure.cell = gemmi.UnitCell(60, 60, 60, 90, 90, 90)
    model = gemmi.Model("1")
    chain = gemmi.Chain("A")
    rng = np.random.default_rng(0)
    for i, xyz in enumerate(rng.normal(30, 8, size=(200, 3))):
        residue = gemmi.Residue()
        residue.name = "ALA"
        residue.seqid = gemmi.SeqId(i + 1, " ")
        atom = gemmi.Atom()
        atom.name = "CA"
        atom.element = gemmi.Element("C")
        atom.pos = gemmi.Position(*xyz)
        residue.add_atom(atom)
        chain.add_residue(residue)
    model.add_chain(chain)
    structure.add_model(model)
    structure.setup_entities()
    return structure.make_mmcif_document().as_string().encode()


def test_fetched_model_becomes_a_density_that_loads_by_name(cache, server, monkeypatch):
    root, base = server
    (root / "9ZZZ.cif.gz").write_bytes(gzip.compress(_tiny_mmcif()))
    monkeypatch.setattr(_fetch, "PDB_URL", base + "/{id}.cif.gz")
    assert "9zzz" not in available_maps()
    path = datasets.fetch_density("9zzz", voxel_size=10.0, resolution=20.0, progress=False)
    assert path == cache / "densities" / "9zzz.mrc"
    assert "9zzz" in available_maps()
    volume = load_density("9zzz", voxel_size=10.0)
    assert volume.ndim == 3 and volume.max() > 0.5


def test_example_maps_load_without_reference_data(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("CRYOML_REFERENCE_DATA", str(empty))
    monkeypatch.setenv("CRYOML_CACHE", str(tmp_path / "cache"))
    assert reference_structures_dir() is None
    assert {"4v4r", "1bxn", "3j9i"} <= set(available_maps())
    ribosome = load_density("4v4r", voxel_size=20.0)
    assert ribosome.shape[0] >= 10 and np.isclose(np.mean(ribosome[ribosome > ribosome.max() / 2]),
                                                  1.0, atol=0.05)
    with pytest.raises(CryomlError, match="cryoml fetch pdb 7abc --map"):
        load_density("7abc", voxel_size=10.0)


def test_compressed_map_matches_the_reference_map(structures):
    from cryoml.io import read_mrc

    example = read_mrc(Path(datasets.example_data_dir()) / "densities" / "1bxn.mrc.gz")
    reference = read_mrc(structures / "maps_10A" / "1bxn.mrc")
    assert example.voxel_size == pytest.approx(10.0)
    error = np.abs(example.data.astype(np.float32) - reference.data).max()
    assert error <= 1e-3 * np.abs(reference.data).max()


def test_cli_fetch_offline_exits_2_naming_the_address(cache, monkeypatch, capsys):
    from cryoml.cli import main

    monkeypatch.setenv("CRYOML_OFFLINE", "1")
    assert main(["fetch", "pdb", "6qzp", "--map"]) == 2
    assert "https://files.rcsb.org/download/6QZP.cif.gz" in capsys.readouterr().err
    assert main(["fetch", "list"]) == 0
    assert "czii-10445-ts_100_3" in capsys.readouterr().out
