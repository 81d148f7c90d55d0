"""Test-only: peak RSS growth (KiB) of one DAVIS evaluation in a fresh process, printed as JSON.

Growth = peak RSS during the evaluation minus the resident set just before it (imports, data index and model
already in memory). The peak is the kernel's high-water mark (VmHWM), reset to the current RSS right before
the evaluation (``/proc/self/clear_refs``): the lifetime peak would also hold the imports' transient peak,
which hides part of the evaluation's growth in some runs and not in others.

python -m tests.helpers.long_video_rss DAVIS_ROOT OUT_DIR
"""

import json
import sys

import torch

from callbacks.evaluation.davis import evaluate_davis
from callbacks.evaluation.settings import PropagationConfig
from datamodules.davis import load_davis
from lightning_modules.feature_models.pixels import PixelFeatures


def status_kib(key: str) -> int:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in KiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(f"{key}:"))


if __name__ == "__main__":
    torch.set_num_threads(1)
    root, out = sys.argv[1], sys.argv[2]
    videos = load_davis(root, "val")
    model = PixelFeatures(8)
    cfg = PropagationConfig.preset("davis")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the high-water mark to the current RSS (Linux >= 4.0)
    before = status_kib("VmRSS")
    records = evaluate_davis(model, videos, cfg, out_dir=out, size=None)
    print(
        json.dumps(
            {
                "growth_kib": status_kib("VmHWM") - before,
                "frames": len(videos[0]),
                "objects": len(records[0]["rows"]),
            }
        )
    )
