"""Error types that map to the command line's exit codes."""


class InputError(ValueError):
    """Bad user input (file, field or value); the CLI exits with code 2."""


class CancelledError(RuntimeError):
    """The user cancelled a running job; nothing was written."""
