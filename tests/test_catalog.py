"""The torch-free catalog (read from the source files) agrees with the registries that torch builds."""

from __future__ import annotations

import inspect

from srseg.config import catalog, schema


def test_architectures_match_the_registry():
    from srseg.models import ARCHS

    cat = catalog.archs()
    assert set(cat) == set(ARCHS)
    for name, cls in ARCHS.items():
        info = cat[name]
        params = inspect.signature(cls.__init__).parameters
        assert set(info.params) == set(params) - {"self", "scale", "in_channels"}, name
        assert info.context == ("in_channels" in params), name
        trained = getattr(cls, "trainable", True)
        assert info.kind == ("untrained" if not trained else getattr(cls, "training", "supervised")), name
        for key, default in info.net_defaults().items():
            value = params[key].default
            assert default == (list(value) if isinstance(value, tuple) else value), (name, key)
        if info.kind == "gan":
            assert set(info.critic_params) == set(inspect.signature(cls.build_critic).parameters), name


def test_losses_match_the_registry():
    from srseg.losses import LOSSES, AdversarialLoss, PixelLoss

    cat = catalog.losses()
    assert set(cat) == set(LOSSES)
    for name, cls in LOSSES.items():
        role = cat[name].role
        assert (role == "adversarial") == issubclass(cls, AdversarialLoss), name
        assert (role == "pixel") == issubclass(cls, PixelLoss), name


def test_degradation_kinds_match_the_schema():
    from srseg.degrade import KINDS

    kinds = schema.subschema("degradations", "*")["properties"]["kind"]["enum"]
    assert set(kinds) == set(KINDS)


def test_training_kinds_exist_for_every_arch_kind():
    from srseg.training import kind_class

    for info in catalog.archs().values():
        if info.trained:
            assert kind_class(info.kind).__name__, info.name
