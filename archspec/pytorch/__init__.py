"""The torch backend: runtime module classes, build (checked tree -> nn.Module), codegen (-> Python source, torch-free)."""
