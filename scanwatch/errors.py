"""One exception hierarchy; the CLI maps each class to an exit status."""


class ScanwatchError(Exception):
    """Base of every error scanwatch reports to the user as `error: ...`."""

    exit_code = 1


class ConfigError(ScanwatchError):
    """A configuration or ignore file is unreadable or malformed.

    `path` and `lineno` name the offending place; str() renders `FILE:LINE: message`.
    """

    exit_code = 2

    def __init__(self, message, path=None, lineno=None):
        self.message, self.path, self.lineno = message, path, lineno
        where = ""
        if path is not None:
            where = f"{path}:{lineno}: " if lineno else f"{path}: "
        super().__init__(where + message)


class KernelError(ScanwatchError):
    """The BPF program could not be compiled, loaded or attached."""


class FirewallError(ScanwatchError):
    """nftables refused a command."""


class StateError(ScanwatchError):
    """A state, run or record file could not be read or written."""


class SetupError(StateError):
    """A directory or file the daemon needs is unusable; found before anything changes."""

    exit_code = 2


class NotRunning(ScanwatchError):
    """No daemon answers on the control socket."""

    exit_code = 3


class FleetError(ScanwatchError):
    """Redis refused us (password, ACL) or cannot be reached; one line, never a traceback."""
