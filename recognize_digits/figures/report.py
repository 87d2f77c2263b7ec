"""A model's report on labelled images: per-digit accuracy, the confusion matrix and the
most confident mistakes, as text tables and as files (``evaluate --report``)."""

from pathlib import Path

import numpy as np

from ..plumbing.names import printable
from ..plumbing.storage import replace_file, write_json
from .plot import most_confident_mistakes, plot_confusion, plot_mistakes


def confusion_matrix(labels, digits):
    """``int [10, 10]``: row = true digit, column = predicted digit."""
    confusion = np.zeros((10, 10), np.int64)
    np.add.at(confusion, (labels, digits), 1)
    return confusion


def write_report(folder, images, labels, probs, mistakes=24, originals=None):
    """Per-class accuracy, the confusion matrix and the most confident mistakes, as
    ``report.json``, ``confusion.png`` and ``mistakes.png`` in ``folder``; returns the
    text tables. ``originals``: the image files behind ``images``, shown beside them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    digits = probs.argmax(axis=1)
    confusion = confusion_matrix(labels, digits)
    counts = confusion.sum(axis=1)
    per_class = [confusion[d, d] / counts[d] if counts[d] else None for d in range(10)]
    worst = most_confident_mistakes(labels, probs, mistakes)
    write_json(folder / "report.json", {
        "images": len(labels), "accuracy": float((digits == labels).mean()),
        "per_class_accuracy": {str(d): a if a is None else float(a)
                               for d, a in enumerate(per_class)},
        "confusion": confusion.tolist(),
        "most_confident_mistakes": [{"index": int(i), "true": int(labels[i]),
                                     "predicted": int(digits[i]),
                                     "probability": float(probs[i, digits[i]]),
                                     **({"image": printable(originals[i])} if originals else {})}
                                    for i in worst]})
    replace_file(folder / "confusion.png",
                 lambda tmp: plot_confusion(confusion).savefig(tmp, dpi=100))
    if len(worst):
        replace_file(folder / "mistakes.png", lambda tmp: plot_mistakes(
            images, labels, probs, mistakes, originals).savefig(tmp, dpi=100))
    return report_tables(confusion)


def report_tables(confusion):
    """Per-digit accuracy and the confusion matrix as text tables."""
    counts = confusion.sum(axis=1)
    rows = [f"{'digit':>17} " + " ".join(f"{d:>5}" for d in range(10)),
            f"{'accuracy (%)':>17} " + " ".join(
                f"{100 * confusion[d, d] / counts[d]:5.1f}" if counts[d] else "    -"
                for d in range(10)),
            "", "true \\ predicted " + " ".join(f"{d:>5}" for d in range(10))]
    rows += [f"{t:>17} " + " ".join(f"{n:>5}" for n in row) for t, row in enumerate(confusion)]
    return "\n".join(rows)
