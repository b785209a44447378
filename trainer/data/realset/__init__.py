"""The real image-text set: clip art and emoji (and, when asked, Tux Paint stamps) from Debian's
packages, built once by `sharenas data build DIR` (`build.py`: captions from `clipart.py`,
`emoji.py` and `tuxpaint.py`, images from `images.py`, the manifest in `manifest.py`) and read by the
`real` data source (`source.py`)."""
