"""The API's own error types (bad Design arguments, bad configuration files)."""

__all__ = ["DesignError", "ConfigError"]


class DesignError(ValueError):
    """A Design that cannot be made or used: lanes, reuse, weights mode, target, module name,
    or a format role that does not exist.  ``key`` names the Design argument at fault (None
    when it is not one)."""

    def __init__(self, message, key=None):
        super().__init__(message)
        self.key = key


class ConfigError(DesignError):
    """A configuration file (``dwconv config``) that cannot be read or holds a bad entry; the
    message names the file, the layer and the key."""
