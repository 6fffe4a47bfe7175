# %% [markdown]
# **How to run this notebook.** Run it cell by cell (Shift+Enter) and play with the
# `SliceViewer` (slider, mouse wheel, contrast, zoom) as you go. There is nothing to box or
# paint by hand here: Run All gives the same results, with the viewer ready at the end.

# %% [markdown]
# # Quickstart: open a tomogram, prepare it, look through it
#
# **Author:** cryoml developers<br>
# **Date created:** 2026-11-21<br>
# **Last modified:** 2026-11-21<br>
# **Description:** Read a cryo-ET volume with its voxel size, band-pass, normalise and clamp it
# as TomoSeg does, and step through its slices with the `SliceViewer` widget.<br>
# **Accelerator:** none (CPU, seconds)
#
# cryoml is one package for three published deep-learning methods of cryo-EM and cryo-ET:
# TomoSeg segmentation (Chen et al. 2017), subtomogram classification and subdivision
# (Xu et al. 2017) and DeepEM particle picking (Zhu et al. 2017). Every notebook calls the
# library; nothing is re-implemented here. Run the cells from top to bottom.

# %%
import json
from pathlib import Path

from cryoml import io, preprocess
from cryoml.datasets import reference_data
from cryoml.widgets import SliceViewer, headline, setup_notebook

backend = setup_notebook()  # live ipympl figures in JupyterLab; static figures when run headless

# %% [markdown]
# ## Parameters
# `QUICK = True` keeps every notebook under a minute or two on a laptop CPU. `OUT` is where
# results are written (inside the ignored `outputs/` folder).

# %% tags=["parameters"]
QUICK = True
OUT = Path("../outputs/notebooks/00_quickstart")
SEED = 0

# %% [markdown]
# ## 1. Read a tomogram
# We use a real sub-tomogram of a single 13-protofilament microtubule (from the *cylindra*
# project, bin 4, 10.52 Å/voxel) when the shared reference data is present, and otherwise a
# simulated cellular tomogram. Every volume carries its **voxel size in Å**: filters are
# specified in Å, and networks refuse input of another sampling.

# %%
folder = reference_data()
path = None if folder is None else folder / "tomograms" / "13pf_MT.tif"
if path is not None and path.exists():
    tomogram = io.read_image(path)
    source = path.name
else:
    from cryoml.simulate import simulate_cell_tomogram

    tomogram = simulate_cell_tomogram((24, 96, 96), random_state=SEED).tomogram
    source = "simulated cell"
print(f"{source}: shape (Z, Y, X) = {tomogram.data.shape}, {tomogram.voxel_size:.2f} Å/voxel")

# %% [markdown]
# ## 2. Preprocess as TomoSeg does
# The paper low-passes at 20 Å, high-passes at 4000 Å, normalises to mean 0 and s.d. 1 and
# clamps at ±3 s.d. **Pitfall:** a low-pass must be coarser than the Nyquist limit
# (2 × voxel size = 21 Å here), otherwise it does nothing; we use 30 Å. Clamping keeps gold
# beads and carbon edges from dominating the normalisation. Binning (`bin_factor`) would
# shrink big tomograms first; this one is small.

# %%
clean, record = preprocess.preprocess(
    tomogram.data, voxel_size=tomogram.voxel_size, lowpass=30.0, highpass=4000.0, clamp_sd=3.0
)
print(", ".join(f"{key} {value}" for key, value in record.to_dict().items()))
print(f"mean {clean.mean():.3f}, s.d. {clean.std():.3f}, range {clean.min():.2f}…{clean.max():.2f}")

# %% [markdown]
# ## 3. Look through it
# Drag the **slice** slider (or scroll over the image), set the **contrast** range and
# **zoom**. Overlays are drawn with a legend; here the voxels brighter than 2 s.d. (the
# microtubule wall, dense = bright in this file).

# %%
viewer = SliceViewer(clean, overlays={"> 2 s.d.": clean > 2.0}, figsize=(4.5, 6))
viewer

# %% [markdown]
# The widget is a thin view over `viewer.state` (a `SliceState`): code can drive it too,
# which is how the notebook tests check it.

# %%
viewer.state.set_index(clean.shape[0] // 2 + 3)
print("showing slice", viewer.state.index, "of", viewer.state.n_slices)

# %% [markdown]
# ## 4. Save the prepared volume
# Outputs are written atomically (a crash never leaves half a file) and never replace an
# existing file unless asked (`overwrite=True`). The preprocessing record travels with it.

# %%
OUT.mkdir(parents=True, exist_ok=True)
written = io.write_mrc(OUT / "tomogram_preprocessed.mrc", clean, voxel_size=record.voxel_size,
                       overwrite=True)
(OUT / "preprocess.json").write_text(json.dumps(record.to_dict(), indent=1))
print("wrote", written)
headline(source=source, shape=list(clean.shape), voxel_size=round(record.voxel_size, 3))

# %% [markdown]
# ## Next
# `01_tomoseg` trains a segmentation network on boxes and painted masks;
# `02_subtomogram_classification` and `03_subdivision_and_discovery` classify and subdivide
# subtomograms; `04_deepem_picking` picks particles in micrographs; `05_method_comparison`
# puts the methods and their baselines side by side.
