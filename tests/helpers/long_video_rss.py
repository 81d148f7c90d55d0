"""Test-only: peak RSS growth (KiB) of one DAVIS evaluation in a fresh process, printed as JSON.

Growth = peak RSS after the evaluation minus the resident set just before it (imports, data index and model
already in memory).

python -m tests.helpers.long_video_rss DAVIS_ROOT OUT_DIR
"""

import json
import resource
import sys

import torch

from callbacks.evaluation.davis import evaluate_davis
from callbacks.evaluation.settings import PropagationConfig
from datamodules.davis import load_davis
from lightning_modules.feature_models.pixels import PixelFeatures

if __name__ == "__main__":
    torch.set_num_threads(1)
    root, out = sys.argv[1], sys.argv[2]
    videos = load_davis(root, "val")
    model = PixelFeatures(8)
    with open("/proc/self/statm") as f:
        before = int(f.read().split()[1]) * resource.getpagesize() // 1024  # resident now, KiB
    cfg = PropagationConfig.preset("davis")
    records = evaluate_davis(model, videos, cfg, out_dir=out, size=None)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {"growth_kib": after - before, "frames": len(videos[0]), "objects": len(records[0]["rows"])}
        )
    )
