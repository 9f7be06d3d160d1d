"""The compiled component specs: one `<name>.yaml` per row of `tfpipe.components.registry` (`train.yaml`, ...).

Generated from `tfpipe.components` by `tfpipe specs`; never edited by hand. Load them
with `tfpipe.components.load_component(name, image=...)`, or give the path from
`tfpipe.components.spec_path(name)` to `kfp.components.load_component_from_file`.
"""
