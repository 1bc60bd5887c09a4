"""Every search-space form the Optuna sweeper accepts -> its Optuna distribution (one case each)."""
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from fer_sweep.sweep.search_space import create_distributions, format_override, grid_values


def space(override: str):
    distributions, _ = create_distributions([override])
    return distributions


def test_interval_is_a_float_range_with_both_ends():
    assert space("optimizer.lr=interval(1e-4, 0.1)") == {"optimizer.lr": FloatDistribution(1e-4, 0.1)}


def test_interval_of_integers_is_still_float_as_in_hydra():
    assert space("x=interval(1, 10)") == {"x": FloatDistribution(1.0, 10.0)}


def test_tag_log_interval_is_log_scale():
    assert space("optimizer.lr=tag(log, interval(1e-4, 1e-1))") == {
        "optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True)}


def test_int_interval_is_integer():
    assert space("trainer.epochs=int(interval(2, 20))") == {"trainer.epochs": IntDistribution(2, 20)}


def test_tag_int_interval_is_integer():
    assert space("trainer.epochs=tag(int, interval(2, 20))") == {"trainer.epochs": IntDistribution(2, 20)}


def test_tag_log_int_interval_is_integer_log_scale():
    assert space("x=tag(log, int(interval(1, 1024)))") == {"x": IntDistribution(1, 1024, log=True)}


def test_integer_range_excludes_its_upper_end():
    assert space("trainer.batch_size=range(32, 257, 32)") == {
        "trainer.batch_size": IntDistribution(32, 256, step=32)}
    assert space("x=range(1, 10)") == {"x": IntDistribution(1, 9)}  # Hydra: 1..9; the old plugin had 10


def test_float_range_is_stepped_without_rounding_loss():
    assert space("x=range(0.1, 1.0, 0.1)") == {"x": FloatDistribution(0.1, 0.9, step=0.1)}


def test_descending_range():
    assert space("x=range(10, 1, -3)") == {"x": IntDistribution(4, 10, step=3)}  # 10, 7, 4


def test_choice_is_categorical():
    assert space("trainer.batch_size=choice(64, 128, 256)") == {
        "trainer.batch_size": CategoricalDistribution([64, 128, 256])}


def test_comma_list_is_categorical():
    assert space("optimizer.name=adam,sgd") == {"optimizer.name": CategoricalDistribution(["adam", "sgd"])}


def test_config_group_choice_is_categorical():
    assert space("model=choice(cnn, resnet9)") == {"model": CategoricalDistribution(["cnn", "resnet9"])}


def test_plain_values_stay_fixed_as_typed():
    distributions, fixed = create_distributions(["data=synthetic", "trainer.epochs=2", "+extra=1"])
    assert distributions == {}
    assert fixed == {"data": "data=synthetic", "trainer.epochs": "trainer.epochs=2", "+extra": "+extra=1"}


def test_later_override_of_a_name_wins():
    distributions, fixed = create_distributions(["optimizer.lr=interval(0.1, 1)", "optimizer.lr=0.01"])
    assert distributions == {} and fixed == {"optimizer.lr": "optimizer.lr=0.01"}


def test_nonsense_is_refused_with_the_override_named():
    with pytest.raises(ValueError, match=r"x=tag\(log, range\(1, 10, 2\)\)"):
        create_distributions(["x=tag(log, range(1, 10, 2))"])


def test_grid_values_enumerate_choices_and_ranges():
    distributions, _ = create_distributions(["a=choice(x, y)", "b=range(1, 7, 2)", "c=range(0.1, 0.4, 0.1)"])
    assert grid_values(distributions) == {"a": ["x", "y"], "b": [1, 3, 5], "c": [0.1, 0.2, 0.3]}
    with pytest.raises(ValueError, match="grid sampler"):
        grid_values(space("d=interval(0, 1)"))


@pytest.mark.parametrize("value", ["cnn", "1", "true", "it's", "/tmp/x y/journal.log", 3, 1e-05, 0.1, True, None])
def test_sampled_values_parse_back_exactly(value):
    parsed = OverridesParser.create().parse_override(format_override("k", value))
    assert parsed.value() == value and type(parsed.value()) is type(value)
