"""User-facing errors of the flow.

A `FlowError` carries a message that names the problem and the fix; the CLI prints it on one line
and exits with `exit_code`, never with a traceback. Library code raises these for bad input and for
failed verification; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class FlowError(Exception):
    """An error the user can act on. `exit_code` is what the CLI returns."""

    exit_code = 1


class UsageError(FlowError):
    """Bad command-line or config input (unknown model, board, invalid value)."""

    exit_code = 2


class DataError(FlowError):
    """A data set is missing, unreadable or malformed."""

    exit_code = 3


class ToolError(FlowError):
    """An external tool (g++, vivado_hls, vitis-run) is missing or failed."""

    exit_code = 4


class VerificationError(FlowError):
    """C simulation (or another check) disagrees with the reference model."""

    exit_code = 5


class DoesNotFitError(FlowError):
    """No reuse factor / strategy / io type makes the design fit the board."""

    exit_code = 6


class DeadlockError(FlowError):
    """The concurrent bounded-FIFO C simulation of a dataflow design deadlocked (FIFOs too shallow)."""

    exit_code = 7


class BundleError(FlowError, ValueError):
    """A bundle cannot be written (invalid layer) or read (corrupt, truncated, unsupported)."""


class ReportError(UsageError):
    """A report file is missing, unreadable, truncated or not the kind of report expected."""
