"""Errors in what the user gave: data files, config values, unknown names.

The command line prints their one-line message and exits non-zero, without a traceback (HYDRA_FULL_ERROR=1
shows it); any other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user; the message says what is wrong and where."""


class ConfigError(UserError, ValueError):
    """A config value fer_sweep does not accept; the message names the option."""


class UnknownNameError(ConfigError, KeyError):
    """A component name (model, logger, ...) that is not registered; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
