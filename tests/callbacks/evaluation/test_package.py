"""The evaluation package's contracts: one registry, one evaluate signature honoured by every benchmark,
the dense-feature protocol, the shared tools helpers, and the checkpoint-class inference."""

import inspect

import numpy as np
import pytest
import torch
from PIL import Image

from callbacks.evaluation.benchmarks import BENCHMARKS, get_benchmark
from callbacks.evaluation.features import DenseFeatures
from callbacks.evaluation.protocols import get_protocol
from callbacks.evaluation.settings import BENCHMARK_NAMES, knob_types
from callbacks.evaluation.tuning import feature_layer, layer_choices
from callbacks.propagation_callback import LabelPropagationCallback
from datamodules.benchmark_gen import write_davis_benchmark
from lightning_modules import SiamMAE
from lightning_modules.feature_models.checkpoint import load_corrmae_checkpoint
from lightning_modules.feature_models.pixels import PixelFeatures
from lightning_modules.feature_models.timm_features import TimmFeatures
from lightning_modules.tools.results_table import markdown_table
from lightning_modules.tools.writable import probe_writable
from tests.helpers.benchmark_fixtures import write_jhmdb_fixture, write_vip_fixture
from tests.system.test_bad_input import tiny_siammae_checkpoint


def test_registry_lists_every_benchmark_of_the_settings():
    assert tuple(BENCHMARKS) == BENCHMARK_NAMES
    assert [b.dir_name for b in BENCHMARKS.values()] == ["DAVIS", "VIP", "JHMDB"]
    with pytest.raises(ValueError, match="unknown benchmark 'kitti'"):
        get_benchmark("kitti")


def test_every_evaluate_has_the_same_signature():
    signatures = {name: inspect.signature(b.evaluate) for name, b in BENCHMARKS.items()}
    params = {name: [(p.name, p.kind) for p in sig.parameters.values()] for name, sig in signatures.items()}
    assert params["davis"] == params["vip"] == params["jhmdb"]


def test_feature_models_meet_the_dense_features_protocol():
    for model in (PixelFeatures(8), TimmFeatures("resnet18")):
        assert isinstance(model, DenseFeatures)
    assert not isinstance(torch.nn.Linear(2, 2), DenseFeatures)


class SizeRecorder(PixelFeatures):
    """Raw pixels that remember the frame sizes they were given."""

    def __init__(self, patch_size: int):
        super().__init__(patch_size)
        self.sizes: set[tuple[int, int]] = set()

    def extract_features(self, frames):
        self.sizes.add(tuple(frames.shape[-2:]))
        return super().extract_features(frames)


def _fixtures(tmp_path):
    vip = BENCHMARKS["vip"].load(
        write_vip_fixture(tmp_path / "VIP", num_videos=1, num_frames=3, size=(40, 40))
    )
    jhmdb = BENCHMARKS["jhmdb"].load(write_jhmdb_fixture(tmp_path / "JHMDB", num_videos=1, num_frames=3))
    return {"vip": vip, "jhmdb": jhmdb}


@pytest.mark.parametrize("name", ["vip", "jhmdb"])
def test_vip_and_jhmdb_honour_size_out_dir_and_preview(tmp_path, name):
    videos, bench = _fixtures(tmp_path)[name], BENCHMARKS[name]
    protocol, model, out = get_protocol("siammae", name), PixelFeatures(8), tmp_path / "out"
    (record,) = bench.evaluate(model, videos, protocol, size=(64, 48), out_dir=out, preview=2)
    assert record["preview"].shape[0] == 2 and record["preview"].dtype == np.uint8
    written = sorted(p for p in out.rglob("*") if p.is_file())
    if name == "vip":
        assert len(written) == len(videos[0])
        pred = np.array(Image.open(written[1]))
        assert pred.shape == videos[0].read_label(1).shape
    else:
        assert [p.name for p in written] == ["joints.csv"]
        rows = np.loadtxt(written[0], delimiter=",", skiprows=1)
        assert rows.shape == (len(videos[0]) * 15, 4)
        np.testing.assert_allclose(rows[:, 2:].reshape(len(videos[0]), 15, 2), record["pred"], atol=1e-3)
    model = SizeRecorder(8)
    bench.evaluate(model, videos, protocol, size=(72, 56))
    assert model.sizes == {(72, 56)}


def test_davis_size_none_is_the_native_size(tmp_path):
    videos = BENCHMARKS["davis"].load(write_davis_benchmark(tmp_path / "DAVIS", num_val=1, num_tune=0,
                                                            num_frames=4, size=(48, 64)))  # fmt: skip
    (record,) = BENCHMARKS["davis"].evaluate(
        PixelFeatures(8), videos, get_protocol("legacy", "davis"), size=None
    )
    assert BENCHMARKS["davis"].size(None) is None and BENCHMARKS["vip"].size(480) == (560, 560)
    assert {r["sequence"] for r in record["rows"]} == {videos[0].name}


def test_feature_layer_is_restored_after_the_search(tmp_path):
    model = load_corrmae_checkpoint(tiny_siammae_checkpoint(tmp_path / "t.ckpt"))
    own = model.feature_layer
    with feature_layer(model, 1):
        assert model.feature_layer == 1
    assert model.feature_layer == own
    assert layer_choices(model, True) == list(range(1, len(model.encoder.blocks) + 1))
    assert layer_choices(PixelFeatures(8), True) == [None]


def test_checkpoint_class_is_inferred_from_its_keys_without_a_class_path(tmp_path):
    ckpt = tiny_siammae_checkpoint(tmp_path / "plain.ckpt")
    state = torch.load(ckpt, weights_only=True)
    del state["hyper_parameters"]["_class_path"]  # a checkpoint written by a plain Trainer, not the CLI
    torch.save(state, ckpt)
    assert isinstance(load_corrmae_checkpoint(ckpt), SiamMAE)
    state["state_dict"] = {"unknown.weight": torch.zeros(1)}
    torch.save(state, ckpt)
    with pytest.raises(ValueError, match="plain.ckpt: cannot tell the checkpoint's class"):
        load_corrmae_checkpoint(ckpt)


def test_one_markdown_writer_and_one_writability_probe(tmp_path):
    assert markdown_table(["a", "b"], [["1", "2"]]) == "| a | b |\n|---|---|\n| 1 | 2 |"
    probe_writable(tmp_path / "new" / "dir")
    assert (tmp_path / "new" / "dir").is_dir() and not list((tmp_path / "new" / "dir").iterdir())
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError):
        probe_writable(tmp_path / "file" / "sub")


def test_callback_knob_arguments_are_settings_knobs():
    own = set(
        "benchmark root split every_n_epochs at_fit_end short_side protocol overrides max_videos".split()
    )
    own |= {"log_images", "num_image_frames", "batch_frames", "name", "at_fit_start"}
    params = set(inspect.signature(LabelPropagationCallback.__init__).parameters) - {"self"}
    assert params - own and params - own <= set(knob_types())
    cb = LabelPropagationCallback(topk=3, overrides={"ties": "exact"})
    assert cb.cfg.propagation.topk == 3 and cb.cfg.propagation.ties == "exact"
    assert cb.protocol_name == "siammae (ties=exact, topk=3)"
