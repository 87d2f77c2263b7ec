"""What the training loop tells its event handler, as the chapter's handler received it:
an event after every batch and one after every pass, and the chapter's own handler."""

from dataclasses import dataclass


@dataclass
class StepEvent:
    """Sent to the event handler after every training batch."""

    pass_id: int
    batch_id: int
    cost: float
    acc: float
    batches: int = 0  # batches in this pass


@dataclass
class PassEvent:
    """Sent to the event handler after every pass, once the validation and test passes ran.

    ``val_cost`` and ``val_acc`` are None when no validation set is held out.
    """

    pass_id: int
    train_cost: float
    train_acc: float
    val_cost: float | None
    val_acc: float | None
    test_cost: float
    test_acc: float
    seconds: float


def log_every_100(event, log=print):
    """The default event handler: the chapter's log lines."""
    if isinstance(event, StepEvent) and event.batch_id % 100 == 0:
        log(f"Pass {event.pass_id}, Batch {event.batch_id}, Cost {event.cost:.6f}")
    elif isinstance(event, PassEvent):
        validation = ("" if event.val_cost is None else
                      f" (validation: Cost {event.val_cost:.6f}, Acc {event.val_acc:.4f})")
        log(f"Test with Pass {event.pass_id}, Cost {event.test_cost:.6f}, "
            f"Acc {event.test_acc:.4f}{validation}")
