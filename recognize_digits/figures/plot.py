"""Figures of a training and its results: digits, cost curves, accuracy per pass,
probabilities, the confusion matrix and the most confident mistakes (written as a report
folder by :mod:`.report`), and a benchmark's fine-tuning curves.

Figures are made with matplotlib's object API (no pyplot state), so they work the
same in a notebook, in a script and in the CLI (``train --plot PATH``). The chapter's
explanatory figures are in :mod:`.diagrams`.
"""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..errors import ConfigError
from ..events import PassEvent, StepEvent
from ..infer import open_image, to_grey
from ..plumbing.names import printable
from ..plumbing.storage import replace_file


def plot_digits(images, labels, columns=10, predictions=None):
    """A grid of uint8 ``[N, 28, 28]`` digits titled with their labels (and predictions)."""
    rows = -(-len(images) // columns)
    fig = Figure(figsize=(columns * 0.9, rows * 1.05))
    for i, (image, label) in enumerate(zip(images, labels)):
        ax = fig.add_subplot(rows, columns, i + 1)
        ax.imshow(np.asarray(image).reshape(28, 28), cmap="gray")
        title = str(label) if predictions is None else f"{label}→{predictions[i]}"
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_probabilities(probs, title=None):
    """A bar chart of the 10 probabilities of one image, the most likely digit highlighted."""
    probs = np.asarray(probs).ravel()
    fig = Figure(figsize=(5, 2.6))
    ax = fig.add_subplot()
    colors = ["tab:orange" if d == probs.argmax() else "tab:blue" for d in range(10)]
    ax.bar(range(10), probs, color=colors)
    ax.set_xticks(range(10))
    ax.set_xlabel("digit")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


class CostCurves:
    """An event handler that records train, validation and test cost against steps and draws them.

    ``live=True`` redraws the figure in a running notebook every ``redraw`` steps and
    after every test pass; ``save_to`` (a PNG, SVG or PDF path) writes it there after
    every pass; :meth:`save` writes it anywhere.
    """

    def __init__(self, title="cost", live=False, redraw=100, save_to=None):
        if save_to is not None:
            self.check_path(save_to)
        self.title, self.live, self.redraw, self.save_to = title, live, redraw, save_to
        self.steps, self.train_costs, self.test_steps, self.test_costs = [], [], [], []
        self.val_costs = []
        self._display = None

    def __call__(self, event):
        if isinstance(event, StepEvent):
            self.steps.append(len(self.steps))
            self.train_costs.append(event.cost)
            if self.live and len(self.steps) % self.redraw == 0:
                self.show()
        elif isinstance(event, PassEvent):
            self.test_steps.append(len(self.steps))
            self.test_costs.append(event.test_cost)
            self.val_costs.append(event.val_cost)
            if self.live:
                self.show()
            if self.save_to is not None:
                self.save(self.save_to)

    def figure(self):
        fig = Figure(figsize=(7, 3.6))
        ax = fig.add_subplot()
        ax.plot(self.steps, self.train_costs, lw=0.5, alpha=0.35, label="train cost (batch)")
        window = min(50, len(self.train_costs))
        if window > 1:  # the batch costs are noisy: draw their running mean too
            smooth = np.convolve(self.train_costs, np.ones(window) / window, mode="valid")
            ax.plot(self.steps[window - 1:], smooth, color="tab:blue",
                    label=f"train cost (mean of {window} batches)")
        if any(cost is not None for cost in self.val_costs):
            ax.plot(self.test_steps, self.val_costs, "s-", color="tab:green",
                    label="validation cost (after each pass)")
        ax.plot(self.test_steps, self.test_costs, "o-", color="tab:orange",
                label="test cost (after each pass)")
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy cost")
        ax.set_yscale("log")
        ax.set_title(self.title)
        ax.legend()
        fig.tight_layout()
        return fig

    def show(self):
        """Draw (or redraw in place) the curves in the notebook."""
        from IPython.display import display

        if self._display is None:
            self._display = display(self.figure(), display_id=True)
        else:
            self._display.update(self.figure())

    @staticmethod
    def check_path(path):
        """Refuse, before any training, a path the curves could not be saved to."""
        path = Path(path)
        kinds = Figure().canvas.get_supported_filetypes()
        if path.suffix.lstrip(".").lower() not in kinds:
            raise ConfigError(f"{path}: cannot draw into a {path.suffix or 'suffix-less'} file; "
                              f"end the name with .png, .svg or .pdf")
        if not path.parent.is_dir():
            raise ConfigError(f"{path}: folder {path.parent} does not exist; create it first")

    def save(self, path):
        """Write the figure to ``path`` (format from its suffix), replacing it in one step."""
        replace_file(path, lambda tmp: self.figure().savefig(tmp, dpi=100))


def plot_accuracy(runs):
    """Test accuracy after each pass, a line per run, with the validation accuracy dashed
    and the chosen pass circled; ``runs`` maps names to train() metrics."""
    fig = Figure(figsize=(7.5, 3.4))
    ax = fig.add_subplot()
    for name, metrics in runs.items():
        passes = metrics["passes"]
        ids = [p["pass_id"] for p in passes]
        [line] = ax.plot(ids, [100 * p["test_acc"] for p in passes], "o-", label=f"{name} (test)")
        if passes[0]["val_acc"] is not None:
            ax.plot(ids, [100 * p["val_acc"] for p in passes], "--", color=line.get_color(),
                    label=f"{name} (validation)")
        best = passes[metrics["best_pass"]]
        ax.plot([best["pass_id"]], [100 * best["test_acc"]], "o", markersize=12,
                markerfacecolor="none", color=line.get_color())
    ax.set_xlabel("pass")
    ax.set_ylabel("accuracy (%)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title("circled: the pass chosen on validation", fontsize=9)
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig


def comparison_table(runs):
    """A Markdown table of the best pass of each run (chosen on validation): its test
    accuracy and cost, the parameters, the speed."""
    lines = ["| model | best pass | test accuracy | test cost | parameters | seconds per pass |",
             "|---|---|---|---|---|---|"]
    for name, m in runs.items():
        best = m["passes"][m["best_pass"]]
        seconds = np.mean([p["seconds"] for p in m["passes"]])
        lines.append(f"| {name} | {m['best_pass']} of {len(m['passes'])} | "
                     f"{100 * best['test_acc']:.2f}% | {best['test_cost']:.4f} | "
                     f"{m['parameters']:,} | {seconds:.1f} |")
    return "\n".join(lines)


def plot_confusion(confusion):
    """The confusion matrix as a picture: true digits down, predictions across."""
    fig = Figure(figsize=(5.2, 4.6))
    ax = fig.add_subplot()
    shown = ax.imshow(np.log1p(confusion), cmap="Blues")
    for (true, pred), n in np.ndenumerate(confusion):
        if n:
            ax.text(pred, true, str(n), ha="center", va="center", fontsize=7,
                    color="white" if n > confusion.max() / 4 else "black")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title("confusion matrix (counts)")
    fig.colorbar(shown, ax=ax, label="log(1 + count)")
    fig.tight_layout()
    return fig


def most_confident_mistakes(labels, probs, count=24):
    """Indices of the wrong answers, the most confident first."""
    digits = probs.argmax(axis=1)
    wrong = np.flatnonzero(digits != labels)
    return wrong[np.argsort(-probs[wrong, digits[wrong]])][:count]


def plot_mistakes(images, labels, probs, count=24, originals=None):
    """The most confident mistakes, titled true→predicted and the probability given.

    With ``originals`` (the image files the 28x28 ``images`` were made from), each
    mistake is shown twice: the picture as given, and what the model saw.
    """
    worst = most_confident_mistakes(labels, probs, count)
    digits = probs.argmax(axis=1)
    titles = [f"{labels[i]}→{digits[i]} {probs[i, digits[i]]:.2f}" for i in worst]
    if originals is None:
        return plot_digits(images[worst], labels[worst], columns=8, predictions=[
            f"{digits[i]} {probs[i, digits[i]]:.2f}" for i in worst])
    rows = -(-len(worst) // 4)
    fig = Figure(figsize=(8 * 0.95, rows * 1.25))
    for k, (i, title) in enumerate(zip(worst, titles)):
        picture = to_grey(open_image(originals[i]))
        picture.thumbnail((96, 96))
        for j, (shown, caption) in enumerate(((picture, printable(Path(originals[i]).name)[:14]),
                                              (np.asarray(images[i]).reshape(28, 28), title))):
            ax = fig.add_subplot(rows, 8, 2 * k + j + 1)
            ax.imshow(shown, cmap="gray")
            ax.set_title(caption, fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    return fig


def plot_learning_curve(results):
    """Accuracy on a source's unseen digits against the number of its digits fine-tuned
    on, a line per source (the mean over seeds, the range shaded), and MNIST's test
    accuracy after: ``results`` as ``benchmarks/finetune.py --json`` writes them."""
    fig = Figure(figsize=(9, 3.4))
    ours, kept = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for source, r in results["results"].items():
        sizes = [0] + [int(size) for size in r["sizes"]]
        runs = [[{"accuracy": r["before"], "mnist": results["mnist_before"]}]] + list(
            r["sizes"].values())
        for ax, key in ((ours, "accuracy"), (kept, "mnist")):
            values = [[100 * run[key] for run in at] for at in runs]
            [line] = ax.plot(sizes, [np.mean(v) for v in values], "o-", label=source)
            ax.fill_between(sizes, [min(v) for v in values], [max(v) for v in values],
                            color=line.get_color(), alpha=0.15)
    for ax, title in ((ours, "the source's unseen digits"), (kept, "MNIST's test set")):
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xticks([0, 10, 30, 100, 300], ["0", "10", "30", "100", "300"])
        ax.set_xlabel("your digits fine-tuned on")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(title, fontsize=10)
    ours.legend(fontsize="small")
    fig.tight_layout()
    return fig
