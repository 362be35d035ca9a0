#!/usr/bin/env bash
# Remakes docs/editor.png: Neovim (0.10+ for inlay hints) with `archspec lsp`, in tmux, captured with
# its colours, rendered by rich to SVG and screenshot by headless Chromium. Needs nvim, tmux, chromium.
# Usage: NVIM=/path/to/nvim docs/editor/picture.sh   (from the repository root)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); repo=$(dirname "$(dirname "$here")")
work=$(mktemp -d); mkdir -p "$work/cfg/nvim" "$work/proj"
cp "$here/init.lua" "$work/cfg/nvim/init.lua"; cp "$here/lenet.arch" "$work/proj/"; git -C "$work/proj" init -q
printf 'set -g default-terminal "tmux-256color"\nset -ga terminal-overrides ",*:RGB"\nset -g status off\n' > "$work/tmux.conf"
tmux -L archspec-shot -f "$work/tmux.conf" new-session -d -x 152 -y 18 -c "$work/proj" \
  "env XDG_CONFIG_HOME=$work/cfg XDG_DATA_HOME=$work/data XDG_STATE_HOME=$work/state PYTHONPATH=$repo COLORTERM=truecolor ${NVIM:-nvim} lenet.arch"
sleep 6                                  # the server starts and publishes diagnostics and hints
tmux -L archspec-shot send-keys 8G; sleep 0.5
tmux -L archspec-shot send-keys K; sleep 2  # the hover on `linear 10`
tmux -L archspec-shot capture-pane -e -p > "$work/pane.ansi"
tmux -L archspec-shot kill-server
python - "$work" <<'PY'
import sys
from rich.console import Console
from rich.text import Text
work = sys.argv[1]
console = Console(record=True, width=152, force_terminal=True, color_system="truecolor", file=open("/dev/null", "w"))
for line in open(f"{work}/pane.ansi").read().rstrip("\n").split("\n"):
    text = Text.from_ansi(line)
    text.no_wrap = True
    console.print(text, crop=True, overflow="crop")
svg = console.export_svg(title="nvim lenet.arch  (archspec lsp)")
open(f"{work}/pane.html", "w").write(f'<html><body style="margin:0;background:#fff">{svg}</body></html>')
PY
chromium --headless --no-sandbox --disable-gpu --disable-background-networking --user-data-dir="$work/chrome" \
  --hide-scrollbars --window-size=1873,490 --screenshot="$repo/docs/editor.png" "file://$work/pane.html"
