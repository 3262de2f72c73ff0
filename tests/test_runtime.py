"""The optimiser step shared by every training loop."""

import pytest
import torch

from srseg.runtime import grad_scaler, require_finite, scaled_step


def test_scaled_step_takes_one_gradient_step_on_cpu():
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = torch.optim.SGD([w], lr=0.5)
    scaled_step((w ** 2).sum(), opt, grad_scaler(torch.device("cpu")))
    assert w.item() == pytest.approx(1.0 - 0.5 * 2.0)  # w - lr * d(w^2)/dw


def test_non_finite_loss_stops_training_naming_the_fix():
    with pytest.raises(FloatingPointError, match=r"step 7; lower `lr` \(now 0.001\)"):
        require_finite(torch.tensor(float("nan")), 7, 0.001)
    require_finite(torch.tensor(1.0), 7, 0.001)  # finite: no error
