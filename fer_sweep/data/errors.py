"""One exception type for bad input data, so the CLI can print a clean message and exit non-zero."""
from fer_sweep.errors import UserError


class DataError(UserError, ValueError):
    """A dataset file or folder is missing, empty or malformed; the message names the file and row/image."""
