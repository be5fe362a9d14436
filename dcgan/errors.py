class UserError(Exception):
    """A mistake the user can fix: the message says what is wrong and what to do.

    The CLI prints it as one line and exits with `exit_code`, without a traceback.
    """

    exit_code = 1


class TrainingStopped(UserError):
    """Training stopped on a signal after saving a checkpoint; exits as a shell does for that signal."""

    def __init__(self, message, signal_number):
        super().__init__(message)
        self.exit_code = 128 + signal_number


def first_line(error):
    """An exception's first line, for a one-line message: a library's own message can run to pages."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def one_line(text):
    """`text` with its control characters (a newline in a file name) written as escapes, so that it stays one line
    and cannot forge a line of its own."""
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)
