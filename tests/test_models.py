import pytest
import torch

from trainables.models import REGISTRY, build


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_attacker_has_the_paper_size_and_keeps_the_input_shape():
    attacker = build("atrous")
    assert count(attacker) == 413_314
    assert not any(isinstance(m, torch.nn.Conv2d) and m.bias is not None for m in attacker.modules())
    dilations = [m.dilation for m in attacker.modules() if isinstance(m, torch.nn.Conv2d)]
    assert dilations == [(1, 1), (2, 2), (4, 4), (8, 8)]
    eta = build("atrous", width=0.125)(torch.randn(2, 1, 37, 64))
    assert eta.shape == (2, 1, 37, 64) and 0 < eta.min() and eta.max() < 1


@pytest.mark.parametrize("name, parameters", [("cnn4", 4_308_871), ("vgg16", 14_725_575),
                                              ("resnet50", 23_516_103)])
def test_defences_at_paper_size(name, parameters):
    assert count(build(name)) == parameters


@pytest.mark.parametrize("name", ["cnn4", "vgg16", "resnet50"])
def test_defences_return_log_probabilities_for_any_class_count(name):
    model = build(name, num_classes=5, width=0.125, in_channels=2).eval()
    out = model(torch.randn(3, 2, 64, 64))
    assert out.shape == (3, 5)
    torch.testing.assert_close(out.exp().sum(dim=1), torch.ones(3))
    assert (out < 0).all()


def test_registry_and_unknown_names():
    assert set(REGISTRY) == {"atrous", "cnn4", "vgg16", "resnet50"}
    with pytest.raises(ValueError, match="registered: atrous, cnn4"):
        build("lstm")
