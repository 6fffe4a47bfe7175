"""Several DeepEM pickers trained alike from different random starts, their score maps averaged.

Averaging the score maps of networks that differ only in their random initialisation and
batch order is the plainest ensemble: each network's scores on background are partly noise of
its own, which the average cancels, while its scores on particles agree. Measured on notebook
04's QUICK micrographs (8 to train, 4 to test, 4-px scoring grid): AP 0.783–0.790 for one
network of seeds 0, 1 and 2; 0.805 for the average of seeds 0–1; 0.822 for seeds 0–2; over three
ensembles of three (seeds 0–2, 3–5, 6–8), 0.817 on average against 0.786 for one network (Topaz
trained on the same boxes: 0.831). On a harder set (KLH-like at SNR 0.01, ``benchmarks/picking.py
--quick``) three networks gained less: 0.582 → 0.599. The cost is ``n_models`` times the
training and scoring.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from cryoml._errors import CryomlError
from cryoml.picking._peaks import _PickingMixin
from cryoml.picking._scoring import ScoreMap

__all__ = ["PickerEnsemble", "load_picker"]

_STATE = "ensemble.json"


class PickerEnsemble(_PickingMixin):
    """DeepEM pickers whose score maps are averaged; picks, thresholds and calibration as one.

    Parameters
    ----------
    pickers : list of ParticlePicker
        Fitted pickers with the same box, particle diameter and scoring grid (for example
        from :meth:`train`).

    Attributes
    ----------
    min_distance : float or None
        Least distance between picks in pixels (default: the first member's setting).
    pickers_ : list of ParticlePicker
    threshold_ : float
        Score threshold of :meth:`pick` (the members' mean until :meth:`calibrate_threshold`).
    sd_band_ : tuple of float or None
        The first member's pixel-s.d. band (the members learn it from the same micrographs).
    calibration_ : dict or None

    See Also
    --------
    ParticlePicker : one network; ``PickerEnsemble.train`` clones its settings.

    Examples
    --------
    >>> from cryoml.picking import ParticlePicker, PickerEnsemble, toy_micrographs
    >>> data = toy_micrographs(5, random_state=1)
    >>> template = ParticlePicker(48, epochs=6, random_state=0, progress=False)
    >>> ensemble = PickerEnsemble.train(template, [m.image for m in data],
    ...                                 [m.particles for m in data], n_models=2)
    >>> len(ensemble.pickers_)
    2
    """

    def __init__(self, pickers):
        pickers = list(pickers)
        if not pickers:
            raise CryomlError("a PickerEnsemble needs at least one fitted picker.")
        for picker in pickers:
            picker._check_fitted()
        first = pickers[0]
        for picker in pickers[1:]:
            if picker.architecture_.box_size != first.architecture_.box_size or not np.isclose(
                picker.diameter, first.diameter
            ):
                raise CryomlError(
                    "the pickers of an ensemble must share the box size and particle diameter; "
                    f"got box {picker.architecture_.box_size} vs {first.architecture_.box_size}, "
                    f"diameter {picker.diameter:.1f} vs {first.diameter:.1f} px."
                )
        self.pickers_ = pickers
        self.min_distance = first.min_distance
        self.threshold_ = float(np.mean([p.threshold_ for p in pickers]))
        self.sd_band_ = first.sd_band_
        self.calibration_ = None

    # --- the attributes the picking mixin needs ---------------------------------------------

    @property
    def diameter(self) -> float:
        """Particle diameter in pixels (the members')."""
        return self.pickers_[0].diameter

    @property
    def progress(self) -> bool:
        """Whether the members show progress bars (setting it sets every member's)."""
        return bool(self.pickers_[0].progress)

    @progress.setter
    def progress(self, value: bool) -> None:
        for picker in self.pickers_:
            picker.progress = bool(value)

    @property
    def beta(self) -> float:
        """F-beta of :meth:`calibrate_threshold` (the first member's)."""
        return self.pickers_[0].beta

    def _check_fitted(self) -> None:
        for picker in self.pickers_:
            picker._check_fitted()

    # --- training and scoring ---------------------------------------------------------------

    @classmethod
    def train(cls, picker, micrographs, particles, negatives=None, *, n_models: int = 3,
              callbacks: list | None = None) -> PickerEnsemble:
        """Train ``n_models`` copies of ``picker``'s settings from different random starts.

        Parameters
        ----------
        picker : ParticlePicker
            Settings to copy (fitted or not; it is not changed). Member ``i`` gets
            ``random_state + i`` when ``random_state`` is an int, fresh randomness otherwise.
        micrographs, particles, negatives
            As for :meth:`ParticlePicker.fit`.
        n_models : int, default 3
        callbacks : list of keras.callbacks.Callback, optional
            Passed to every member's ``fit``.

        Returns
        -------
        PickerEnsemble
        """
        if int(n_models) < 1 or int(n_models) != n_models:
            raise CryomlError(f"'n_models' must be a whole number >= 1; got {n_models}.")
        settings = picker.get_params()
        seed = settings["random_state"]
        members = []
        for i in range(int(n_models)):
            member = type(picker)(**{**settings, "random_state": (
                seed + i if isinstance(seed, int | np.integer) else None)})
            members.append(member.fit(micrographs, particles, negatives, callbacks=callbacks))
        return cls(members)

    def score(self, micrograph, *, method: str | None = None,
              override_pixel_size: bool = False) -> ScoreMap:
        """The members' score maps of one micrograph, averaged.

        Raises
        ------
        CryomlError
            If the members score on different grids (another ``dense_step`` or scorer).
        """
        self._check_fitted()
        maps = [p.score(micrograph, method=method, override_pixel_size=override_pixel_size)
                for p in self.pickers_]
        first = maps[0]
        for other in maps[1:]:
            if (other.step, tuple(other.origin), other.scores.shape) != (
                    first.step, tuple(first.origin), first.scores.shape):
                raise CryomlError(
                    "the ensemble's pickers score on different grids (step "
                    f"{other.step} vs {first.step}); give them the same scorer and dense_step."
                )
        mean = np.mean([m.scores for m in maps], axis=0).astype(np.float32)
        return dataclasses.replace(first, scores=mean)

    # --- persistence ------------------------------------------------------------------------

    def save(self, folder: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Save every member (``member_0.keras`` …) and the ensemble's threshold in ``folder``.

        Raises
        ------
        CryomlError
            If ``folder`` holds a saved ensemble and not ``overwrite``.
        """
        from cryoml.io import atomic_path, check_writable

        folder = Path(folder)
        state_path = folder / _STATE
        check_writable(state_path, overwrite=overwrite)
        folder.mkdir(parents=True, exist_ok=True)
        names = []
        for i, picker in enumerate(self.pickers_):
            names.append(f"member_{i}.keras")
            picker.save(folder / names[-1], overwrite=overwrite)
        state = {"members": names, "threshold": self.threshold_,
                 "calibration": self.calibration_}
        with atomic_path(state_path, overwrite=overwrite) as tmp:
            tmp.write_text(json.dumps(state, indent=1, default=float))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> PickerEnsemble:
        """Load an ensemble written by :meth:`save`.

        Raises
        ------
        CryomlError
            If ``folder`` holds no saved ensemble.
        """
        from cryoml.picking._training import ParticlePicker

        folder = Path(folder)
        state_path = folder / _STATE
        if not state_path.is_file():
            raise CryomlError(
                f"{state_path}: no such file; save ensembles with PickerEnsemble.save()."
            )
        try:
            state = json.loads(state_path.read_text())
            names = list(state["members"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
            raise CryomlError(f"{state_path}: not a cryoml picker ensemble ({error}).") from None
        ensemble = cls([ParticlePicker.load(folder / name) for name in names])
        ensemble.threshold_ = float(state["threshold"])
        ensemble.calibration_ = state.get("calibration")
        return ensemble


def load_picker(path: str | os.PathLike):
    """A saved picker: a ``.keras`` file (:class:`ParticlePicker`) or an ensemble's folder.

    Raises
    ------
    CryomlError
        If ``path`` holds neither.
    """
    from cryoml.picking._training import ParticlePicker

    path = Path(path)
    if path.is_dir():
        return PickerEnsemble.load(path)
    if path.suffix != ".keras":
        raise CryomlError(
            f"{path}: not a saved picker; give a .keras file (ParticlePicker) or the folder of "
            "a PickerEnsemble (`cryoml pick train --ensemble N`)."
        )
    return ParticlePicker.load(path)
