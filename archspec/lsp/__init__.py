"""`archspec lsp`: the language server (pygls over stdio).

`analysis` reads the checked tree of a document and answers the editor's questions (hover,
inlay hints, completion, definitions, symbols, code actions) without knowing about LSP;
`server` wires those answers to the protocol. Only `server` imports pygls, and nothing outside
this package imports it: `import archspec` and `archspec check` never load pygls.
"""
