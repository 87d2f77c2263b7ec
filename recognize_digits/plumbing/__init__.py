"""What keeps the lesson's code safe and fast without being part of the lesson: saving
without loss, checkpoints, signals, the fast CPU kernels, downloading, holding back what
native code prints, and the checks on saved models. The chapter's modules use these; none
of these uses an extra."""
