"""The language: syntax, spec nodes, block expansion and binding, the op registry, the checker and its diagnostics.

Never imports torch, the views, the backend, training or the CLI (import-linter checks it)."""
