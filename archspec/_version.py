"""The version, in one place below the facade (the lower layers never import `archspec` itself)."""

VERSION = "0.1.0"
