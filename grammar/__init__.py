"""The archspec grammar (archspec.lark), shipped inside the package as archspec.grammar."""
