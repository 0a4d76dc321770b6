"""User-facing errors: the CLI prints them as one line on stderr and exits with code 2."""


class SeqlabError(Exception):
    """Bad input from the user (a path, a file's contents, a config, an option).

    The message must say what is wrong and, where possible, how to fix it.
    """


class ConfigError(SeqlabError):
    """An unknown config key, a wrong type or an invalid value."""


class DataError(SeqlabError):
    """A corpus that cannot be read or used."""
