"""fireflow: the build flow from PyTorch training to a verified hls4ml project.

Each module here is one concern of the build (data, train, export, convert, csim, report, ...);
`flows/build.py` is the thin command line over the ordered step list in `flows/pipeline.py`.
"""

__version__ = "0.1.0"
