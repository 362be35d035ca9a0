"""`split { a } { b } ...`: ShuffleNetV2's channel split. The input's channels are cut into as many equal parts
as there are bodies (torch.chunk on dim 1), body i runs on part i, and the outputs are concatenated on channels:
`split {} { conv 58 k1 | ... }` keeps half the channels as they are and sends the other half through the branch."""
from __future__ import annotations

from typing import Any

from archspec.language import codes
from archspec.language.joins.base import Checker, JoinSpec, known, output_of
from archspec.language.joins.concat import Concat
from archspec.language.ops.base import Shape, fmt_shape


class Split(Concat):
    word = "split"
    summary = "Cuts the input's channels into equal parts, one per branch (torch.chunk(dim=1)), runs each branch on its part and concatenates the outputs on channels; `{ }` keeps its part as it is."
    usage = "split { a } { b } ..."
    hint = "gives each branch its equal share of the channels, then concatenates (`split {} { ... }` is ShuffleNetV2's unit)"
    runtime_class = "Split"
    runtime_needs = ("Concat",)  # runtime.Split is a Concat that chunks its input

    def check(self, checker: Checker, spec: JoinSpec, x: Shape | None, where: dict[str, Any]) -> Any:
        path, depth, n = where["path"], where["depth"], len(spec.bodies)
        part = self.part(x, n, checker, spec) if known(x) else None
        branches = [checker.seq(b, part, f"{path}.{self.label(i)}.", depth + 1) for i, b in enumerate(spec.bodies)]
        outs = [output_of(b, part) for b in branches]
        y = self.combine(part, outs, checker.emitter(spec)) if known(part) and all(known(o) for o in outs) else None  # type: ignore[arg-type]
        return checker.joined(spec, x, where, y, outs, branches=branches)

    def part(self, x: Shape, n: int, checker: Checker, spec: JoinSpec) -> Shape | None:
        """Each body's input: the same shape with C/n channels; E120 when n does not divide C."""
        if x[0] % n == 0:
            return (x[0] // n,) + tuple(x[1:])
        even = x[0] - x[0] % n
        checker.emitter(spec)(
            codes.SPLIT_CHANNELS,
            f"`split` cannot cut {fmt_shape(x)}'s {x[0]} channels into {n} equal parts",
            notes=[f"input is {fmt_shape(x)}", f"{n} branches: each needs C/{n} channels"],
            help=f"give the layer before `split` a channel count divisible by {n} (e.g. {even or n})")
        return None

    def explain_lines(self, node: Any) -> list[str]:
        x, n = node.in_shape, len(node.branches)
        if not known(x):
            return [f"the input's channels are cut into {n} equal parts, one per branch"]
        part = (x[0] // n,) + tuple(x[1:])
        return [f"the input {fmt_shape(x)} is cut on channels into {n} equal parts: each branch gets {fmt_shape(part)}"]
