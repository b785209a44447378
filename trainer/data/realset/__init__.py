"""The real image-text set: clip art and emoji from Debian's packages, built once by `sharenas data
build DIR` (`build.py`: captions from `clipart.py` and `emoji.py`, images from `images.py`, the
manifest in `manifest.py`) and read by the `real` data source (`source.py`)."""
