from torch import nn

from lightning_modules.components.optim import param_groups_weight_decay


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.pos_embed = nn.Parameter(nn.init.normal_(nn.Parameter(nn.Linear(4, 4).weight.data.clone())))
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)


def test_decay_groups():
    m = Toy()
    decay, no_decay = param_groups_weight_decay(m, 0.05, ("pos_embed",))
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    ids = lambda g: {id(p) for p in g["params"]}  # noqa: E731
    assert ids(decay) == {id(m.lin.weight)}
    assert ids(no_decay) == {id(m.lin.bias), id(m.norm.weight), id(m.norm.bias), id(m.pos_embed)}
    # frozen parameters are in neither group
    assert id(m.frozen.weight) not in ids(decay) | ids(no_decay)
