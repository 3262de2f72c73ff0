"""The optimiser step shared by every training loop."""

import pytest
import torch

from srseg.runtime import grad_scaler, require_finite, scaled_step


def test_scaled_step_takes_one_gradient_step_on_cpu():
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = torch.optim.SGD([w], lr=0.5)
    scaled_step((w**2).sum(), opt, grad_scaler(torch.device("cpu")))
    assert w.item() == pytest.approx(1.0 - 0.5 * 2.0)  # w - lr * d(w^2)/dw


def test_non_finite_loss_stops_training_naming_the_fix():
    with pytest.raises(FloatingPointError, match=r"step 7; lower `lr` \(now 0.001\)"):
        require_finite(torch.tensor(float("nan")), 7, 0.001)
    require_finite(torch.tensor(1.0), 7, 0.001)  # finite: no error


def test_rng_state_round_trip_replays_every_stream():
    import numpy as np

    from srseg.runtime import restore_rng_state, rng_state, seed_everything

    cpu = torch.device("cpu")
    rng = seed_everything(4)
    state = rng_state(rng, cpu)
    first = (rng.random(3), torch.rand(3))
    restore_rng_state(rng, state, cpu)
    again = (rng.random(3), torch.rand(3))
    assert np.array_equal(first[0], again[0]) and torch.equal(first[1], again[1])


def test_isolated_rng_leaves_the_training_stream_alone():
    from srseg.runtime import isolated_rng

    torch.manual_seed(0)
    expected = torch.rand(2)
    torch.manual_seed(0)
    with isolated_rng(torch.device("cpu"), seed=9):
        inside = torch.rand(5)
    assert torch.equal(torch.rand(2), expected)  # as if the block had not drawn
    with isolated_rng(torch.device("cpu"), seed=9):
        assert torch.equal(torch.rand(5), inside)  # and the block always draws the same


def test_to_device_and_prepare_model_keep_cpu_layout(tmp_path):
    import numpy as np

    from srseg.runtime import file_digest, prepare_model, to_device

    x = to_device(np.zeros((2, 1, 4, 4), np.float32), torch.device("cpu"))
    assert x.is_contiguous()
    net = prepare_model(torch.nn.Conv2d(1, 2, 3), torch.device("cpu"))
    assert net.weight.is_contiguous()
    (tmp_path / "a").write_bytes(b"abc")
    (tmp_path / "b").write_bytes(b"abd")
    assert file_digest(tmp_path / "a") != file_digest(tmp_path / "b")
