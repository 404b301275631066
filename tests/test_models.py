
import pytest
import torch

from trainables.models import MODELS, build, names


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
                                              ("resnet50", 23_516_103), ("crnn", 422_663)])
def test_defences_at_paper_size(name, parameters):
    assert count(build(name)) == parameters


@pytest.mark.parametrize("name", ["cnn4", "vgg16", "resnet50", "crnn"])
def test_defences_return_log_probabilities_for_any_class_count(name):
    model = build(name, num_classes=5, width=0.125, in_channels=2).eval()
    out = model(torch.randn(3, 2, 64, 64))
    assert out.shape == (3, 5)
    torch.testing.assert_close(out.exp().sum(dim=1), torch.ones(3))
    assert (out < 0).all()


def test_registry_and_unknown_names():
    assert list(MODELS) == ["atrous", "universal", "cnn4", "vgg16", "resnet50", "crnn"]
    assert names("defence") == ["cnn4", "vgg16", "resnet50", "crnn"]
    assert names("attacker") == ["atrous"] and names("perturbation") == ["universal"]
    for name, entry in MODELS.items():  # every entry imports and is the class it names
        assert entry.load().__name__ == entry.target.split(":")[1], name
    with pytest.raises(ValueError, match="registered: atrous, universal, cnn4"):
        build("lstm")


def test_the_crnn_reads_every_frame_with_its_recurrent_layer():
    """The held-out CRNN keeps time at full resolution: changing only the last frame changes
    its output (a pooled CNN could ignore it), whatever the number of Mel bands."""
    model = build("crnn", width=0.125).eval()
    for bands in (1, 13, 64):
        x = torch.randn(2, 1, 40, bands)
        moved = x.clone()
        moved[:, :, -1] += 3.0
        assert not torch.allclose(model(x), model(moved))


def test_the_universal_perturbation_does_not_depend_on_its_input():
    universal = build("universal", input_shape=(1, 16, 8), eta_init=0.02)
    assert count(universal) == 16 * 8
    a, b = universal(torch.randn(3, 1, 16, 8)), universal(torch.randn(5, 1, 16, 8) * 10)
    assert a.shape == (3, 1, 16, 8) and b.shape == (5, 1, 16, 8)
    assert torch.equal(a[0], b[4]) and torch.equal(a[0], a[2])
    torch.testing.assert_close(a, torch.full_like(a, 0.02))
    with pytest.raises(ValueError, match="shape"):
        universal(torch.randn(1, 1, 17, 8))


@pytest.mark.parametrize("name", ["cnn4", "vgg16", "resnet50", "crnn"])
def test_a_defence_as_an_attack_meets_it_is_the_trained_function_with_its_batch_norms_folded(
        name):
    from trainables.builders import build_defence, build_target
    from trainables.settings import DefenceSpec

    spec = DefenceSpec(model=name, width=0.125)
    torch.manual_seed(0)
    trained = build_defence(spec, 7)
    # Statistics and affine parameters far from their initial 0/1, so that a batch norm folded
    # into the wrong convolution (or left out) changes the function.
    for module in trained.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.25, 4.0)
            module.weight.data.normal_()
            module.bias.data.normal_()
    trained.eval()
    target = build_target(spec, 7, trained.state_dict())
    assert not target.training
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in target.modules())
    assert not any(p.requires_grad for p in target.parameters())
    x = torch.randn(4, 1, 64, 64, requires_grad=True)
    expected = trained(x)
    (grad_expected,) = torch.autograd.grad(expected[:, 0].sum(), x)
    got = target(x)
    (grad_got,) = torch.autograd.grad(got[:, 0].sum(), x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grad_got, grad_expected, rtol=1e-3, atol=1e-4)
