"""Errors that are the user's to fix: train.py prints their message, without a traceback."""


class UserError(RuntimeError):
    pass


class ConfigError(UserError, ValueError):
    """A config value that cannot work, found when the object that owns the key is built.

    ``run()`` builds every object (model, DataModule, trainer) before any data is generated,
    decoded or cached, so such a mistake ends the run at once, as one paragraph. Also a
    ``ValueError``, which is what it is to code that builds these objects by hand.
    """


def not_one_of(key: str, value, allowed) -> ConfigError:
    """The standard paragraph for a value outside a fixed set."""
    return ConfigError(f"{key}={value!r} is not a valid value; use one of: "
                       f"{', '.join(str(a) for a in allowed)}.")


def find_user_error(err: BaseException) -> UserError | None:
    """The UserError behind ``err``, also when Hydra's instantiate wrapped it."""
    while err is not None:
        if isinstance(err, UserError):
            return err
        err = err.__cause__ or err.__context__
    return None
