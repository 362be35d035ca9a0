vim.filetype.add({ extension = { arch = "archspec" } })
vim.api.nvim_create_autocmd("FileType", {
  pattern = "archspec",
  callback = function(args)
    vim.bo[args.buf].commentstring = "# %s"
    vim.lsp.start({
      name = "archspec",
      cmd = { "archspec", "lsp" },
      root_dir = vim.fs.dirname(vim.fs.find({ ".git" }, { upward = true, path = vim.fs.dirname(vim.api.nvim_buf_get_name(args.buf)) })[1]),
    })
  end,
})
-- Neovim 0.11+ can instead declare it once, like an lspconfig entry:
-- vim.lsp.config("archspec", { cmd = { "archspec", "lsp" }, filetypes = { "archspec" }, root_markers = { ".git" } })
-- vim.lsp.enable("archspec")

-- for the picture: the diagnostic beside its line, the inlay hints on
vim.diagnostic.config({ virtual_text = true })
vim.api.nvim_create_autocmd("LspAttach", {
  callback = function(args) vim.lsp.inlay_hint.enable(true, { bufnr = args.buf }) end,
})
vim.o.number = true
