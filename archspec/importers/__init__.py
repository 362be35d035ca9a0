"""Networks that already exist, as .arch text: `archspec import MODULE:CALLABLE` and `archspec.from_torch`.

Needs torch: it sits above archspec.pytorch in the layers, and the language and views never import it.
"""
