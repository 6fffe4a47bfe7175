"""Library plotting never changes the user's matplotlib backend (ipympl stays ipympl).

A real IPython kernel switches to ipympl (``%matplotlib widget``, as JupyterLab users do),
calls every plotting function of the library, and reports the backend afterwards.
"""

from __future__ import annotations

import json
import os
import textwrap

import pytest

pytest.importorskip("ipympl")
pytest.importorskip("ipykernel")
jupyter_client = pytest.importorskip("jupyter_client")

_CODE = textwrap.dedent("""
    %matplotlib widget
    import json, tempfile
    from pathlib import Path
    import matplotlib
    import numpy as np
    before = matplotlib.get_backend()
    from cryoml import picking, tomoseg
    from cryoml.cli.subtomo import _save_tsne
    from cryoml.subtomo._demo import _plot as subtomo_demo_plot
    from cryoml.widgets import plot_comparison, plot_confusion
    tmp = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(12, 48, 48)).astype("float32")
    mask = np.zeros(volume.shape, bool); mask[:, 20:28, :] = True
    pos, neg = tomoseg.sample_boxes(mask, 2, 2, tile_size=16, random_state=0)
    trainset = tomoseg.build_training_set(volume, pos, mask, neg, tile_size=16, n_copies=1,
                                          random_state=0)
    figures = [tomoseg.preview_grid(trainset),
               tomoseg.plot_history({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}),
               plot_confusion({"A": {"confusion_matrix": [[2, 0], [1, 1]], "accuracy": 0.75}}),
               plot_comparison({"A": 0.5}, {"A": 0.6})]
    for i, figure in enumerate(figures):
        figure.savefig(tmp / f"{i}.png")
    mics = picking.toy_micrographs(1, shape=(96, 96), box_size=16, n_particles=3,
                                   random_state=0)
    truth = mics[0].particles
    evaluation = picking.evaluate_picks([truth], [truth], radius=4.0, threshold=0.0)
    picking.plot_precision_recall({"truth": evaluation}, tmp / "pr.png")
    subtomo_demo_plot(tmp / "tsne.png", rng.normal(size=(6, 2)), np.arange(6) % 2, ["a", "b"])
    _save_tsne(tmp / "tsne2.png", rng.normal(size=(6, 2)), np.arange(6) % 2, False)
    print("RESULT " + json.dumps({"before": before, "after": matplotlib.get_backend(),
                                  "files": len(list(tmp.glob("*.png")))}))
""")


def test_plotting_functions_leave_the_ipympl_backend_alone():
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # the kernel starts as a user's would
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    outputs: list = []
    manager = jupyter_client.KernelManager(kernel_name="python3")
    manager.start_kernel(env=env)
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        reply = client.execute_interactive(_CODE, timeout=120,
                                           output_hook=lambda msg: outputs.append(msg))
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    text = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
    errors = [m["content"] for m in outputs if m["msg_type"] == "error"]
    assert reply["content"]["status"] == "ok", errors or text[-2000:]
    line = next(x for x in text.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    assert result["before"].lower() in ("widget", "ipympl", "module://ipympl.backend_nbagg"), result
    assert result["after"] == result["before"], result
    assert result["files"] == 7
