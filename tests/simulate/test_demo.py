from cryoml.simulate._demo import run_demo


def test_demo_writes_data_and_reports_headline_figures(tmp_path, monkeypatch):
    # As a user's fresh clone: no reference data and no network, only the repository's data/.
    (tmp_path / "no-reference-data").mkdir()
    monkeypatch.setenv("CRYOML_REFERENCE_DATA", str(tmp_path / "no-reference-data"))
    monkeypatch.setenv("CRYOML_OFFLINE", "1")
    result = run_demo(tmp_path, quick=True)
    assert result["wedge_power_ratio"] <= 0.01
    assert abs(result["snr_measured"] - 0.1) < 0.015
    assert (tmp_path / "simulate_demo.png").is_file()
    assert (tmp_path / "cell_labels.mrc").is_file()
    assert result["micrograph_good_particles"] >= 1
    assert result["cell_particles"] >= 3  # a 48-slice cell once held none
