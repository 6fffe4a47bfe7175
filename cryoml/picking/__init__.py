"""DeepEM particle picking (Zhu et al. 2017), with evaluation and a template-matching baseline.

* :func:`build_deepem_cnn`, :data:`PRESETS`, :func:`preset_for_box`: the network of the paper
  (C1 → S2 → C3 → S4 → C5 → S6 → sigmoid) and its Table 1 designs.
* :class:`ParticlePicker`: training (×4 rotations, recipes "paper" and "modern"), recursive
  training, raster or dense scoring, peaks, F2 threshold, pixel-s.d. band.
* :class:`PickerEnsemble`: several pickers trained alike from different random starts, their
  score maps averaged (picks, thresholds, calibration and save/load as one picker).
* :func:`raster_score_map`, :func:`dense_score_map`, :func:`find_peaks`: the steps on their own.
* :func:`evaluate_picks`, :func:`plot_precision_recall`: precision, recall, F-beta, PR and AP.
* :class:`TemplateMatcher`: normalised cross-correlation picking (FindEM / RELION autopick).
* :func:`extract_file`: pick one micrograph file into one coordinate file (a task for
  :func:`cryoml.batch.run_batch`, as run by ``cryoml pick extract``).
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
