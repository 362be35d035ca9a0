"""TensorBoard event files for a run (torch.utils.tensorboard), in OUT/tensorboard/.

Step-level training loss and learning rate, the per-epoch metrics, the network's graph, and at the
end the hyper-parameters with the final metrics and the pictures a person looks at: the epoch curves,
the confusion matrix and the most confident mistakes. `Board` is a no-op when the tensorboard package
is not installed (it is the `tensorboard` extra) and on every rank but 0.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from archspec.training.checkpoint import write_failure

SUBDIR = "tensorboard"
POINTS_PER_EPOCH = 50  # step-level scalars: about this many per epoch (each reads the loss from the device)
MISTAKES = 16  # the grid of most confident mistakes: 4 x 4


def available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


class Board:
    """The run's event writer; every method does nothing when there is no writer.

    Event files are a view of the run, not part of it: when one cannot be written (a full disk) the
    board says so once through `log` and stops, and the training goes on.
    """

    def __init__(self, writer: Any = None, every: int = 1, log: Callable[[str], None] = print) -> None:
        self.writer = writer
        self.every = every
        self.log = log

    def _failed(self, exc: BaseException) -> None:
        writer, self.writer = self.writer, None
        self.log(f"tensorboard: stopped writing event files ({write_failure(exc) or exc}); the training goes on")
        try:
            writer.close()
        except Exception:  # the same failure again, on the last flush
            pass

    @classmethod
    def open(cls, out_dir: Path, steps_per_epoch: int, purge_step: int | None, log: Callable[[str], None]) -> "Board":
        """A writer in out_dir/tensorboard; `purge_step` (on a resume) hides what a previous process logged from that step on."""
        from torch.utils.tensorboard import SummaryWriter

        board = cls(None, max(1, steps_per_epoch // POINTS_PER_EPOCH), log)
        try:
            board.writer = SummaryWriter(str(out_dir / SUBDIR), purge_step=purge_step, flush_secs=10)
        except OSError as exc:
            log(f"tensorboard: cannot write event files ({exc.strerror or exc}); the training goes on without them")
        return board

    def graph(self, model: nn.Module, example: torch.Tensor) -> None:
        """The network's graph (TensorBoard's Graphs tab), traced in eval mode on a float32 copy of one input."""
        if self.writer is None:
            return
        was_training = model.training
        model.eval()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's notices about Python values
                self.writer.add_graph(model, example.float())
        except OSError as exc:
            self._failed(exc)
        except Exception:  # a network the tracer cannot follow still trains; only the picture is missing
            pass
        finally:
            model.train(was_training)

    def step(self, step: int, loss: torch.Tensor, lr: float) -> None:
        if self.writer is not None and step % self.every == 0:
            self._write(lambda: (self.writer.add_scalar("step/train_loss", loss.item(), step),
                                 self.writer.add_scalar("step/lr", lr, step)))

    def epoch(self, row: dict[str, Any]) -> None:
        keys = [k for k in ("train_loss", "train_acc", "val_loss", "val_acc", "images_per_s", "lr") if k in row]
        self._write(lambda: [self.writer.add_scalar(f"epoch/{k}", row[k], row["epoch"]) for k in keys])

    def _write(self, write: Callable[[], Any]) -> None:
        """Run `write` (tensorboard raises a failed background write on the next call, or on flush)."""
        if self.writer is None:
            return
        try:
            write()
        except OSError as exc:
            self._failed(exc)

    def finish(self, report: dict[str, Any], figures: dict[str, Any]) -> None:
        """The hyper-parameters with the final metrics (the HParams tab), and the pictures (matplotlib figures)."""
        if self.writer is None:
            for figure in figures.values():
                _close(figure)
            return
        self._write(lambda: self._final(report, figures))

    def _final(self, report: dict[str, Any], figures: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        metrics = {f"hparam/{k}": report[k] for k in ("test_accuracy", "val_accuracy", "best_epoch", "wall_time_s")
                   if isinstance(report.get(k), (int, float)) and not isinstance(report.get(k), bool)}
        settings = {"arch": report["arch"], **{k: _hparam(v) for k, v in report["settings"].items()}}
        for summary in hparams(settings, metrics):
            self.writer.file_writer.add_summary(summary)
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, report["steps"])
        for tag, figure in figures.items():
            self.writer.add_figure(tag, figure, report["steps"])  # closes the figure
        self.writer.flush()

    def close(self) -> None:
        self._write(lambda: self.writer.close())
        self.writer = None


def _close(figure: Any) -> None:
    import matplotlib.pyplot as plt

    plt.close(figure)


def _hparam(value: Any) -> Any:
    """TensorBoard's HParams take numbers, strings and booleans (not None)."""
    return "none" if value is None else value


def confusion_figure(confusion: list[list[int]], classes: list[str], split: str) -> Any:
    """The confusion matrix as a picture: rows the true class, columns the predicted, each row in %."""
    import matplotlib.pyplot as plt

    counts = torch.tensor(confusion, dtype=torch.float64)
    rows = counts / counts.sum(1, keepdim=True).clamp(min=1)
    n = len(classes)
    size = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rows.numpy(), cmap="Blues", vmin=0, vmax=1)
    ticks = range(n)
    ax.set_xticks(ticks, classes, rotation=90 if n > 10 else 45, ha="right" if n <= 10 else "center", fontsize=8)
    ax.set_yticks(ticks, classes, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=f"confusion matrix ({split}, % of each true class)")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                share = rows[i, j].item()
                if share >= 0.005:
                    ax.text(j, i, f"{share:.0%}", ha="center", va="center", fontsize=7,
                            color="white" if share > 0.5 else "black")
    fig.tight_layout()
    return fig


def most_confident_mistakes(predicted: torch.Tensor, confidence: torch.Tensor, labels: torch.Tensor,
                            k: int = MISTAKES) -> list[int]:
    """Positions of the k wrong predictions made with the highest probability, most confident first."""
    wrong = (predicted != labels).nonzero().flatten()
    order = confidence[wrong].argsort(descending=True, stable=True)
    return wrong[order[:k]].tolist()


def mistakes_figure(images: torch.Tensor, labels: torch.Tensor, predicted: torch.Tensor, confidence: torch.Tensor,
                    classes: list[str], split: str) -> Any:
    """A grid of the most confident mistakes: each image with its true class and the class it was taken for."""
    import matplotlib.pyplot as plt

    chosen = most_confident_mistakes(predicted, confidence, labels)
    columns = 4
    rows = max(1, math.ceil(len(chosen) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, chosen):
        image = images[i].permute(1, 2, 0).numpy()
        ax.imshow(image[..., 0] if image.shape[2] == 1 else image, cmap="gray" if image.shape[2] == 1 else None)
        ax.set_title(f"{classes[int(labels[i])]} taken for\n{classes[int(predicted[i])]} ({confidence[i]:.0%})", fontsize=8)
    fig.suptitle(f"most confident mistakes ({split})" if chosen else f"no mistakes ({split})", fontsize=10)
    fig.tight_layout()
    return fig
