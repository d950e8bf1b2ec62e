"""The one enum of process exit codes."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    DOCUMENTS_FAILED = 1
    USAGE = 2
    UNAVAILABLE = 3
    TIMED_OUT = 4
    BUSY = 5
    INTERRUPTED = 130
