"""The table of diagnostic codes, each a constant the checker emits: `codes.KERNEL_TOO_LARGE`.

A code is a `str` ("E101") that also carries its table entry (`.info`): renderers, JSON and SARIF
see the plain string, and a misspelt constant fails at import. Grouped by prefix: E0 syntax and
arguments, E1 shapes, E3 budgets, W2 warnings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class CodeInfo:
    code: str
    name: str
    severity: Severity
    summary: str
    example: str
    fix: str


class Code(str):
    """A diagnostic code string with its table entry attached."""

    info: CodeInfo


CODES: dict[str, CodeInfo] = {}


def _define(code: str, name: str, severity: Severity, summary: str, example: str, fix: str) -> Code:
    if code in CODES:
        raise ValueError(f"diagnostic code {code} is defined twice")
    CODES[code] = CodeInfo(code, name, severity, summary, example, fix)
    constant = Code(code)
    constant.info = CODES[code]
    return constant


SYNTAX_ERROR = _define("E001", "syntax-error", "error", "The text does not parse.", "conv 6 k5 |", "Complete or remove the layer.")
UNKNOWN_OP = _define("E002", "unknown-op", "error", "A layer names an op that does not exist.", "cnv 6 k5", "Use one of the ops listed by `archspec ops`.")
UNKNOWN_ARGUMENT = _define("E003", "unknown-argument", "error", "A layer has an argument its op does not take.", "conv 6 k5 x2", "Remove it or use the suggested spelling.")
INVALID_VALUE = _define("E004", "invalid-value", "error", "An argument has a value the op cannot use (zero channels, negative padding, dropout outside [0, 1), ...).", "conv 0 k3", "Use a value in the range the message gives.")
MISSING_ARGUMENT = _define("E005", "missing-argument", "error", "A required argument is missing.", "conv 6", "Add it, e.g. `conv 6 k3`.")
INPUT_LAYER = _define("E006", "input", "error", "The file has no `input` layer, or it is not the first layer, or there are several.", "conv 6 k5", "Start the file with `input CxHxW`, e.g. `input 3x32x32`.")
UNDEFINED_NAME = _define("E007", "undefined-name", "error", "A block or block parameter is not defined, or a block is called with the wrong arguments.", "basic(64) with no `block basic`", "Define the block, `use` the file that defines it, or fix the call.")
IMPORT_ERROR = _define("E008", "import-error", "error", "A `use` file cannot be read (missing, not a regular file, over 1 MiB, not UTF-8) or parsed, files use each other in a cycle, or a `use` chain is deeper than 32 files.", 'use "missing.arch"', "Fix the path (relative to the file that uses it).")
TOO_LARGE = _define("E009", "too-large", "error", "The network passes a size limit: more than 50,000 layers once repeats and block calls are expanded, or bodies and expressions nested more than 64 levels deep.", "repeat 1000000 { relu }", "Use smaller counts or flatter nesting; the message gives the number it would reach.")
NOQA_WOULD_MOVE = _define("E010", "noqa-would-move", "error", "`archspec fmt` would change what a `# noqa` silences: split a line ending in `# noqa` (part of its code would land on another line) or join a line to one (an empty body over several lines); fmt leaves the file unchanged.", "residual { conv 8 k3 x2  # noqa   (and `}` on the next line)", "Put each statement on its own line, with the `# noqa` on the line it silences, then run fmt again.")
KERNEL_TOO_LARGE = _define("E101", "kernel-too-large", "error", "A convolution kernel (with dilation) is larger than its padded input, as PyTorch refuses.", "input 3x4x4 | conv 6 k5", "Pad the input, use a smaller kernel, or downsample less before it.")
OUTPUT_TOO_SMALL = _define("E102", "output-too-small", "error", "A pooling window leaves an output size below 1, as PyTorch refuses.", "input 3x1x1 | maxpool 2", "Pool less, or remove the layer.")
WRONG_RANK = _define("E103", "wrong-rank", "error", "A layer gets a tensor of the wrong rank: a conv or pool after `flatten`, a `linear` on a 4-D tensor.", "flatten | conv 6 k3", "Add `flatten` before `linear`; move convs before `flatten`.")
GROUPS_MISMATCH = _define("E104", "groups-mismatch", "error", "A grouped convolution's groups do not divide its input or output channels, or a channel shuffle's groups do not divide its channels.", "input 3x32x32 | conv 8 k3 g2", "Choose groups that divide both channel counts.")
POOL_PADDING = _define("E105", "pool-padding", "error", "Pooling padding is more than half the kernel, as PyTorch refuses.", "maxpool 2 p2", "Use padding at most kernel // 2.")
SAME_WITH_STRIDE = _define("E106", "same-with-stride", "error", "`p same` with a stride above 1, which PyTorch refuses.", "conv 8 k3 s2 p same", "Use explicit padding, e.g. `p1` for k3.")
RESIDUAL_MISMATCH = _define("E107", "residual-mismatch", "error", "A residual's body output cannot be added to its input.", "residual { conv 8 k3 }", "Keep the shape, or add `project` / a `shortcut { ... }`.")
BRANCH_MISMATCH = _define("E108", "branch-mismatch", "error", "Parallel branches produce shapes that cannot be joined.", "concat { maxpool 2 } { conv 8 k3 p1 }", "Make the branches agree on batch and spatial size (concat) or on the whole shape (add).")
GROUPNORM_GROUPS = _define("E109", "groupnorm-groups", "error", "`groupnorm G` needs G to divide the channels, as PyTorch refuses otherwise.", "input 3x32x32 | groupnorm 2", "Use a G that divides the channels, e.g. 1 or the channel count.")
OUTPUT_PADDING = _define("E110", "output-padding", "error", "A transposed conv's output padding is not smaller than its stride or its dilation, as PyTorch refuses.", "convtranspose 8 k3 s2 op2", "Use output padding below the stride (op1 with s2).")
TRANSPOSE_TOO_SMALL = _define("E111", "transpose-too-small", "error", "A transposed conv's padding leaves an output size below 1.", "input 3x2x2 | convtranspose 8 k1 p1", "Pad less, or use a larger kernel or stride.")
INPUT_SHAPE_UNKNOWN = _define("E112", "input-shape-unknown", "error", "A layer reads the incoming shape (`in.c`, `in.h`, `in.w`, `in.f`) where it is unknown (after an error, or with no `input`).", "conv {in.c // 2} k1 after a failing layer", "Fix the error before it, or write the number.")
INPUT_SHAPE_KIND = _define("E113", "input-shape-kind", "error", "A layer reads an image size (`in.c`, `in.h`, `in.w`) of a [B, F] tensor, or `in.f` of an image.", "flatten | linear {in.c}", "Use `in.f` after `flatten`, `in.c`/`in.h`/`in.w` before it.")
NO_INPUT_SIZE = _define("E114", "no-input-size", "error", "A symbolic input (`input 3xHxW`) where no height or width makes the network check.", "input 3xHx4 | conv 8 k5", "Change the layer the message names, or the concrete size.")
BROADCAST_MISMATCH = _define("E115", "broadcast-mismatch", "error", "`mul` gets branch shapes torch cannot broadcast: a size that differs where neither is 1, or ranks that differ.", "mul {} { gap | conv 16 k1 } on [B, 32, H, W]", "Make the gate's sizes 1 or equal to the other branch's: `mul {} { gap | conv 32 k1 | sigmoid }`.")
AUX_WEIGHT = _define("E116", "aux-weight", "error", "`aux` has no loss weight, or one outside (0, 1]: a head whose loss is not weighted in is not trained (an auxiliary head outside training).", "aux { gap | flatten | linear 10 }", "Write its weight after the word: `aux 0.3 { ... }` (torchvision's reference uses 0.3).")
AUX_SHAPE = _define("E117", "aux-shape", "error", "An auxiliary head's output differs from the network's output: its loss compares it with the same labels, so both must give the class scores.", "aux 0.3 { gap | flatten | linear 5 } in a network ending in linear 10", "End the head like the network: `gap | flatten | linear 10`.")
SPLIT_CHANNELS = _define("E120", "split-channels", "error", "`split` gets a channel count that its number of branches does not divide (each branch gets an equal share, as torch.chunk does).", "split {} { conv 8 k1 } on [B, 5, H, W]", "Give the layer before it a channel count divisible by the number of branches.")
CROP_TOO_LARGE = _define("E121", "crop-too-large", "error", "`crop` would center-crop a branch to a size larger than it (every branch is cropped to the last branch's height and width).", "crop { maxpool 2 } { conv 8 k3 p1 }", "Put the largest map (the skip) first and the smaller path last.")
REFLECT_TOO_SMALL = _define("E122", "reflect-too-small", "error", "`blurpool` pads by reflection as many rows or columns as its input has, or more: PyTorch refuses a reflect padding that is not smaller than the size.", "input 3x1x1 | blurpool", "Blur-pool a larger map (downsample less before it), or pad with zeros: `blurpool zeros`.")
SELECT_ATTENTION = _define("E123", "select-attention", "error", "`select`'s attention body does not give one weight per branch and channel (branches x C channels, each size 1 or the branches'), or `gN` does not divide the branches' channels.", "select { conv 8 k1 } { conv 8 k3 p1 } attend { gap | conv 8 k1 }", "End the attention with `conv {branches*C} k1` after a `gap`: `attend { gap | conv 4 k1 | relu | conv 16 k1 }`.")
UNKNOWN_TENSOR = _define("E130", "unknown-tensor", "error", "`from NAME` reads a name that no `as NAME` before it defines where it is read (a block sees only its own names; a name given inside a branch is seen only in that branch).", "from stme after `as stem`", "Use a name given earlier with `as NAME` (the help suggests the closest).")
TENSOR_READ_EARLY = _define("E131", "tensor-read-early", "error", "`from NAME` reads a tensor that is named only later (`as NAME` comes after it).", "from late | ... | as late", "Name the tensor before reading it: move the `as NAME` up, or the `from NAME` down.")
TENSOR_NAMED_TWICE = _define("E132", "tensor-named-twice", "error", "`as NAME` gives a name that already names a tensor where it is written (twice in one body, in a body inside the one that named it, or in every copy of a `repeat`).", "as stem ... as stem", "Give each tensor its own name.")
SLICE_RANGE = _define("E133", "slice-range", "error", "`slice A:B` takes channels outside the ones its input has, or an empty range.", "slice 0:64 on [B, 32, H, W]", "Take a range within the input's channels, with A < B.")
ONE_WEIGHT_FILTER = _define("E134", "one-weight-filter", "error", "`stdconv` with one weight per filter (a 1x1 kernel on one input channel per group): standardising it leaves 0 (torch refuses it).", "stdconv 32 k1 g32 on [B, 32, H, W]", "Give the filters more weights (a larger kernel, fewer groups), or use a plain `conv`.")
FLOOR_DROPS_PIXELS = _define("W201", "floor-drops-pixels", "warning", "The floor in the size formula drops input rows or columns that no window covers.", "input 3x15x15 | maxpool 2", "Pad, change the stride, or use `ceil` on a pool.")
SPATIAL_COLLAPSED = _define("W202", "spatial-collapsed", "warning", "The spatial size is 1x1 before a later convolution, which then only mixes channels.", "input 3x8x8 | maxpool 8 | conv 8 k3 p1", "Downsample less before the last conv, or use a 1x1 conv / linear deliberately.")
CONSECUTIVE_ACTIVATIONS = _define("W203", "consecutive-activations", "warning", "Two activations in a row; the second is usually a mistake.", "relu | relu", "Remove one of them.")
CLASSES_MISMATCH = _define("W204", "classes-mismatch", "warning", "The network's output features differ from the number of classes (`--classes`, default 10).", "linear 100 with --classes 10", "Make the last layer `linear N` with N classes.")
SOFTMAX_BEFORE_LOSS = _define("W205", "softmax-before-loss", "warning", "The network ends with `softmax`; cross-entropy applies log-softmax itself, so training squashes the scores twice and stalls near chance.", "linear 10 | softmax", "Remove it; apply softmax at inference.")
PARAMS_BUDGET = _define("E301", "params-budget", "error", "The network has more parameters than its budget (`--max-params`, or `budget params <= N`).", "budget params <= 50k on LeNet (62,006)", "Use fewer or narrower layers, or raise the limit.")
MACS_BUDGET = _define("E302", "macs-budget", "error", "The network needs more multiply-accumulates per sample than its budget (`--max-macs`, or `budget macs <= N`).", "budget macs <= 500k on LeNet (651,720)", "Downsample earlier, or use narrower or depthwise convs.")
ACTIVATIONS_BUDGET = _define("E303", "activations-budget", "error", "The activations kept for the backward pass at the budget's batch size exceed their budget (`--max-activations` with `--batch-size`, or `budget activations <= 20MB@128`).", "budget activations <= 5MB@128 on LeNet (9.25 MB)", "Downsample earlier, use fewer channels at full resolution, or a smaller batch.")
RF_BUDGET = _define("E304", "rf-budget", "error", "The receptive field is outside its budget: above `--max-rf` at the first layer that crosses it, or below `--min-rf` at the output.", "budget rf >= 64 on LeNet (32)", "Add or remove downsampling, larger kernels or dilation.")
STRIDE_BUDGET = _define("E305", "stride-budget", "error", "The output stride (the product of the strides, the jump) exceeds its budget (`--max-stride`) at the first layer that crosses it.", "budget stride <= 16 on a 5-stage ResNet (32)", "Downsample less (stride 1, or drop a pool), or use dilation instead.")


def is_budget(code: str) -> bool:
    """A budget code (E3xx): a policy on the network's totals, not a mistake that stops building it."""
    return code.startswith("E3")
