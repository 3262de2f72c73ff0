"""The SR training kinds, one module each; importing this package registers them in engine.KINDS.

An architecture names its kind in the class attribute `training` (default supervised);
`srseg.config.model_spec` copies it into the model's slice as `kind`. Affinity training
registers its kind in srseg.affinity. A new kind is one module here: a `Kind` subclass
registered with `@KINDS.register(name)`. `srseg.training.kind_class` imports a kind's
module when a model needs it, and the train rule's code digest names that one module, so
editing the GAN step reruns GAN models only.
"""
