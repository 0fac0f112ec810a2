"""The one base class of the errors a user can fix.

An ``InputError`` means something the user gave cannot be used: a model file,
a source, an output folder, an option value. Its message is one line that names
the value, so the command line prints just that line and exits 2. Any other
exception is a fault in the code: the command line keeps its traceback and exits
1, so a bug never looks like bad input.
"""

from __future__ import annotations


class InputError(ValueError):
    """Input that cannot be used; the message names the value and what is wrong.

    A ``ValueError``, so code that validates arguments the usual way keeps
    catching it.
    """


__all__ = ["InputError"]
