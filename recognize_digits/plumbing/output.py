"""What a process wrote (a worker's log, what native code printed): the line that says
what went wrong."""

import re


# Lines that say nothing of what went wrong: a traceback's frames and markers, banners,
# Paddle's report of a crash (printed after the error that caused it: the C++ stack, the
# summary, the signal's name and time), glog's information and warnings, Python's warnings,
# and the thread headers of a faulthandler dump.
_SAYS_NOTHING = re.compile(
    r"File |\^|~|[-=*]{3,}|C\+\+ Traceback|Error Message Summary|FatalError: .* is detected by"
    r"|\[(TimeInfo|SignalInfo): |\d+\s+\S*(paddle|phi|std|gloo)::|No stack trace in paddle"
    r"|[IW]\d{4} \d\d:\d\d:\d\d|FLAGS\(name=|\S+:\d+: \w*Warning: |warnings\.warn\("
    r"|(Current )?[Tt]hread 0x|Stack \(most recent call first\)")


def last_line(text):
    """The last line of ``text`` that says something (see ``_SAYS_NOTHING``), or "no
    message"; C++'s ``what():`` before an exception's message is dropped."""
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not _SAYS_NOTHING.match(line)]
    return lines[-1].removeprefix("what():").strip() if lines else "no message"
