"""The figures of the tutorial and of the reports: digits, cost curves, comparisons, the
confusion matrix and mistakes (:mod:`.plot`, :mod:`.report`), the lesson's diagrams
(:mod:`.diagrams`) and what a saved model computes inside (:mod:`.inside`)."""
