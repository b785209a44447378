"""The one exception the data module raises for bad input found before training starts."""
from __future__ import annotations


class DataError(ValueError):
    """A data source cannot be used as configured; the message names the file, column or field and the fix."""
