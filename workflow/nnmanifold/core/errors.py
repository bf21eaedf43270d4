"""The one exception type shown to users without a traceback."""


class UserError(Exception):
    """A problem the user can fix (config, data, a broken file); shown without a traceback."""
