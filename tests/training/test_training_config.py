import numpy as np
import pytest

from vaesim.training import EpochOrder, TrainConfig, checkpoint_steps


@pytest.mark.parametrize(
    "schedule,steps,expected",
    [
        ("every:5", 12, [5, 10, 12]),
        ("log:4", 1000, [1, 10, 100, 1000]),
        ("even:3", 10, [0, 5, 10]),
        ("even:5", 300_000, [0, 75_000, 150_000, 225_000, 300_000]),
        ("0,3", 10, [0, 3, 10]),
        ([7, 2, 2], 10, [2, 7, 10]),
        ("10", 10, [10]),
    ],
)
def test_checkpoint_schedules_always_end_with_the_final_step(schedule, steps, expected):
    assert checkpoint_steps(schedule, steps) == expected


def test_log_schedule_is_dense_early():
    steps = checkpoint_steps("log:20", 300_000)
    gaps = np.diff(steps)
    assert steps[-1] == 300_000 and len(steps) == 20
    assert np.all(np.diff(gaps) >= 0)  # gaps widen: most checkpoints early


@pytest.mark.parametrize(
    "schedule,match",
    [
        ("every:0", "N must be a positive integer"),
        ("weekly:3", "unknown kind 'weekly'"),
        ("5,20", r"steps \[20\] fall outside 0..10"),
        ("a,b", "'a' is not a whole step"),
        ([1.5], "1.5 is not a whole step"),
    ],
)
def test_bad_schedules_name_the_problem_and_the_forms(schedule, match):
    with pytest.raises(ValueError, match=match):
        checkpoint_steps(schedule, 10)


def test_config_round_trips_through_json_and_checks_fields():
    import json

    config = TrainConfig(objective="annealed_vae", params={"c_max": 25, "gamma": 1000}, steps=50, checkpoints=[0, 10])
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.adam_betas == (0.9, 0.999)
    defaults = TrainConfig()
    assert (defaults.lr, defaults.batch_size, defaults.steps, defaults.latent_dim) == (1e-4, 64, 300_000, 10)
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['epochs'\]"):
        TrainConfig.from_dict({"epochs": 3})
    with pytest.raises(ValueError, match="objective 'vae' is unknown; valid objectives: beta_vae"):
        TrainConfig(objective="vae")
    with pytest.raises(ValueError, match="has no parameter 'beta'; valid parameters: lambda_od, lambda_d"):
        TrainConfig(objective="dip_vae_ii", params={"beta": 2})
    with pytest.raises(ValueError, match="TrainConfig.batch_size must be a positive integer, got 0"):
        TrainConfig(batch_size=0)


def test_epoch_order_visits_every_example_once_per_epoch():
    order = EpochOrder(seed=3, size=10)
    stream = np.concatenate([order.batch(step, 4) for step in range(5)])  # 20 = two epochs
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:]) == list(range(10))
    assert not np.array_equal(stream[:10], stream[10:])
    fresh = EpochOrder(seed=3, size=10)
    np.testing.assert_array_equal(fresh.batch(4, 4), stream[16:20])  # any step without replaying
    np.testing.assert_array_equal(fresh.batch(2, 4), stream[8:12])  # straddles the epoch boundary
    assert not np.array_equal(EpochOrder(seed=4, size=10).batch(0, 10), stream[:10])


def test_a_mixed_schedule_joins_explicit_steps_and_kinds_and_the_default_includes_step_0():
    from vaesim.training.commands import DEFAULT_CHECKPOINTS
    from vaesim.training.config import TrainConfig, checkpoint_steps

    assert checkpoint_steps("0,log:10", 1000) == [0] + checkpoint_steps("log:10", 1000)
    assert checkpoint_steps("5, every:400", 1000) == [5, 400, 800, 1000]
    assert TrainConfig().checkpoints == DEFAULT_CHECKPOINTS
    assert checkpoint_steps(DEFAULT_CHECKPOINTS, 300_000)[:2] == [0, 1]
    with pytest.raises(ValueError, match="unknown kind 'weekly'"):
        checkpoint_steps("0,weekly:2", 100)
