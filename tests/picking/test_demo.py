def test_demo_trains_picks_and_draws_the_pr_curve(tmp_path):
    from cryoml.picking._demo import run_demo

    result = run_demo(tmp_path)
    assert result["ap"] > 0.8
    assert (tmp_path / "pr_curve.png").is_file()
    assert (tmp_path / "test0.box").is_file() and (tmp_path / "test0.star").is_file()
