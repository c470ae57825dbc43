"""The generic registry behind create_model / create_optimizer / create_act / create_norm / create_scheduler."""
import pytest

from shared.registry import Registry, UnknownNameError


def test_registry_register_get_create_and_info():
    reg = Registry("widget")

    @reg.register("Square", exponent=2)
    def square(x):
        return x * x

    assert reg.get("square") is square and reg.create("SQUARE", 3) == 9
    assert reg.info("square") == {"exponent": 2} and "square" in reg and len(reg) == 1


def test_registry_duplicate_name_raises():
    reg = Registry("widget")
    reg.add("a", int)
    with pytest.raises(ValueError, match="widget 'A' is already registered"):
        reg.add("A", float)


def test_registry_unknown_name_lists_known_names_sorted():
    reg = Registry("widget")
    for name in ("zeta", "alpha", "mid"):
        reg.add(name, int)
    with pytest.raises(UnknownNameError) as err:
        reg.get("beta")
    assert str(err.value) == "unknown widget 'beta'; known widgets: alpha, mid, zeta"
    assert isinstance(err.value, KeyError)
