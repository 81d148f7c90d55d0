"""``compile_model=True`` works on CPU (inductor + system C++ compiler): same loss, gradients, state dict."""

import copy

import pytest
import torch

from lightning_modules import SiamMAE

TINY = dict(
    img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, decoder_dim=32, decoder_depth=2,
    decoder_num_heads=2, log_images_every_n_steps=0,
)  # fmt: skip


@pytest.mark.slow
def test_compiled_blocks_match_eager_on_cpu():
    eager = SiamMAE(**TINY)
    compiled = SiamMAE(**TINY, compile_model=True)
    compiled.load_state_dict(copy.deepcopy(eager.state_dict()))
    compiled.configure_model()  # what the Trainer calls: compiles each block in place
    assert compiled.state_dict().keys() == eager.state_dict().keys()  # checkpoints stay interchangeable
    frames = torch.randn(4, 2, 3, 32, 32)
    losses = []
    for model in (eager, compiled):
        loss, _, _ = model(frames, torch.Generator().manual_seed(0))
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    for (name, p_e), p_c in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        if p_e.requires_grad:
            torch.testing.assert_close(p_c.grad, p_e.grad, rtol=1e-4, atol=1e-6, msg=name)
