"""Errors that are the user's to fix: train.py prints their message, without a traceback."""


class UserError(RuntimeError):
    pass


def find_user_error(err: BaseException) -> UserError | None:
    """The UserError behind ``err``, also when Hydra's instantiate wrapped it."""
    while err is not None:
        if isinstance(err, UserError):
            return err
        err = err.__cause__ or err.__context__
    return None
