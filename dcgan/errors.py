class UserError(Exception):
    """A mistake the user can fix: the message says what is wrong and what to do.

    The CLI prints it as one line and exits non-zero, without a traceback.
    """
