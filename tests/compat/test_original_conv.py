"""Converter from the original CKConv/FlexConv state-dict layout (conv-layer part)."""
import pytest
import torch

from flexcore.compat.original.weights import OriginalCheckpointError, conv_from_original, convert_conv, load_original_conv

KW = dict(in_channels=2, out_channels=3, horizon=9, kernel_type="MAGNet", kernel_dim_linear=2, kernel_no_hidden=4,
          kernel_no_layers=2, kernel_input_scale=25.6)


def _original_sd(layer):
    """An original-layout state dict made from a flexcore layer (the inverse mapping)."""
    sd = {}
    for key, value in layer.state_dict().items():
        if key.startswith("kernel_net."):
            rest = key[len("kernel_net."):]
            sd["Kernel." + rest] = value.reshape(*value.shape, 1, 1) if value.dim() == 2 and "gamma" not in rest and "mu" not in rest else value
    sd["bias"] = layer.bias.detach().clone()
    sd["train_length"] = torch.tensor([9], dtype=torch.int32)
    sd["mask_params"] = torch.tensor([[0.2, 0.275], [0.0, 0.1]])
    sd["mask_threshold"] = torch.tensor([0.2])
    sd["temperature"] = torch.tensor([15.0])
    return sd


def test_convert_conv_maps_every_key():
    layer = conv_from_original("FlexConv", KW)
    sd = _original_sd(layer)
    out = convert_conv(sd, "", "MAGNet", 2, new_prefix="blocks.0.cconv1.")
    assert out["blocks.0.cconv1.train_length"].tolist() == [9, 9]
    assert out["blocks.0.cconv1.mask.mean"].tolist() == pytest.approx([0.2, 0.0])
    assert out["blocks.0.cconv1.mask.sigma"].tolist() == pytest.approx([0.275, 0.1])
    assert out["blocks.0.cconv1.mask.threshold"].item() == pytest.approx(0.2)
    assert "blocks.0.cconv1.kernel_net.output_linear.weight" in out
    load_original_conv(layer, sd)
    # R = 0.2 + 0.275 sqrt(-2 ln 0.2) = 0.69 -> 5 of 9 rows; 0.1 * 1.79 = 0.18 -> 1 column
    assert layer.mask.threshold.item() == pytest.approx(0.2) and layer.kernel_size() == (5, 1)


def test_prefix_selects_one_layer_of_a_model():
    torch.manual_seed(0)
    source = conv_from_original("FlexConv", KW)
    with torch.no_grad():
        source.bias.uniform_(-1, 1)  # zeros at init: make the copy visible
    sd = {f"blocks.1.cconv2.{k}": v for k, v in _original_sd(source).items()}
    sd["blocks.1.norm1.weight"] = torch.ones(3)  # another module's key: must be left alone
    sd["blocks.0.cconv2.bias"] = torch.full((3,), 7.0)  # the same layer name under another prefix
    torch.manual_seed(1)
    target = conv_from_original("FlexConv", KW)
    assert not torch.equal(target.bias, source.bias)
    load_original_conv(target, sd, prefix="blocks.1.cconv2.")
    assert torch.equal(target.bias, source.bias)
    for key, value in source.kernel_net.state_dict().items():
        assert torch.equal(target.kernel_net.state_dict()[key], value), key
    assert target.mask.mean.tolist() == pytest.approx([0.2, 0.0])
    assert target.mask.sigma.tolist() == pytest.approx([0.275, 0.1])


def test_errors_name_the_problem():
    layer = conv_from_original("FlexConv", KW)
    sd = _original_sd(layer)
    bad = dict(sd, mask_params=torch.zeros(1, 2))
    with pytest.raises(OriginalCheckpointError, match=r"mask_params has shape \(1, 2\); a 2-D FlexConv has \(2, 2\)"):
        convert_conv(bad, "", "MAGNet", 2)
    with pytest.raises(OriginalCheckpointError, match="Unexpected key 'weird'"):
        convert_conv(dict(sd, weird=torch.zeros(1)), "", "MAGNet", 2)
    ck = conv_from_original("CKConv", KW)
    with pytest.raises(OriginalCheckpointError, match=r"does not fit CKConv:\n(.|\n)*in the checkpoint but not in the model(.|\n)*mask.mean"):
        load_original_conv(ck, sd)
    with pytest.raises(OriginalCheckpointError, match="expected CKConv or FlexConv"):
        conv_from_original("SRF", KW)
