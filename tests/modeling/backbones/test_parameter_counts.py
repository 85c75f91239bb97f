"""Parameter counts of the paper's FlexNets equal those of the original code's models."""
import functools

import pytest

from flexcore.modeling.backbones import FlexNet
from flexcore.registry import CONVS, KERNEL_NETS
from flexcore.utils.parameters import count_parameters

FLEXNET = {
    3: dict(hidden_channels=24, num_blocks=3, block_width_factors=[1.0, 1, 1.5, 1, 2.0, 1]),
    5: dict(hidden_channels=22, num_blocks=5, block_width_factors=[1.0, 1, 1.5, 2, 2.0, 2]),
    7: dict(hidden_channels=24, num_blocks=7, block_width_factors=[1.0, 2, 1.5, 3, 2.0, 2]),
}


def conv(name, kernel=None, **kernel_hp):
    if kernel is None:
        return functools.partial(CONVS.get_raw(name), **kernel_hp)
    net = functools.partial(KERNEL_NETS.get_raw(kernel), **kernel_hp)
    return functools.partial(CONVS.get_raw(name), kernel_net=net, horizon=33)


@pytest.mark.parametrize(
    "depth,in_ch,classes,conv_type,kernel,params",
    [
        (7, 3, 10, "FlexConv", "MAGNet", 671_650),
        (5, 3, 10, "FlexConv", "MAGNet", 454_046),
        (3, 3, 10, "FlexConv", "MAGNet", 277_090),
        (7, 1, 10, "FlexConv", "MAGNet", 670_066),      # MNIST
        (5, 3, 1000, "FlexConv", "MAGNet", 498_596),    # ImageNet-32
        (7, 3, 10, "CKConv", "MAGNet", 671_590),
        (7, 3, 10, "FlexConv", "SIREN", 627_970),
        (7, 3, 10, "CKConv", "SIREN", 627_910),
        (7, 3, 10, "FlexConv", "GaborNet", 669_730),
        (7, 3, 10, "FlexConv", "FourierNet", 663_970),
    ],
)
def test_flexnet_parameter_counts(depth, in_ch, classes, conv_type, kernel, params):
    model = FlexNet(in_ch, classes, 2, conv=conv(conv_type, kernel), **FLEXNET[depth])
    assert count_parameters(model) == params


def test_flexnet7_with_discrete_convs():
    assert count_parameters(FlexNet(3, 10, 2, conv=conv("Conv", kernel_size=3), **FLEXNET[7])) == 169_990
    assert count_parameters(FlexNet(3, 10, 2, conv=conv("Conv", kernel_size=33), **FLEXNET[7])) == 19_998_790
