"""The prepared GPU check (`make gpu-check`): one short script that exercises every GPU path.

`python -m tests.gpu.check --out DIR` writes DIR/report.md and DIR/report.csv. With CUDA it runs at real sizes
(about 6 minutes on an H200); without CUDA the same code runs at tiny sizes on the CPU and the report says so.
Imports only what the device machine's python has (no jsonargparse, PyAV, decord, torchcodec, scikit-video).
"""
